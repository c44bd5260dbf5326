"""The engine conformance suite: every installed Zarr engine writes every setup of the
case table (NGFF 0.5 and 0.4 where the engine can) to the same dataset.

For each engine and case: the independent validators accept it, zarr-python AND
tensorstore read the same pixels as numpy computed, the group metadata is exactly
omestream's, and the arrays have the planned shape, chunks and shards. What an engine
cannot do is refused up front with a SettingsError that says why, and nothing is
written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from omestream import (
    AcquisitionSettings,
    Dimension,
    Pyramid,
    SettingsError,
    WriteError,
    WriterOptions,
    create_stream,
)
from omestream.backends.registry import available_engines, load_engine
from omestream.io.kv import open_kv
from omestream.metadata import plan_documents
from omestream.plan import StoragePlan, plan_storage
from omestream.repair import repair
from omestream.settings.formats import ENGINES
from tests.cases import CASES, Case, frame_for
from tests.checks import validate_ome_zarr
from tests.conftest import ZARR_ENGINES
from tests.polling import wait_until
from tests.streaming import expected_images, stream_case

REPO = Path(__file__).resolve().parents[1]
HAS_TENSORSTORE = available_engines().get("tensorstore", False)
CASES_BY_ID = {c.id: c for c in CASES}


# -- helpers ------------------------------------------------------------------------------
def fmt(engine: str, version: str = "0.5") -> dict[str, str]:
    return {"name": "ome-zarr", "backend": engine, "version": version}


def build(case: Case, root: Path, engine: str, version: str, **kw: Any) -> AcquisitionSettings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-NGFF storage orders warn
        return case.settings(str(root), fmt(engine, version), **kw)


def expected_refusal(engine: str, case: Case, version: str, tmp_path: Path) -> str | None:
    """What an engine must say when it cannot write a case, known from the engine's
    documented limits (not from asking the engine)."""
    if engine != "acquire-zarr":
        return None
    if version != "0.5":
        return "cannot write NGFF 0.4"
    # acquire-zarr stores frames only in the order they arrive
    ref = build(case, tmp_path / "ref.ome.zarr", "omestream", version)
    if ref.storage_dimension_names != ref.acquisition_dimension_names:
        return "writes frames only in the order they arrive"
    return None


def ngff_ordered(settings: AcquisitionSettings) -> bool:
    rank = {"time": 0, "channel": 1, "other": 1, None: 1, "space": 2}
    by_name = {d.name: d for d in settings.array_dimensions}
    ranks = [rank[by_name[n].type] for n in settings.storage_dimension_names]
    return ranks == sorted(ranks)


def array_path(root: Path, plan: StoragePlan, image: int, level: int = 0) -> Path:
    im = plan.images[image]
    return root / im.path / im.levels[level].path if im.path else root / im.levels[level].path


def read_zarr_python(path: Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[...]


def read_tensorstore(path: Path, zarr_format: int) -> np.ndarray:
    import tensorstore as ts

    driver = "zarr3" if zarr_format == 3 else "zarr"
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path) + "/"}}
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())


def group_attrs(root: Path, path: str, zarr_format: int) -> dict[str, Any]:
    if zarr_format == 3:
        doc = json.loads((root / path / "zarr.json").read_text())
        assert doc["node_type"] == "group", f"{path or '.'} is not a group"
        return dict(doc["attributes"])
    assert (root / path / ".zgroup").exists(), f"{path or '.'} is not a group"
    return dict(json.loads((root / path / ".zattrs").read_text()))


def codec_names(array: Path) -> set[str]:
    """The compressors an array's metadata names, spelled like omestream's settings."""
    v3 = array / "zarr.json"
    if v3.exists():
        codecs = json.loads(v3.read_text())["codecs"]
        while codecs and codecs[0]["name"] == "sharding_indexed":
            codecs = codecs[0]["configuration"]["codecs"]
        found = [(c["name"], c.get("configuration", {})) for c in codecs]
    else:
        comp = json.loads((array / ".zarray").read_text())["compressor"]
        found = [(comp["id"], comp)] if comp else []
    names = {f"blosc-{conf['cname']}" if name == "blosc" else name for name, conf in found}
    return names - {"bytes", "crc32c"}


def _without_display_windows(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` without omero ``window.start``/``end``, which the stream measures from
    the frames; those it checks to lie within the window's ``min``/``max``."""
    attrs = copy.deepcopy(attrs)
    content = attrs.get("ome", attrs)
    for ch in content.get("omero", {}).get("channels", []):
        win = ch["window"]
        assert win["min"] <= win["start"] < win["end"] <= win["max"], win
        del win["start"], win["end"]
    return attrs


