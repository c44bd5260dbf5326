"""Default channel colours: a dye's usual colour, else a palette colour no other channel has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile
import zarr
from hypothesis import given
from hypothesis import strategies as st

import omestream
from omestream import AcquisitionSettings, Channel, Dimension, create_stream
from omestream.settings.colors import DEFAULT_COLORS, guess_color, pick_colors
from omestream.store import Image
from tests.checks import validate_ome_zarr

BLUE, CYAN, GREEN, YELLOW, RED, MAGENTA, WHITE = (
    "0000FF", "00FFFF", "00FF00", "FFFF00", "FF0000", "FF00FF", "FFFFFF",
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "color"),
    [
        ("DAPI", BLUE),
        ("Hoechst 33342", BLUE),
        ("TagBFP", BLUE),
        ("mTurquoise2", CYAN),
        ("EGFP", GREEN),
        ("Alexa Fluor 488", GREEN),
        ("FITC", GREEN),
        ("mVenus", YELLOW),
        ("mCherry", RED),
        ("Cy3", RED),
        ("AF594", RED),
        ("Cy5", MAGENTA),
        ("Alexa-647", MAGENTA),
        ("BF", WHITE),
        ("DIC", WHITE),
        ("phase contrast", WHITE),
        ("em 525/50", GREEN),  # a filter: centre of the emission band
        ("405nm", BLUE),  # laser lines: excitation
        ("Laser 561", RED),
        ("640", MAGENTA),
        ("Red", RED),
        ("green channel", GREEN),
        ("Far Red", MAGENTA),
        ("Channel 0", None),
        ("nuclei", None),
        ("", None),
    ],
)
def test_guess_from_name(name: str, color: str | None) -> None:
    assert guess_color(name) == color


@given(st.text(max_size=40), st.one_of(st.none(), st.floats(1, 2000)))
def test_any_name_gives_a_colour_or_none(name: str, emission: float | None) -> None:
    color = guess_color(name, emission=emission)
    assert color is None or (len(color) == 6 and int(color, 16) >= 0)
    if emission is not None:
        assert color is not None


def test_wavelengths_decide_before_names() -> None:
    assert guess_color("DAPI", emission=670) == MAGENTA
    assert guess_color("DAPI", excitation=561) == RED
    assert guess_color("Channel 1", fluorophore="mCherry") == RED
    assert guess_color("GFP", fluorophore="unknown dye") == GREEN


def test_pick_colors_fills_gaps_with_free_palette_colours() -> None:
    assert pick_colors([BLUE, None, None]) == [BLUE, GREEN, MAGENTA]
    assert pick_colors([None, GREEN]) == [MAGENTA, GREEN]
    assert pick_colors([None], taken=[GREEN, "ff00ff"]) == [CYAN]


@given(st.lists(st.one_of(st.none(), st.sampled_from(DEFAULT_COLORS)), max_size=20))
def test_pick_colors_keeps_given_and_differs_while_the_palette_lasts(
    colors: list[str | None],
) -> None:
    out = pick_colors(colors)
    assert len(out) == len(colors)
    assert all(o == c for o, c in zip(out, colors, strict=True) if c is not None)
    if len(set(colors) - {None}) + colors.count(None) <= len(DEFAULT_COLORS):
        assert len(set(out)) == len(set(colors) - {None}) + colors.count(None)


COORDS = [
    "Hoechst 33342",
    "Alexa Fluor 488",
    Channel(name="far", emission_wavelength=670),
    "Channel 3",
    Channel(name="Alexa 568", color="yellow"),
]
EXPECTED = [BLUE, GREEN, MAGENTA, CYAN, YELLOW]


def _settings(path: Path, fmt: object) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(path),
        dimensions=[
            Dimension(name="c", type="channel", coords=COORDS),
            Dimension(name="y", count=16, type="space"),
            Dimension(name="x", count=16, type="space"),
        ],
        dtype="uint16",
        format=fmt,
    )


def _stream(settings: AcquisitionSettings) -> None:
    with create_stream(settings) as stream:
        for c in range(len(COORDS)):
            stream.append(np.full((16, 16), c, np.uint16))


def test_streamed_zarr_gets_dye_colours(tmp_path: Path, ngff_version: str) -> None:
    version = ngff_version
    settings = _settings(tmp_path / "c.ome.zarr", {"name": "ome-zarr", "version": version})
    _stream(settings)
    attrs = zarr.open_group(settings.output_path, mode="r").attrs.asdict()
    omero = (attrs["ome"] if version == "0.5" else attrs)["omero"]
    assert [ch["color"] for ch in omero["channels"]] == EXPECTED
    validate_ome_zarr(settings.output_path)


def test_streamed_tiff_gets_dye_colours(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "c.ome.tiff", "ome-tiff")
    _stream(settings)
    with tifffile.TiffFile(settings.output_path) as tif:
        ome = ome_types.from_xml(tif.pages.first.description, validate=True)
    colors = [ch.color.as_hex(format="long").upper() for ch in ome.images[0].pixels.channels]
    assert colors == [f"#{c}" for c in EXPECTED]


def test_added_channel_gets_its_dye_colour_or_a_free_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "c.ome.zarr", "ome-zarr")
    _stream(settings)
    img = omestream.open_store(settings.output_path, mode="a")
    assert isinstance(img, Image)
    img.append_channel("mCherry", np.zeros((16, 16), np.uint16))
    img.append_channel("mask", np.ones((16, 16), np.uint16))
    omero = zarr.open_group(settings.output_path, mode="r").attrs["ome"]["omero"]
    colors = [ch["color"] for ch in omero["channels"]]
    # mCherry is red whatever is taken; for "mask" only white is left in the palette
    assert colors == [*EXPECTED, RED, WHITE]
    validate_ome_zarr(settings.output_path)


@pytest.mark.parametrize(
    ("given", "color"),
    [
        (0xFF00FF, MAGENTA),  # 0xRRGGBB
        (0x0000FF, BLUE),
        (-16711681, MAGENTA),  # OME-XML's signed RGBA (FF00FFFF)
        (0xFF00FFFF, MAGENTA),  # the same RGBA unsigned
        (-1, WHITE),
        (ome_types.model.Color("magenta"), MAGENTA),
        ("#00ff00", GREEN),
        ("FF00FF80", MAGENTA),  # alpha is dropped
        ((0, 255, 0), GREEN),  # RGB tuples, with or without alpha
        ([255, 0, 255, 128], MAGENTA),
        ("lime", GREEN),  # CSS names beyond ours
        ("navy", "000080"),
        ("green", GREEN),  # ours first: CSS green is 008000
        ("rgb(255, 0, 255)", MAGENTA),
    ],
)
def test_explicit_colours(given: object, color: str) -> None:
    assert Channel(name="a", color=given).color == color


@pytest.mark.parametrize(
    "given", [2**32, -(2**31) - 1, "12345", "purpleish", True, (1, 2), (300, 0, 0), (0.5, 1, 1)]
)
def test_colours_that_mean_nothing_are_refused(given: object) -> None:
    with pytest.raises(ValueError, match="color"):
        Channel(name="a", color=given)
