"""create_stream(settings, resume=True) after a writer process was killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    Pyramid,
    SettingsError,
    StoreFormatError,
    WriterOptions,
    create_stream,
)
from tests.cases import frame_for
from tests.checks import validate_ome_zarr

SHAPE = (32, 24)

_CHILD = """
import os, signal, sys
from omestream import AcquisitionSettings, create_stream
from tests.cases import frame_for
settings = AcquisitionSettings.model_validate_json(sys.argv[1])
n = int(sys.argv[2])
skip = {int(i) for i in sys.argv[3].split(",") if i} if len(sys.argv) > 3 else set()
stream = create_stream(settings)
for i in range(n):
    if i in skip:
        stream.skip()
        continue
    stream.append(frame_for(i, settings.frame_shape, settings.dtype), metadata={"i": i})
stream.flush()  # partial shards reach the disk, with the progress record
os.kill(os.getpid(), signal.SIGKILL)  # no close(): a crash
"""


def _crash_after(settings: AcquisitionSettings, n: int, skip: range = range(0)) -> None:
    root = Path(__file__).resolve().parents[1]
    args = [settings.model_dump_json(), str(n), ",".join(map(str, skip))]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=root, check=False)
    assert proc.returncode == -9


def _bounded(root: Path, version: str) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=3, type="time"),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="z", count=4, type="space"),  # one shard holds all z planes
            Dimension(name="y", count=SHAPE[0], type="space"),
            Dimension(name="x", count=SHAPE[1], type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
        pyramid=Pyramid(levels=2),
    )


def _unbounded(root: Path, version: str) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=4, type="time")
            if version == "0.5"
            else Dimension(name="t", count=None, chunk_size=4, type="time"),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=SHAPE[0], type="space"),
            Dimension(name="x", count=SHAPE[1], type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
    )


def _level(root: Path, level: int) -> np.ndarray:
    attrs = dict(zarr.open_group(str(root), mode="r").attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    return zarr.open_array(f"{root}/{ms['datasets'][level]['path']}", mode="r")[...]


@pytest.mark.parametrize("kind", ["bounded", "unbounded"])
def test_resume_after_crash_inside_a_shard(tmp_path: Path, ngff_version: str, kind: str) -> None:
    root = tmp_path / "acq.ome.zarr"
    build = _bounded if kind == "bounded" else _unbounded
    settings = build(root, ngff_version)
    total = 24 if kind == "bounded" else 14  # unbounded: 7 time points of 2 channels
    crash_at = 13 if kind == "bounded" else 11  # mid z-stack / mid 4-time-point shard
    _crash_after(settings, crash_at)

    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == crash_at
        for i in range(crash_at, total):
            stream.append(frame_for(i, SHAPE, "uint16"), metadata={"i": i})
    validate_ome_zarr(root)
    frames = np.stack([frame_for(i, SHAPE, "uint16") for i in range(total)])
    if kind == "bounded":
        expected = frames.reshape(3, 2, 4, *SHAPE)
    else:
        expected = frames.reshape(7, 2, *SHAPE)
    data = _level(root, 0)
    np.testing.assert_array_equal(data, expected)
    if kind == "bounded":  # the pyramid level agrees with the data, frames before the crash too
        low = _level(root, 1)
        assert low.shape == (3, 2, 4, SHAPE[0] // 2, SHAPE[1] // 2)
        mean = expected.reshape(3, 2, 4, SHAPE[0] // 2, 2, SHAPE[1] // 2, 2).mean(axis=(4, 6))
        np.testing.assert_array_equal(low, np.rint(mean).astype("uint16"))
    record = zarr.open_group(str(root), mode="r").attrs["omestream"]
    assert record["frames"] == total and record["complete"] is True


def test_resume_replays_a_shard_without_pushing_it_half_replayed(
    tmp_path: Path, ngff_version: str
) -> None:
    """Metadata refreshed after every frame: the replay must not write its shard back
    before every frame of it is in memory again, or the rest read back as fill."""
    root = tmp_path / "acq.ome.zarr"
    base = _unbounded(root, ngff_version)
    settings = base.model_copy(update={"writer": WriterOptions(metadata_interval_s=0.001)})
    _crash_after(settings, 15)  # 7 time points and a half: the last shard holds 3.5
    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 15
        for i in range(15, 20):
            stream.append(frame_for(i, SHAPE, "uint16"))
    frames = np.stack([frame_for(i, SHAPE, "uint16") for i in range(20)])
    np.testing.assert_array_equal(_level(root, 0), frames.reshape(10, 2, *SHAPE))
    validate_ome_zarr(root)


def test_resume_refuses_other_settings_and_foreign_stores(tmp_path: Path) -> None:
    root = tmp_path / "acq.ome.zarr"
    settings = _bounded(root, "0.5")
    _crash_after(settings, 5)
    before = sorted(p.name for p in root.rglob("*"))
    other = settings.model_copy(update={"dtype": "uint8"})
    with pytest.raises(SettingsError, match="dtype"):
        create_stream(other, resume=True)
    assert sorted(p.name for p in root.rglob("*")) == before
    foreign = tmp_path / "foreign.ome.zarr"
    from tests.store_fixtures import write_image

    write_image(foreign, "0.5", "ome-zarr-py")
    with pytest.raises(StoreFormatError, match="not written by an omestream stream"):
        create_stream(_bounded(foreign, "0.5"), resume=True)
    with pytest.raises(StoreFormatError, match="nothing to resume"):
        create_stream(_bounded(tmp_path / "missing.ome.zarr", "0.5"), resume=True)


def test_resume_writes_the_layout_the_arrays_have(tmp_path: Path) -> None:
    """A store whose arrays are laid out otherwise than today's automatic layout for
    the same settings (as an older omestream wrote: shards of one chunk) resumes into
    that stored layout, not the planned one."""
    root = tmp_path / "acq.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=6, chunk_size=2, type="time"),
            Dimension(name="y", count=SHAPE[0], type="space"),
            Dimension(name="x", count=SHAPE[1], type="space"),
        ],
        dtype="uint16",
        compression="blosc-zstd",
    )
    _crash_after(settings, 3)  # mid chunk: frame 2 is on disk, its chunk partner is not
    stored = zarr.open_array(f"{root}/0", mode="r")
    assert stored.shards == (6, *SHAPE)  # today: all three t chunks in one shard
    data = stored[...]
    old = zarr.create_array(
        str(root), name="0", shape=stored.shape, chunks=stored.chunks, shards=stored.chunks,
        dtype=stored.dtype, fill_value=stored.fill_value, compressors=stored.compressors,
        dimension_names=stored.metadata.dimension_names, overwrite=True,
    )  # fmt: skip
    old[...] = data

    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 3
        for i in range(3, 6):
            stream.append(frame_for(i, SHAPE, "uint16"))
    validate_ome_zarr(root)
    arr = zarr.open_array(f"{root}/0", mode="r")
    assert arr.shards == arr.chunks == (2, *SHAPE)
    expected = np.stack([frame_for(i, SHAPE, "uint16") for i in range(6)])
    np.testing.assert_array_equal(arr[...], expected)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("change", ["none", "append_channel", "append_t", "relabel"])
def test_resume_refuses_a_dataset_changed_since_its_stream_stopped(
    tmp_path: Path, change: str
) -> None:
    import omestream

    root = tmp_path / "acq.ome.zarr"
    settings = _unbounded(root, "0.5")
    _crash_after(settings, 4)  # two whole time points of two channels
    omestream.repair(root)
    image = omestream.open_store(root, "r+")
    if change == "append_channel":
        image.append_channel("analysis", np.zeros((2, *SHAPE), "uint16"))
    elif change == "append_t":
        image.append(np.full((2, *SHAPE), 77, "uint16"), axis="t")
    elif change == "relabel":  # same shape, other channels: deleted one, computed one
        image.delete_channel(0)
        image.append_channel("analysis", np.zeros((2, *SHAPE), "uint16"))
    if change == "none":  # a repaired dataset resumes as before
        with create_stream(settings, resume=True) as stream:
            for i in range(stream.frames_written, 6):
                stream.append(frame_for(i, SHAPE, "uint16"))
        np.testing.assert_array_equal(_level(root, 0)[2, 1], frame_for(5, SHAPE, "uint16"))
        return
    before = _tree(root)
    with pytest.raises(StoreFormatError, match=r"changed since|appended since") as err:
        create_stream(settings, resume=True)
    assert "nothing was written" in str(err.value)
    assert _tree(root) == before  # the change is kept, byte for byte
    with create_stream(settings.model_copy(update={"overwrite": True})) as stream:
        stream.append(frame_for(0, SHAPE, "uint16"))  # the lock was released


def test_resume_finds_series_where_the_store_lists_them(tmp_path: Path) -> None:
    """Positions stored at numbered paths (as an earlier omestream wrote them, where the
    same settings now name each after its position) resume at those paths."""
    import json

    root = tmp_path / "acq.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=3, type="time"),
            PositionDimension(positions=["left", "right"]),
            Dimension(name="y", count=SHAPE[0], type="space"),
            Dimension(name="x", count=SHAPE[1], type="space"),
        ],
        dtype="uint16",
    )
    _crash_after(settings, 3)
    for k, name in enumerate(["left", "right"]):
        (root / name).rename(root / str(k))
    doc = json.loads((root / "OME" / "zarr.json").read_text())
    doc["attributes"]["ome"]["series"] = ["0", "1"]
    (root / "OME" / "zarr.json").write_text(json.dumps(doc))

    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 3
        for i in range(3, 6):
            stream.append(frame_for(i, SHAPE, "uint16"))
    validate_ome_zarr(root)
    assert not (root / "left").exists()
    for k in range(2):  # t-major: position k holds frames k, k + 2, k + 4
        got = zarr.open_array(f"{root}/{k}/0", mode="r")[...]
        want = np.stack([frame_for(i, SHAPE, "uint16") for i in range(k, 6, 2)])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("positions", [1, 2])
def test_resume_keeps_the_frame_metadata_of_frames_before_the_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, positions: int
) -> None:
    """Records read back one per line, spilled to disk a few at a time, and the
    replayed frames' records too: every frame keeps its own record."""
    from omestream.metadata import records

    monkeypatch.setattr(records, "SPILL_BYTES", 64)
    monkeypatch.setattr(records, "_PIECE_BYTES", 50)
    root = tmp_path / "acq.ome.zarr"
    names = [f"p{k}" for k in range(positions)]
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=None, chunk_size=4, type="time"),
            *([PositionDimension(positions=names)] if positions > 1 else []),
            Dimension(name="y", count=SHAPE[0], type="space"),
            Dimension(name="x", count=SHAPE[1], type="space"),
        ],
        dtype="uint16",
    )
    _crash_after(settings, 11)
    with create_stream(settings, resume=True) as stream:
        for i in range(11, 16):
            stream.append(frame_for(i, SHAPE, "uint16"), metadata={"i": i})
    group = zarr.open_group(str(root), mode="r")
    if positions == 1:
        kept = [group.attrs["omestream"]["frame_metadata"]]
    else:
        kept = [group[name].attrs["omestream"]["frame_metadata"] for name in names]
    got = sorted((r["frame"], r["i"]) for recs in kept for r in recs)
    assert got == [(i, i) for i in range(16)]