def check_metadata(root: Path, plan: StoragePlan, engine: str) -> None:
    """Group documents are omestream's (no engine dropped or replaced them), arrays
    have the planned geometry and axis names."""
    always_shards = load_engine(engine).always_shards
    for path, doc in plan_documents(plan).items():
        attrs = group_attrs(root, path, plan.zarr_format)
        record = attrs.pop("omestream", None)
        assert _without_display_windows(attrs) == _without_display_windows(doc), (
            f"group {path or '.'}: NGFF attributes differ from omestream's"
        )
        if path == "":
            assert record is not None and record["settings"]["format"]["backend"], (
                "the root lost omestream's record"
            )
    for i, im in enumerate(plan.images):
        for lv, level in enumerate(im.levels):
            arr = zarr.open_array(str(array_path(root, plan, i, lv)), mode="r")
            assert arr.dtype == np.dtype(plan.dtype)
            assert arr.fill_value == 0
            assert tuple(arr.chunks) == level.chunks
            if plan.zarr_format == 3:
                unsharded = level.chunks if always_shards else None
                assert arr.shards == (level.shards or unsharded)
                assert tuple(arr.metadata.dimension_names) == im.axis_names


def check_pixels(root: Path, plan: StoragePlan, expected: list[np.ndarray]) -> None:
    """Pixels equal numpy's, read by zarr-python and by tensorstore."""
    assert len(plan.images) == len(expected)
    for i, want in enumerate(expected):
        path = array_path(root, plan, i)
        np.testing.assert_array_equal(read_zarr_python(path), want, err_msg=f"zarr-python {path}")
        if HAS_TENSORSTORE:
            got = read_tensorstore(path, plan.zarr_format)
            np.testing.assert_array_equal(got, want, err_msg=f"tensorstore {path}")


# -- the conformance suite ---------------------------------------------------------------
@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_conformance(engine: str, case: Case, ngff_version: str, tmp_path: Path) -> None:
    root = tmp_path / "data.ome.zarr"
    refusal = expected_refusal(engine, case, ngff_version, tmp_path)
    if refusal is not None:
        with pytest.raises(SettingsError, match=refusal):
            settings = build(case, root, engine, ngff_version)
            stream_case(case, settings)
        assert not root.exists(), "a refused setting must write nothing"
        return
    settings = build(case, root, engine, ngff_version)
    assert settings.format is not None and settings.format.backend == engine
    stream_case(case, settings)
    plan = plan_storage(settings)
    if ngff_ordered(settings):
        validate_ome_zarr(root)
    check_metadata(root, plan, engine)
    check_pixels(root, plan, expected_images(case, settings))


FLUSH_CASES = [CASES_BY_ID[i] for i in ("multi-position", "unbounded", "skip-frames")]


@pytest.mark.parametrize("case", FLUSH_CASES, ids=[c.id for c in FLUSH_CASES])
@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_metadata_refreshed_while_streaming(engine: str, case: Case, tmp_path: Path) -> None:
    """Flushes after every frame (partial write units, metadata rewritten mid-stream)
    leave the same dataset."""
    root = tmp_path / "data.ome.zarr"
    writer = WriterOptions(metadata_interval_s=1e-6, fsync=False)
    settings = build(case, root, engine, "0.5", writer=writer)
    stream_case(case, settings)
    plan = plan_storage(settings)
    validate_ome_zarr(root)
    check_metadata(root, plan, engine)
    check_pixels(root, plan, expected_images(case, settings))


def _small(
    engine: str,
    root: Path,
    frames: int = 5,
    y: tuple[int, int] = (40, 16),
    x: tuple[int, int] = (36, 16),
    **kw: Any,
) -> AcquisitionSettings:
    """t: ``frames`` in chunks of 2, then the ``outer`` dimensions; y and x: (size, chunk
    size)."""
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=frames, chunk_size=2, type="time"),
            *kw.pop("outer", []),
            Dimension(name="y", count=y[0], chunk_size=y[1], type="space"),
            Dimension(name="x", count=x[0], chunk_size=x[1], type="space"),
        ],
        dtype="uint16",
        format=kw.pop("format", fmt(engine)),
        **kw,
    )


