"""Code written for ome-writers runs here: its newer spellings (a position axis as
``Dimension(type="position")``, wavelengths in ``*_nm``, grid cells on positions) are
accepted, and where ome-writers is installed its models' fields are all ours too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from omestream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    SettingsError,
    create_stream,
)
from tests.checks import validate_ome_zarr

YX = [Dimension(name="y", count=16), Dimension(name="x", count=12)]


@pytest.mark.parametrize(
    "axis",
    [
        Dimension(name="p", type="position", coords=["left", {"name": "right", "x_coord": 5.0}]),
        {"name": "p", "type": "position", "coords": ["left", {"name": "right", "x_coord": 5.0}]},
        PositionDimension(positions=["left", {"name": "right", "x_coord": 5.0}]),
    ],
    ids=["Dimension", "dict", "PositionDimension"],
)
def test_a_position_axis_in_any_spelling_streams_one_image_per_position(
    tmp_path: Path, axis: Any
) -> None:
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "p.ome.zarr"),
        dimensions=[Dimension(name="t", count=2, type="time"), axis, *YX],
        dtype="uint16",
    )
    pdim = settings.position_dimension
    assert pdim is not None and pdim.names == ["left", "right"]
    assert pdim.positions[1].x_coord == 5.0
    frames = np.arange(4 * 16 * 12, dtype=np.uint16).reshape(4, 16, 12)
    with create_stream(settings) as stream:
        for f in frames:
            stream.append(f)
    for p, name in enumerate(pdim.names):  # t-major: position p gets frames p and p + 2
        stored = zarr.open_array(str(tmp_path / "p.ome.zarr" / name / "0"), mode="r")[...]
        np.testing.assert_array_equal(stored, frames[p::2])
    validate_ome_zarr(tmp_path / "p.ome.zarr")


def test_a_position_axis_by_count() -> None:
    s = AcquisitionSettings(
        root_path="p.ome.zarr",
        dimensions=[Dimension(name="p", type="position", count=3, chunk_size=1), *YX],
        dtype="uint16",
    )
    assert s.position_dimension is not None and s.position_dimension.names == ["0", "1", "2"]


def test_position_axis_mistakes_are_clear() -> None:
    with pytest.raises(SettingsError, match="not both"):
        PositionDimension(type="position", positions=["a"], coords=["b"])
    assert PositionDimension(type="position", coords=["a", "b"]).names == ["a", "b"]
    # a channel axis with a wrong count is an error, not a position axis
    with pytest.raises(SettingsError, match="2 coords given for count=3"):
        AcquisitionSettings(
            root_path="p.ome.zarr",
            dimensions=[{"name": "c", "count": 3, "coords": ["DAPI", "GFP"]}, *YX],
            dtype="uint16",
        )
    with pytest.raises(SettingsError, match="more than 1000000"):
        PositionDimension(positions=2**40)
    # an axis that is not a valid Dimension is not taken for a count of positions
    with pytest.raises(SettingsError, match="chunk_size"):
        AcquisitionSettings(
            root_path="p.ome.zarr",
            dimensions=[{"name": "t", "count": 2**40, "chunk_size": 2**41}, *YX],
            dtype="uint16",
        )
    with pytest.raises(SettingsError, match="duplicate position name 'a'"):
        AcquisitionSettings(
            root_path="p.ome.zarr",
            dimensions=[Dimension(name="p", type="position", coords=["a", "a"]), *YX],
            dtype="uint16",
        )


def test_wavelengths_in_nm() -> None:
    ch = Channel(name="GFP", excitation_wavelength_nm=488, emission_wavelength_nm=510)
    assert (ch.excitation_wavelength, ch.emission_wavelength) == (488, 510)
    d = Dimension(name="c", coords=[{"name": "Cy5", "emission_wavelength_nm": 670}])
    assert d.channels is not None and d.channels[0].emission_wavelength == 670


def test_grid_cells() -> None:
    with pytest.raises(SettingsError, match="both grid_row and grid_column"):
        Position(name="a", grid_row=1)
    # off a plate a name may repeat in other grid cells (images are numbered) ...
    tiles = [Position(name="tile", grid_row=0, grid_column=c) for c in range(2)]
    assert PositionDimension(positions=tiles).names == ["tile", "tile"]
    with pytest.raises(SettingsError, match=r"'tile' at grid \(0, 0\)"):
        PositionDimension(positions=[tiles[0], tiles[0]])
    # ... but in a well the name is the field's group path
    in_well = [
        Position(name="f", plate_row="A", plate_column="1", grid_row=0, grid_column=c)
        for c in range(2)
    ]
    with pytest.raises(SettingsError, match="duplicate position name 'f' in well A1"):
        PositionDimension(positions=in_well)


@pytest.mark.parametrize(
    "name", ["AcquisitionSettings", "Dimension", "Plate", "Position", "Channel"]
)
def test_every_ome_writers_field_is_accepted(name: str) -> None:
    """Each field of ome-writers' model is a field of ours (or one of its spellings)."""
    ow = pytest.importorskip("ome_writers")
    theirs = set(getattr(ow, name).model_fields)
    ours = set({"AcquisitionSettings": AcquisitionSettings, "Dimension": Dimension,
                "Plate": Plate, "Position": Position, "Channel": Channel}[name].model_fields)  # fmt: skip
    spelled = {"excitation_wavelength_nm", "emission_wavelength_nm"}
    assert theirs - ours - spelled == set()


