"""Foreign OME-TIFFs whose images are not alike: series of different shapes and dtypes
in one file, RGB samples, and a multi-file set with a file missing; through validate,
info, view and convert."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml
from PIL import Image

import omestream.cli.convert
import omestream.cli.info
import omestream.cli.validate
import omestream.cli.view  # noqa: F401  (the commands register on import)
from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream
from omestream.cli.app import main
from omestream.convert import convert
from omestream.errors import StoreFormatError
from omestream.summary import describe
from omestream.validate import validate_store


def _two_series(path: Path) -> Path:
    """Series 0: CZYX uint16 64x80 (bright in channel 1); series 1: TYX uint8 32x40."""
    a = np.zeros((2, 3, 64, 80), np.uint16)
    a[1] = 4000
    b = np.full((5, 32, 40), 200, np.uint8)
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(a, metadata={"axes": "CZYX"})
        tw.write(b, metadata={"axes": "TYX"})
    return path


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # long paths stay on one line


def _text(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr()
    return " ".join((out.out + out.err).split())  # the terminal's width wraps lines


# -- validate: each image against its own pages ----------------------------------------


def test_series_of_different_shapes_and_dtypes_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _two_series(tmp_path / "m.ome.tif")
    # what the other readers make of it
    ome = from_xml(tifffile.TiffFile(path).ome_metadata)
    assert [im.pixels.type.value for im in ome.images] == ["uint16", "uint8"]
    with tifffile.TiffFile(path) as tif:
        assert [s.shape for s in tif.series] == [(2, 3, 64, 80), (5, 32, 40)]
    report = validate_store(str(path))
    assert report.ok and report.problems == [], report.to_dict()
    assert main(["validate", str(path)]) == 0
    assert "m.ome.tif: valid" in _text(capsys)


def test_the_second_series_is_checked_against_its_own_pages(tmp_path: Path) -> None:
    path = _two_series(tmp_path / "m.ome.tif")
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    # Image:1 now claims the first series' geometry and dtype, which its pages lack
    head, image1 = xml.split('<Image ID="Image:1"')
    image1 = image1.replace('SizeX="40"', 'SizeX="80"').replace('Type="uint8"', 'Type="uint16"')
    tifffile.tiffcomment(path, (head + '<Image ID="Image:1"' + image1).encode())
    report = validate_store(str(path))
    assert not report.ok
    messages = {p.where: [] for p in report.errors}
    for p in report.errors:
        messages[p.where].append(p.message)
    assert list(messages) == ["m.ome.tif:Image:1"], report.to_dict()
    assert sorted(messages["m.ome.tif:Image:1"]) == [
        "pages of m.ome.tif are 32x40, Pixels declares 32x80",
        "pages of m.ome.tif hold uint8, Pixels Type is uint16",
    ]


# -- view: every series drawn, RGB as colours ------------------------------------------


def _ramp(shape: tuple[int, ...], dtype: str, top: int) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) % (top + 1)).astype(dtype)


def test_view_draws_series_of_different_channels_and_dtypes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, png = tmp_path / "m.ome.tif", tmp_path / "m.png"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(_ramp((2, 3, 64, 80), "uint16", 4000), metadata={"axes": "CZYX"})
        tw.write(_ramp((5, 32, 40), "uint8", 200), metadata={"axes": "TYX"})
    assert main(["view", str(path), "-o", str(png), "--size", "64"]) == 0
    assert "2 positions" in _text(capsys)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    left, top, gap, cell = 18, 14, 2, 64  # the mosaic's layout: one row of two tiles
    assert img.shape == (top + cell + gap, left + 2 * (cell + gap), 3)
    tiles = [img[top + 8 : top + cell - 8, left + k * (cell + gap) + 8 :][:, : cell - 16]
             for k in range(2)]  # fmt: skip
    assert all(tile.mean() > 40 for tile in tiles)
    # the one-channel uint8 series has its own contrast and is drawn in grey levels
    assert (tiles[1][..., 0] == tiles[1][..., 1]).all() and tiles[1].max() > 200


def _rgb_stripes() -> np.ndarray:
    a = np.zeros((64, 64, 3), np.uint8)
    a[:, :20, 0] = 255
    a[:, 20:40, 1] = 200
    a[:, 40:, 2] = 128
    return a


@pytest.mark.parametrize("planar", [False, True])
def test_view_draws_rgb_as_its_colours(
    tmp_path: Path, planar: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    path, png = tmp_path / "rgb.ome.tif", tmp_path / "rgb.png"
    data = _rgb_stripes()
    if planar:
        tifffile.imwrite(
            path, np.moveaxis(data, -1, 0), ome=True, photometric="rgb", planarconfig="separate"
        )
    else:
        tifffile.imwrite(path, data, ome=True, photometric="rgb")
    assert main(["view", str(path), "-o", str(png), "--size", "64"]) == 0
    assert "RGB" in _text(capsys)
    img = np.asarray(Image.open(png).convert("RGB"))
    composite = img[14 : 14 + 64, :64]  # the first panel, 64x64 as the image
    assert np.array_equal(composite, data)  # 8-bit samples drawn as they are
    # then one panel per sample, each in its colour
    red = img[14 : 14 + 64, 68 : 68 + 64]
    assert (red[:, :20] == (255, 0, 0)).all() and (red[:, 20:] == 0).all()


def test_info_lists_one_channel_per_rgb_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(path, _rgb_stripes(), ome=True, photometric="rgb")
    (image,) = describe(str(path)).images
    assert image.axis_names == "yxc"
    assert [(ch.label, ch.color) for ch in image.channels] == [
        ("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"),
    ]  # fmt: skip
    assert main(["info", str(path)]) == 0
    text = _text(capsys)
    assert "0 red" in text and "1 green" in text and "2 blue" in text
    # samples that are not RGB are numbered, not coloured
    grey = tmp_path / "samples.ome.tif"
    tifffile.imwrite(
        grey, np.zeros((3, 16, 16), np.uint16), ome=True, photometric="minisblack",
        planarconfig="separate", metadata={"axes": "SYX"},
    )  # fmt: skip
    (image,) = describe(str(grey)).images
    assert [(ch.label, ch.color) for ch in image.channels] == [
        ("sample 0", None), ("sample 1", None), ("sample 2", None),
    ]  # fmt: skip


# -- a multi-file set with a file missing -----------------------------------------------


def _multi_file_set(root: Path) -> Path:
    """One OME-TIFF file per position (A, B), each file's OME-XML naming both."""
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=2),
            PositionDimension(positions=["A", "B"]),
            Dimension(name="y", count=16),
            Dimension(name="x", count=16),
        ],
        dtype="uint16",
    )
    with create_stream(settings) as stream:
        for v in range(4):
            stream.append(np.full((16, 16), v, np.uint16))
    folder = Path(settings.output_path)
    assert sorted(os.listdir(folder)) == ["A.ome.tiff", "B.ome.tiff"]
    return folder


