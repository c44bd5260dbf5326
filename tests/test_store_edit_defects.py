"""Changes to existing datasets: lock order between processes, refused calls that must
leave no trace, datasets a killed stream left unrepaired, series of roots without OME/."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import omestream
from omestream import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    create_stream,
    open_store,
)
from omestream.errors import (
    FrameShapeError,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
)
from omestream.store import Collection, Image
from omestream.store import Plate as StorePlate
from tests.checks import read_array, validate_ome_zarr
from tests.store_fixtures import C, T, X, Y, snapshot, write_image, write_plate

# -- D1: append along t and append_channel on one image, from two processes ---------------

N_CHANGES = 8  # per process


def _append_t(root: str, out: str, barrier: Any) -> None:
    """Appends N_CHANGES time points; records where each landed and the channel count."""
    done = []
    barrier.wait()
    for k in range(N_CHANGES):
        value = 1000 + k
        while True:  # a fresh handle per change, as separate jobs would
            im = open_store(root, "r+", lock_timeout=5)
            assert isinstance(im, Image)
            try:
                im.append(np.full(im.shape[1:], value, np.uint16), "t")
                break
            except FrameShapeError:
                continue  # the other process added a channel since we looked: look again
        done.append({"value": value, "t": im.shape[0] - 1, "c": im.shape[1]})
    Path(out).write_text(json.dumps(done))


def _append_channel(root: str, out: str, barrier: Any) -> None:
    """Appends N_CHANGES channels; records where each landed and the time point count."""
    done = []
    barrier.wait()
    for k in range(N_CHANGES):
        value = 2000 + k
        while True:
            im = open_store(root, "r+", lock_timeout=5)
            assert isinstance(im, Image)
            block = np.full((im.shape[0], *im.shape[2:]), value, np.uint16)
            try:
                im.append_channel(f"ch{k}", block)
                break
            except FrameShapeError:
                continue  # the other process added a time point since we looked
        done.append({"value": value, "c": im.shape[1] - 1, "t": im.shape[0], "name": f"ch{k}"})
    Path(out).write_text(json.dumps(done))


def _expected(base: np.ndarray, frames: list[dict[str, int]], chans: list[dict[str, Any]]) -> Any:
    """What every pixel must hold: a time point's value where its channel existed when it
    was appended, a channel's value where its time point existed, else the original."""
    shape = (T + len(frames), C + len(chans), Y, X)
    want = np.zeros(shape, np.uint16)
    want[:T, :C] = base
    for f in frames:
        want[f["t"], : f["c"]] = f["value"]
    for ch in chans:
        want[: ch["t"], ch["c"]] = ch["value"]
    return want