@pytest.mark.parametrize("name", ["Dimension", "Plate", "Position", "Channel"])
def test_shared_fields_have_ome_writers_defaults(name: str) -> None:
    ow = pytest.importorskip("ome_writers")
    theirs = getattr(ow, name).model_fields
    ours = {"Dimension": Dimension, "Plate": Plate, "Position": Position,
            "Channel": Channel}[name].model_fields  # fmt: skip
    for field in set(theirs) & set(ours):
        assert theirs[field].is_required() == ours[field].is_required(), field
        if not theirs[field].is_required():
            assert theirs[field].default == ours[field].default, field


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_untyped_frame_axes_are_stored_as_space_with_a_warning(
    tmp_path: Path, version: str
) -> None:
    # Frame axes named other than y/x and without a length unit have no type to infer;
    # stored as "other" no reader would accept the image.
    path = tmp_path / "rc.ome.zarr"
    with pytest.warns(UserWarning, match=r"frame axes \['row', 'col'\] have no type"):
        settings = AcquisitionSettings(
            root_path=str(path),
            dimensions=[
                Dimension(name="t", count=2),
                Dimension(name="row", count=8),
                {"name": "col", "count": 6},
            ],
            dtype="uint8",
            format={"name": "ome-zarr", "version": version},
        )
    assert [d.type for d in settings.dimensions] == ["time", "space", "space"]
    frames = np.arange(2 * 8 * 6, dtype=np.uint8).reshape(2, 8, 6)
    with create_stream(settings) as stream:
        for f in frames:
            stream.append(f)
    validate_ome_zarr(path)
    image = zarr.open_group(path, mode="r")
    ome = image.attrs.get("ome", image.attrs)
    axes = ome["multiscales"][0]["axes"]
    assert [(a["name"], a["type"]) for a in axes] == [
        ("t", "time"), ("row", "space"), ("col", "space"),
    ]  # fmt: skip
    np.testing.assert_array_equal(image["0"][:], frames)


def test_standard_plates() -> None:
    p96 = Plate.from_standard_wells(96)
    assert p96.row_names == tuple("ABCDEFGH") and p96.column_names[-1] == "12"
    p1536 = Plate.from_standard_wells(1536, name="screen")
    # past Z the rows are labelled as 1536-well plates print them
    assert p1536.row_names[24:] == ("Y", "Z", "AA", "AB", "AC", "AD", "AE", "AF")
    assert len(p1536.column_names) == 48 and p1536.name == "screen"
    assert Plate.from_standard_wells((2, 3)).column_names == ("1", "2", "3")
    with pytest.raises(ValueError, match="not a standard well count"):
        Plate.from_standard_wells(100)
    with pytest.raises(ValueError, match=r"\(rows, columns\)"):
        Plate.from_standard_wells((0, 3))
    ow = pytest.importorskip("ome_writers")
    for wells in (6, 12, 24, 48, 96, 384):  # the same plates where both label alike
        theirs = ow.Plate.from_standard_wells(wells)
        ours = Plate.from_standard_wells(wells)
        assert (ours.row_names, ours.column_names) == (
            tuple(theirs.row_names), tuple(theirs.column_names),
        )  # fmt: skip


@pytest.mark.parametrize("first", [3, None])
def test_shape_and_num_frames_as_ome_writers_gives_them(first: int | None) -> None:
    dims = [
        Dimension(name="t", count=first, type="time"),
        PositionDimension(positions=["a", "b"]),
        Dimension(name="c", count=2, type="channel"),
        *YX,
    ]
    ours = AcquisitionSettings(root_path="s.ome.zarr", dimensions=dims, dtype="uint16")
    assert ours.shape == (first, 2, 2, 16, 12)
    assert ours.num_frames == (None if first is None else first * 4)
    ow = pytest.importorskip("ome_writers")
    theirs = ow.AcquisitionSettings(
        root_path="s.ome.zarr",
        dimensions=[
            ow.Dimension(name="t", count=first, type="time"),
            ow.Dimension(name="p", type="position", coords=["a", "b"]),
            ow.Dimension(name="c", count=2, type="channel"),
            ow.Dimension(name="y", count=16, type="space"),
            ow.Dimension(name="x", count=12, type="space"),
        ],
        dtype="uint16",
    )
    assert (ours.shape, ours.num_frames) == (theirs.shape, theirs.num_frames)