@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_caller_may_reuse_the_frame_buffer(engine: str, tmp_path: Path) -> None:
    settings = _small(engine, tmp_path / "a.ome.zarr")
    buf = np.empty(settings.frame_shape, "uint16")
    with create_stream(settings) as stream:
        for n in range(5):
            buf[...] = frame_for(n, settings.frame_shape, "uint16")
            stream.append(buf)
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(5)])
    np.testing.assert_array_equal(read_zarr_python(tmp_path / "a.ome.zarr" / "0"), want)


@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_unit_buffers_reused_under_a_small_budget_keep_every_frame(
    engine: str, tmp_path: Path
) -> None:
    """32 units of 2 MB through a 16 MB budget: every unit buffer is reused several
    times while earlier writes may still read theirs (tensorstore reads the engine's
    buffer instead of copying it), and no frame is overwritten by a later one."""
    root = tmp_path / "r.ome.zarr"
    budget = WriterOptions(memory_budget_mb=16)
    settings = _small(engine, root, 64, y=(512, 512), x=(1024, 1024), writer=budget)
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(64)])
    with create_stream(settings) as stream:
        for frame in want:
            stream.append(frame)
    # every view lent to the library is dropped (tensorstore lets go on its own
    # threads, at or just after the commit), its buffer back in the pool
    lent = getattr(stream._backend, "_lent", {})  # type: ignore[attr-defined]
    assert wait_until(lambda: not lent), f"{len(lent)} lent views never dropped"
    got = read_zarr_python(root / "0")
    wrong = [n for n in range(64) if not np.array_equal(got[n], want[n])]
    assert not wrong, f"frames stored with other pixels: {wrong}"


@pytest.mark.parametrize(
    "engine", [e for e in ZARR_ENGINES if e in ("zarr-python", "tensorstore")]
)
def test_a_failed_unit_write_surfaces_and_keeps_earlier_frames(
    engine: str, tmp_path: Path
) -> None:
    """The libraries' writes run in the background: a failure reaches the caller as a
    WriteError from a later append or from close, and units written before it stay."""
    root = tmp_path / "f.ome.zarr"
    settings = _small(engine, root)  # t: 5 frames in shards of 2
    stream = create_stream(settings)
    for n in range(2):
        stream.append(frame_for(n, settings.frame_shape, "uint16"))
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    (root / "0" / "c" / "1").write_bytes(b"")  # the second shard's folder cannot be made
    with pytest.raises(WriteError, match=engine):
        for n in range(2, 5):
            stream.append(frame_for(n, settings.frame_shape, "uint16"))
        stream.close()
    if not stream.closed:
        with pytest.raises(WriteError):
            stream.close()
    got = zarr.open_array(str(root / "0"), mode="r")[:2]
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(2)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "engine", [e for e in ZARR_ENGINES if e in ("zarr-python", "tensorstore")]
)
def test_an_open_unit_still_being_written_is_not_queued_again(engine: str, tmp_path: Path) -> None:
    """Each partial flush writes a copy of an open unit; while one is in flight the
    next flush leaves the unit for later instead of holding a second copy, and
    flush(wait=True) still writes the newest frames."""
    root = tmp_path / "q.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=8, chunk_size=4, type="time"),
            Dimension(name="y", count=32, type="space"),
            Dimension(name="x", count=32, type="space"),
        ],
        dtype="uint16",
        format=fmt(engine),
        writer=WriterOptions(metadata_interval_s=1000.0),
    )
    frames = [frame_for(n, settings.frame_shape, "uint16") for n in range(8)]
    stream = create_stream(settings)
    backend: Any = stream._backend
    gate = threading.Event()
    pool = ThreadPoolExecutor(2)
    start = backend._start_write

    def held_start(*args: Any, **kw: Any) -> Any:  # the library's write, begun late
        gate.wait(10)
        return start(*args, **kw).result()

    backend._start_write = lambda *a, **k: pool.submit(held_start, *a, **k)
    try:
        stream.append(frames[0])
        backend.flush()
        one_copy = backend.bytes_in_flight
        assert one_copy > 0
        stream.append(frames[1])
        backend.flush()  # the first copy is still in flight: not queued again
        assert backend.bytes_in_flight == one_copy
    finally:
        gate.set()
    backend.flush(wait=True)  # an explicit flush writes the newest frames
    got = zarr.open_array(str(root / "0"), mode="r")[:2]
    np.testing.assert_array_equal(got, np.stack(frames[:2]))
    for f in frames[2:]:
        stream.append(f)
    stream.close()
    pool.shutdown()
    np.testing.assert_array_equal(
        zarr.open_array(str(root / "0"), mode="r")[...], np.stack(frames)
    )


