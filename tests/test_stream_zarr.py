"""Every setup of the case table streamed to OME-Zarr 0.5 and 0.4, checked by independent
validators, by plain zarr reads pixel for pixel, and for the details readers trip over."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from omestream.plan import plan_storage
from tests.cases import CASES, Case
from tests.checks import validate_ome_zarr
from tests.streaming import expected_images, stream_case

NGFF_ORDERED = [c for c in CASES if c.storage_order == "ome"]


def _attrs(root: Path, group: str, version: str) -> dict[str, Any]:
    if version == "0.5":
        doc = json.loads((root / group / "zarr.json").read_text())
        assert doc["node_type"] == "group"
        return dict(doc["attributes"])
    return dict(json.loads((root / group / ".zattrs").read_text()))


def _ngff(attrs: dict[str, Any], version: str) -> dict[str, Any]:
    if version == "0.5":
        assert attrs["ome"]["version"] == "0.5"
        return dict(attrs["ome"])
    return attrs


def _write(case: Case, tmp_path: Path, version: str) -> tuple[Any, Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-NGFF storage orders warn
        settings = case.settings(
            str(tmp_path / "data.ome.zarr"), {"name": "ome-zarr", "version": version}
        )
    stream_case(case, settings)
    return settings, Path(settings.output_path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pixels_round_trip(case: Case, ngff_version: str, tmp_path: Path) -> None:
    settings, root = _write(case, tmp_path, ngff_version)
    plan = plan_storage(settings)
    expected = expected_images(case, settings)
    assert len(plan.images) == len(expected)
    for image, want in zip(plan.images, expected, strict=True):
        arr = zarr.open_array(
            str(root / image.path / "0") if image.path else str(root / "0"), mode="r"
        )
        assert arr.shape == want.shape
        assert arr.dtype == np.dtype(case.dtype)
        np.testing.assert_array_equal(arr[...], want)


@pytest.mark.parametrize("case", NGFF_ORDERED, ids=[c.id for c in NGFF_ORDERED])
def test_independent_validators(case: Case, ngff_version: str, tmp_path: Path) -> None:
    _, root = _write(case, tmp_path, ngff_version)
    validate_ome_zarr(root)


@pytest.mark.parametrize("case", NGFF_ORDERED, ids=[c.id for c in NGFF_ORDERED])
def test_details_readers_trip_over(case: Case, ngff_version: str, tmp_path: Path) -> None:
    settings, root = _write(case, tmp_path, ngff_version)
    plan = plan_storage(settings)
    for image in plan.images:
        group = root / image.path
        ngff = _ngff(_attrs(root, image.path, ngff_version), ngff_version)
        (ms,) = ngff["multiscales"]
        if ngff_version == "0.4":
            assert ms["version"] == "0.4"
        axes = [a["name"] for a in ms["axes"]]
        assert axes == [a.lower() for a in axes], "axis names are lowercase"
        assert [d["path"] for d in ms["datasets"]] == [str(i) for i in range(len(ms["datasets"]))]
        for ds in ms["datasets"]:
            scale = ds["coordinateTransformations"][0]
            assert scale["type"] == "scale" and len(scale["scale"]) == len(axes)
            if ngff_version == "0.5":
                meta = json.loads((group / ds["path"] / "zarr.json").read_text())
                assert meta["dimension_names"] == axes
                assert meta["chunk_key_encoding"] == {
                    "name": "default",
                    "configuration": {"separator": "/"},
                }
            else:
                meta = json.loads((group / ds["path"] / ".zarray").read_text())
                assert meta["dimension_separator"] == "/"
            assert isinstance(meta["fill_value"], int | float)
        by_name = {d.name.lower(): d for d in settings.array_dimensions}
        for ax, scale_value in zip(
            ms["axes"], ms["datasets"][0]["coordinateTransformations"][0]["scale"], strict=True
        ):
            dim = by_name[ax["name"]]
            assert ax["type"] == dim.type
            assert scale_value == (dim.scale or 1.0)
            if dim.unit:
                assert ax["unit"] == dim.unit
        channel_axis = next((i for i, a in enumerate(ms["axes"]) if a["type"] == "channel"), None)
        if channel_axis is not None:
            channels = ngff["omero"]["channels"]
            assert len(channels) == image.levels[0].shape[channel_axis]
            for ch in channels:
                assert len(ch["color"]) == 6
                assert set(ch["window"]) == {"min", "max", "start", "end"}


def test_channel_coords_become_omero(ngff_version: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "single-5d")
    settings, root = _write(case, tmp_path, ngff_version)
    omero = _ngff(_attrs(root, "", ngff_version), ngff_version)["omero"]
    assert [(c["label"], c["color"]) for c in omero["channels"]] == [
        ("DAPI", "0000FF"),
        ("GFP", "00FF00"),
        ("mCherry", "FF0000"),
    ]
    expected = expected_images(case, settings)[0]
    c_axis = [a.name for a in plan_storage(settings).images[0].axes].index("c")
    for c, ch in enumerate(omero["channels"]):
        win = ch["window"]
        assert (win["min"], win["max"]) == (0.0, 65535.0)  # the dtype's range
        data = np.take(expected, c, axis=c_axis)  # the display window lies within the data
        assert data.min() <= win["start"] < win["end"] <= data.max() + 1


def test_plate_metadata_is_consistent(ngff_version: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "plate")
    _, root = _write(case, tmp_path, ngff_version)
    plate = _ngff(_attrs(root, "", ngff_version), ngff_version)["plate"]
    if ngff_version == "0.4":
        assert plate["version"] == "0.4"
    rows = [r["name"] for r in plate["rows"]]
    cols = [c["name"] for c in plate["columns"]]
    assert rows == ["A", "B", "C", "D"] and cols == [str(i) for i in range(1, 9)]
    assert plate["name"] == "Example Plate"
    assert plate["field_count"] == 2
    assert [w["path"] for w in plate["wells"]] == ["A/1", "A/2", "C/4"]
    for w in plate["wells"]:
        r, c = w["path"].split("/")
        assert (rows[w["rowIndex"]], cols[w["columnIndex"]]) == (r, c)
        well = _ngff(_attrs(root, w["path"], ngff_version), ngff_version)["well"]
        if ngff_version == "0.4":
            assert well["version"] == "0.4"
        for img in well["images"]:
            assert (root / w["path"] / img["path"]).is_dir()
    well_c4 = _ngff(_attrs(root, "C/4", ngff_version), ngff_version)["well"]
    assert [i["path"] for i in well_c4["images"]] == ["fov0", "fov1"]


def test_bioformats2raw_layout_and_ome_xml(ngff_version: str, tmp_path: Path) -> None:
    from ome_types import from_xml

    case = next(c for c in CASES if c.id == "multi-position")
    _, root = _write(case, tmp_path, ngff_version)
    ngff = _ngff(_attrs(root, "", ngff_version), ngff_version)
    assert ngff["bioformats2raw.layout"] == 3
    series = _ngff(_attrs(root, "OME", ngff_version), ngff_version)["series"]
    # 0.5: each image under its position's name; 0.4 roots carry no version, which
    # readers find in series "0": numbered
    assert series == (["Pos0", "Pos1", "Pos2"] if ngff_version == "0.5" else ["0", "1", "2"])
    ome = from_xml((root / "OME" / "METADATA.ome.xml").read_text(), validate=True)
    assert [im.name for im in ome.images] == ["Pos0", "Pos1", "Pos2"]
    px = ome.images[0].pixels
    assert (px.size_t, px.size_c, px.size_z, px.size_y, px.size_x) == (2, 2, 3, 32, 32)
    assert px.dimension_order.value == "XYZCT"
    assert px.physical_size_x == 2.0 and px.physical_size_z == 5.0


def test_unbounded_ome_xml_states_frames_written(tmp_path: Path) -> None:
    from ome_types import from_xml

    case = next(c for c in CASES if c.id == "unbounded")  # 13 frames over 2 positions
    _, root = _write(case, tmp_path, "0.5")
    ome = from_xml((root / "OME" / "METADATA.ome.xml").read_text())
    assert [im.pixels.size_t for im in ome.images] == [7, 6]
    assert zarr.open_array(str(root / "Pos0" / "0")).shape[0] == 7
    assert zarr.open_array(str(root / "Pos1" / "0")).shape[0] == 6


def test_frame_metadata_in_image_attributes(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "event-driven")
    _, root = _write(case, tmp_path, "0.5")
    record = _attrs(root, "", "0.5")["omestream"]
    frames = record["frame_metadata"]
    assert [f["n"] for f in frames] == list(range(7))
    assert frames[3] == {"frame": 3, "index": {"t": 3}, "n": 3, "delta_t": pytest.approx(0.3)}
    assert record["complete"] is True and record["frames"] == 7


def test_skipped_frames_read_as_fill_and_are_recorded(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "skip-frames")
    _settings, root = _write(case, tmp_path, "0.5")
    record = _attrs(root, "", "0.5")["omestream"]
    assert record["skipped"] == [3, 4, 5, 20]
    data = zarr.open_array(str(root / "0"))[...]
    # frame 3 of tczyx acquisition is t=0, c=0, z=3
    assert not data[0, 0, 3].any()
    assert data[0, 0, 2].any()


def test_unbounded_axis_with_chunks_larger_than_one(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "unbounded")
    _settings, root = _write(case, tmp_path, "0.5")
    arr = zarr.open_array(str(root / "Pos0" / "0"))
    assert arr.chunks[0] == 3
    meta = json.loads((root / "Pos0" / "0" / "zarr.json").read_text())
    assert meta["shape"][0] == 7


def test_settings_recorded_for_resume(tmp_path: Path) -> None:
    from omestream import AcquisitionSettings

    case = next(c for c in CASES if c.id == "plate")
    settings, root = _write(case, tmp_path, "0.5")
    record = _attrs(root, "", "0.5")["omestream"]
    again = AcquisitionSettings.model_validate(record["settings"])
    assert again.dimensions == settings.dimensions
    assert again.plate == settings.plate
