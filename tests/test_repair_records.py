"""How repair merges the frame metadata saved in the attributes with the journal's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import omestream
from omestream import AcquisitionSettings, Dimension, WriterOptions, create_stream
from omestream.io.journal import read_journal
from omestream.io.kv import LocalKV
from omestream.metadata import records as records_mod
from omestream.metadata.records import FrameRecords
from omestream.repair.zarr import _merge_records
from tests.checks import validate_ome_zarr


def _recs(frames: list[int], tag: str = "a") -> list[dict[str, Any]]:
    return [{"frame": n, "src": tag} for n in frames]


def _journal(frames: list[int]) -> tuple[FrameRecords, list[int]]:
    return FrameRecords(_recs(frames, "j")), frames


def _present(*missing: int) -> np.ndarray:
    """Frames 0-19 on disk but ``missing``."""
    found = np.ones(20, dtype=bool)
    found[list(missing)] = False
    return found


@pytest.mark.parametrize("as_texts", [True, False], ids=["lifted", "plain-json"])
def test_saved_in_order_then_journal(as_texts: bool) -> None:
    saved: Any = _recs(list(range(10)))
    if as_texts:
        saved = FrameRecords(saved)
    merged, count = _merge_records(saved, *_journal([10, 11, 12, 25]), _present(3, 11), None)
    assert count == 10
    assert [(r["frame"], r["src"]) for r in merged] == [
        *((n, "a") for n in range(10) if n != 3),
        (10, "j"),
        (12, "j"),
    ]


def test_journal_replaces_saved_records_of_the_same_frame() -> None:
    saved = FrameRecords(_recs(list(range(8))))
    merged, _ = _merge_records(saved, *_journal([6, 7, 8]), _present(), None)
    assert [(r["frame"], r["src"]) for r in merged] == [
        *((n, "a") for n in range(6)),
        (6, "j"),
        (7, "j"),
        (8, "j"),
    ]


def test_out_of_order_and_repeated_records_take_the_general_path() -> None:
    saved = FrameRecords([*_recs([0, 2, 1]), {"frame": 2, "src": "b"}, {"not": "a record"}])
    merged, count = _merge_records(saved, *_journal([1]), _present(), None)
    assert count == 3  # distinct frames among the valid records
    assert [(r["frame"], r["src"]) for r in merged] == [(0, "a"), (1, "j"), (2, "b")]


@pytest.mark.parametrize("journalled", [[1, 2], [8, 7, 2], [7, 7]])
def test_a_journal_out_of_order_is_merged_in_order(journalled: list[int]) -> None:
    saved = FrameRecords(_recs([4, 5, 6]))
    merged, _ = _merge_records(saved, *_journal(journalled), _present(2), None)
    expected = sorted({*(n for n in journalled if n != 2), 4, 5, 6})
    assert [r["frame"] for r in merged] == expected


def test_journal_reader_keeps_record_texts(tmp_path: Path) -> None:
    lines = [
        '{"image":0,"record":{"frame":0,"x":"a}b"}}',
        '{"image": 1, "record": {"frame": 3}}',  # not as a stream writes it
        '{"image":0,"record":{"frame":1},"more":{}}',  # another key: re-encoded
        '{"state":{"frames":4,"skipped":[2]}}',
        '{"image":0,"record":{"frame":',  # cut short
        '{"image":0,"record":{"frame":99999999999999999999}}',  # past 64 bits
    ]
    (tmp_path / "j.jsonl").write_text("\n".join(lines))
    contents = read_journal(LocalKV(tmp_path), "j.jsonl")
    assert list(contents.records[0]) == [{"frame": 0, "x": "a}b"}, {"frame": 1}]
    assert contents.records[0].texts() == ['{"frame":0,"x":"a}b"}', '{"frame":1}']
    assert list(contents.records[1]) == [{"frame": 3}]
    assert {i: list(f) for i, f in contents.frame_numbers.items()} == {0: [0, 1], 1: [3]}
    assert (contents.frames, contents.skipped, contents.bad_lines) == (4, [2], 2)


def test_merged_records_spill_beside_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_mod, "SPILL_BYTES", 64)
    merged, _ = _merge_records(
        FrameRecords(_recs(list(range(15)))), *_journal([15, 16]), _present(), str(tmp_path)
    )
    assert merged._texts.spilled > 0
    assert merged._texts.spill_dir == str(tmp_path)
    assert [r["frame"] for r in merged] == list(range(17))


def test_repair_of_a_long_record_list_keeps_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records spilled while streaming and again while repairing, some journalled, and
    the attributes hand-edited out of order in one position: all come back in order."""
    monkeypatch.setattr(records_mod, "SPILL_BYTES", 256)
    dims = [Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=64),
            Dimension(name="p", type="position", count=2),
            Dimension(name="y", count=4), Dimension(name="x", count=4)]  # fmt: skip
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "live.ome.zarr"),
        dimensions=dims,
        dtype="uint16",
        writer=WriterOptions(metadata_interval_s=60),
    )
    stream = create_stream(settings)
    n_frames = 300
    for n in range(n_frames):
        stream.append(np.full((4, 4), n, np.uint16), metadata={"n": n})
        if n == 200:
            stream.flush()
    stream.flush()
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    crashed = tmp_path / "crashed.ome.zarr"
    shutil.copytree(stream.output_path, crashed)
    stream.close()

    # another tool rewrote position 1's records in reverse order
    key = crashed / "1" / "zarr.json"
    doc = json.loads(key.read_text())
    doc["attributes"]["omestream"]["frame_metadata"].reverse()
    key.write_text(json.dumps(doc, indent=2))

    report = omestream.repair(str(crashed), force=True)
    assert report.metadata_records == n_frames
    for p in (0, 1):
        got = zarr.open_group(str(crashed / str(p))).attrs["omestream"]["frame_metadata"]
        assert [r["n"] for r in got] == list(range(p, n_frames, 2))
        assert [r["frame"] for r in got] == list(range(p, n_frames, 2))
    validate_ome_zarr(str(crashed))
