"""Settings rules, without touching disk."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omestream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    SettingsError,
    StandardAxis,
    dims_from_standard_axes,
)

YX = [Dimension(name="y", count=64), Dimension(name="x", count=64)]


def make(**kw: object) -> AcquisitionSettings:
    base: dict[str, object] = {"root_path": "out.ome.zarr", "dimensions": YX, "dtype": "uint16"}
    base.update(kw)
    return AcquisitionSettings(**base)  # type: ignore[arg-type]


# -- dimensions -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [("t", "time"), ("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space"), ("q", None)],
)
def test_type_inferred_from_standard_names(name: str, expected: str | None) -> None:
    assert Dimension(name=name, count=2).type == expected


def test_type_inferred_from_unit_and_coords() -> None:
    assert Dimension(name="w", count=2, unit="ms").type == "time"
    assert Dimension(name="w", count=2, unit="nm").type == "space"
    assert Dimension(name="w", coords=[Channel(name="GFP")]).type == "channel"


@pytest.mark.parametrize(
    ("given_unit", "ngff"),
    [
        ("um", "micrometer"),
        ("µm", "micrometer"),
        ("nm", "nanometer"),
        ("s", "second"),
        ("ms", "millisecond"),
        ("micrometer", "micrometer"),
    ],
)
def test_units_normalised_to_ngff(given_unit: str, ngff: str) -> None:
    assert Dimension(name="w", count=2, unit=given_unit).unit == ngff


def test_unknown_unit_is_refused_with_the_accepted_ones() -> None:
    with pytest.raises(SettingsError, match=r"unknown unit 'furlong'.*micrometer"):
        Dimension(name="x", count=2, unit="furlong")


def test_unit_must_match_type() -> None:
    with pytest.raises(SettingsError, match="time unit"):
        Dimension(name="z", count=2, type="space", unit="ms")


def test_channel_coords_from_strings_set_count_and_type() -> None:
    d = Dimension(name="c", coords=["DAPI", "GFP"])
    assert d.count == 2
    assert d.channels == (Channel(name="DAPI"), Channel(name="GFP"))


@pytest.mark.parametrize(
    ("color", "hex_"),
    [("#00ff00", "00FF00"), ("red", "FF0000"), (0x0000FF, "0000FF"), ("FF00FF80", "FF00FF")],
)
def test_channel_colors(color: object, hex_: str) -> None:
    assert Channel(name="a", color=color).color == hex_


def test_bad_channel_color() -> None:
    with pytest.raises(SettingsError, match="color"):
        Channel(name="a", color="not-a-colour")


def test_chunk_larger_than_count_is_refused() -> None:
    with pytest.raises(SettingsError, match="chunk_size=8 is larger than count=4"):
        Dimension(name="z", count=4, chunk_size=8)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "tab\there", "\x00"])
def test_bad_dimension_names(bad: str) -> None:
    with pytest.raises(SettingsError):
        Dimension(name=bad, count=2)


def test_frozen_and_replace_validates() -> None:
    d = Dimension(name="z", count=4)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        d.count = 5  # type: ignore[misc]
    assert d.replace(count=5).count == 5
    with pytest.raises(SettingsError):
        d.replace(unit="parsecs")


# -- positions and plates ---------------------------------------------------------------
def test_positions_accept_strings() -> None:
    pd = PositionDimension(positions=["a", "b"])
    assert pd.names == ["a", "b"]
    assert pd.count == 2


def test_duplicate_positions_refused() -> None:
    with pytest.raises(SettingsError, match="duplicate position name 'a'"):
        PositionDimension(positions=["a", "a"])


def test_same_field_name_in_different_wells_is_fine() -> None:
    PositionDimension(
        positions=[
            Position(name="fov0", plate_row="A", plate_column="1"),
            Position(name="fov0", plate_row="A", plate_column="2"),
        ]
    )


def test_plate_position_must_be_on_the_plate() -> None:
    plate = Plate(row_names=["A"], column_names=["1"])
    dims = [
        PositionDimension(positions=[Position(name="f", plate_row="B", plate_column="1")]),
        *YX,
    ]
    with pytest.raises(SettingsError, match="row 'B' is not in"):
        make(dimensions=dims, plate=plate)


def test_well_without_plate_is_refused() -> None:
    dims = [
        PositionDimension(positions=[Position(name="f", plate_row="A", plate_column="1")]),
        *YX,
    ]
    with pytest.raises(SettingsError, match="no plate= was given"):
        make(dimensions=dims)


def test_plate_names_must_be_alphanumeric() -> None:
    with pytest.raises(SettingsError, match="letters and digits"):
        Plate(row_names=["A-1"], column_names=["1"])
    with pytest.raises(SettingsError, match="only in case"):  # one folder on some disks
        Plate(row_names=["A", "a"], column_names=["1"])


# -- acquisition settings -------------------------------------------------------------------
def test_only_first_dimension_may_be_unbounded() -> None:
    with pytest.raises(SettingsError, match="only the first may be unbounded"):
        make(dimensions=[Dimension(name="t", count=2), Dimension(name="z", count=None), *YX])


def test_duplicate_dimension_names() -> None:
    with pytest.raises(SettingsError, match="unique"):
        make(dimensions=[Dimension(name="z", count=2), Dimension(name="Z", count=2), *YX])


def test_frame_axes_must_be_spatial() -> None:
    with pytest.raises(SettingsError, match="must be spatial"):
        make(dimensions=[Dimension(name="y", count=3), Dimension(name="t", count=3)])


def test_too_many_dimensions() -> None:
    dims = [Dimension(name=n, count=2) for n in "abcd"] + YX
    with pytest.raises(SettingsError, match="need 2 to 5"):
        make(dimensions=dims)


def test_absurd_count_refused() -> None:
    with pytest.raises(SettingsError, match="larger than"):
        make(dimensions=[Dimension(name="t", count=10**12), *YX])


@pytest.mark.parametrize("dtype", ["complex64", "bool", "not-a-dtype"])
def test_unsupported_dtype(dtype: str) -> None:
    with pytest.raises(SettingsError, match="dtype"):
        make(dtype=dtype)


@pytest.mark.parametrize(
    ("compression", "fmt", "ok"),
    [
        ("blosc-zstd", "ome-zarr", True),
        ("blosc-lz4", "ome-zarr", True),
        ("zstd", "ome-zarr", True),
        ("gzip", "ome-zarr", True),
        (None, "ome-zarr", True),
        ("lzw", "ome-zarr", False),
        ("zstd", "ome-tiff", True),
        ("lzw", "ome-tiff", True),
        ("blosc-zstd", "ome-tiff", False),
    ],
)
def test_compression_checked_against_format(compression: str | None, fmt: str, ok: bool) -> None:
    if ok:
        assert (
            make(root_path="out", format=fmt, compression=compression).compression == compression
        )
    else:
        with pytest.raises(SettingsError, match=f"compression '{compression}' cannot be written"):
            make(root_path="out", format=fmt, compression=compression)


def test_unknown_compression() -> None:
    with pytest.raises(SettingsError, match="unknown compression"):
        make(compression="snappy")


# -- format resolution and output paths -----------------------------------------------------
@pytest.mark.parametrize(
    ("root", "fmt", "name", "out"),
    [
        ("a.ome.zarr", None, "ome-zarr", "a.ome.zarr"),
        ("a.zarr", None, "ome-zarr", "a.zarr"),
        ("a.ome.tiff", None, "ome-tiff", "a.ome.tiff"),
        ("a.tif", None, "ome-tiff", "a.tif"),
        ("a", "ome-zarr", "ome-zarr", "a.ome.zarr"),
        ("a", "ome-tiff", "ome-tiff", "a.ome.tiff"),
        ("a", {"name": "ome-zarr", "version": "0.4"}, "ome-zarr", "a.ome.zarr"),
        ("a", "tifffile", "ome-tiff", "a.ome.tiff"),
        ("a", "zarr-python", "ome-zarr", "a.ome.zarr"),
    ],
)
def test_format_resolution(root: str, fmt: object, name: str, out: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = make(root_path=root, format=fmt)
    assert s.format is not None and s.format.name == name
    assert s.output_path == out


def test_warning_when_neither_suffix_nor_format() -> None:
    expected = (  # the words ome-writers users filter warnings on
        "Output format could not be inferred from root_path 'root'. Picking the first "
        "available format/backend: 'ome-zarr'/'omestream'"
    )
    for fmt in (None, "auto", {"name": "auto"}, {"backend": "auto"}):  # none asked for
        with pytest.warns(UserWarning, match=re.escape(expected)):
            s = make(root_path="root", **({} if fmt is None else {"format": fmt}))
        assert s.format is not None and s.format.name == "ome-zarr"
        assert s.output_path == "root.ome.zarr"


def test_format_and_suffix_must_agree() -> None:
    with pytest.raises(SettingsError, match="suffix"):
        make(root_path="a.ome.tiff", format="ome-zarr")


def test_default_version_and_zarr_format() -> None:
    s = make()
    assert s.format is not None
    assert (s.format.version, s.format.zarr_format) == ("0.5", 3)
    s4 = make(format={"name": "ome-zarr", "version": "0.4"})
    assert s4.format is not None and s4.format.zarr_format == 2


def test_unknown_backend_and_version() -> None:
    with pytest.raises(SettingsError, match="unknown backend"):
        make(format={"name": "ome-zarr", "backend": "nope"})
    with pytest.raises(SettingsError, match=r"0\.3"):
        make(format={"name": "ome-zarr", "version": "0.3"})


def test_sharding_needs_zarr_v3() -> None:
    dims = [Dimension(name="y", count=64, chunk_size=32, shard_size_chunks=2), YX[1]]
    with pytest.raises(SettingsError, match="sharding needs Zarr v3"):
        make(dimensions=dims, format={"name": "ome-zarr", "version": "0.4"})


def test_multi_position_tiff_output_is_a_folder() -> None:
    dims = [PositionDimension(positions=["a", "b"]), *YX]
    assert make(root_path="run.ome.tiff", dimensions=dims).output_path == "run"
    single = make(root_path="run.ome.tiff", dimensions=dims, writer={"tiff_single_file": True})
    assert single.output_path == "run.ome.tiff"


# -- storage order ----------------------------------------------------------------------------
def _tzc() -> list[Dimension]:
    return [
        Dimension(name="t", count=2),
        Dimension(name="z", count=3),
        Dimension(name="c", count=2),
        *YX,
    ]


def test_ome_order_for_zarr_is_tczyx() -> None:
    assert make(dimensions=_tzc()).storage_dimension_names == ("t", "c", "z", "y", "x")


def test_ome_order_for_tiff_keeps_acquisition_order() -> None:
    s = make(root_path="a.ome.tiff", dimensions=_tzc())
    assert s.storage_dimension_names == ("t", "z", "c", "y", "x")


def test_acquisition_and_explicit_orders_warn_for_zarr() -> None:
    with pytest.warns(UserWarning, match="not the order OME-Zarr requires"):
        s = make(dimensions=_tzc(), storage_order="acquisition")
    assert s.storage_dimension_names == ("t", "z", "c", "y", "x")
    with pytest.warns(UserWarning):
        s = make(dimensions=_tzc(), storage_order=["c", "t", "z"])
    assert s.storage_dimension_names == ("c", "t", "z", "y", "x")


@pytest.mark.parametrize(
    ("order", "problem"),
    [
        (["t", "c"], "missing ['z']"),  # z frames would land on top of each other
        (["t", "c", "c", "z"], "named twice ['c']"),
        (["t", "c", "q"], "unknown ['q']"),
        (["t", "c", "z", "x", "y"], "the frame axes must come last"),
        (["y", "x", "t", "c", "z"], "the frame axes must come last"),
    ],
)
def test_a_storage_order_list_must_name_every_axis_once(order: list[str], problem: str) -> None:
    with pytest.raises(SettingsError, match="storage_order must name each of") as err:
        make(dimensions=_tzc(), storage_order=order)
    assert problem in str(err.value)


def test_a_storage_order_list_may_name_the_frame_axes_and_positions() -> None:
    with pytest.warns(UserWarning):
        s = make(dimensions=_tzc(), storage_order=["c", "t", "z", "y", "x"])
    assert s.storage_dimension_names == ("c", "t", "z", "y", "x")
    dims = [Dimension(name="t", count=2), PositionDimension(positions=["a", "b"])]
    dims += [Dimension(name="c", count=2), *YX]
    s = make(dimensions=dims, storage_order=["p", "t", "c"])
    assert s.storage_dimension_names == ("t", "c", "y", "x")


def test_ngff_axis_limits() -> None:
    dims = [Dimension(name="c", count=2), Dimension(name="q", count=2, type="other"), *YX]
    with pytest.raises(SettingsError, match="at most one channel"):
        make(dimensions=dims)


# -- standard axes --------------------------------------------------------------------------
def test_dims_from_standard_axes() -> None:
    dims = dims_from_standard_axes(
        {"t": 2, "c": 3, "z": 32, "y": 1024, "x": 1024},
        chunk_shapes={"z": 16, "y": 512, "x": 512},
        shard_shapes={"y": 2, "x": 2},
    )
    assert [d.name for d in dims] == ["t", "c", "z", "y", "x"]
    z, y = dims[2], dims[3]
    assert isinstance(z, Dimension) and isinstance(y, Dimension)
    assert (z.count, z.chunk_size, z.unit) == (32, 16, "micrometer")
    assert (y.chunk_size, y.shard_size_chunks) == (512, 2)
    assert dims[0].unit == "second" and dims[1].type == "channel"


def test_dims_from_standard_axes_positions_and_channels() -> None:
    dims = dims_from_standard_axes({"p": ["A1", "B2"], "c": ["DAPI"], "y": 8, "x": 8})
    assert isinstance(dims[0], PositionDimension) and dims[0].names == ["A1", "B2"]
    assert isinstance(dims[1], Dimension) and dims[1].count == 1


def test_dims_from_standard_axes_unknown_axis() -> None:
    with pytest.raises(ValueError, match="unknown axis names"):
        dims_from_standard_axes({"w": 3, "y": 8, "x": 8})


def test_standard_axis_enum() -> None:
    assert StandardAxis("t").dimension_type() == "time"
    assert StandardAxis.Z.default_unit() == "micrometer"


# -- property-based ----------------------------------------------------------------------------
counts = st.integers(min_value=1, max_value=50)


@given(counts, counts, st.integers(min_value=1, max_value=50))
def test_total_frames(t: int, c: int, z: int) -> None:
    s = make(
        dimensions=[
            Dimension(name="t", count=t),
            Dimension(name="c", count=c),
            Dimension(name="z", count=z),
            *YX,
        ]
    )
    assert s.total_frames == t * c * z
    assert s.frames_per_outer_step == c * z


@given(st.dictionaries(st.sampled_from(["t", "c", "z"]), counts, min_size=0, max_size=3))
def test_settings_json_round_trip(sizes: dict[str, int]) -> None:
    s = make(dimensions=dims_from_standard_axes({**sizes, "y": 16, "x": 16}))
    again = AcquisitionSettings.model_validate_json(s.model_dump_json())
    assert again == s


@pytest.mark.parametrize(
    "coords",
    [["DAPI", "GFP"], ("DAPI", "GFP"), (c for c in ["DAPI", "GFP"]), np.array(["DAPI", "GFP"])],
    ids=["list", "tuple", "generator", "ndarray"],
)
def test_channel_coords_from_any_iterable(coords: object) -> None:
    d = Dimension(name="c", coords=coords)  # type: ignore[arg-type]
    assert d.count == 2
    assert [ch.name for ch in d.coords] == ["DAPI", "GFP"]  # type: ignore[union-attr]


@pytest.mark.parametrize("coords", [False, 3, "DAPI"])
def test_channel_coords_that_are_not_a_sequence(coords: object) -> None:
    with pytest.raises(SettingsError, match="coords"):
        Dimension(name="c", coords=coords)  # type: ignore[arg-type]