ZARR_CODECS = ("blosc-zstd", "blosc-lz4", "zstd", "gzip", None)


@pytest.mark.parametrize("compression", ZARR_CODECS, ids=[str(c) for c in ZARR_CODECS])
@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_compression(engine: str, compression: str | None, tmp_path: Path) -> None:
    root = tmp_path / "c.ome.zarr"
    versions = ENGINES[engine].versions
    if compression not in ENGINES[engine].compressions:
        with pytest.raises(SettingsError, match=f"compression {compression!r} cannot be written"):
            _small(engine, root, compression=compression)
        assert not root.exists()
        return
    for version in versions:
        settings = _small(engine, root, compression=compression, format=fmt(engine, version),
                          overwrite=True)  # fmt: skip
        with create_stream(settings) as stream:
            for n in range(5):
                stream.append(frame_for(n, settings.frame_shape, "uint16"))
        validate_ome_zarr(root)
        want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(5)])
        check_pixels(root, plan_storage(settings), [want])
        assert codec_names(root / "0") == ({compression} if compression else set())


def test_compression_table_matches_engines() -> None:
    """The codecs the settings accept per engine are the ones the engines implement."""
    assert set(ENGINES["acquire-zarr"].compressions) == {"blosc-zstd", "blosc-lz4", "zstd", None}
    for engine in ("omestream", "zarr-python", "tensorstore"):
        assert set(ENGINES[engine].compressions) == set(ZARR_CODECS)


PYRAMIDS = {
    "yx": Pyramid(levels=3, factors={"y": 2, "x": 2}, method="mean"),
    "zyx": Pyramid(levels=2, factors={"z": 2, "y": 2, "x": 2}, method="mean"),
}


def _stream_pyramid(engine: str, pyramid: str, root: Path) -> StoragePlan:
    case = CASES_BY_ID["multi-position"]
    settings = build(case, root, engine, "0.5", pyramid=PYRAMIDS[pyramid])
    stream_case(case, settings)
    validate_ome_zarr(root)
    plan = plan_storage(settings)
    check_metadata(root, plan, engine)
    check_pixels(root, plan, expected_images(case, settings))
    return plan


@pytest.fixture(scope="module")
def reference_pyramids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default engine's pyramids, written once for the whole module."""
    out = {}
    for name in PYRAMIDS:
        root = tmp_path_factory.mktemp("reference") / f"{name}.ome.zarr"
        _stream_pyramid("omestream", name, root)
        out[name] = root
    return out


@pytest.mark.parametrize("pyramid", list(PYRAMIDS))
@pytest.mark.parametrize("engine", [e for e in ZARR_ENGINES if e != "omestream"])
def test_pyramid_levels_equal_the_default_engine(
    engine: str, pyramid: str, reference_pyramids: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "p.ome.zarr"
    plan = _stream_pyramid(engine, pyramid, root)
    ref = reference_pyramids[pyramid]
    for i, im in enumerate(plan.images):
        for lv in range(len(im.levels)):
            want = read_zarr_python(array_path(ref, plan, i, lv))
            got = read_zarr_python(array_path(root, plan, i, lv))
            np.testing.assert_array_equal(got, want, err_msg=f"image {i} level {lv}")
            if HAS_TENSORSTORE:
                got = read_tensorstore(array_path(root, plan, i, lv), 3)
                np.testing.assert_array_equal(got, want, err_msg=f"tensorstore {i}/{lv}")


# -- regions -----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_write_region(engine: str, tmp_path: Path) -> None:
    root = tmp_path / "r.ome.zarr"
    settings = _small(engine, root)
    with create_stream(settings) as stream:
        for n in range(5):
            stream.append(frame_for(n, settings.frame_shape, "uint16"))
    plan = plan_storage(settings)
    cls = load_engine(engine)
    backend = cls(plan, open_kv(settings.output_path), settings.writer)
    patch = np.full((2, 10, 30), 7, "uint16")
    selection = (slice(1, 3), slice(5, 15), slice(3, 33))
    if not cls.supports_regions:
        with pytest.raises((NotImplementedError, SettingsError), match=engine):
            backend.open_arrays()
            backend.write_region(0, 0, selection, patch)
        return
    backend.open_arrays()
    backend.write_region(0, 0, selection, patch)
    backend.close()
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(5)])
    want[selection] = patch
    check_pixels(root, plan, [want])