def _stream(root: Path, fmt: Any, positions: list[str] | None) -> AcquisitionSettings:
    dims: list[Any] = [Dimension(name="t", count=2)]
    if positions:
        dims.append(PositionDimension(positions=positions))
    settings = AcquisitionSettings(
        root_path=str(root), dimensions=[*dims, *YX], dtype="uint16", format=fmt
    )
    with create_stream(settings) as stream:
        for i in range(settings.total_frames or 0):
            stream.append(np.full((16, 12), i, np.uint16))
    return settings


def test_format_layout_keys_of_ome_writers(tmp_path: Path) -> None:
    import ome_types
    import tifffile

    # one position in a folder of its own
    never = _stream(tmp_path / "a", {"name": "ome-tiff", "prefer_single_file": "never"}, None)
    assert never.output_path == str(tmp_path / "a")
    [only] = Path(never.output_path).iterdir()
    assert only.name == "a.ome.tiff"
    with tifffile.TiffFile(only) as tif:
        ome_types.from_xml(tif.ome_metadata, validate=True)
        assert np.array_equal(tif.asarray()[:, 0, 0], [0, 1])
    # several positions in one file; True is ome-writers' spelling of "always"
    one = _stream(
        tmp_path / "b.ome.tiff", {"name": "ome-tiff", "prefer_single_file": True}, ["p", "q"]
    )
    with tifffile.TiffFile(one.output_path) as tif:
        assert [s.shape for s in tif.series] == [(2, 16, 12), (2, 16, 12)]
        assert np.array_equal(tif.series[1].asarray()[:, 0, 0], [1, 3])
    # a suffix for the files of a folder, and for an OME-Zarr group
    tif_suffix = _stream(tmp_path / "c", {"name": "ome-tiff", "suffix": ".ome.tif"}, ["p", "q"])
    assert sorted(f.name for f in Path(tif_suffix.output_path).iterdir()) == [
        "p.ome.tif", "q.ome.tif",
    ]  # fmt: skip
    zarr_suffix = _stream(tmp_path / "d.ome.zarr", {"name": "ome-zarr", "suffix": ".zarr"}, None)
    assert zarr_suffix.output_path == str(tmp_path / "d.zarr")
    validate_ome_zarr(zarr_suffix.output_path)


def test_format_models_of_ome_writers_are_taken_as_they_are(tmp_path: Path) -> None:
    ow = pytest.importorskip("ome_writers")
    settings = _stream(tmp_path / "f", ow.OmeTiffFormat(prefer_single_file="never"), None)
    assert settings.format is not None and settings.format.prefer_single_file == "never"
    assert [f.name for f in Path(settings.output_path).iterdir()] == ["f.ome.tiff"]
    zarr_fmt = ow.OmeZarrFormat(suffix=".zarr")
    theirs = ow.AcquisitionSettings(
        root_path=str(tmp_path / "g"),
        dimensions=[ow.Dimension(name="y", count=16), ow.Dimension(name="x", count=12)],
        dtype="uint16",
        format=zarr_fmt,
    )
    ours = AcquisitionSettings(
        root_path=str(tmp_path / "g"), dimensions=YX, dtype="uint16", format=zarr_fmt
    )
    assert ours.output_path == theirs.output_path


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ({"name": "ome-zarr", "prefer_single_file": "never"}, "applies to OME-TIFF only"),
        ({"name": "ome-tiff", "multi_file_metadata": "companion-file"}, "'redundant'"),
        ({"name": "ome-zarr", "suffix": ".ome.tiff"}, "not a suffix of ome-zarr"),
        ({"name": "ome-zarr", "suffix": "zarr"}, "must start with '.'"),
        ({"name": "ome-tiff", "prefer_single_file": "sometimes"}, "'auto', 'always' or"),
    ],
)
def test_format_layout_mistakes_are_clear(fmt: dict[str, Any], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        AcquisitionSettings(root_path="x", dimensions=YX, dtype="uint16", format=fmt)
    with pytest.raises(SettingsError, match="disagree"):
        AcquisitionSettings(
            root_path="x.ome.tiff", dimensions=YX, dtype="uint16",
            format={"name": "ome-tiff", "prefer_single_file": "never"},
            writer={"tiff_single_file": True},
        )  # fmt: skip
