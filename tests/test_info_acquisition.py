"""`omestream info` says how far the acquisition that wrote a dataset got: frames of
those planned, skipped frames, and whether its stream closed it. Read from the stream's
record (OME-Zarr attributes, OME-TIFF annotation) of real datasets on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import omestream
import omestream.cli.info  # registers the command
from omestream import AcquisitionSettings, Dimension, create_stream
from omestream.cli.app import app
from omestream.summary import describe
from omestream.summary.acquisition import acquisition_from_record
from omestream.tiff.xml import read_record
from omestream.validate import validate_store
from tests.cli_data import write_ome_zarr_py_image

runner = CliRunner()
FRAME = (16, 12)


def _settings(path: Path, t: int | None = 3, **kw: object) -> AcquisitionSettings:
    dims = [Dimension(name="t", count=t), Dimension(name="c", count=2),
            Dimension(name="y", count=FRAME[0]), Dimension(name="x", count=FRAME[1])]  # fmt: skip
    return AcquisitionSettings(
        root_path=str(path), dimensions=dims, dtype="uint16", overwrite=True, **kw
    )


def _info(path: str) -> tuple[dict, str]:
    as_json = runner.invoke(app, ["info", path, "--json"])
    human = runner.invoke(app, ["info", path], env={"COLUMNS": "300"})
    assert as_json.exit_code == 0 and human.exit_code == 0, (as_json.output, human.output)
    # the panel's text without its borders and line breaks
    return json.loads(as_json.output)["acquisition"], " ".join(
        human.output.replace("│", " ").split()
    )


def _frame(n: int) -> np.ndarray:
    return np.full(FRAME, n + 1, dtype="uint16")


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_a_finished_acquisition_is_complete(tmp_path: Path, suffix: str) -> None:
    s = _settings(tmp_path / f"done{suffix}")
    with create_stream(s) as stream:
        for n in range(6):
            stream.append(_frame(n))
    acq, text = _info(s.output_path)
    assert (acq["frames"], acq["planned"], acq["skipped"], acq["complete"]) == (6, 6, 0, True)
    assert "acquisition: 6 of 6 frames, complete, started" in text
    if suffix == ".ome.zarr":
        assert validate_store(s.output_path, external=False).warnings == []
    if suffix == ".ome.tiff":  # the record in the OME-XML, read with tifffile
        with tifffile.TiffFile(s.output_path) as tif:
            _ome, record = read_record(tif.ome_metadata or "")
        assert record["state"] == "closed" and record["complete"] is True


def test_an_early_close_with_skipped_frames(tmp_path: Path) -> None:
    s = _settings(tmp_path / "early.ome.zarr")
    with create_stream(s) as stream:
        stream.append(_frame(0))
        stream.skip(frames=1)
        stream.append(_frame(2))
    acq, text = _info(s.output_path)
    assert (acq["frames"], acq["planned"], acq["skipped"], acq["complete"]) == (3, 6, 1, True)
    assert "acquisition: 3 of 6 frames (1 skipped), closed before the last frame" in text


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_validate_warns_of_an_early_close(tmp_path: Path, suffix: str) -> None:
    s = _settings(tmp_path / f"early{suffix}")
    with create_stream(s) as stream:
        for n in range(4):
            stream.append(_frame(n))
    report = validate_store(s.output_path, external=False)
    assert report.ok  # valid data, only not all of it
    (warning,) = [w.message for w in report.warnings]
    assert "closed after 4 of 6 planned frames" in warning


def test_an_unbounded_acquisition_has_no_planned_count(tmp_path: Path) -> None:
    s = _settings(tmp_path / "live.ome.zarr", t=None)
    with create_stream(s) as stream:
        for n in range(5):
            stream.append(_frame(n))
    acq, text = _info(s.output_path)
    assert (acq["frames"], acq["planned"], acq["complete"]) == (5, None, True)
    assert "acquisition: 5 frames, closed" in text


def test_an_interrupted_acquisition_points_to_repair(tmp_path: Path) -> None:
    s = _settings(tmp_path / "live.ome.zarr")
    stream = create_stream(s)
    for n in range(4):
        stream.append(_frame(n))
    stream.flush()  # what the metadata cadence does while streaming
    crashed = str(tmp_path / "crashed.ome.zarr")
    shutil.copytree(s.output_path, crashed)  # the folder as a killed writer leaves it
    stream.close()
    acq, text = _info(crashed)
    assert (acq["frames"], acq["planned"], acq["complete"]) == (4, 6, False)
    assert "4 of 6 frames so far" in text and f"omestream repair {crashed}" in text
    assert "readable and resumable" in text

    found = validate_store(crashed, external=False)
    assert found.ok and any("did not close it (4 frames" in p.message for p in found.warnings)
    report = omestream.repair(crashed, force=True)
    assert not [
        p for p in validate_store(crashed, external=False).warnings if "close" in p.message
    ]
    assert not [c for c in report.changes if c.startswith("fold 0")], report.changes
    acq, text = _info(crashed)
    assert (acq["frames"], acq["complete"]) == (4, False) and acq["repaired"]
    assert "4 of 6 frames" in text and "interrupted, then repaired: readable" in text
    assert "omestream repair" not in text
    with create_stream(report.settings, resume=True) as stream:
        for n in range(4, 6):
            stream.append(_frame(n))
    acq, text = _info(crashed)  # the resumed stream finished the acquisition
    assert (acq["frames"], acq["complete"], acq["repaired"]) == (6, True, None)
    assert "acquisition: 6 of 6 frames, complete" in text


def test_datasets_without_a_stream_record(tmp_path: Path) -> None:
    path, _pixels = write_ome_zarr_py_image(tmp_path / "other.zarr")
    assert describe(path).acquisition is None
    assert json.loads(runner.invoke(app, ["info", path, "--json"]).output)["acquisition"] is None
    assert "acquisition" not in runner.invoke(app, ["info", path]).output


@pytest.mark.parametrize(
    "record",
    [None, [], {}, {"frames": "3"}, {"frames": -1}, {"frames": True}, {"complete": True}],
)
def test_records_without_a_frame_count_are_ignored(record: object) -> None:
    assert acquisition_from_record(record) is None


def test_a_record_whose_settings_no_longer_validate_still_counts(tmp_path: Path) -> None:
    acq = acquisition_from_record(
        {"frames": 7, "skipped": [2], "complete": False, "settings": {"dtype": "complex"}}
    )
    assert acq is not None
    assert (acq.frames, acq.planned, acq.skipped, acq.complete) == (7, None, 1, False)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_changes_after_the_acquisition_are_noted(tmp_path: Path, version: str) -> None:
    """The acquisition line tells the stream's story; a shape changed since (time
    points or channels appended with open_store) gets a note of its own."""
    path = tmp_path / "e.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(path),
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=8),
            Dimension(name="x", count=8),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
    )
    with create_stream(settings) as stream:
        for i in range(5):  # t = 0, 1 and half of 2
            stream.append(np.full((8, 8), i, np.uint16))
    info = describe(str(path))
    assert info.notes == [] and info.images[0].shape == (3, 2, 8, 8)
    image = omestream.open_store(str(path), "r+")
    image.append_channel("extra", np.zeros((3, 8, 8), np.uint16))
    image.append(np.zeros((1, 3, 8, 8), np.uint16), "t")
    (note,) = describe(str(path)).notes
    assert "image '.' is (4, 3, 8, 8) (tcyx); its stream left it at most (3, 2, 8, 8)" in note
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "changed since the acquisition" in result.output


_KILLED = """
import os, signal, sys
import numpy as np
from omestream import AcquisitionSettings, create_stream
settings = AcquisitionSettings.model_validate_json(sys.argv[1])
stream = create_stream(settings)
for n in range(2):
    stream.append(np.full(settings.frame_shape, n + 1, dtype="uint16"))
stream.flush()
os.kill(os.getpid(), signal.SIGKILL)  # no close()
"""


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_info_tells_a_running_stream_from_a_killed_one(tmp_path: Path, suffix: str) -> None:
    """From the dataset's stream lock: a stream still holding it is at work; a stream
    that holds it no more is gone, and repair is the next step."""
    import subprocess
    import sys

    live = _settings(tmp_path / f"live{suffix}")
    stream = create_stream(live)
    try:
        stream.append(_frame(0))
        stream.flush()
        acq, text = _info(live.output_path)
        assert acq["writer"] == "streaming" and acq["complete"] is False
        assert "being written now by an open stream" in text and "repair" not in text
    finally:
        stream.close()

    killed = _settings(tmp_path / f"killed{suffix}")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED, killed.model_dump_json()], cwd=repo, check=False
    )
    assert proc.returncode == -9
    acq, text = _info(killed.output_path)
    assert acq["writer"] == "gone" and acq["complete"] is False
    assert "interrupted: the stream that wrote it is gone" in text
    assert f"omestream repair {killed.output_path}" in text