def _t_blocks(array: Path) -> set[str]:
    """The t indices of an array's stored chunk or shard files (``/`` separated keys);
    metadata documents and the hidden files of a killed writer left out."""
    files = [p for p in array.rglob("*") if p.is_file() and not p.name.startswith((".", "zarr"))]
    return {p.relative_to(array).parts[(array / "zarr.json").exists()] for p in files}


@pytest.mark.parametrize("via", ["resume", "repair"])
def test_a_killed_stream_resumes_past_units_it_skipped(
    tmp_path: Path, ngff_version: str, via: str
) -> None:
    """Units of skipped frames only are never stored; after a kill, resume and repair
    still count those frames as done, from the stream's own record of the skips."""
    from omestream.repair import repair

    root = tmp_path / "acq.ome.zarr"
    settings = _unbounded(root, ngff_version)  # 4 time points of 2 channels per unit
    _crash_after(settings, 18, skip=range(8, 16))  # the second unit: skipped whole
    assert _t_blocks(root / "0") == {"0", "2"}
    start = 18
    if via == "repair":
        report = repair(str(root), force=True)
        # a v2 chunk of 4 time points has no index: once written, all its frames count
        start = 18 if ngff_version == "0.5" else 24
        assert report.resume_at == start == report.frames_present, report.summary()
        stream = report.resume()
    else:
        stream = create_stream(settings, resume=True)
    with stream:
        assert stream.frames_written == start
        for i in range(start, 26):
            stream.append(frame_for(i, SHAPE, "uint16"))
    frames = np.stack([frame_for(i, SHAPE, "uint16") for i in range(26)])
    frames[8:16] = 0
    frames[18:start] = 0
    np.testing.assert_array_equal(_level(root, 0), frames.reshape(13, 2, *SHAPE))
    assert _t_blocks(root / "0") == {"0", "2", "3"}  # the skipped unit still has no file
    validate_ome_zarr(root)


def test_a_resumed_stream_overwrites_what_it_skips(tmp_path: Path, ngff_version: str) -> None:
    """A reopened dataset may hold frames a killed stream wrote but never recorded:
    skipping them after a resume stores the fill value over them, not nothing."""
    root = tmp_path / "acq.ome.zarr"
    settings = _unbounded(root, ngff_version)
    with create_stream(settings) as stream:
        for i in range(16):  # two whole units
            stream.append(frame_for(i, SHAPE, "uint16"))
    group = zarr.open_group(str(root), mode="r+")
    record = dict(group.attrs["omestream"])
    group.attrs["omestream"] = {**record, "frames": 8, "complete": False}  # unit 1 unrecorded
    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 8
        stream.skip(frames=8)
    frames = np.stack([frame_for(i, SHAPE, "uint16") for i in range(16)])
    frames[8:] = 0
    np.testing.assert_array_equal(_level(root, 0), frames.reshape(8, 2, *SHAPE))
    validate_ome_zarr(root)
