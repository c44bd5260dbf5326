"""The command line: info, tree, view, demo, errors; through typer's runner and as a
subprocess, on datasets written by omestream and by ome-zarr-py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

import omestream.cli.convert
import omestream.cli.demo
import omestream.cli.info
import omestream.cli.tree
import omestream.cli.validate
import omestream.cli.view  # noqa: F401  (the commands register on import)
from omestream import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    StoreFormatError,
    create_stream,
    open_store,
)
from omestream.cli.app import app
from tests.cli_data import (
    BRIGHT_WELL,
    PLATE_WELLS,
    write_case,
    write_ome_zarr_py_image,
    write_ome_zarr_py_plate,
    write_plate,
    write_pyramid_image,
)

runner = CliRunner()
EXE = [str(Path(sys.executable).with_name("omestream"))]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=120)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("cli")
    return {
        "image": write_case(tmp / "image.ome.zarr", "single-5d"),
        "multi04": write_case(tmp / "multi.ome.zarr", "multi-position", "0.4"),
        "plate": write_plate(tmp / "plate.ome.zarr"),
        "pyramid": write_pyramid_image(tmp / "pyr.ome.zarr"),
        "ozp_image": write_ome_zarr_py_image(tmp / "ozp.zarr"),
        "ozp_plate": write_ome_zarr_py_plate(tmp / "ozp_plate.zarr"),
    }


# -- info ------------------------------------------------------------------------------


def test_info_json_image_matches_the_arrays(data: dict) -> None:
    code, out = invoke("info", data["image"], "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["kind"], doc["ngff_version"], doc["zarr_format"]) == ("image", "0.5", 3)
    arr = zarr.open_array(data["image"] + "/0", mode="r")
    (im,) = doc["images"]
    assert im["shape"] == list(arr.shape) == [2, 3, 4, 48, 40]
    assert im["dtype"] == str(arr.dtype) == "uint16"
    assert [a["name"] for a in im["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a["size"] for a in im["axes"]] == list(arr.shape)
    assert [a["scale"] for a in im["axes"]] == [2.0, 1.0, 0.5, 0.1, 0.1]
    assert im["axes"][2]["unit"] == "micrometer"
    assert [c["label"] for c in im["channels"]] == ["DAPI", "GFP", "mCherry"]
    assert [c["color"] for c in im["channels"]] == ["0000FF", "00FF00", "FF0000"]
    assert im["levels"][0]["chunks"] == list(arr.chunks)
    assert im["levels"][0]["shards"] == list(arr.shards)
    assert doc["nbytes"] == arr.nbytes
    assert doc["disk_bytes"] > 0 and doc["compression_ratio"] == doc["nbytes"] / doc["disk_bytes"]


def test_info_json_plate_and_multiposition(data: dict) -> None:
    doc = json.loads(invoke("info", data["plate"], "--json")[1])
    assert doc["kind"] == "plate"
    assert doc["plate"]["rows"] == ["A", "B"] and doc["plate"]["columns"] == ["1", "2", "3", "4"]
    assert [w["path"] for w in doc["plate"]["wells"]] == [f"{r}/{c}" for r, c in PLATE_WELLS]
    assert doc["positions"] == [f"{r}/{c}/0" for r, c in PLATE_WELLS]
    assert all(im["shape"] == [2, 32, 32] for im in doc["images"])

    doc = json.loads(invoke("info", data["multi04"], "--json")[1])
    assert (doc["kind"], doc["ngff_version"], doc["zarr_format"]) == ("multi-position", "0.4", 2)
    assert [im["name"] for im in doc["images"]] == ["Pos0", "Pos1", "Pos2"]
    for k, im in enumerate(doc["images"]):
        assert im["shape"] == list(zarr.open_array(f"{data['multi04']}/{k}/0").shape)
        assert im["codecs"] == []  # the case is written uncompressed (.zarray compressor null)


def test_info_of_stores_written_by_ome_zarr_py(data: dict) -> None:
    path, pixels = data["ozp_image"]
    doc = json.loads(invoke("info", path, "--json")[1])
    (im,) = doc["images"]
    assert im["shape"] == list(pixels.shape)
    assert [lv["path"] for lv in im["levels"]] == ["s0", "s1"]
    assert im["levels"][1]["shape"] == [2, 3, 20, 18]
    path, wells = data["ozp_plate"]
    doc = json.loads(invoke("info", path, "--json")[1])
    assert doc["kind"] == "plate" and doc["ngff_version"] == "0.4"
    assert [w["path"] for w in doc["plate"]["wells"]] == list(wells)
    assert [im["dtype"] for im in doc["images"]] == ["uint8", "uint8"]


def test_info_human_output_as_subprocess(data: dict) -> None:
    proc = run("info", data["plate"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("OME-Zarr 0.5", "Zarr v3", "plate", "GFP", "0000FF", "in memory", "on disk"):
        assert text in out, text
    assert "2 rows × 4 columns, 3 well(s)" in out


def test_python_dash_m_runs_the_same_command_line(data: dict) -> None:
    # where the console script is not on PATH (a venv not activated, a job script)
    ok = subprocess.run(
        [sys.executable, "-m", "omestream", "info", "--json", data["plate"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == json.loads(run("info", "--json", data["plate"]).stdout)
    bad = subprocess.run(
        [sys.executable, "-m", "omestream", "info", data["plate"] + "-missing"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and "missing" in bad.stderr


# -- tree ------------------------------------------------------------------------------


def test_tree_lists_groups_and_arrays(data: dict) -> None:
    code, out = invoke("tree", data["plate"])
    assert code == 0
    assert "plate (NGFF 0.5)" in out and "well" in out and "multiscales, omero" in out
    assert out.count("2 × 32 × 32  uint16") == len(PLATE_WELLS)
    proc = run("tree", data["multi04"], "--depth", "1")
    assert proc.returncode == 0 and "bioformats2raw" in proc.stdout and "more" in proc.stdout


# -- view ------------------------------------------------------------------------------


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_view_plate_mosaic_shows_the_bright_well(data: dict, tmp_path: Path) -> None:
    out = tmp_path / "plate.png"
    code, _ = invoke("view", data["plate"], "-o", str(out), "--size", "32")
    assert code == 0
    img = _png(out)
    n_rows, n_cols, gap, left, top = 2, 4, 2, 18, 14  # the mosaic's layout
    cell = (img.shape[1] - left) // n_cols - gap
    assert img.shape[0] == top + n_rows * (cell + gap)

    def well(r: int, c: int) -> np.ndarray:
        y, x = top + r * (cell + gap), left + c * (cell + gap)
        return img[y + 4 : y + cell - 4, x + 4 : x + cell - 4]

    rows, cols = ["A", "B"], ["1", "2", "3", "4"]
    bright = well(rows.index(BRIGHT_WELL[0]), cols.index(BRIGHT_WELL[1])).mean()
    for r, c in PLATE_WELLS:
        if (r, c) != BRIGHT_WELL:
            assert well(rows.index(r), cols.index(c)).mean() < bright / 4
    empty = well(1, 3)  # B/4 was not acquired: dark grey, uniform
    assert (empty == empty[0, 0]).all() and 10 < empty.mean() < 60
    # the bright well mixes blue (DNA) and green (GFP), no red
    tile = well(0, 2)
    assert tile[..., 1].mean() > 100 and tile[..., 2].mean() > 100 and tile[..., 0].max() == 0


def test_view_image_panels_show_channel_colours(data: dict, tmp_path: Path) -> None:
    out = tmp_path / "img.png"
    proc = run("view", data["pyramid"], "-o", str(out), "--size", "64")
    assert proc.returncode == 0, proc.stderr
    img = _png(out)
    top, size, gap = 14, 64, 4
    composite = img[top : top + size, 0:size]
    left, right = composite[8:-8, 4:28], composite[8:-8, 36:60]
    assert left[..., 0].mean() > 200 and left[..., 1].mean() < 30  # channel 0: red, left
    assert right[..., 1].mean() > 200 and right[..., 0].mean() < 30  # channel 1: green, right
    assert img.shape[1] == 3 * size + 2 * gap  # composite + one panel per channel
    red_panel = img[top : top + size, size + gap : 2 * size + gap]
    assert red_panel[..., 1].max() == 0 and red_panel[..., 0].max() > 200


def test_view_refuses_a_time_point_no_image_has(data: dict, tmp_path: Path) -> None:
    n_t = zarr.open_array(data["image"] + "/0", mode="r").shape[0]
    out = tmp_path / "t.png"
    proc = run("view", data["image"], "-o", str(out), "--size", "16", "--t", str(n_t))
    assert proc.returncode == 1 and f"time point {n_t} is outside" in proc.stderr
    assert not out.exists()
    code, _ = invoke("view", data["image"], "-o", str(out), "--size", "16", "--t", str(n_t - 1))
    assert code == 0 and out.exists()


def test_view_ome_zarr_py_plate(data: dict, tmp_path: Path) -> None:
    path, _ = data["ozp_plate"]
    out = tmp_path / "p.png"
    code, text = invoke("view", path, "-o", str(out), "--size", "24")
    assert code == 0 and "2 well(s)" in text
    assert _png(out).shape[2] == 3


# -- demo and errors ---------------------------------------------------------------------


def test_demo_streams_and_ends_with_info(tmp_path: Path) -> None:
    out = tmp_path / "demo.ome.zarr"
    proc = run("demo", str(out), "--positions", "2", "--t", "2", "--z", "2", "--size", "64")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 16 frames" in proc.stdout
    assert "multi-position: 2 images" in proc.stdout and "DAPI" in proc.stdout
    assert zarr.open_array(str(out / "Pos1" / "0")).shape == (2, 2, 2, 64, 64)


@pytest.mark.parametrize("command", ["info", "tree", "validate", "convert", "view", "demo"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out = invoke(command, "--help")
    assert code == 0 and "Example: omestream " + command in " ".join(out.split())
    assert "<bool>" not in out  # switches (--help among them) take no value


def test_the_top_level_help_shows_switches_without_a_value() -> None:
    code, out = invoke("--help")
    assert code == 0 and "--debug" in out and "--help" in out and "<bool>" not in out


def test_errors_are_one_line_with_nonzero_exit(tmp_path: Path) -> None:
    proc = run("info", str(tmp_path / "missing.ome.zarr"))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    (tmp_path / "plain").mkdir()
    result = runner.invoke(app, ["info", str(tmp_path / "plain")])
    assert result.exit_code != 0 and "not a Zarr store" in str(result.exception)
    proc = run("--debug", "info", str(tmp_path / "plain"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "Commands"),  # no arguments: the help, as a usage error
        (("bogus",), "No such command 'bogus'"),
        (("info",), "Missing argument 'path'"),
        (("tree", "-d", "0", "x"), "'--depth'"),
    ],
)
def test_usage_errors_show_usage_not_exception_names(args: tuple[str, ...], says: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert says in proc.stderr + proc.stdout
    assert "Error:" in proc.stderr or not args
    for name in ("NoArgsIsHelpError", "UsageError", "MissingParameter", "BadParameter"):
        assert name not in proc.stderr


def test_a_path_that_is_not_there_names_the_dataset_next_to_it(tmp_path: Path) -> None:
    # A multi-position OME-TIFF acquisition is a folder; a root path given without suffix
    # gained one. The error names what is there.
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "run.ome.tiff"),
        dimensions=[
            Dimension(name="t", count=1),
            PositionDimension(positions=["a", "b"]),
            Dimension(name="y", count=8),
            Dimension(name="x", count=8),
        ],
        dtype="uint8",
    )
    with create_stream(settings) as stream:
        stream.append(np.ones((8, 8), "uint8"))
        stream.append(np.ones((8, 8), "uint8"))
    folder = str(tmp_path / "run")
    assert settings.output_path == folder
    for command in ("info", "validate", "repair"):
        proc = run(command, str(tmp_path / "run.ome.tiff"))
        assert proc.returncode == 1 and f"does not exist; did you mean {folder}?" in proc.stderr
    zarr_path = write_case(tmp_path / "img.ome.zarr", "single-5d")
    with pytest.raises(StoreFormatError, match=f"did you mean {zarr_path}"):
        open_store(tmp_path / "img")
    proc = run("info", str(tmp_path / "other.ome.zarr"))
    assert proc.returncode == 1 and "did you mean" not in proc.stderr


def test_demo_refuses_out_of_range_sizes_and_speaks_cli_when_the_path_exists(
    tmp_path: Path,
) -> None:
    out = tmp_path / "d.ome.zarr"
    for args, option in ((["--c", "9"], "'--c'"), (["--t", "0"], "'--t'")):
        proc = run("demo", str(out), *args)
        assert proc.returncode == 2 and option in proc.stderr and not out.exists()
    code, _ = invoke("demo", str(out), "--positions", "1", "--t", "1", "--z", "1", "--size", "16")
    assert code == 0
    proc = run("demo", str(out), "--no-overwrite")
    assert proc.returncode == 1
    assert "pass --overwrite to replace it, or choose another PATH" in proc.stderr
    assert "open_store" not in proc.stderr and "overwrite=True" not in proc.stderr
    proc = run("pyramid", str(out), "--threads", "0")
    assert proc.returncode == 2 and "'--threads'" in proc.stderr


def test_a_tiff_without_pages_or_ome_xml_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"II*\x00\x08\x00\x00\x00")  # a header pointing at no page
    proc = run("info", str(empty))
    assert proc.returncode == 1
    assert "a TIFF file without pages: no image to read" in proc.stderr
