"""Hypothesis fuzzing of everything that reads untrusted input: settings, NGFF
documents, the stream record and array metadata that repair reads, and the journal.

The rule under test: malformed input raises omestream's own error type with a
message saying where (or, for the journal, is skipped) -- never a raw KeyError,
TypeError, AttributeError or pydantic ValidationError; and nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omestream
from omestream import (
    AcquisitionSettings,
    Dimension,
    FrameDtypeError,
    PositionDimension,
    SettingsError,
    StoreFormatError,
    create_stream,
)
from omestream.io.journal import read_journal
from omestream.io.kv import LocalKV
from omestream.metadata import plan_documents
from omestream.metadata.parse import parse_group
from omestream.plan import plan_storage
from omestream.repair.presence import layout_from_meta

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.text(min_size=0, max_size=6) | st.sampled_from(
    ["t", "c", "z", "y", "x", "a/b", "..", ".", "", " ", "\x00", "é"]
)
counts = st.none() | st.integers(-3, 5) | st.sampled_from([10**12, 2**31, 2**31 - 1])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, pick: int, value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return value
    path = paths[pick % len(paths)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


# -- settings ---------------------------------------------------------------------------
def _dims_dict(
    dims: list[tuple[str, Any, Any]], positions: Any
) -> list[dict[str, Any] | PositionDimension]:
    out: list[dict[str, Any] | PositionDimension] = [
        {"name": n, "count": c, "chunk_size": ch} for n, c, ch in dims
    ]
    if positions is not None:
        out.insert(1, {"positions": positions})
    return out


@FUZZ
@pytest.mark.filterwarnings("ignore:the frame axes:UserWarning")  # random names: no type
@given(
    dims=st.lists(st.tuples(names, counts, st.none() | st.integers(-1, 2**40)), max_size=6),
    positions=st.none() | st.lists(names, max_size=3) | st.integers(-1, 3),
    dtype=st.sampled_from(["uint16", "float32", "complex64", "object", "bool", "U4", "nonsense"]),
    fmt=st.sampled_from(
        [None, "ome-zarr", "ome-tiff", {"name": "ome-zarr", "version": "0.4"}, "nope", 3]
    ),
    compression=st.sampled_from([None, "zstd", "blosc-lz4", "gzip", "lzw", "zip", 5]),
    root=st.sampled_from(["a.ome.zarr", "", "   ", "b.ome.tiff", "c"]),
)
def test_settings_refuse_bad_input_with_settings_error(
    tmp_path_factory: pytest.TempPathFactory,
    dims: list[tuple[str, Any, Any]],
    positions: Any,
    dtype: str,
    fmt: Any,
    compression: Any,
    root: str,
) -> None:
    data = {"root_path": root, "dimensions": _dims_dict(dims, positions), "dtype": dtype,
            "format": fmt, "compression": compression}  # fmt: skip
    try:
        s = AcquisitionSettings(**data)
    except SettingsError as exc:
        assert str(exc).startswith("invalid ")
        return
    except UserWarning:
        return
    # accepted settings are sane, and survive the JSON round trip resume/repair rely on
    for d in s.dimensions:
        assert d.name and d.name.isprintable() and "/" not in d.name and d.name not in ("..", ".")
        assert d.count is None or 0 < d.count < 2**31
    again = AcquisitionSettings(**json.loads(json.dumps(s.model_dump(mode="json"))))
    assert again == s


@FUZZ
@given(
    pick=st.integers(0, 10_000),
    value=json_values,
    delete=st.booleans(),
)
def test_recorded_settings_mutated_only_raise_settings_error(
    pick: int, value: Any, delete: bool
) -> None:
    base = _example_settings("x.ome.zarr").model_dump(mode="json")
    doc = _mutate(base, pick, value, delete)
    with contextlib.suppress(SettingsError):
        AcquisitionSettings(**doc)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ([("t", 10**12), ("y", 8), ("x", 8)], "larger than"),
        ([("y", 10**6), ("x", 10**6)], "larger than omestream supports"),
        ([("t", 4, 8), ("y", 8), ("x", 8)], "chunk_size=8 is larger than count=4"),
        ([("a/b", 2), ("y", 8), ("x", 8)], "must not contain '/'"),
        ([("..", 2), ("y", 8), ("x", 8)], r"must not contain '/'.*'\.\.'"),
        ([("", 2), ("y", 8), ("x", 8)], "non-empty"),
        ([("t\x07", 2), ("y", 8), ("x", 8)], "non-printable"),
        ([("t", 0), ("y", 8), ("x", 8)], "greater than 0"),
        ([("t", 2), ("y", None), ("x", 8)], "only the first may be unbounded|needs a count"),
    ],
)
def test_absurd_or_unsafe_dimensions(
    tmp_path: Path, dims: list[tuple[Any, ...]], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        AcquisitionSettings(
            root_path=str(tmp_path / "x.ome.zarr"),
            dimensions=[
                Dimension(name=d[0], count=d[1], chunk_size=d[2] if len(d) > 2 else None)
                for d in dims
            ],
            dtype="uint16",
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a/b", "..", "", "fov\n1"])
def test_unsafe_position_names(name: str) -> None:
    with pytest.raises(SettingsError):
        PositionDimension(positions=[name])


def test_nan_frames_for_integer_streams_are_refused(tmp_path: Path) -> None:
    s = _example_settings(str(tmp_path / "nan.ome.zarr"))
    with create_stream(s) as stream:
        frame = np.full(s.frame_shape, np.nan, dtype="float32")
        with pytest.raises(FrameDtypeError, match="float32"):
            stream.append(frame)
        assert stream.frames_written == 0
    record = json.loads((Path(s.output_path) / "zarr.json").read_text())["attributes"]["omestream"]
    assert record["frames"] == 0


# -- NGFF documents as our writer produces them, then damaged ----------------------------
def _example_settings(root: str, **kw: Any) -> AcquisitionSettings:
    dims = [Dimension(name="t", count=None), PositionDimension(positions=["p0", "p1"]),
            Dimension(name="c", count=2), Dimension(name="y", count=8), Dimension(name="x", count=8)]  # fmt: skip
    return AcquisitionSettings(root_path=root, dimensions=dims, dtype="uint16", **kw)


def _our_documents() -> list[dict[str, Any]]:
    docs = []
    for version in ("0.4", "0.5"):
        plan = plan_storage(
            _example_settings("x.ome.zarr", format={"name": "ome-zarr", "version": version})
        )
        docs.extend(d for d in plan_documents(plan).values() if d)
    return docs


OUR_DOCS = _our_documents()


@FUZZ
@given(
    base=st.sampled_from(OUR_DOCS),
    pick=st.integers(0, 10_000),
    value=json_values,
    delete=st.booleans(),
)
def test_parse_our_documents_damaged(
    base: dict[str, Any], pick: int, value: Any, delete: bool
) -> None:
    doc = _mutate(base, pick, value, delete)
    if not isinstance(doc, dict):
        return
    try:
        parse_group(doc, "fuzz.ome.zarr/0")
    except StoreFormatError as exc:
        assert "fuzz.ome.zarr/0" in str(exc) or "." in str(exc)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["ome", "multiscales", "plate", "well", "omero",
                                            "bioformats2raw.layout", "series", "version", "x"]),
                           json_values, max_size=4))  # fmt: skip
def test_parse_random_documents(doc: dict[str, Any]) -> None:
    with contextlib.suppress(StoreFormatError):
        parse_group(doc, "random.zarr")


# -- what repair reads -------------------------------------------------------------------
@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "base.ome.zarr"
    s = _example_settings(str(root))
    stream = create_stream(s)
    for n in range(9):
        stream.append(np.full(s.frame_shape, n, np.uint16), metadata={"n": n})
    stream.flush()
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    import shutil

    shutil.copytree(s.output_path, root.parent / "pristine.ome.zarr")
    stream.close()
    return root.parent / "pristine.ome.zarr"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(["zarr.json", "p0/zarr.json", "p0/0/zarr.json"]),
    pick=st.integers(0, 10_000),
    value=json_values,
    delete=st.booleans(),
)
def test_repair_of_damaged_metadata_raises_only_our_errors(
    written: Path,
    tmp_path_factory: pytest.TempPathFactory,
    which: str,
    pick: int,
    value: Any,
    delete: bool,
) -> None:
    import shutil

    root = tmp_path_factory.mktemp("case") / "damaged.ome.zarr"
    shutil.copytree(written, root)
    doc = json.loads((root / which).read_text())
    (root / which).write_text(json.dumps(_mutate(doc, pick, value, delete)))
    try:
        report = omestream.repair(root, force=True, dry_run=True)
    except (StoreFormatError, SettingsError):
        return
    assert report.frames_present <= 2 * 9 * 4  # whatever it found, it found it in the data


@FUZZ
@given(meta=json_values, pick=st.integers(0, 10_000), value=json_values, delete=st.booleans())
def test_array_metadata_damaged(meta: Any, pick: int, value: Any, delete: bool) -> None:
    base = {"zarr_format": 3, "node_type": "array", "shape": [3, 2, 8, 8],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 2, 8, 8]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [1, 1, 8, 8], "index_location": "end",
                "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}]}}]}  # fmt: skip
    for doc in (meta, _mutate(base, pick, value, delete)):
        try:
            layout_from_meta("img/0", doc)  # type: ignore[arg-type]
        except StoreFormatError as exc:
            assert "img/0" in str(exc)


@FUZZ
@given(raw=st.binary(max_size=300) | st.lists(json_values, max_size=6).map(
    lambda xs: "\n".join(json.dumps(x) for x in xs).encode()))  # fmt: skip
def test_journal_reader_never_raises(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    root = tmp_path_factory.mktemp("journal")
    (root / "j.jsonl").write_bytes(raw)
    contents = read_journal(LocalKV(root), "j.jsonl")
    for records in contents.records.values():
        assert all(isinstance(r["frame"], int) for r in records)