# -- refusals up front -------------------------------------------------------------------
@pytest.mark.skipif("acquire-zarr" not in ZARR_ENGINES, reason="acquire-zarr not installed")
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"format": fmt("acquire-zarr", "0.4")}, "cannot write NGFF 0.4"),
        ({"compression": "gzip"}, "compression 'gzip' cannot be written"),
        (
            {"outer": [Dimension(name="z", count=2, type="space")], "storage_order": ["z", "t"]},
            "writes frames only in the order they arrive",
        ),
    ],
    ids=["zarr-v2", "gzip", "reordered"],
)
def test_acquire_zarr_refuses_up_front(kw: dict[str, Any], message: str, tmp_path: Path) -> None:
    root = tmp_path / "x.ome.zarr"
    with pytest.raises(SettingsError, match=message):
        settings = _small("acquire-zarr", root, **kw)
        create_stream(settings)
    assert not root.exists()


@pytest.mark.parametrize(
    "engine", [e for e in ("tensorstore", "acquire-zarr") if e in ZARR_ENGINES]
)
def test_local_only_engines_refuse_urls_before_writing(engine: str) -> None:
    import fsspec

    settings = _small(engine, "memory://refused/x.ome.zarr")
    with pytest.raises(SettingsError, match="local folders only"):
        create_stream(settings)
    assert not fsspec.filesystem("memory").exists("/refused")


def test_auto_picks_an_installed_engine(tmp_path: Path) -> None:
    settings = _small(
        "auto", tmp_path / "a.ome.zarr", format={"name": "ome-zarr", "backend": "auto"}
    )
    assert settings.format is not None
    assert settings.format.backend == ZARR_ENGINES[0]  # the default engine comes first


# -- optional engines: lazy and explained ------------------------------------------------
def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_importing_omestream_imports_no_optional_engine(tmp_path: Path) -> None:
    code = """
import sys
import numpy as np
import omestream
from omestream import AcquisitionSettings, Dimension, create_stream
s = AcquisitionSettings(root_path="d.ome.zarr", dtype="uint8", dimensions=[
    Dimension(name="y", count=8, type="space"), Dimension(name="x", count=8, type="space")])
with create_stream(s) as st:
    st.append(np.zeros((8, 8), "uint8"))
print(sorted({m.split(".")[0] for m in sys.modules} & {"tensorstore", "acquire_zarr"}))
"""
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("engine", "module"), [("tensorstore", "tensorstore"),
                                                ("acquire-zarr", "acquire_zarr")])  # fmt: skip
def test_missing_engine_names_the_extra(engine: str, module: str, tmp_path: Path) -> None:
    # simulates the package being absent; only this error message is tested this way
    code = f"""
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: (
    None if name.split(".")[0] == {module!r} else real(name, *a, **k))
from omestream import AcquisitionSettings, BackendUnavailableError, Dimension, create_stream
s = AcquisitionSettings(root_path="d.ome.zarr", format={engine!r}, dtype="uint8", dimensions=[
    Dimension(name="y", count=8, type="space"), Dimension(name="x", count=8, type="space")])
try:
    create_stream(s)
except BackendUnavailableError as exc:
    assert isinstance(exc, ImportError)
    print(exc)
"""
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f'pip install "omestream[{ENGINES[engine].extra}]"' in out.stdout
    assert engine in out.stdout
    assert not (tmp_path / "d.ome.zarr").exists()


def test_extras_install_every_engine() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for _engine, info in ENGINES.items():
        if info.extra is None:
            continue
        deps = [d.split(">")[0].split("=")[0].split("[")[0].strip() for d in extras[info.extra]]
        assert info.module.replace("_", "-") in deps, f"extra {info.extra!r} lacks {info.module}"
        assert info.extra in extras["all"][0], f"'all' lacks {info.extra}"


def _stored_objects(array: Path) -> int:
    """Chunk or shard files of an array (its metadata documents left out)."""
    meta = {"zarr.json", ".zarray", ".zattrs"}
    return sum(1 for p in array.rglob("*") if p.is_file() and p.name not in meta)