def test_appends_along_t_and_channels_from_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    base = write_image(root, "0.5", "omestream")
    ctx = mp.get_context("fork")  # as the other race tests: zarr resets its loop in children
    barrier = ctx.Barrier(2)
    outs = [str(tmp_path / "t.json"), str(tmp_path / "c.json")]
    procs = [
        ctx.Process(target=_append_t, args=(str(root), outs[0], barrier)),
        ctx.Process(target=_append_channel, args=(str(root), outs[1], barrier)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"a writer failed (exit code {p.exitcode}); see its output"
    frames = json.loads(Path(outs[0]).read_text())
    chans = json.loads(Path(outs[1]).read_text())
    assert len(frames) == len(chans) == N_CHANGES
    # every change landed once, one after the other
    assert sorted(f["t"] for f in frames) == list(range(T, T + N_CHANGES))
    assert sorted(c["c"] for c in chans) == list(range(C, C + N_CHANGES))
    stored = read_array(root / "0")
    np.testing.assert_array_equal(stored, _expected(base, frames, chans))
    im = open_store(root)
    assert isinstance(im, Image)
    assert im.shape == (T + N_CHANGES, C + N_CHANGES, Y, X)
    assert im.check() == []  # the lower level and omero agree with level 0
    in_order = [c["name"] for c in sorted(chans, key=lambda c: c["c"])]
    assert im.channel_names == ["DAPI", "FITC", *in_order]
    attrs = dict(zarr.open_group(str(root), mode="r").attrs)
    assert len(attrs["ome"]["omero"]["channels"]) == C + N_CHANGES
    validate_ome_zarr(root)


# -- D2: a refused add_position into a new well leaves nothing behind ----------------------


@pytest.mark.parametrize("writer", ["omestream", "ome-zarr-py"])
def test_a_refused_position_in_a_new_well_changes_no_byte(tmp_path: Path, writer: str) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.5", writer)
    plate = open_store(root, "r+")
    assert isinstance(plate, StorePlate)
    d = np.arange(2 * 64 * 48, dtype=np.uint16).reshape(2, 64, 48)
    before = snapshot(root)
    refused: list[dict[str, Any]] = [
        {"axes": "cyx", "channel_names": ["DAPI"]},  # one name for two channels
        {"axes": "abc", "channel_names": ["DAPI", "GFP"]},  # 'c' last: 48 channels
        {"axes": "abq"},  # no space axes: no reader would open it
        {"axes": "cyx", "chunks": (1, 8)},  # one chunk size short
        {"axes": "cyx", "channel_names": ["DA/PI", "GFP"]},  # not a valid channel name
    ]
    for kwargs in refused:
        with pytest.raises(SettingsError, match="nothing was written"):
            plate.add_position("F", "2", "0", data=d, **kwargs)
        assert snapshot(root) == before, kwargs
    image = plate.add_position("F", "2", "0", axes="cyx", data=d, channel_names=["DAPI", "GFP"])
    assert image.channel_names == ["DAPI", "GFP"] and "F/2" in plate.wells
    np.testing.assert_array_equal(read_array(root / "F/2/0/0"), d)
    # fields of other shapes make readers that stack a plate refuse it: the new field alone
    validate_ome_zarr(root / "F/2/0")


@pytest.mark.parametrize("well", ["F/2", "A/1"])  # a new well and row, and an existing well
def test_a_failure_after_writing_rolls_every_node_back(
    tmp_path: Path, well: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.4", "ome-zarr-py")
    plate = open_store(root, "r+")
    assert isinstance(plate, StorePlate)
    before = snapshot(root)
    row, column = well.split("/")

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk gone while listing the well")  # after image and well are written

    with monkeypatch.context() as m:
        m.setattr(StorePlate, "_write_plate", fail)
        with pytest.raises(OSError, match="disk gone"):
            plate.add_position(row, column, "7", like=plate["A/1/0"])
    assert snapshot(root) == before
    plate.add_position(row, column, "7", like=plate["A/1/0"])
    assert "7" in plate.well(row, column).fields
    validate_ome_zarr(root)


# -- D4: a dataset a killed stream left behind is not changed before it is repaired --------

_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from omestream import AcquisitionSettings, Dimension, create_stream
    s = AcquisitionSettings(
        root_path=sys.argv[1], dtype="uint16",
        dimensions=[Dimension(name="t", count=None), Dimension(name="y", count=16),
                    Dimension(name="x", count=12)],
    )
    stream = create_stream(s)
    for n in range(5):
        stream.append(np.full((16, 12), n + 1, "uint16"))
    stream.flush()
    print("ready", flush=True)
    time.sleep(120)
    """
)


def _settings(path: str) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=path,
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None),
            Dimension(name="y", count=16),
            Dimension(name="x", count=12),
        ],
    )


def test_an_unrepaired_killed_stream_is_not_opened_for_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "run.ome.zarr")
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    before = snapshot(path)
    for mode in ("r+", "a"):
        with pytest.raises(StoreFormatError, match=r"interrupted.*omestream repair"):
            open_store(path, mode)  # type: ignore[arg-type]
    assert snapshot(path) == before
    reader = open_store(path, "r")  # reading is fine, as it is
    assert isinstance(reader, Image) and reader.shape[0] >= 5
    report = omestream.repair(path, force=True)
    assert report.interrupted and report.resume_at == 5
    image = open_store(path, "r+")  # repaired: its arrays hold the frames written, no more
    assert isinstance(image, Image) and image.shape[0] == 5
    image.append(np.full((16, 12), 9, np.uint16), "t")
    want = [np.full((16, 12), v, np.uint16) for v in (1, 2, 3, 4, 5, 9)]
    np.testing.assert_array_equal(read_array(Path(path) / "0"), np.stack(want))
    validate_ome_zarr(path)


def test_a_stream_closed_normally_opens_for_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "done.ome.zarr")
    with create_stream(_settings(path)) as s:
        s.append(np.full((16, 12), 1, np.uint16))
    image = open_store(path, "r+")
    assert isinstance(image, Image)
    image.append(np.full((16, 12), 2, np.uint16), "t")
    assert read_array(Path(path) / "0").shape == (2, 16, 12)


# -- D5 and small ones -------------------------------------------------------------------


def _collection(root: Path) -> np.ndarray:
    data = np.arange(2 * 2 * Y * X, dtype=np.uint16).reshape(2, 2, Y, X)
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=2, type="time"),
            PositionDimension(positions=["p0", "p1"]),
            Dimension(name="y", count=Y, type="space"),
            Dimension(name="x", count=X, type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": "0.4"},  # series numbered 0, 1
    )
    with create_stream(settings) as s:
        for t in range(2):
            for p in range(2):
                s.append(data[t, p])
    return data


def test_a_root_without_ome_group_numbers_its_series(tmp_path: Path) -> None:
    root = tmp_path / "multi.ome.zarr"
    data = _collection(root)
    shutil.rmtree(root / "OME")  # series are found by counting 0, 1, ... now
    coll = open_store(root, "r+")
    assert isinstance(coll, Collection) and coll.series == ["0", "1"]
    before = snapshot(root)
    with pytest.raises(SettingsError, match="omit name="):
        coll.add_image(name="extra", like=coll[0], data=data[:, 0])
    assert snapshot(root) == before
    new = coll.add_image(like=coll[0], data=data[:, 1])
    assert coll.series == ["0", "1", "2"] and coll["2"].shape == new.shape
    np.testing.assert_array_equal(read_array(root / "2" / "0"), data[:, 1])
    validate_ome_zarr(root / "2")


def test_an_existing_series_name_is_told_so(tmp_path: Path) -> None:
    root = tmp_path / "multi.ome.zarr"
    data = _collection(root)
    coll = open_store(root, "r+")
    assert isinstance(coll, Collection)
    coll.add_image(name="Pos0", like=coll[0], data=data[:, 0])
    before = snapshot(root)
    with pytest.raises(StoreExistsError, match="already has a series 'Pos0'; choose"):
        coll.add_image(name="Pos0", like=coll[0], data=data[:, 1])
    with pytest.raises(SettingsError, match="more than case"):
        coll.add_image(name="POS0", like=coll[0], data=data[:, 1])
    assert snapshot(root) == before
    validate_ome_zarr(root)


def test_delete_channel_refuses_a_bool(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    base = write_image(root, "0.4", "ome-zarr-py")
    image = open_store(root, "r+")
    assert isinstance(image, Image)
    before = snapshot(root)
    for flag in (True, False):
        with pytest.raises(SettingsError, match="name or an index"):
            image.delete_channel(flag)  # type: ignore[arg-type]
    assert snapshot(root) == before
    image.delete_channel(np.int64(1))  # type: ignore[arg-type]
    np.testing.assert_array_equal(read_array(root / "s0"), base[:, :1])
    validate_ome_zarr(root)
