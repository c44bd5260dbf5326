"""Per-frame metadata records kept as JSON text (omestream.metadata.records), and the
group documents they are written into (omestream.io.zarr_nodes)."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from omestream import FrameError, StoreFormatError, create_stream
from omestream.io import zarr_nodes
from omestream.io.kv import LocalKV
from omestream.metadata import records as records_mod
from omestream.metadata.records import FrameRecords, encode_record
from tests.streaming import time_series

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_records = st.lists(st.dictionaries(st.text(max_size=8), _json, max_size=5), max_size=6)


@given(_records)
def test_records_read_back_as_written(records: list[dict[str, Any]]) -> None:
    kept = FrameRecords(records)
    assert len(kept) == len(records)
    assert list(kept) == records
    assert [kept[i] for i in range(len(records))] == records
    assert list(kept[1:]) == records[1:]
    assert json.loads(kept.json_array()) == records
    assert json.loads(kept.json_array(indent="    ")) == records


@given(_records, _records)
def test_group_documents_hold_records_as_plain_json(a: list[dict[str, Any]], b: list[Any]) -> None:
    """Records inside a document are written as their text, at any depth, next to any
    other attribute, and read back by a plain JSON parser as the same objects."""
    doc = {
        "ome": {"version": "0.5", "name": "\x00 not a placeholder"},
        "omestream": {"frame_metadata": FrameRecords(a), "frames": len(a)},
        "deeper": [{"frame_metadata": FrameRecords(b)}],
    }
    text = zarr_nodes._dump(doc).decode()
    assert json.loads(text) == {
        "ome": doc["ome"],
        "omestream": {"frame_metadata": a, "frames": len(a)},
        "deeper": [{"frame_metadata": b}],
    }


def test_records_are_one_per_line_in_the_document(tmp_path: Path) -> None:
    kv = LocalKV(str(tmp_path / "g.zarr"))
    records = FrameRecords([{"frame": i, "exposure_ms": 10.0} for i in range(3)])
    zarr_nodes.write_group(kv, "", {"omestream": {"frame_metadata": records}}, 3)
    lines = (tmp_path / "g.zarr" / "zarr.json").read_text().splitlines()
    assert '        {"frame":1,"exposure_ms":10.0},' in lines
    assert zarr.open_group(str(tmp_path / "g.zarr"), mode="r").attrs["omestream"] == {
        "frame_metadata": list(records)
    }


def test_encode_record_refuses_what_json_cannot_hold() -> None:
    assert encode_record({"when": dt.date(2026, 1, 2)}) == '{"when":"2026-01-02"}'
    with pytest.raises(ValueError):
        encode_record({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_record({"x": object()})


def test_records_cost_little_memory() -> None:
    """A dict of a few numbers costs ~1.7 KB; the text kept for it is what bounds a
    long time-lapse's memory (hundreds of thousands of records)."""
    n = 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = FrameRecords()
        for i in range(n):
            kept.append(
                {"frame": i, "index": {"t": i, "c": 0}, "delta_t": i * 0.01, "stage_x": 1.5}
            )
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / n < 250, f"{used / n:.0f} bytes per record"


def test_stream_keeps_metadata_as_given(tmp_path: Path) -> None:
    settings = time_series(str(tmp_path / "m.ome.zarr"), 8, "uint8", t_chunk=4)
    sent = [
        {"stamp": dt.datetime(2026, 1, 1, 0, 0, i), "xy": np.array([1.0, 2.5]), "n": np.int16(i)}
        for i in range(5)
    ]
    with create_stream(settings) as stream:
        for meta in sent:
            stream.append(np.zeros((8, 8), np.uint8), metadata=meta)
        with pytest.raises(FrameError, match="frame 5: metadata must be JSON"):
            stream.append(np.zeros((8, 8), np.uint8), metadata={"bad": object()})
    stored = zarr.open_group(settings.output_path, mode="r").attrs["omestream"]
    assert stored["frames"] == 5
    assert stored["frame_metadata"] == [
        {
            "frame": i,
            "index": {"t": i},
            "stamp": f"2026-01-01T00:00:0{i}",
            "xy": [1.0, 2.5],
            "n": i,
        }
        for i in range(5)
    ]


