"""`omestream validate`: good stores pass; each deliberately broken store fails with a
message that says what and where (structural checks plus the independent validators)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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
    Plate,
    Position,
    PositionDimension,
    create_stream,
)
from omestream.cli.app import app
from omestream.summary import describe
from omestream.validate import validate_store
from tests.cli_data import (
    write_case,
    write_ome_zarr_py_image,
    write_ome_zarr_py_plate,
    write_plate,
    write_pyramid_image,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("good")
    return {
        "plate": write_plate(tmp / "plate.ome.zarr"),
        "plate04": write_plate(tmp / "plate04.ome.zarr", "0.4"),
        "pyramid": write_pyramid_image(tmp / "pyr.ome.zarr"),
        "multi": write_case(tmp / "multi.ome.zarr", "multi-position"),
        "ozp_image": write_ome_zarr_py_image(tmp / "ozp.zarr")[0],
        "ozp_plate": write_ome_zarr_py_plate(tmp / "ozp_plate.zarr")[0],
    }


@pytest.mark.parametrize(
    "name", ["plate", "plate04", "pyramid", "multi", "ozp_image", "ozp_plate"]
)
def test_good_stores_pass(good: dict[str, str], name: str) -> None:
    result = runner.invoke(app, ["validate", good[name]])
    assert result.exit_code == 0, result.output
    assert "structure  consistent" in result.output
    assert "ome-zarr-models  passed" in result.output and "yaozarrs  passed" in result.output


# -- breaking stores -------------------------------------------------------------------


def _edit(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _ome(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["attributes"]["ome"]


def wrong_row_index(root: Path) -> None:
    _edit(root / "zarr.json", lambda d: _ome(d)["plate"]["wells"][1].update(rowIndex=1))


def row_index_out_of_range(root: Path) -> None:
    _edit(root / "zarr.json", lambda d: _ome(d)["plate"]["wells"][0].update(columnIndex=9))


def well_listed_but_missing(root: Path) -> None:
    shutil.rmtree(root / "B" / "2")


def well_on_disk_not_listed(root: Path) -> None:
    _edit(root / "zarr.json", lambda d: _ome(d)["plate"]["wells"].pop(2))


def field_listed_but_missing(root: Path) -> None:
    _edit(
        root / "A" / "1" / "zarr.json", lambda d: _ome(d)["well"]["images"].append({"path": "7"})
    )


def position_shape_differs(root: Path) -> None:
    _edit(root / "A" / "3" / "0" / "0" / "zarr.json", lambda d: d.update(shape=[2, 32, 30]))


def level_shape_wrong(root: Path) -> None:
    _edit(root / "1" / "zarr.json", lambda d: d.update(shape=[2, 3, 32, 20]))


def axes_count_wrong(root: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        ms = _ome(d)["multiscales"][0]
        ms["axes"].pop(1)  # drop z
        for ds in ms["datasets"]:
            for t in ds["coordinateTransformations"]:
                t[t["type"]].pop(1)

    _edit(root / "zarr.json", drop)


def transform_length_wrong(root: Path) -> None:
    def cut(d: dict[str, Any]) -> None:
        _ome(d)["multiscales"][0]["datasets"][2]["coordinateTransformations"][0]["scale"].pop()

    _edit(root / "zarr.json", cut)


def scale_not_positive(root: Path) -> None:
    def zero(d: dict[str, Any]) -> None:
        _ome(d)["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][2] = 0

    _edit(root / "zarr.json", zero)


def dimension_names_differ(root: Path) -> None:
    _edit(root / "0" / "zarr.json", lambda d: d.update(dimension_names=["c", "z", "x", "y"]))


def fill_value_not_numeric(root: Path) -> None:
    _edit(root / "2" / "zarr.json", lambda d: d.update(fill_value=None))


def omero_channels_wrong(root: Path) -> None:
    _edit(root / "zarr.json", lambda d: _ome(d)["omero"]["channels"].pop())


def omero_window_reversed(root: Path) -> None:
    def flip(d: dict[str, Any]) -> None:
        _ome(d)["omero"]["channels"][1]["window"].update(start=900.0, end=100.0)

    _edit(root / "zarr.json", flip)


BROKEN: list[tuple[Callable[[Path], None], str, str, str]] = [
    # (break it, base store, where, words of the message)
    (wrong_row_index, "plate", ".", "rowIndex is 1, which is row 'B', but the well path 'A/3'"),
    (row_index_out_of_range, "plate", ".", "columnIndex is 9, outside the plate's 4 columns"),
    (well_listed_but_missing, "plate", "B/2", "well listed in plate.wells[2] is not on disk"),
    (well_on_disk_not_listed, "plate", "B/2", "well group on disk is not listed"),
    (field_listed_but_missing, "plate", "A/1/7", "field listed in well.images[1] is not on disk"),
    (level_shape_wrong, "pyramid", "1", "level 1 has shape [2, 3, 32, 20]"),
    (axes_count_wrong, "pyramid", "0", "array has 4 dimensions but multiscales[0].axes names 3"),
    (transform_length_wrong, "pyramid", "2", "scale has 3 values but the array has 4 dimensions"),
    (scale_not_positive, "pyramid", "0", "scale must be positive"),
    (dimension_names_differ, "pyramid", "0", "dimension_names ['c', 'z', 'x', 'y'] differ"),
    (fill_value_not_numeric, "pyramid", "2", "fill_value must be a number for dtype uint16"),
    (omero_channels_wrong, "pyramid", ".", "omero lists 1 channel(s) but the channel axis has size 2"),
    (omero_window_reversed, "pyramid", ".", "omero.channels[1].window starts at 900.0, above its end 100.0"),
]  # fmt: skip


@pytest.mark.parametrize("breaker,base,where,message", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_stores_fail_with_the_right_message(
    good: dict[str, str], tmp_path: Path, breaker: Any, base: str, where: str, message: str
) -> None:
    root = tmp_path / "broken.ome.zarr"
    shutil.copytree(good[base], root)
    breaker(root)
    report = validate_store(root, external=False)
    assert not report.ok
    found = [(p.where, p.message) for p in report.problems]
    assert any(w == where and message in m for w, m in found), found
    result = runner.invoke(app, ["validate", str(root), "--structure-only"])
    assert result.exit_code == 1
    assert message.split(",")[0] in " ".join(result.output.split())


def test_fields_that_differ_in_shape_are_a_warning_not_a_failure(
    good: dict[str, str], tmp_path: Path
) -> None:
    """The specification lets the fields of a plate differ (one field with an extra time
    point): reported, but the store stays valid."""
    root = tmp_path / "plate.ome.zarr"
    shutil.copytree(good["plate"], root)
    position_shape_differs(root)
    report = validate_store(root)
    assert report.ok, report.to_dict()
    assert not report.errors
    [warning] = report.warnings
    assert warning.where == "A/3/0"
    assert "has shape [2, 32, 30], but A/1/0 has [2, 32, 32]" in warning.message
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "consistent, 1 warning" in result.output and "valid" in result.output
    doc = json.loads(runner.invoke(app, ["validate", str(root), "--json"]).output)
    assert doc["ok"] is True
    assert [p["severity"] for p in doc["problems"]] == ["warning"]


def test_independent_validators_run_and_report_failures(
    good: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "broken.ome.zarr"
    shutil.copytree(good["pyramid"], root)
    axes_count_wrong(root)
    steps: list[str] = []
    report = validate_store(root, on_step=steps.append)
    assert steps == ["structure", "ome-zarr-models", "yaozarrs"]  # what runs, as it starts
    by_name = {v.name: v for v in report.validators}
    assert set(by_name) == {"ome-zarr-models", "yaozarrs"}
    assert any(v.status == "failed" for v in by_name.values())
    assert all(v.seconds > 0 for v in by_name.values())
    assert all(v["seconds"] > 0 for v in report.to_dict()["validators"])


def test_validate_subprocess_exit_codes_and_json(good: dict[str, str], tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("omestream"))
    root = tmp_path / "broken.ome.zarr"
    shutil.copytree(good["plate"], root)
    well_listed_but_missing(root)
    wrong_row_index(root)
    proc = subprocess.run([exe, "validate", str(root), "--json"], capture_output=True, text=True)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    wheres = {p["where"] for p in doc["problems"]}
    assert {".", "B/2"} <= wheres  # every problem is listed, not only the first
    ok = subprocess.run([exe, "validate", good["plate"]], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout


def test_a_field_of_view_named_c_is_seen(tmp_path: Path) -> None:
    # "c" is also the name of Zarr v3 chunk folders, but those only live in arrays
    s = AcquisitionSettings(
        root_path=str(tmp_path / "p.ome.zarr"),
        dimensions=[
            PositionDimension(positions=[Position(name="c", plate_row="A", plate_column="1")]),
            Dimension(name="y", count=8, type="space"),
            Dimension(name="x", count=8, type="space"),
        ],
        dtype="uint8",
        plate=Plate(row_names=["A"], column_names=["1"]),
    )
    with create_stream(s) as stream:
        stream.append(np.ones((8, 8), np.uint8))
    report = validate_store(s.output_path)
    assert report.ok, report.to_dict()
    assert [im.path for im in describe(s.output_path).images] == ["A/1/c"]
