"""Changing images other tools wrote in ways omestream itself never writes: pyramids
scaled by fractions, label images, levels sized by rounding down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.writer import write_image, write_labels

from omestream import SettingsError, StoreFormatError, open_store
from omestream.store import Image
from tests.checks import validate_ome_zarr
from tests.store_fixtures import snapshot


def _fractional(root: Path) -> None:
    """A valid NGFF 0.4 image whose level 1 is level 0 scaled by 1.5 (30x45 -> 20x30)."""
    g = zarr.open_group(str(root), mode="w", zarr_format=2)
    g.create_array("0", shape=(1, 30, 45), chunks=(1, 16, 16), dtype="u2")[...] = 1
    g.create_array("1", shape=(1, 20, 30), chunks=(1, 16, 16), dtype="u2")[...] = 1
    axes = [{"name": "t", "type": "time"}, {"name": "y", "type": "space"}]
    axes.append({"name": "x", "type": "space"})
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {"path": p, "coordinateTransformations": [{"type": "scale", "scale": s}]}
                for p, s in (("0", [1, 1, 1]), ("1", [1, 1.5, 1.5]))
            ],
        }
    ]


def test_a_pyramid_scaled_by_a_fraction_is_valid_and_never_cut(tmp_path: Path) -> None:
    root = tmp_path / "frac.zarr"
    _fractional(root)
    img = open_store(root, mode="r+")
    assert isinstance(img, Image)
    assert img.check() == [] and img.repair() == []  # valid as it is: nothing to mend
    before = snapshot(root)
    for change in (
        lambda: img.append(np.ones((30, 45), "u2"), axis="t"),
        lambda: img.write((0, slice(0, 2), slice(0, 2)), np.zeros((2, 2), "u2")),
    ):
        with pytest.raises(SettingsError, match=r"whole-number downsampling.*build_pyramid"):
            change()
    assert snapshot(root) == before  # level 1 keeps its 20x30, level 0 its pixels
    assert zarr.open_array(str(root / "1"), mode="r").shape == (1, 20, 30)
    validate_ome_zarr(root)


def _labelled(root: Path) -> None:
    grp = zarr.open_group(str(root), mode="w", zarr_format=2)
    write_image(np.zeros((16, 16), "u2"), grp, axes="yx")
    write_labels(np.zeros((16, 16), "u1"), grp, name="cells", axes="yx")


def test_label_images_keep_labels_in_their_lower_levels(tmp_path: Path) -> None:
    root = tmp_path / "labels.zarr"
    _labelled(root)
    lab = open_store(root / "labels" / "cells", mode="r+")
    assert isinstance(lab, Image)
    lab[0:2, 0:2] = np.array([[1, 3], [3, 3]], "u1")
    lab[4:6, 4:6] = np.array([[7, 9], [9, 7]], "u1")  # a tie: one of the two, never 8
    level1 = zarr.open_group(str(root / "labels" / "cells"), mode="r")["s1"][:]
    assert level1[0, 0] == 3  # the most common label, not the mean 2.5
    assert level1[2, 2] in (7, 9)
    assert set(np.unique(level1)) <= {0, 1, 3, 7, 9}
    with pytest.raises(StoreFormatError, match=r"labels group.*labels/cells"):
        open_store(root / "labels")  # it lists label images: say which to open


def test_rewriting_edge_rows_a_rounded_down_level_leaves_out(tmp_path: Path) -> None:
    root = tmp_path / "edge.zarr"
    grp = zarr.open_group(str(root), mode="w", zarr_format=2)
    write_image(np.zeros((5, 8), "u2"), grp, axes="yx", scale_factors=(2,))  # level 1: 2x4
    img = open_store(root, mode="r+")
    assert isinstance(img, Image)
    # ome-zarr-py names no method: told once per image, where the change is asked for
    with pytest.warns(UserWarning, match="do not name a downsampling method") as told:
        img[4, :] = np.full(8, 9, "u2")  # row 4 has no pixel in level 1
        img[2:4, :] = np.full((2, 8), 4, "u2")
    assert len(told) == 1 and told[0].filename == __file__
    got = zarr.open_group(str(root), mode="r")
    assert (got["s0"][4] == 9).all() and (got["s0"][2:4] == 4).all()
    np.testing.assert_array_equal(got["s1"][:], [[0] * 4, [4] * 4])
    validate_ome_zarr(root)


def test_integers_that_fit_are_written_without_cast(tmp_path: Path) -> None:
    root = tmp_path / "ints.zarr"
    grp = zarr.open_group(str(root), mode="w", zarr_format=2)
    write_image(np.zeros((8, 8), "u2"), grp, axes="yx", scale_factors=())
    img = open_store(root, mode="r+")
    assert isinstance(img, Image)
    img[0, 0] = 5  # a Python int
    img[1] = np.arange(8)  # int64 values that fit uint16
    with pytest.raises(Exception, match="cast=True"):
        img[2] = np.arange(8) - 1  # -1 does not fit: refused, nothing written
    data = zarr.open_array(str(root / "s0"), mode="r")[:]
    assert data[0, 0] == 5 and list(data[1]) == list(range(8)) and not data[2].any()


def test_a_pyramid_that_names_its_method_changes_without_warning(tmp_path: Path) -> None:
    """Pyramids written by omestream say how their levels were made: changing them warns
    about nothing."""
    import warnings

    from omestream import AcquisitionSettings, Dimension, Pyramid, create_stream

    settings = AcquisitionSettings(
        root_path=str(tmp_path / "ours.ome.zarr"),
        dimensions=[Dimension(name="t", count=1), Dimension(name="y", count=8),
                    Dimension(name="x", count=8)],
        dtype="uint16", pyramid=Pyramid(levels=2, method="nearest"),
    )  # fmt: skip
    with create_stream(settings) as stream:
        stream.append(np.zeros((8, 8), "u2"))
    img = open_store(settings.output_path, mode="r+")
    assert isinstance(img, Image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img[0, 1, :] = np.full(8, 5, "u2")
    level1 = zarr.open_array(f"{settings.output_path}/1", mode="r")[0]
    np.testing.assert_array_equal(level1[0], 0)  # nearest: row 0 of each pair, not a mean
