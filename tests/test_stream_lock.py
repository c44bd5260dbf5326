"""One writer per dataset: an open stream holds a lock that a second stream
(``overwrite=True`` included), changes through ``open_store`` and ``repair`` respect;
the data already written stays as it was. Real files, real locks, a real second process
(killed with SIGKILL: the kernel drops its lock, and the dataset can be repaired and
resumed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

import omestream
from omestream import (
    AcquisitionSettings,
    ConcurrentModificationError,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    create_stream,
    open_store,
)
from omestream.store import lock_dir
from tests.checks import validate_ome_zarr

SHAPE = (16, 12)


def _settings(path: Path | str, t: int = 4, **kw: object) -> AcquisitionSettings:
    dims = [Dimension(name="t", count=t), Dimension(name="y", count=SHAPE[0]),
            Dimension(name="x", count=SHAPE[1])]  # fmt: skip
    return AcquisitionSettings(
        root_path=str(path), dimensions=dims, dtype="uint16", overwrite=True, **kw
    )


def _frame(n: int) -> np.ndarray:
    return np.full(SHAPE, n + 1, "uint16")


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_a_second_stream_on_the_same_path_is_refused(tmp_path: Path, suffix: str) -> None:
    s = _settings(tmp_path / f"run{suffix}")
    first = create_stream(s)
    first.append(_frame(0))
    with pytest.raises(ConcurrentModificationError, match="another open stream"):
        create_stream(s)  # overwrite=True, and still nothing of the first is touched
    first.append(_frame(1))
    first.close()
    if suffix == ".ome.zarr":
        validate_ome_zarr(s.output_path)
        stored = zarr.open_array(s.output_path + "/0", mode="r")[:2]
    else:
        import tifffile

        stored = tifffile.imread(s.output_path)[:2]
    np.testing.assert_array_equal(stored, np.stack([_frame(0), _frame(1)]))
    assert not os.path.exists(lock_dir(s.output_path))  # no lock folder left behind
    with create_stream(s) as again:  # closed: the path is free again
        again.append(_frame(5))


def test_changes_wait_for_the_stream_to_close(tmp_path: Path) -> None:
    s = _settings(tmp_path / "run.ome.zarr")
    stream = create_stream(s)
    for n in range(2):
        stream.append(_frame(n))
    stream.flush()
    reader = open_store(s.output_path, mode="r")  # reading is fine
    assert reader.shape[0] == 4
    image = open_store(s.output_path, mode="r+")
    before = zarr.open_array(s.output_path + "/0", mode="r")[:]
    with pytest.raises(ConcurrentModificationError, match="open stream; cannot"):
        image.append(_frame(9)[None], axis="t")
    with pytest.raises(ConcurrentModificationError, match="open stream"):
        image[0] = _frame(9)
    with pytest.raises(ConcurrentModificationError, match="open stream"):
        omestream.repair(s.output_path, force=True)  # running is not interrupted
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0", mode="r")[:], before)
    for n in range(2, 4):
        stream.append(_frame(n))
    stream.close()
    image.append(_frame(9)[None], axis="t")  # now it may
    stored = zarr.open_array(s.output_path + "/0", mode="r")[:]
    np.testing.assert_array_equal(stored, np.stack([_frame(n) for n in (0, 1, 2, 3, 9)]))
    validate_ome_zarr(s.output_path)


def test_an_image_opened_inside_a_plate_being_streamed(tmp_path: Path) -> None:
    dims = [Dimension(name="t", count=2),
            PositionDimension(positions=[Position(name="0", plate_row="A", plate_column="1")]),
            Dimension(name="y", count=SHAPE[0]), Dimension(name="x", count=SHAPE[1])]  # fmt: skip
    s = AcquisitionSettings(
        root_path=str(tmp_path / "plate.ome.zarr"), dimensions=dims, dtype="uint16",
        plate=Plate(row_names=["A"], column_names=["1"]),
    )  # fmt: skip
    with create_stream(s) as stream:
        stream.append(_frame(0))
        field = open_store(os.path.join(s.output_path, "A", "1", "0"), mode="r+")
        with pytest.raises(
            ConcurrentModificationError, match=r"plate\.ome\.zarr is being written"
        ):
            field[0] = _frame(7)
        stream.append(_frame(1))
    field[0] = _frame(7)
    np.testing.assert_array_equal(field[0], _frame(7))


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from omestream import AcquisitionSettings, Dimension, create_stream
    s = AcquisitionSettings(
        root_path=sys.argv[1], dtype="uint16",
        dimensions=[Dimension(name="t", count=4), Dimension(name="y", count=16),
                    Dimension(name="x", count=12)],
    )
    stream = create_stream(s)
    for n in range(2):
        stream.append(np.full((16, 12), n + 1, "uint16"))
    stream.flush()
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_a_stream_in_another_process_and_its_end_by_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "run.ome.zarr")
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(ConcurrentModificationError, match="another open stream"):
            create_stream(_settings(path))
        with pytest.raises(ConcurrentModificationError, match="open stream"):
            open_store(path, mode="r+").append(_frame(9)[None], axis="t")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # the kernel released the dead writer's lock: repair, then resume where it stopped
    report = omestream.repair(path, force=True)
    assert report.interrupted and report.resume_at == 2
    with create_stream(_settings(path), resume=True) as stream:
        for n in range(stream.frames_written, 4):
            stream.append(_frame(n))
    np.testing.assert_array_equal(
        zarr.open_array(path + "/0", mode="r")[:], np.stack([_frame(n) for n in range(4)])
    )
    validate_ome_zarr(path)


def test_a_dask_write_does_not_replace_a_dataset_being_streamed(tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    import omestream.dask as odask

    s = _settings(tmp_path / "run.ome.zarr")
    with create_stream(s) as stream:
        stream.append(_frame(0))
        stream.flush()
        data = da.ones((2, *SHAPE), dtype="uint16", chunks=(1, *SHAPE))
        with pytest.raises(ConcurrentModificationError, match="write it with Dask"):
            odask.write_image(data, s.output_path, dims="tyx", overwrite=True)
        stream.append(_frame(1))
    np.testing.assert_array_equal(
        zarr.open_array(s.output_path + "/0", mode="r")[:2], np.stack([_frame(0), _frame(1)])
    )
    validate_ome_zarr(s.output_path)


def test_no_pyramid_is_built_under_a_running_stream(tmp_path: Path) -> None:
    s = _settings(tmp_path / "run.ome.zarr")
    with create_stream(s) as stream:
        stream.append(_frame(0))
        with pytest.raises(ConcurrentModificationError, match="build its pyramid"):
            omestream.build_pyramid(s.output_path, levels=2)
        for n in range(1, 4):
            stream.append(_frame(n))
    omestream.build_pyramid(s.output_path, levels=2)  # closed: now it may
    assert zarr.open_array(s.output_path + "/1", mode="r").shape == (4, 8, 6)
    validate_ome_zarr(s.output_path)