def test_a_whole_multi_file_set_converts_every_position(tmp_path: Path) -> None:
    folder = _multi_file_set(tmp_path / "run.ome.tiff")
    info = describe(str(folder))
    assert [im.name for im in info.images] == ["A", "B"] and info.notes == []
    out = tmp_path / "out.ome.zarr"
    convert(folder, out)
    series = zarr.open_group(str(out / "OME"), mode="r").attrs["ome"]["series"]
    assert series == ["A", "B"]  # bioformats2raw layout: one image per position
    assert zarr.open_array(str(out / "B" / "0"), mode="r")[...].tolist() == [
        np.full((16, 16), v).tolist() for v in (1, 3)
    ]


def test_a_missing_file_is_named_by_info_and_refused_by_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _multi_file_set(tmp_path / "run.ome.tiff")
    os.remove(folder / "B.ome.tiff")
    (note,) = describe(str(folder)).notes
    assert "image 'B' (Image:1) is stored in B.ome.tiff, which is missing" in note
    assert main(["info", str(folder)]) == 0
    assert "B.ome.tiff, which is missing" in _text(capsys)
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(StoreFormatError, match=r"B\.ome\.tiff, which is missing.*nothing was"):
        convert(folder, out)
    assert not out.exists()
    assert main(["convert", str(folder), str(out), "-q"]) == 1
    text = _text(capsys)
    assert "error:" in text and "Put the missing file(s) back in the folder" in text
    assert not out.exists()
    # validate agrees
    report = validate_store(str(folder))
    assert any("names B.ome.tiff, which is missing" in p.message for p in report.errors)
    # view draws what is there and says what is not
    png = tmp_path / "view.png"
    assert main(["view", str(folder), "-o", str(png)]) == 0
    text = _text(capsys)
    assert png.exists() and "note:" in text and "B.ome.tiff, which is missing" in text


def test_a_renamed_file_of_a_set_still_reads_its_own_image(tmp_path: Path) -> None:
    # its TiffData names its old file name with the file's own UUID: tifffile reads
    # the file itself, and so must validate, info and convert
    folder = _multi_file_set(tmp_path / "run.ome.tiff")
    renamed = folder / "A2.ome.tiff"
    os.rename(folder / "A.ome.tiff", renamed)
    with tifffile.TiffFile(renamed) as tif:
        assert [s.name for s in tif.series] == ["A", "B"]
    assert describe(str(renamed)).notes == []
    assert validate_store(str(renamed)).ok
    convert(renamed, tmp_path / "out.ome.zarr")
    a = zarr.open_array(str(tmp_path / "out.ome.zarr" / "A" / "0"), mode="r")
    assert a[:, 0, 0].tolist() == [0, 2]
