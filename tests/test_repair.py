"""``repair`` on datasets left by a writer that never closed, built deterministically:
a live stream's folder is copied at a chosen moment, which is exactly what a kill at
that moment leaves on disk (each file is replaced atomically)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import omestream
from omestream import (
    AcquisitionSettings,
    ConcurrentModificationError,
    Dimension,
    PositionDimension,
    StoreFormatError,
    WriterOptions,
    create_stream,
)
from omestream.cli.app import main
from omestream.io.journal import JOURNAL_NAME, SMALL
from tests.cases import frame_for
from tests.checks import validate_ome_zarr
from tests.polling import wait_until
from tests.store_fixtures import snapshot


def _settings(root: Path, dims: list, **kw: object) -> AcquisitionSettings:
    return AcquisitionSettings(root_path=str(root), dimensions=dims, dtype="uint16", **kw)


def _snapshot(stream: omestream.OMEStream, dest: Path) -> str:
    """Flush like the metadata cadence does, wait for the writes, copy the folder."""
    stream.flush()
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    shutil.copytree(stream.output_path, dest)
    return str(dest)


UNBOUNDED = [Dimension(name="t", count=None), Dimension(name="c", count=3),
             Dimension(name="y", count=8), Dimension(name="x", count=6)]  # fmt: skip


def test_unbounded_partial_time_point(tmp_path: Path) -> None:
    s = _settings(tmp_path / "live.ome.zarr", UNBOUNDED, compression="zstd")
    stream = create_stream(s)
    for n in range(3 * 5 + 2):  # five whole time points and two channels of the sixth
        stream.append(frame_for(n, (8, 6), "uint16"), metadata={"n": n})
    crashed = _snapshot(stream, tmp_path / "crashed.ome.zarr")
    stream.close()
    # the killed state is already a valid dataset, pre-sized beyond the data
    validate_ome_zarr(crashed)
    assert zarr.open_array(crashed + "/0").shape[0] > 6
    before = snapshot(crashed)

    dry = omestream.repair(crashed, dry_run=True, force=True)
    assert snapshot(crashed) == before  # a dry run changes nothing
    assert dry.interrupted and dry.changes
    report = omestream.repair(crashed, force=True)
    assert (report.frames_present, report.resume_at, report.time_points_complete) == (17, 17, 5)
    assert report.last_complete_time_point == 4
    assert report.extents == [6]
    assert report.metadata_records == 17
    validate_ome_zarr(crashed)
    arr = zarr.open_array(crashed + "/0")
    assert arr.shape == (6, 3, 8, 6)
    for n in range(17):
        np.testing.assert_array_equal(arr[n // 3, n % 3], frame_for(n, (8, 6), "uint16"))
    np.testing.assert_array_equal(arr[5, 2], 0)
    record = zarr.open_group(crashed).attrs["omestream"]
    assert record["frames"] == 17 and record["complete"] is False
    assert [r["n"] for r in record["frame_metadata"]] == list(range(17))
    assert omestream.repair(crashed, force=True).changes == []  # idempotent


def test_leftover_temporary_files_are_harmless_and_removed(tmp_path: Path) -> None:
    s = _settings(tmp_path / "live.ome.zarr", UNBOUNDED)
    stream = create_stream(s)
    for n in range(7):
        stream.append(frame_for(n, (8, 6), "uint16"))
    crashed = _snapshot(stream, tmp_path / "crashed.ome.zarr")
    stream.close()
    leftovers = [f"{crashed}/.omestream-tmp-0a1b", f"{crashed}/0/.omestream-tmp-2c3d",
                 f"{crashed}/0/c/1/0/0/.omestream-tmp-4e5f"]  # fmt: skip
    for p in leftovers:
        Path(p).write_bytes(b"half a shard")
    validate_ome_zarr(crashed)  # readers ignore them
    report = omestream.repair(crashed, force=True)
    removed = set(report.removed_files)
    # a crash also leaves the replaced metadata versions the stream kept (hidden too)
    assert {os.path.relpath(p, crashed) for p in leftovers} <= removed
    assert all(os.path.basename(f).startswith(".omestream-tmp-") for f in removed)
    assert not [f for _d, _s, fs in os.walk(crashed) for f in fs if f.startswith(".omestream")]
    assert not any(os.path.exists(p) for p in leftovers)


def test_positions_and_a_torn_shard(tmp_path: Path) -> None:
    dims = [Dimension(name="t", count=4), PositionDimension(positions=["a", "b"]),
            Dimension(name="y", count=8), Dimension(name="x", count=8)]  # fmt: skip
    s = _settings(tmp_path / "live.ome.zarr", dims)
    stream = create_stream(s)
    for n in range(5):
        stream.append(frame_for(n, (8, 8), "uint16"), metadata={"n": n})
    crashed = _snapshot(stream, tmp_path / "crashed.ome.zarr")
    stream.close()
    # one shard holds all time points of a position: cut position "a"'s (frames 0, 2, 4)
    # short, as a torn write would, so its index no longer checks out
    shard = Path(crashed) / "a" / "0" / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-3])
    report = omestream.repair(crashed, force=True)
    assert (report.frames_present, report.resume_at, report.frames_expected) == (2, 0, 8)
    assert report.time_points_complete == 0 and report.last_complete_time_point is None
    validate_ome_zarr(crashed)
    meta = zarr.open_group(crashed + "/b").attrs["omestream"]["frame_metadata"]
    assert [r["n"] for r in meta] == [1, 3]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_series_list_never_written_is_restored(tmp_path: Path, version: str) -> None:
    """A writer killed while creating a multi-position dataset, after the root's record
    but before the ``OME/`` series group: repair writes the group from the record."""
    dims = [UNBOUNDED[0], PositionDimension(positions=["a", "b"]), *UNBOUNDED[2:]]
    s = _settings(
        tmp_path / "live.ome.zarr", dims, format={"name": "ome-zarr", "version": version}
    )
    stream = create_stream(s)
    for n in range(6):
        stream.append(frame_for(n, (8, 6), "uint16"))
    crashed = Path(_snapshot(stream, tmp_path / "crashed.ome.zarr"))
    stream.close()
    for doc in ("zarr.json", ".zattrs", ".zgroup"):
        (crashed / "OME" / doc).unlink(missing_ok=True)
    report = omestream.repair(str(crashed), force=True)
    assert report.resume_at == 6  # three time points of both positions
    series = zarr.open_group(str(crashed / "OME"), mode="r").attrs.asdict()
    assert series.get("ome", series)["series"] == (["0", "1"] if version == "0.4" else ["a", "b"])
    validate_ome_zarr(crashed)


def test_journal_of_a_long_acquisition_is_folded_back(tmp_path: Path) -> None:
    n_frames = SMALL + 600
    dims = [Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=256),
            Dimension(name="y", count=4), Dimension(name="x", count=4)]  # fmt: skip
    s = _settings(tmp_path / "live.ome.zarr", dims, writer=WriterOptions(metadata_interval_s=60))
    stream = create_stream(s)
    for n in range(n_frames):
        stream.append(np.full((4, 4), n % 60000, np.uint16), metadata={"n": n})
        if n in (SMALL // 2, SMALL - 1, SMALL + 300):
            stream.flush()  # as the cadence would
    journal = Path(stream.output_path) / "0" / JOURNAL_NAME
    assert journal.exists()
    crashed = _snapshot(stream, tmp_path / "crashed.ome.zarr")
    stream.close()
    assert not journal.exists()  # close puts everything in the attributes
    closed = zarr.open_group(s.output_path).attrs["omestream"]["frame_metadata"]
    assert len(closed) == n_frames
    # in the killed copy the attributes lag behind (rewritten only on doubling) ...
    in_attrs = zarr.open_group(crashed).attrs["omestream"]["frame_metadata"]
    assert SMALL <= len(in_attrs) < n_frames
    with open(Path(crashed) / "0" / JOURNAL_NAME, "a") as f:
        f.write('{"image": 0, "record": {"frame": 5')  # a line cut short
    report = omestream.repair(crashed, force=True)
    assert report.details["journal_bad_lines"] == 1
    folded = zarr.open_group(crashed).attrs["omestream"]["frame_metadata"]
    assert [r["n"] for r in folded] == list(range(n_frames))
    assert not (Path(crashed) / "0" / JOURNAL_NAME).exists()
    validate_ome_zarr(crashed)


def test_idle_stream_keeps_frames_and_metadata_fresh(tmp_path: Path) -> None:
    """A time-lapse waiting for its next time point: no append, yet the last frames and
    their metadata reach the disk within the cadence."""
    s = _settings(
        tmp_path / "live.ome.zarr", UNBOUNDED, writer=WriterOptions(metadata_interval_s=0.3)
    )
    stream = create_stream(s)
    for n in range(4):
        stream.append(frame_for(n, (8, 6), "uint16"), metadata={"n": n})
    crashed = tmp_path / "crashed.ome.zarr"

    def refreshed() -> bool:
        shutil.rmtree(crashed, ignore_errors=True)
        shutil.copytree(stream.output_path, crashed)  # no flush by the test: what a kill leaves
        report = omestream.repair(crashed, force=True)
        return report.resume_at == 4 and report.metadata_records == 4

    time.sleep(1.0)  # three cadences; a loaded machine may take a little longer
    assert wait_until(refreshed, timeout=5.0)
    stream.close()


def test_refuses_a_dataset_that_is_still_being_written(tmp_path: Path) -> None:
    s = _settings(tmp_path / "live.ome.zarr", UNBOUNDED)
    with create_stream(s) as stream:
        stream.append(frame_for(0, (8, 6), "uint16"))
        stream.flush()
        # the open stream's lock says so, --force or not; a dry run only reads
        for force in (False, True):
            with pytest.raises(ConcurrentModificationError, match="being written by an open"):
                omestream.repair(stream.output_path, force=force)
        assert omestream.repair(stream.output_path, dry_run=True).interrupted


def test_a_closed_dataset_needs_nothing(tmp_path: Path) -> None:
    s = _settings(
        tmp_path / "done.ome.zarr", UNBOUNDED, format={"name": "ome-zarr", "version": "0.4"}
    )
    with create_stream(s) as stream:
        for n in range(5):
            stream.append(frame_for(n, (8, 6), "uint16"))
    before = snapshot(s.output_path)
    report = omestream.repair(s.output_path)
    assert not report.interrupted and report.changes == [] and report.resume_at == 5
    assert snapshot(s.output_path) == before


def test_what_is_not_repairable_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        omestream.repair(tmp_path / "missing.ome.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreFormatError, match="not a Zarr group"):
        omestream.repair(tmp_path / "plain")
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").attrs["something"] = 1
    with pytest.raises(StoreFormatError, match="no omestream stream record"):
        omestream.repair(foreign)
    s = _settings(tmp_path / "bad.ome.zarr", UNBOUNDED)
    create_stream(s).close()
    doc = json.loads((Path(s.output_path) / "zarr.json").read_text())
    doc["attributes"]["omestream"]["settings"]["dimensions"] = "nonsense"
    (Path(s.output_path) / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreFormatError, match="recorded acquisition settings are invalid"):
        omestream.repair(s.output_path)
    with pytest.raises(StoreFormatError, match="OME-TIFF"):
        if omestream.repair.__module__ and not _has_tiff_recovery():
            (tmp_path / "x.ome.tiff").write_bytes(b"II*\x00")
            omestream.repair(tmp_path / "x.ome.tiff")
        else:
            raise StoreFormatError("OME-TIFF recovery exists; covered by its own tests")


def _has_tiff_recovery() -> bool:
    from omestream.repair import _tiff_recovery

    return _tiff_recovery() is not None


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = _settings(tmp_path / "live.ome.zarr", UNBOUNDED)
    stream = create_stream(s)
    for n in range(4):
        stream.append(frame_for(n, (8, 6), "uint16"))
    crashed = _snapshot(stream, tmp_path / "crashed.ome.zarr")
    stream.close()
    assert main(["repair", crashed, "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["frames_present"] == 4 and doc["last_complete_time_point"] == 0 and doc["dry_run"]
    assert main(["repair", crashed]) == 1  # just written: refused
    assert "still running" in capsys.readouterr().err
    assert main(["repair", crashed, "--force"]) == 0
    out = capsys.readouterr().out
    assert "frames present: 4 of unbounded" in out and "resume at frame: 4" in out
    assert zarr.open_array(crashed + "/0").shape[0] == 2


def test_ome_tiff_goes_to_its_recovery(tmp_path: Path) -> None:
    dims = [
        Dimension(name="t", count=None),
        Dimension(name="y", count=8),
        Dimension(name="x", count=6),
    ]
    s = _settings(tmp_path / "done.ome.tiff", dims)
    with create_stream(s) as stream:
        for n in range(3):
            stream.append(frame_for(n, (8, 6), "uint16"))
    report = omestream.repair(s.output_path)
    assert report.format == "ome-tiff" and not report.interrupted and report.frames_present == 3
    assert report.changes == []
    dry = omestream.repair(s.output_path, dry_run=True)  # a closed file: nothing to do
    assert dry.dry_run and dry.changes == [] and dry.frames_present == 3
