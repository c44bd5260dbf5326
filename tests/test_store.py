"""open_store: change images and plates written by omestream, ome-zarr-py and by hand.

After every operation the dataset is validated with tools omestream did not write
(ome-zarr-models, yaozarrs, the ome-zarr reader) and its pixels are read back with
plain zarr-python and compared with what the test wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import omestream
from omestream import (
    FrameDtypeError,
    FrameShapeError,
    ReadOnlyError,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
    open_store,
)
from omestream.store import Collection, Image, Plate, lock_dir
from tests.checks import validate_ome_zarr
from tests.store_fixtures import (
    WRITERS,
    C,
    X,
    Y,
    pixels,
    snapshot,
    write_image,
    write_iohub_plate,
    write_plate,
)

# -- independent readers ---------------------------------------------------------------------


def ngff(path: Path | str) -> dict[str, Any]:
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return attrs.get("ome", attrs)


def levels(path: Path | str) -> list[np.ndarray]:
    ms = ngff(path)["multiscales"][0]
    return [zarr.open_array(f"{path}/{d['path']}", mode="r")[...] for d in ms["datasets"]]


def check_image(path: Path | str, expected: np.ndarray) -> None:
    lv = levels(path)
    np.testing.assert_array_equal(lv[0], expected)
    for low in lv[1:]:  # every level has the same extent on the non-downsampled axes
        assert low.shape[:-2] == expected.shape[:-2], (low.shape, expected.shape)
        assert low.shape[-2] in ((expected.shape[-2] + 1) // 2, expected.shape[-2] // 2)


def check_plate_doc(root: Path) -> dict[str, Any]:
    plate = ngff(root)["plate"]
    rows = [r["name"] for r in plate["rows"]]
    cols = [c["name"] for c in plate["columns"]]
    assert rows == sorted(rows, key=lambda r: (len(r), r))
    assert cols == sorted(cols, key=int)
    keys = []
    most = 0
    for w in plate["wells"]:
        r, c = w["path"].split("/")
        assert rows[w["rowIndex"]] == r and cols[w["columnIndex"]] == c, w
        keys.append((w["rowIndex"], w["columnIndex"]))
        images = ngff(root / w["path"])["well"]["images"]
        for im in images:
            assert (root / w["path"] / im["path"]).is_dir()
        most = max(most, len(images))
    assert keys == sorted(keys)
    assert plate.get("field_count", most) == most
    return plate


def mean2(a: np.ndarray) -> np.ndarray:
    """Independent 2x2 area mean over y/x with edge padding, rounded like uint16."""
    pad = [(0, 0)] * (a.ndim - 2) + [(0, a.shape[-2] % 2), (0, a.shape[-1] % 2)]
    p = np.pad(a.astype(np.float64), pad, mode="edge")
    s = (p[..., 0::2, 0::2] + p[..., 1::2, 0::2] + p[..., 0::2, 1::2] + p[..., 1::2, 1::2]) / 4
    return np.rint(s).astype(a.dtype)


@pytest.fixture(params=WRITERS)
def writer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Changes these tests make on purpose, and the warnings they bring (each asserted by a
# test of its own): one field of a plate grown alone; a foreign pyramid changed whose
# multiscales name no downsampling method.
FIELDS_DIFFER = pytest.mark.filterwarnings("ignore:.* now has shape .*field:UserWarning")
NO_METHOD = pytest.mark.filterwarnings("ignore:.*do not name a downsampling method:UserWarning")

# -- images -----------------------------------------------------------------------------------


@NO_METHOD
def test_image_append_channels_rewrite(tmp_path: Path, ngff_version: str, writer: str) -> None:
    root = tmp_path / "img.ome.zarr"
    data = write_image(root, ngff_version, writer)
    validate_ome_zarr(root)
    img = open_store(root, mode="r+")
    assert isinstance(img, Image) and img.version == ngff_version
    assert img.shape == data.shape and img.axes == ("t", "c", "y", "x")

    # one time point (without its t axis), then two at once
    tp = pixels(5, (C, Y, X))
    img.append(tp, axis="t")
    data = np.concatenate([data, tp[None]])
    validate_ome_zarr(root)
    check_image(root, data)
    more = pixels(6, (2, C, Y, X))
    img.append(more)
    data = np.concatenate([data, more])
    validate_ome_zarr(root)
    check_image(root, data)
    if writer == "omestream":  # lower level computed with the dataset's own method (mean)
        np.testing.assert_array_equal(levels(root)[1][-3:], mean2(data[-3:]))

    # a channel with its omero entry
    gfp = pixels(7, (data.shape[0], Y, X)) + 3000  # brighter than the other channels
    img.append_channel("GFP", gfp, color="00FF00")
    data = np.concatenate([data, gfp[:, None]], axis=1)
    validate_ome_zarr(root)
    check_image(root, data)
    channels = ngff(root)["omero"]["channels"]
    assert len(channels) == data.shape[1]
    assert channels[-1]["label"] == "GFP" and channels[-1]["color"] == "00FF00"
    window = channels[-1]["window"]  # measured from its own pixels, not copied
    assert 3000 <= window["start"] <= 3010 and 3990 <= window["end"] <= 3999
    assert (window["min"], window["max"]) == (0, 65535)

    # rewrite one plane, then one time point; lower levels follow
    plane = pixels(8, (Y, X))
    img[1, 0] = plane
    data[1, 0] = plane
    img.write((3,), pixels(9, (data.shape[1], Y, X)))
    data[3] = pixels(9, (data.shape[1], Y, X))
    validate_ome_zarr(root)
    check_image(root, data)
    if writer == "omestream":
        np.testing.assert_array_equal(levels(root)[1][1, 0], mean2(plane))

    # delete a middle channel
    labels = [c["label"] for c in ngff(root)["omero"]["channels"]]
    img.delete_channel(1)
    data = np.delete(data, 1, axis=1)
    validate_ome_zarr(root)
    check_image(root, data)
    assert [c["label"] for c in ngff(root)["omero"]["channels"]] == labels[:1] + labels[2:]

    # reading back through the API and dask agrees
    np.testing.assert_array_equal(img.read(), data)
    d = img.to_dask(0)
    assert d.chunks[0][0] in (1, data.shape[0]) or d.numblocks[0] >= 1
    np.testing.assert_array_equal(d.compute(), data)
    assert img.check() == []


def test_append_with_cast_and_wrong_dtype(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    data = write_image(root, "0.5", "omestream")
    img = open_store(root, mode="r+")
    before = snapshot(root)
    floats = np.full((1, C, Y, X), 70000.7)
    with pytest.raises(FrameDtypeError, match="cast=True"):
        img.append(floats)
    assert snapshot(root) == before
    img.append(floats, cast=True)  # clipped, not wrapped
    assert (levels(root)[0][-1] == 65535).all()
    img.append(np.ones((1, C, Y, X), dtype="uint8"))  # lossless: no cast needed
    check_image(root, np.concatenate([data, np.full((1, C, Y, X), 65535), np.ones((1, C, Y, X))]))


# -- plates -----------------------------------------------------------------------------------


@FIELDS_DIFFER
@NO_METHOD
def test_plate_add_rename_delete(tmp_path: Path, ngff_version: str, writer: str) -> None:
    root = tmp_path / "plate.ome.zarr"
    expected = write_plate(root, ngff_version, writer)
    validate_ome_zarr(root)
    plate = open_store(root, mode="r+")
    assert isinstance(plate, Plate)
    assert plate.wells == ["A/1", "B/2"]
    like = plate["A/1/0"]

    # new well in a new row and column, with data
    d = pixels(20)
    img = plate.add_position("C", "3", "0", like=like, data=d)
    expected["C/3/0"] = d
    validate_ome_zarr(root)
    doc = check_plate_doc(root)
    assert [r["name"] for r in doc["rows"]] == ["A", "B", "C"]
    assert plate.wells == ["A/1", "B/2", "C/3"]
    check_image(root / "C/3/0", d)

    # a second field in an existing well, then time points appended to it
    d2 = pixels(21)
    plate.add_position("A", "1", "1", like=like, data=d2)
    expected["A/1/1"] = d2
    assert plate.well("A", "1").fields == ["0", "1"]
    assert check_plate_doc(root)["field_count"] == 2
    validate_ome_zarr(root)
    for path in expected:  # every image grows the same way (readers tile fields)
        extra = pixels(22, (1, C, Y, X))
        plate[path].append(extra)
        expected[path] = np.concatenate([expected[path], extra])
    img.refresh()
    validate_ome_zarr(root)
    for path, data in expected.items():
        check_image(root / path, data)

    # an empty row/column can be added and removed; a used one cannot be removed
    plate.add_row("D")
    plate.add_column("10")
    assert plate.rows[-1] == "D" and plate.columns[-1] == "10"
    check_plate_doc(root)
    plate.delete_row("D")
    plate.delete_column("10")
    with pytest.raises(SettingsError, match="still holds wells"):
        plate.delete_row("A")

    # rename a well into an existing row: indices recomputed, order kept sorted
    plate.rename_well("C/3", "B/1")
    expected["B/1/0"] = expected.pop("C/3/0")
    assert plate.wells == ["A/1", "B/1", "B/2"]
    assert not (root / "C").exists()  # the emptied row group went with it
    validate_ome_zarr(root)
    check_plate_doc(root)

    # rename and delete a field, delete a well
    plate.rename_position("A", "1", "1", "2")
    assert plate.well("A", "1").fields == ["0", "2"]
    check_image(root / "A/1/2", expected.pop("A/1/1"))
    plate.delete_position("A", "1", "2")
    assert not (root / "A/1/2").exists()
    plate.delete_well("B", "2")
    expected.pop("B/2/0")
    assert plate.wells == ["A/1", "B/1"]
    validate_ome_zarr(root)
    doc = check_plate_doc(root)
    assert doc["field_count"] == 1
    for path, data in expected.items():
        check_image(root / path, data)
    assert plate.rebuild_metadata() == []  # nothing to repair


@FIELDS_DIFFER
@NO_METHOD
def test_iohub_style_plate(tmp_path: Path) -> None:
    root = tmp_path / "iohub.zarr"
    expected = write_iohub_plate(root)
    validate_ome_zarr(root)
    plate = open_store(root, mode="r+")
    assert plate.wells == ["A/1"] and plate.name == "iohub-plate"
    like = plate["A/1/0"]
    assert like.axes == ("T", "C", "Z", "Y", "X")
    d = pixels(30, like.shape)
    plate.add_position("A", "2", "0", like=like, data=d)
    expected["A/2/0"] = d
    plate.add_position("A", "2", "1", like=like, data=d + 1)
    expected["A/2/1"] = d + 1
    for path in expected:
        extra = pixels(31, (1, *like.shape[1:]))
        plate[path].append(extra, axis="T")
        expected[path] = np.concatenate([expected[path], extra])
    validate_ome_zarr(root)
    doc = check_plate_doc(root)
    assert doc["acquisitions"] == [{"id": 0}] and doc["name"] == "iohub-plate"
    assert ngff(root / "A/1")["well"]["images"][0]["acquisition"] == 0  # kept
    assert zarr.open_group(str(root / "A/1/0")).attrs["iohub"] == {"dataset": "test"}
    for path, data in expected.items():
        np.testing.assert_array_equal(levels(root / path)[0], data)


def test_bioformats2raw_collection(tmp_path: Path, ngff_version: str) -> None:
    from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream

    root = tmp_path / "multi.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=2, type="time"),
            PositionDimension(positions=["p0", "p1"]),
            Dimension(name="y", count=Y, type="space"),
            Dimension(name="x", count=X, type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": ngff_version},
    )
    data = pixels(40, (2, 2, Y, X))
    with create_stream(settings) as s:
        for t in range(2):
            for p in range(2):
                s.append(data[t, p])
    coll = open_store(root, mode="r+")
    # NGFF 0.5 series are named after their positions; 0.4 ones numbered
    first, second = ("p0", "p1") if ngff_version == "0.5" else ("0", "1")
    assert isinstance(coll, Collection) and coll.series == [first, second]
    extra = pixels(41, (Y, X))
    coll[second].append(extra, axis="t")
    new = coll.add_image(like=coll[first], data=data[:, 0])  # unnamed: the next integer
    assert coll.series == [first, second, "2"] and new.shape == (2, Y, X)
    validate_ome_zarr(root)
    want = np.concatenate([data[:, 1], extra[None]])
    np.testing.assert_array_equal(levels(root / second)[0], want)
    np.testing.assert_array_equal(levels(root / "2")[0], data[:, 0])
    # without like= or axes=, a new series is like the first one; named as asked
    newer = coll.add_image(name="p3", data=data[:, 1])
    assert coll.series == [first, second, "2", "p3"] and newer.axes == coll[first].axes
    assert zarr.open_array(f"{root}/p3/0").chunks == zarr.open_array(f"{root}/{first}/0").chunks
    validate_ome_zarr(root)
    np.testing.assert_array_equal(levels(root / "p3")[0], data[:, 1])
    # names that would clash or are not portable paths: refused, nothing written
    for bad in ("P3", "OME", "a b", "../x", "_x"):
        with pytest.raises(SettingsError, match="series"):
            coll.add_image(name=bad, data=data[:, 1])
    (root / "stray").mkdir()
    (root / "stray" / "notes.txt").write_text("not a series, but not ours to replace")
    with pytest.raises(StoreExistsError, match="already holds data"):
        coll.add_image(name="stray", data=data[:, 1])
    (root / "stray" / "notes.txt").unlink()
    (root / "stray").rmdir()
    assert coll.series == [first, second, "2", "p3"]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["zarr.json" if ngff_version == "0.5" else ".zattrs", "OME", first, second, "2", "p3"]
        + ([".zgroup"] if ngff_version == "0.4" else [])
    )


# -- faults: nothing changes ------------------------------------------------------------------


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.5", "omestream")
    plate = open_store(root, mode="r+")
    like = plate["A/1/0"]
    before = snapshot(root)
    bad: list[tuple[type[Exception], Any]] = [
        (FrameShapeError, lambda: like.append(np.zeros((1, C, Y + 1, X), "uint16"))),
        (FrameShapeError, lambda: like.append(np.zeros((C, X), "uint16"))),
        (FrameDtypeError, lambda: like.append(np.zeros((1, C, Y, X), "float32"))),
        (FrameShapeError, lambda: like.write((0, 0), np.zeros((Y, 3), "uint16"))),
        (SettingsError, lambda: like.write((9, 0), np.zeros((Y, X), "uint16"))),
        (SettingsError, lambda: like.append(np.zeros((1, C, Y, X), "uint16"), axis="q")),
        (SettingsError, lambda: like.append_channel("DAPI", np.zeros((2, Y, X), "uint16"))),
        (SettingsError, lambda: like.append_channel("", np.zeros((2, Y, X), "uint16"))),
        (SettingsError, lambda: like.append_channel("x/y", np.zeros((2, Y, X), "uint16"))),
        (SettingsError, lambda: like.delete_channel("nope")),
        (StoreExistsError, lambda: plate.add_position("A", "1", "0", like=like)),
        (StoreExistsError, lambda: plate.rename_well("A/1", "B/2")),
        (FrameShapeError, lambda: plate.add_position("B", "1", "f", like=like, data=np.zeros((2, 2)))),
        (FrameDtypeError, lambda: plate.add_position("B", "1", "f", like=like, data=np.full((2, C, Y, X), 0.5))),
        (SettingsError, lambda: plate.add_position("B", "1", "f", like=like, shape={"q": 3})),
        (SettingsError, lambda: plate.add_position("B", "1", "f", axes="tcyx")),  # no data
        (KeyError, lambda: plate.delete_well("H", "9")),
        # names that differ from existing ones only in case: one folder on some disks
        (SettingsError, lambda: plate.add_row("b")),
        (SettingsError, lambda: plate.add_well("a", "3")),
        (SettingsError, lambda: plate.add_position("b", "2", "f", like=like)),
        (SettingsError, lambda: plate.rename_well("A/1", "b/1")),
    ]  # fmt: skip
    for name in ("../x", "", "a b", ".hidden", "x/y", None):
        bad.append((SettingsError, lambda n=name: plate.add_position("B", "1", n, like=like)))
        bad.append((SettingsError, lambda n=name: plate.add_position(n, "1", "f", like=like)))
        bad.append((SettingsError, lambda n=name: plate.add_position("B", n, "f", like=like)))
    for exc, call in bad:
        with pytest.raises(exc):
            call()
        assert snapshot(root) == before, call
    validate_ome_zarr(root)
    # a field whose name differs from the well's other field only in case
    plate.add_position("A", "1", "fov", like=like)
    before = snapshot(root)
    for call in (
        lambda: plate.add_position("A", "1", "FOV", like=like),
        lambda: plate.well("A/1").add_position("Fov"),
    ):
        with pytest.raises(SettingsError, match="only in case"):
            call()
        assert snapshot(root) == before


@FIELDS_DIFFER
@NO_METHOD
def test_read_only_and_append_only_modes(tmp_path: Path) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.4", "ome-zarr-py")
    before = snapshot(root)
    plate = open_store(root)  # mode="r"
    img = plate["A/1/0"]
    frame = np.zeros((1, C, Y, X), "uint16")
    calls = [
        lambda: img.append(frame),
        lambda: img.append_channel("GFP", frame[0, 0][None].repeat(2, 0)),
        lambda: img.delete_channel(0),
        lambda: img.__setitem__((0, 0), frame[0, 0]),
        lambda: img.repair(),
        lambda: plate.add_position("A", "2", "0", like=img),
        lambda: plate.add_well("A", "2"),
        lambda: plate.rename_well("A/1", "A/2"),
        lambda: plate.delete_well("A", "1"),
        lambda: plate.rebuild_metadata(),
    ]
    for call in calls:
        with pytest.raises(ReadOnlyError):
            call()
    np.testing.assert_array_equal(img.read(), levels(root / "A/1/0")[0])
    assert snapshot(root) == before
    assert not os.path.exists(lock_dir(str(root)))  # not even a lock file

    appendable = open_store(root, mode="a")
    appendable["A/1/0"].append(frame)  # additions are allowed
    with pytest.raises(ReadOnlyError, match="mode='a'"):
        appendable.delete_well("B", "2")
    with pytest.raises(ReadOnlyError, match="mode='a'"):
        appendable["A/1/0"][0, 0] = frame[0, 0]


def test_not_ome_zarr(tmp_path: Path) -> None:
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").attrs["foo"] = 1
    arr = tmp_path / "arr.zarr"
    zarr.create_array(str(arr), shape=(4,), dtype="uint8")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    a_file = tmp_path / "file.zarr"
    a_file.write_text("x")
    cases = {
        plain: "without OME-Zarr",
        arr: "not a group",
        folder: "not a Zarr store",
        a_file: "is a file",
        tmp_path / "missing.zarr": "does not exist",
    }
    for path, msg in cases.items():
        before = snapshot(tmp_path)
        with pytest.raises(StoreFormatError, match=msg):
            open_store(path, mode="r+")
        assert snapshot(tmp_path) == before


def test_malformed_metadata_is_named(tmp_path: Path) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.4", "ome-zarr-py")
    g = zarr.open_group(str(root), mode="r+")
    plate = dict(g.attrs["plate"])
    plate["wells"] = [{"path": "A/1", "rowIndex": 1, "columnIndex": 0}]
    g.attrs["plate"] = plate
    with pytest.raises(StoreFormatError, match=r"plate\.wells\[0\]\.rowIndex"):
        open_store(root)
    img = tmp_path / "img.ome.zarr"
    write_image(img, "0.5", "ome-zarr-py")
    g = zarr.open_group(str(img), mode="r+")
    ome = dict(g.attrs["ome"])
    ome["multiscales"][0]["axes"][0]["type"] = "space"  # four space axes
    g.attrs["ome"] = ome
    with pytest.raises(StoreFormatError, match=r"ome\.multiscales\[0\]\.axes"):
        open_store(img)
    g2 = tmp_path / "v04-in-v3.zarr"
    zarr.open_group(str(g2), mode="w", zarr_format=3).attrs.update(
        {"multiscales": [{"version": "0.4", "axes": [], "datasets": []}]}
    )
    with pytest.raises(StoreFormatError, match="Zarr v2"):
        open_store(g2)


def test_exported() -> None:
    assert "open_store" in omestream.__all__ and omestream.open_store is open_store


def _plate_to_change(tmp_path: Path, version: str) -> tuple[Path, dict, Plate, Image]:
    """A plate written by a stream, opened for changes, and its first field."""
    root = tmp_path / "plate.ome.zarr"
    expected = write_plate(root, version, "omestream")
    plate = open_store(root, mode="r+")
    first = plate["A/1/0"]
    assert isinstance(plate, Plate) and isinstance(first, Image)
    return root, expected, plate, first


def test_rebuild_metadata_from_disk(tmp_path: Path, ngff_version: str) -> None:
    root, expected, plate, like = _plate_to_change(tmp_path, ngff_version)
    d = pixels(50)
    plate.add_position("C", "1", "0", like=like, data=d)
    plate.add_position("A", "1", "1", like=like, data=d + 1)
    # as left by writers killed before listing what they created: documents rolled back
    g = zarr.open_group(str(root), mode="r+")
    attrs = dict(g.attrs)
    doc = attrs.get("ome", attrs)["plate"]
    doc["wells"] = [w for w in doc["wells"] if w["path"] != "C/1"]
    doc["rows"] = [r for r in doc["rows"] if r["name"] != "C"]
    g.attrs.update(attrs)
    w = zarr.open_group(str(root / "A/1"), mode="r+")
    wattrs = dict(w.attrs)
    wattrs.get("ome", wattrs)["well"]["images"] = [{"path": "0"}]
    w.attrs.update(wattrs)
    import shutil

    shutil.rmtree(root / "B/2")  # a listed well that is gone
    assert plate.wells == ["A/1", "B/2"]

    changes = plate.rebuild_metadata()
    assert any("C/1" in c for c in changes) and any("B/2" in c for c in changes)
    assert plate.wells == ["A/1", "C/1"]
    assert plate.well("A", "1").fields == ["0", "1"]
    validate_ome_zarr(root)
    doc = check_plate_doc(root)
    assert doc["field_count"] == 2
    check_image(root / "A/1/0", expected["A/1/0"])
    check_image(root / "C/1/0", d)
    assert plate.rebuild_metadata() == []


def test_a_plate_with_a_listed_well_gone_opens_with_a_warning_and_is_mended(
    tmp_path: Path, ngff_version: str
) -> None:
    import shutil

    root = tmp_path / "plate.ome.zarr"
    expected = write_plate(root, ngff_version, "omestream")
    shutil.rmtree(root / "B/2")  # deleted by hand
    with pytest.warns(UserWarning, match=r"lists well\(s\) \['B/2'\] that are not on disk"):
        plate = open_store(root, mode="r+")
    assert isinstance(plate, Plate)
    with pytest.raises(StoreFormatError, match="B/2"):
        _ = plate["B/2"].fields
    assert any("B/2" in c for c in plate.rebuild_metadata())
    assert plate.wells == ["A/1"]
    validate_ome_zarr(root)
    check_image(root / "A/1/0", expected["A/1/0"])


def test_add_position_from_data_alone(tmp_path: Path, ngff_version: str) -> None:
    root = tmp_path / "plate.ome.zarr"
    write_plate(root, ngff_version, "ome-zarr-py")
    plate = open_store(root, mode="r+")
    d = pixels(60)
    img = plate.add_position("A", "2", "0", data=d, axes="tcyx", channel_names=["DAPI", "GFP"])
    assert img.axes == ("t", "c", "y", "x") and img.channel_names == ["DAPI", "GFP"]
    assert plate.wells == ["A/1", "A/2", "B/2"]
    validate_ome_zarr(root)
    check_image(root / "A/2/0", d)
    with pytest.raises(SettingsError, match="channel names"):
        plate.add_position("A", "2", "1", data=d, axes="tcyx", channel_names=["one"])
    assert not (root / "A/2/1").exists() and plate.well("A", "2").fields == ["0"]


def test_a_new_field_is_like_the_plates_fields(tmp_path: Path, ngff_version: str) -> None:
    root, expected, plate, first = _plate_to_change(tmp_path, ngff_version)
    d = pixels(61)
    # a well named as `wells` lists it, and no like= / axes=: the plate's first field
    img = plate.well("B/2").add_position("1", data=d)
    assert plate.well("B/2").fields == ["0", "1"]
    assert (img.axes, img.dtype, img.channel_names) == (
        first.axes,
        first.dtype,
        first.channel_names,
    )
    assert [lv.path.split("/")[-1] for lv in img.levels] == [
        lv.path.split("/")[-1] for lv in first.levels
    ]
    new, old = (zarr.open_array(f"{root}/{lv.path}") for lv in (img.levels[0], first.levels[0]))
    assert (new.chunks, new.shards, new.compressors) == (old.chunks, old.shards, old.compressors)
    validate_ome_zarr(root)
    check_image(root / "B/2/1", d)
    check_image(root / "A/1/0", expected["A/1/0"])
    with pytest.raises(FrameShapeError, match="axes"):  # other dimensions: say which
        plate.add_position("B", "2", "2", data=d[0])
    assert plate.well("B", "2").fields == ["0", "1"] and not (root / "B/2/2").exists()
    with pytest.raises(KeyError, match="well"):
        plate.well("B2")
    empty = plate.add_position("C", "5", "0")  # no data: the fill value until written
    assert empty.shape == first.shape and plate.wells[-1] == "C/5"
    assert not zarr.open_array(f"{root}/{empty.levels[0].path}")[:].any()
    validate_ome_zarr(root)


@NO_METHOD
def test_consolidated_metadata_is_dropped_before_changes(
    tmp_path: Path, ngff_version: str
) -> None:
    root = tmp_path / "img.ome.zarr"
    write_image(root, ngff_version, "ome-zarr-py")
    zarr.consolidate_metadata(str(root))
    stale_before = zarr.open_group(str(root), mode="r").metadata.consolidated_metadata
    assert stale_before is not None
    open_store(root, mode="r")  # reading keeps it
    assert zarr.open_group(str(root), mode="r").metadata.consolidated_metadata is not None
    img = open_store(root, mode="r+")

    def consolidated() -> bool:
        return zarr.open_group(str(root), mode="r").metadata.consolidated_metadata is not None

    assert consolidated()  # opening for writing keeps it ...
    with pytest.raises(FrameShapeError):
        img.append(np.zeros((1, 2, 3), img.dtype))
    assert consolidated()  # ... so does a refused change ...
    img[0, 0, :2, :2] = np.ones((2, 2), img.dtype)
    assert consolidated()  # ... and a pixel rewrite, which changes no document
    img.append(pixels(70, (C, Y, X)))
    assert not consolidated()
    assert zarr.open_array(f"{root}/s0", mode="r").shape[0] == 3
    validate_ome_zarr(root)


def test_a_plate_field_that_grows_alone_is_told(tmp_path: Path) -> None:
    """Fields of different shapes are valid NGFF, yet the ome-zarr reader refuses the
    plate: the append that makes them differ warns; the one that evens them out not."""
    import warnings

    from tests.checks import read_with_ome_zarr

    root = tmp_path / "plate.ome.zarr"
    write_plate(root, "0.5", "omestream")  # wells A/1 and B/2, one field each
    plate = open_store(root, mode="r+")
    first, second = plate["A/1/0"], plate["B/2/0"]
    tp = pixels(7, (C, Y, X))
    with pytest.warns(UserWarning, match=r"field 'B/2/0'.*make the same change") as told:
        first.append(tp, axis="t")
    assert told[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.append(tp, axis="t")
    assert first.shape == second.shape
    read_with_ome_zarr(str(root))