@pytest.fixture
def tiny_spill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records spill after a few of them, and are read back a few at a time."""
    monkeypatch.setattr(records_mod, "SPILL_BYTES", 100)
    monkeypatch.setattr(records_mod, "_PIECE_BYTES", 70)


def _spill_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".omestream-records")]


@pytest.mark.usefixtures("tiny_spill")
@given(_records)
def test_spilled_records_read_back_as_written(records: list[dict[str, Any]]) -> None:
    kept = FrameRecords(records)
    assert list(kept) == records
    assert [kept[i] for i in range(-len(records), len(records))] == records * 2
    assert list(kept[1:-1]) == records[1:-1]
    assert list(kept[::2]) == records[::2]
    assert json.loads(kept.json_array()) == records
    assert json.loads(b"".join(kept.json_parts(indent="  "))) == records


@pytest.mark.usefixtures("tiny_spill")
def test_views_keep_their_length_and_appends_to_them_fork(tmp_path: Path) -> None:
    kept = FrameRecords()
    kept.spill_to(str(tmp_path))
    for i in range(50):
        kept.append({"frame": i, "x": "é" * (i % 3)})
    assert kept._texts.spilled > 0, "the texts should have moved to the spill file"
    assert _spill_files(tmp_path) == [], "the spill file has no name"
    snap, head = kept.copy(), kept[:10]
    kept.append({"frame": 50})
    assert len(snap) == 50 and len(head) == 10 and len(kept) == 51
    head.append({"frame": "mine"})  # a view gets texts of its own
    assert [r["frame"] for r in head] == [*range(10), "mine"]
    assert [r["frame"] for r in kept] == list(range(51))
    assert kept.texts(49) == ['{"frame":49,"x":"\\u00e9"}', '{"frame":50}']
    assert FrameRecords(kept) == kept and kept[:3] == [
        {"frame": i, "x": "é" * i} for i in range(3)
    ]


@pytest.mark.usefixtures("tiny_spill")
def test_a_document_of_spilled_records_is_written_in_pieces(tmp_path: Path) -> None:
    kv = LocalKV(str(tmp_path / "g.zarr"))
    records = FrameRecords([{"frame": i, "exposure_ms": 10.0} for i in range(40)])
    zarr_nodes.write_group(kv, "", {"omestream": {"frame_metadata": records, "n": 40}}, 2)
    attrs = zarr.open_group(str(tmp_path / "g.zarr"), mode="r", zarr_format=2).attrs
    assert attrs["omestream"] == {"frame_metadata": list(records), "n": 40}
    assert '      {"frame":39,"exposure_ms":10.0}' in (tmp_path / "g.zarr" / ".zattrs").read_text()


@pytest.mark.usefixtures("tiny_spill")
def test_a_stream_spills_records_next_to_its_dataset(tmp_path: Path) -> None:
    """The stream's records leave memory for the dataset's disk and come back whole
    on close; nothing is left in the folder."""
    settings = time_series(str(tmp_path / "m.ome.zarr"), 8, "uint8", t_chunk=4)
    with create_stream(settings) as stream:
        for i in range(30):
            stream.append(np.full((8, 8), i, np.uint8), metadata={"i": i, "note": "x" * 20})
        assert stream._state.frame_metadata[0]._texts.spill_dir == str(tmp_path)
        assert stream._state.frame_metadata[0]._texts.spilled > 0
    stored = zarr.open_group(settings.output_path, mode="r").attrs["omestream"]
    assert [r["i"] for r in stored["frame_metadata"]] == list(range(30))
    assert _spill_files(tmp_path) == []


def test_records_survive_pickling() -> None:
    kept = FrameRecords([{"frame": i} for i in range(3)])
    assert pickle.loads(pickle.dumps(kept[1:])) == [{"frame": 1}, {"frame": 2}]


@pytest.mark.usefixtures("tiny_spill")
@given(_records, _records)
def test_documents_read_back_with_their_records_as_text(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
) -> None:
    """Records written one per line come back as FrameRecords equal to what was
    written; everything else in the document as plain JSON."""
    doc = {
        "omestream": {"frame_metadata": FrameRecords(a), "frames": len(a)},
        "deeper": [{"frame_metadata": FrameRecords(b), "x": "\n]"}],
    }
    with tempfile.TemporaryDirectory() as folder:
        kv = LocalKV(folder)
        kv.set("zarr.json", zarr_nodes._dump(doc))
        plain = zarr_nodes.load_json(kv, "zarr.json")
        lifted = zarr_nodes.load_json(kv, "zarr.json", lift_records=True)
    assert lifted == plain
    assert lifted is not None and plain is not None
    assert plain["omestream"]["frame_metadata"] == a and plain["deeper"][0]["x"] == "\n]"
    for got in (lifted["omestream"]["frame_metadata"], lifted["deeper"][0]["frame_metadata"]):
        assert isinstance(got, FrameRecords) or got == []


def test_records_laid_out_otherwise_are_read_as_plain_json(tmp_path: Path) -> None:
    """A document rewritten by another tool (records spread over lines) is parsed as
    it is; a record that is not JSON is an error, as it would be without lifting."""
    kv = LocalKV(str(tmp_path))
    records = [{"frame": i, "pos": [i, 2]} for i in range(3)]
    kv.set("a.json", json.dumps({"frame_metadata": records}, indent=2).encode())
    got = zarr_nodes.load_json(kv, "a.json", lift_records=True)
    assert got == {"frame_metadata": records}
    assert not isinstance(got["frame_metadata"], FrameRecords)  # type: ignore[index]
    kv.set("b.json", b'{\n  "frame_metadata": [\n    {"frame": 0},\n    {"frame": 1,}\n  ]\n}')
    with pytest.raises(StoreFormatError, match=r"b\.json is not valid JSON"):
        zarr_nodes.load_json(kv, "b.json", lift_records=True)


@pytest.mark.parametrize(
    "body",
    [
        b'    {"a": 1},\r\n    {"a": 2}\r\n',  # CRLF line ends
        b'    {"a": 1}, \n    {"a": 2}  \n',  # trailing spaces
        b'    {"a": 1}, {"a": 2},\n    {"a": 3}\n',  # two records on one line
        b'    {"a": "},{"},\n    {"b": 2}\n',  # a string that looks like two records
        b'\t{"a": 1},\n\t{"a": 2}\n',  # tabs for indent
    ],
)
def test_records_read_the_same_whatever_the_lines_hold(tmp_path: Path, body: bytes) -> None:
    """Lifting records never changes what a document says: lines that are not one
    record each are left to the JSON parser."""
    raw = b'{\n  "frame_metadata": [\n' + body + b"  ]\n}"
    kv = LocalKV(str(tmp_path))
    kv.set("a.json", raw)
    got = zarr_nodes.load_json(kv, "a.json", lift_records=True)
    assert got is not None
    assert list(got["frame_metadata"]) == json.loads(raw)["frame_metadata"]


def test_a_record_ends_only_at_its_newline() -> None:
    """JSON allows a CR between tokens and U+2028 inside a string; neither ends a record
    (another tool's document, read back one record per line, may hold them)."""
    kept = FrameRecords()
    kept.extend_lines(['{"a":"x\u2028y"}'.encode(), b'{"a":1,\r"b":2}'])
    assert list(kept) == [{"a": "x\u2028y"}, {"a": 1, "b": 2}]
    assert kept.texts() == ['{"a":"x\u2028y"}', '{"a":1,\r"b":2}']
    assert list(kept.select(lambda r: "b" in r)) == [{"a": 1, "b": 2}]
    view = kept[:1]
    view.append({"c": 3})  # a view's own texts, copied line by line
    assert list(view) == [{"a": "x\u2028y"}, {"c": 3}]
