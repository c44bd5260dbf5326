"""open_store changes that must keep a dataset valid and its pyramid exact.

* region writes into a gaussian pyramid recompute every pixel the blur reaches;
* plates never hold an empty well (NGFF wells list at least one image) nor no well;
* field names in wells are alphanumeric (NGFF well image paths);
* ``add_position(like=...)`` never copies a channel list of the wrong length.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import (
    AcquisitionSettings,
    Dimension,
    Pyramid,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
    create_stream,
    open_store,
)
from omestream.pyramid import downsample
from omestream.store import Image, Plate
from tests.checks import validate_ome_zarr
from tests.store_fixtures import C, X, Y, pixels, snapshot, write_plate


def ngff(path: Path | str) -> dict:
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return attrs.get("ome", attrs)


def stored_levels(root: Path) -> list[np.ndarray]:
    ms = ngff(root)["multiscales"][0]
    return [zarr.open_array(f"{root}/{d['path']}", mode="r")[...] for d in ms["datasets"]]


# -- 1. region writes into a pyramid ----------------------------------------------------------


def _pyramid_image(root: Path, method: str, ny: int = 70, nx: int = 53) -> np.ndarray:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, size=(2, 2, ny, nx)).astype("uint16")
    settings = AcquisitionSettings(
        root_path=str(root),
        dtype="uint16",
        pyramid=Pyramid(levels=3, method=method),
        dimensions=[
            Dimension(name="t", count=2, type="time"),
            Dimension(name="c", count=2, type="channel", coords=["DAPI", "GFP"]),
            Dimension(name="y", count=ny, type="space"),
            Dimension(name="x", count=nx, type="space"),
        ],
    )
    with create_stream(settings) as s:
        for t in range(2):
            for c in range(2):
                s.append(data[t, c])
    return data


def _assert_pyramid_exact(root: Path, method: str, expected0: np.ndarray) -> None:
    """Every level equals the kernel applied to the whole level above (as the builder does)."""
    lv = stored_levels(root)
    np.testing.assert_array_equal(lv[0], expected0)
    for above, low in itertools.pairwise(lv):
        exp = downsample(above, (1, 1, 2, 2), method)
        assert low.shape == exp.shape
        np.testing.assert_array_equal(low, exp)


@pytest.mark.parametrize("method", ["gaussian", "mean", "mode", "nearest"])
def test_region_writes_keep_every_level_exact(tmp_path: Path, method: str) -> None:
    root = tmp_path / f"{method}.ome.zarr"
    data = _pyramid_image(root, method)
    _assert_pyramid_exact(root, method, data)  # as streamed
    img = open_store(root, mode="r+")
    assert isinstance(img, Image)
    writes = [
        ((0, 1, slice(16, 32), slice(16, 32)), np.full((16, 16), 60000, "uint16")),  # inside
        ((1, 0, slice(0, 5), slice(0, 7)), np.full((5, 7), 9000, "uint16")),  # corner
        ((0, 0, slice(61, 70), slice(40, 53)), np.full((9, 13), 123, "uint16")),  # odd edge
        ((1, 1, 33, slice(None)), np.arange(53, dtype="uint16") * 100),  # one row
        ((0, 1, slice(7, 8), slice(9, 10)), np.full((1, 1), 65535, "uint16")),  # one pixel
    ]
    for key, block in writes:
        img[key] = block
        data[key] = block
        _assert_pyramid_exact(root, method, data)
    validate_ome_zarr(root)


def test_gaussian_append_and_whole_plane_write_stay_exact(tmp_path: Path) -> None:
    root = tmp_path / "g.ome.zarr"
    data = _pyramid_image(root, "gaussian", 40, 37)
    img = open_store(root, mode="r+")
    assert isinstance(img, Image)
    more = np.random.default_rng(9).integers(0, 4000, size=(1, 2, 40, 37)).astype("uint16")
    img.append(more, axis="t")
    data = np.concatenate([data, more])
    _assert_pyramid_exact(root, "gaussian", data)
    img[2, 0] = np.full((40, 37), 5, "uint16")
    data[2, 0] = 5
    _assert_pyramid_exact(root, "gaussian", data)


# -- 2. no empty wells, no empty plate ---------------------------------------------------------


def _plate(tmp_path: Path, version: str) -> tuple[Path, dict, Plate]:
    root = tmp_path / "plate.ome.zarr"
    expected = write_plate(root, version, "omestream")
    plate = open_store(root, mode="r+")
    assert isinstance(plate, Plate)
    return root, expected, plate


def test_add_well_writes_the_well_with_its_first_field(tmp_path: Path, ngff_version: str) -> None:
    root, _, plate = _plate(tmp_path, ngff_version)
    well = plate.add_well("C", "3")
    assert plate.rows == ["A", "B", "C"] and plate.columns == ["1", "2", "3"]
    assert plate.wells == ["A/1", "B/2"]  # not listed until it holds a field
    assert not (root / "C" / "3").exists()
    assert well.fields == []
    validate_ome_zarr(root)

    d = pixels(7)
    img = well.add_position("0", data=d)
    assert plate.wells == ["A/1", "B/2", "C/3"]
    assert plate.well("C/3").fields == ["0"]
    np.testing.assert_array_equal(stored_levels(root / "C/3/0")[0], d)
    np.testing.assert_array_equal(img.read(), d)
    validate_ome_zarr(root)

    with pytest.raises(StoreExistsError, match="already has well 'C/3'"):
        plate.add_well("C", "3")


def test_deleting_a_wells_last_field_deletes_the_well(tmp_path: Path, ngff_version: str) -> None:
    root, expected, plate = _plate(tmp_path, ngff_version)
    plate.delete_position("A", "1", "0")
    assert plate.wells == ["B/2"]
    assert not (root / "A").exists()  # the emptied row group went with it
    assert plate.rows == ["A", "B"]  # declared rows stay
    validate_ome_zarr(root)
    np.testing.assert_array_equal(stored_levels(root / "B/2/0")[0], expected["B/2/0"])
    assert plate.rebuild_metadata() == []


def test_the_plates_last_well_cannot_be_deleted(tmp_path: Path, ngff_version: str) -> None:
    root, _, plate = _plate(tmp_path, ngff_version)
    plate.delete_well("A", "1")
    before = snapshot(root)
    with pytest.raises(SettingsError, match=r"'B/2' is the only well .* at least one well"):
        plate.delete_well("B", "2")
    assert snapshot(root) == before
    with pytest.raises(SettingsError, match=r"last one of well 'B/2'.*only well"):
        plate.delete_position("B", "2", "0")
    assert snapshot(root) == before
    assert plate.wells == ["B/2"]
    validate_ome_zarr(root)


def _write_empty_well(root: Path, path: str, version: str) -> None:
    zf = 3 if version == "0.5" else 2
    row, col = path.split("/")
    g = zarr.open_group(str(root), mode="r+", zarr_format=zf).require_group(row)
    g = g.create_group(col)
    doc = {"images": []} if version == "0.5" else {"images": [], "version": "0.4"}
    g.attrs.update({"ome": {"version": "0.5", "well": doc}} if version == "0.5" else {"well": doc})


def test_rebuild_metadata_removes_empty_well_groups(tmp_path: Path, ngff_version: str) -> None:
    root, expected, plate = _plate(tmp_path, ngff_version)
    # as left by earlier versions: an empty well listed, and one not listed in a new row
    _write_empty_well(root, "A/2", ngff_version)
    _write_empty_well(root, "C/1", ngff_version)
    g = zarr.open_group(str(root), mode="r+")
    attrs = dict(g.attrs)
    doc = attrs.get("ome", attrs)["plate"]
    doc["columns"].append({"name": "2"} if {"name": "2"} not in doc["columns"] else {})
    doc["columns"] = [c for c in doc["columns"] if c]
    doc["wells"].append({"path": "A/2", "rowIndex": 0, "columnIndex": 1})
    doc["wells"].sort(key=lambda w: (w["rowIndex"], w["columnIndex"]))
    g.attrs.update(attrs)
    assert plate.wells == ["A/1", "A/2", "B/2"]

    changes = plate.rebuild_metadata()
    assert "removed empty well group 'A/2'" in changes
    assert "removed empty well group 'C/1'" in changes
    assert plate.wells == ["A/1", "B/2"]
    assert not (root / "A/2").exists() and not (root / "C").exists()
    validate_ome_zarr(root)
    for path, data in expected.items():
        np.testing.assert_array_equal(stored_levels(root / path)[0], data)
    assert plate.rebuild_metadata() == []


def test_rebuild_metadata_refuses_to_write_a_plate_without_wells(tmp_path: Path) -> None:
    import shutil

    root, _, plate = _plate(tmp_path, "0.5")
    shutil.rmtree(root / "A")
    shutil.rmtree(root / "B")
    before = snapshot(root)
    with pytest.raises(StoreFormatError, match="no well holds an image group"):
        plate.rebuild_metadata()
    assert snapshot(root) == before


# -- 3. field names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fov_0", "fov-0", "fov.0", "a b", "../x", ""])
def test_field_names_must_be_alphanumeric(tmp_path: Path, name: str) -> None:
    root, _, plate = _plate(tmp_path, "0.5")
    like = plate["A/1/0"]
    assert isinstance(like, Image)
    before = snapshot(root)
    msg = "only letters and digits" if name and "/" not in name else ""
    calls = [
        lambda: plate.add_position("A", "1", name, like=like),
        lambda: plate.add_position("C", "4", name, like=like),  # new row and well
        lambda: plate.well("A/1").add_position(name, like=like),
        lambda: plate.rename_position("A", "1", "0", name),
    ]
    for call in calls:
        with pytest.raises(SettingsError, match=f"field name.*{msg}.*nothing was changed"):
            call()
        assert snapshot(root) == before
    plate.rename_position("A", "1", "0", "fov0")  # letters and digits are fine
    validate_ome_zarr(root)


# -- 4. like= with another channel count -------------------------------------------------------


def test_like_with_another_channel_count_is_refused(tmp_path: Path, ngff_version: str) -> None:
    root, _, plate = _plate(tmp_path, ngff_version)
    like = plate["A/1/0"]
    assert isinstance(like, Image) and like.channel_names == ["DAPI", "FITC"]
    before = snapshot(root)
    msg = r"3 channel\(s\) along 'c' but like='A/1/0' lists 2 .*nothing was written"
    calls = [
        lambda: plate.add_position("A", "1", "1", like=like, data=np.ones((2, 3, Y, X), "uint16")),
        lambda: plate.add_position("C", "3", "0", like=like, data=np.ones((2, 3, Y, X), "uint16")),
        lambda: plate.add_position("C", "3", "0", like=like, shape={"c": 3}),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(SettingsError, match=msg):
            call()
        assert snapshot(root) == before
    with pytest.raises(SettingsError, match=r"1 channel\(s\)"):
        plate.add_position("C", "3", "0", like=like, shape={"c": 1})
    assert snapshot(root) == before

    # the same channel count (other extents changed) is fine, and valid
    d = pixels(4)
    img = plate.add_position("C", "3", "0", like=like, data=d)
    assert img.channel_names == ["DAPI", "FITC"] and img.check() == []
    np.testing.assert_array_equal(stored_levels(root / "C/3/0")[0], d)
    validate_ome_zarr(root)
    img2 = plate.add_position("C", "3", "1", like=like, shape={"t": 3})
    assert img2.shape == (3, C, Y, X) and img2.check() == []