def _t_blocks_of_two(settings: AcquisitionSettings) -> AcquisitionSettings:
    """Write units of one t chunk (2 frames): NGFF 0.5 shards of one chunk along t."""
    if settings.format is None or settings.format.version != "0.5":
        return settings
    dims = list(settings.dimensions)
    dims[0] = dims[0].model_copy(update={"shard_size_chunks": 1})
    return settings.model_copy(update={"dimensions": tuple(dims)})


# acquire-zarr writes NGFF 0.5 only
ENGINE_VERSIONS = [
    (e, v) for e in ZARR_ENGINES for v in ("0.5", "0.4") if (e, v) != ("acquire-zarr", "0.4")
]


@pytest.mark.parametrize(("engine", "version"), ENGINE_VERSIONS)
def test_frames_equal_to_the_fill_value_are_stored(
    engine: str, version: str, tmp_path: Path
) -> None:
    """Every engine stores every written chunk, also a dark frame that equals the fill
    value (a frame that was appended is data) and a skipped frame sharing its unit."""
    root = tmp_path / "dark.ome.zarr"
    settings = _t_blocks_of_two(_small(engine, root, format=fmt(engine, version)))
    dark = np.zeros(settings.frame_shape, "uint16")  # the fill value is 0
    with create_stream(settings) as stream:
        for n in range(5):
            if n == 2:
                stream.append(dark)
            elif n == 3:
                stream.skip(frames=1)
            else:
                stream.append(frame_for(n, settings.frame_shape, "uint16"))
    layout = plan_storage(settings).images[0].levels[0]
    # t blocks of 2 frames: 3 blocks, the middle one (frames 2, 3) all fill value
    unit = layout.shards or layout.chunks
    assert unit[0] == 2
    per_block = math.ceil(40 / unit[1]) * math.ceil(36 / unit[2])  # y, x: (40, 16), (36, 16)
    assert _stored_objects(root / "0") == 3 * per_block
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(5)])
    want[2:4] = 0
    np.testing.assert_array_equal(read_zarr_python(root / "0"), want)


@pytest.mark.parametrize(("engine", "version"), ENGINE_VERSIONS)
def test_units_of_skipped_frames_only_are_not_stored(
    engine: str, version: str, tmp_path: Path
) -> None:
    """A new dataset stores nothing for a write unit whose frames were all skipped (a
    whole z-stack lost to the autofocus costs neither disk nor time): the absent unit
    reads as the fill value, and repair counts its frames as the skips they were.
    acquire-zarr takes frames in order and stores them all."""
    root = tmp_path / "skipped.ome.zarr"
    settings = _t_blocks_of_two(_small(engine, root, frames=6, format=fmt(engine, version)))
    with create_stream(settings) as stream:
        for n in range(6):
            if n in (2, 3, 5):  # frames 2-3: a whole t block; 5 shares one with 4
                stream.skip(frames=1)
            else:
                stream.append(frame_for(n, settings.frame_shape, "uint16"))
    per_block = math.ceil(40 / 16) * math.ceil(36 / 16)  # y, x: (40, 16), (36, 16)
    layout = plan_storage(settings).images[0].levels[0]
    assert (layout.shards or layout.chunks)[0] == 2
    blocks = 3 if engine == "acquire-zarr" else 2
    assert _stored_objects(root / "0") == blocks * per_block
    t_blocks = {
        p.relative_to(root / "0").parts[version == "0.5"]
        for p in (root / "0").rglob("*")
        if p.is_file() and p.name not in {"zarr.json", ".zarray", ".zattrs"}
    }
    assert t_blocks == ({"0", "1", "2"} if blocks == 3 else {"0", "2"})
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(6)])
    want[[2, 3, 5]] = 0
    np.testing.assert_array_equal(read_zarr_python(root / "0"), want)
    if HAS_TENSORSTORE:
        np.testing.assert_array_equal(
            read_tensorstore(root / "0", 3 if version == "0.5" else 2), want
        )
    validate_ome_zarr(root)
    report = repair(str(root))
    assert report.changes == [] and report.frames_present == 6, report.summary()


