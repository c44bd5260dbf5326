"""``repair`` on datasets edited with ``open_store`` after their stream: time points
appended later that equal the fill value store no chunk (zarr-python's default), so
they look absent, yet they were written on purpose and must never be trimmed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import omestream
from omestream import AcquisitionSettings, Dimension, create_stream
from tests.store_fixtures import snapshot

SIZE = 16


def _settings(root: Path, version: str) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(root),
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1),
            Dimension(name="y", count=SIZE),
            Dimension(name="x", count=SIZE),
        ],
        format={"name": "ome-zarr", "version": version},
    )


def _frame(i: int) -> np.ndarray:
    return np.full((SIZE, SIZE), i + 1, np.uint16)


def _killed(tmp_path: Path, version: str, n: int) -> str:
    """What a kill after ``n`` frames leaves (the live folder copied, as in test_repair)."""
    stream = create_stream(_settings(tmp_path / "live.ome.zarr", version))
    for i in range(n):
        stream.append(_frame(i))
    stream.flush()
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    dest = tmp_path / "killed.ome.zarr"
    shutil.copytree(stream.output_path, dest)
    stream.close()
    return str(dest)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omestream", "repair", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _array(path: str) -> np.ndarray:
    return np.asarray(zarr.open_array(path + "/0", mode="r")[:])


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_closed_stream_with_appended_fill_frames_is_left_alone(
    tmp_path: Path, version: str
) -> None:
    s = _settings(tmp_path / "done.ome.zarr", version)
    with create_stream(s) as stream:
        for i in range(10):
            stream.append(_frame(i))
    image = omestream.open_store(s.output_path, "r+")
    image.append(np.zeros((3, SIZE, SIZE), np.uint16), "t")
    path = s.output_path
    data = _array(path)
    assert data.shape == (13, SIZE, SIZE)
    before = snapshot(path)

    for args in ([path, "--dry-run"], [path], [path, "--json"]):
        run = _cli(*args)
        assert run.returncode == 0, run.stderr
        if "--json" in args:
            doc = json.loads(run.stdout)
            assert doc["changes"] == [] and doc["extents"] == [13] and not doc["interrupted"]
        else:
            assert "nothing to repair" in run.stdout and "trimmed" not in run.stdout
        assert snapshot(path) == before

    for dry_run in (True, False):
        report = omestream.repair(path, dry_run=dry_run)
        assert not report.interrupted and report.changes == [] and report.extents == [13]
        assert "nothing to repair" in report.summary()
    assert snapshot(path) == before
    np.testing.assert_array_equal(_array(path), data)
    assert omestream.open_store(path).shape == (13, SIZE, SIZE)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_killed_stream_is_still_trimmed(tmp_path: Path, version: str) -> None:
    path = _killed(tmp_path, version, 10)
    assert zarr.open_array(path + "/0").shape[0] > 10  # pre-allocated past the data
    dry = omestream.repair(path, dry_run=True, force=True)
    assert dry.interrupted and dry.extents == [10]
    assert any("-> 10 (trimmed" in c for c in dry.changes)
    run = _cli(path, "--force")
    assert run.returncode == 0, run.stderr
    assert "-> 10 (trimmed to the frames present)" in run.stdout
    data = _array(path)
    assert data.shape == (10, SIZE, SIZE)
    for i in range(10):
        np.testing.assert_array_equal(data[i], _frame(i))
    assert omestream.repair(path, force=True).changes == []  # idempotent


def test_repaired_stream_then_appended_fill_frames_keeps_them(tmp_path: Path) -> None:
    """open_store changes an interrupted dataset only once repaired; a later repair keeps
    what was appended since, fill values included."""
    path = _killed(tmp_path, "0.5", 10)
    assert omestream.repair(path, force=True).extents == [10]
    image = omestream.open_store(path, "r+")
    image.append(np.zeros((3, SIZE, SIZE), np.uint16), "t")
    data = _array(path)
    assert data.shape[0] == 13
    before = snapshot(path)
    for dry_run in (True, False):
        report = omestream.repair(path, dry_run=dry_run, force=True)
        assert report.extents == [13] and report.changes == [], report.summary()
    run = _cli(path, "--force")
    assert run.returncode == 0 and "trimmed" not in run.stdout, run.stdout + run.stderr
    assert snapshot(path) == before
    np.testing.assert_array_equal(_array(path), data)


def _append_fill_with_zarr(path: str, n: int) -> None:
    """Another tool grows the array and writes fill values (zarr-python stores no chunk)."""
    arr = zarr.open_array(path + "/0", mode="r+")
    old = arr.shape[0]
    arr.resize((old + n, *arr.shape[1:]))
    arr[old:] = 0


def test_killed_stream_then_appended_fill_frames_keeps_them(tmp_path: Path) -> None:
    path = _killed(tmp_path, "0.5", 10)
    allocated = zarr.open_array(path + "/0").shape[0]
    _append_fill_with_zarr(path, 4)
    data = _array(path)
    assert data.shape[0] == allocated + 4

    dry = omestream.repair(path, dry_run=True, force=True)
    assert dry.extents == [allocated + 4] and not any("trimmed" in c for c in dry.changes)
    assert dry.notes and "kept" in dry.summary()
    run = _cli(path, "--force", "--dry-run")
    assert run.returncode == 0 and "trimmed" not in run.stdout and "kept" in run.stdout

    report = omestream.repair(path, force=True)
    assert report.extents == dry.extents and report.resume_at == 10
    np.testing.assert_array_equal(_array(path), data)
    assert omestream.repair(path, force=True).changes == []  # idempotent


def test_a_failed_write_with_nothing_to_mend_is_marked_repaired(tmp_path: Path) -> None:
    """A Dask write that failed left a record that says "interrupted" and data that fits
    it; open_store and convert refuse such a dataset until repair has checked it, so
    repair must say so in the record even when nothing else changes."""
    dask = pytest.importorskip("dask")
    import dask.array as da

    from omestream.dask import write_image

    def fail_at_3(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        assert block_info is not None
        if block_info[0]["chunk-location"][0] == 3:
            raise RuntimeError("bad block 3")
        return block

    path = str(tmp_path / "f.ome.zarr")
    x = da.ones((8, 32, 32), "uint16", chunks=(1, 32, 32))
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="block 3"):
        write_image(x.map_blocks(fail_at_3, dtype=x.dtype), path, dims="tyx",
                    chunks={"t": 1}, shards={"t": 1})  # fmt: skip
    with pytest.raises(omestream.StoreFormatError, match="omestream repair"):
        omestream.open_store(path, "r+")
    before = zarr.open_array(path + "/0", mode="r")[:]
    report = omestream.repair(path, force=True)
    assert report.interrupted and any("marked repaired" in c for c in report.changes)
    assert omestream.repair(path, force=True).changes == []  # once is enough
    image = omestream.open_store(path, "r+")  # writable now
    assert image.shape == (8, 32, 32)
    np.testing.assert_array_equal(zarr.open_array(path + "/0", mode="r")[:], before)