@pytest.mark.parametrize("engine", ZARR_ENGINES)
def test_closed_early_keeps_the_planned_shape(engine: str, tmp_path: Path) -> None:
    """Frames never appended read as the fill value, and every image exists, also one
    that received no frame at all."""
    case = CASES_BY_ID["multi-position"]
    root = tmp_path / "early.ome.zarr"
    settings = build(case, root, engine, "0.5")
    total = settings.total_frames
    assert total is not None
    sent = 5  # fewer than one position's frames of the first time point
    with create_stream(settings) as stream:
        for n in range(sent):
            stream.append(frame_for(n, settings.frame_shape, case.dtype))
    as_skipped = dataclasses.replace(case, skip=tuple(range(sent, total)))
    plan = plan_storage(settings)
    validate_ome_zarr(root)
    check_metadata(root, plan, engine)
    check_pixels(root, plan, expected_images(as_skipped, settings))


# -- resuming after a crash --------------------------------------------------------------
_CRASH_CHILD = """
import os, signal, sys
from omestream import AcquisitionSettings, create_stream
from tests.cases import frame_for
settings = AcquisitionSettings.model_validate_json(sys.argv[1])
stream = create_stream(settings)
for i in range(int(sys.argv[2])):
    stream.append(frame_for(i, settings.frame_shape, settings.dtype))
stream.flush()
if settings.format.backend != "acquire-zarr":
    stream._backend.flush(wait=True)  # let the partial writes land before the crash
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("engine", [e for e in ZARR_ENGINES if e != "omestream"])
def test_resume_after_crash(engine: str, tmp_path: Path) -> None:
    root = tmp_path / "crash.ome.zarr"
    settings = _small(engine, root)  # t: 5 frames in shards of 2
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_CHILD, settings.model_dump_json(), "3"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=False,
    )  # fmt: skip
    assert proc.returncode == -9
    if engine == "acquire-zarr":  # it only writes new datasets
        with pytest.raises(SettingsError, match="only writes new datasets"):
            create_stream(settings, resume=True)
        return
    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 3
        for n in range(3, 5):
            stream.append(frame_for(n, settings.frame_shape, "uint16"))
    validate_ome_zarr(root)
    want = np.stack([frame_for(n, settings.frame_shape, "uint16") for n in range(5)])
    check_pixels(root, plan_storage(settings), [want])


@pytest.mark.parametrize("engine", [*ZARR_ENGINES, "tifffile"])
def test_a_stream_never_closed_is_closed_at_exit(engine: str, tmp_path: Path) -> None:
    # the script ends with the stream open: no close(), no flush(), no with-block
    out = "d.ome.tiff" if engine == "tifffile" else "d.ome.zarr"
    code = f"""
import numpy as np
from omestream import AcquisitionSettings, Dimension, create_stream
s = AcquisitionSettings(root_path={out!r}, format={engine!r}, dtype="uint16", dimensions=[
    Dimension(name="t", count=None), Dimension(name="y", count=64),
    Dimension(name="x", count=64)])
stream = create_stream(s)
for v in range(77):
    stream.append(np.full((64, 64), v, dtype=np.uint16))
"""
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    if engine == "tifffile":
        import tifffile

        with tifffile.TiffFile(tmp_path / out) as tif:
            data = tif.series[0].asarray()
    else:
        validate_ome_zarr(tmp_path / out)
        assert zarr.open_group(tmp_path / out, mode="r").attrs["omestream"]["complete"]
        data = zarr.open_array(tmp_path / out / "0", mode="r")[...]
    assert data.shape == (77, 64, 64)  # trimmed to the frames appended
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(77))


def test_a_stream_fed_by_another_thread_is_closed_after_that_thread(tmp_path: Path) -> None:
    # the main thread ends at once; the acquisition thread keeps appending for a while
    code = """
import threading, time
import numpy as np
from omestream import AcquisitionSettings, Dimension, create_stream
s = AcquisitionSettings(root_path="d.ome.zarr", dtype="uint16", dimensions=[
    Dimension(name="t", count=None), Dimension(name="y", count=64),
    Dimension(name="x", count=64)])
stream = create_stream(s)
def acquire():
    for v in range(40):
        stream.append(np.full((64, 64), v, dtype=np.uint16))
        time.sleep(0.01)
threading.Thread(target=acquire).start()
"""
    done = _run(code, tmp_path)
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    validate_ome_zarr(tmp_path / "d.ome.zarr")
    assert zarr.open_group(tmp_path / "d.ome.zarr", mode="r").attrs["omestream"]["complete"]
    data = zarr.open_array(tmp_path / "d.ome.zarr" / "0", mode="r")[...]
    assert data.shape == (40, 64, 64)
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(40))
