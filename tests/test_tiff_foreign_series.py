"""Foreign OME-TIFFs whose images are not alike: series of different shapes and dtypes
in one file, RGB samples, and a multi-file set with a file missing; through validate,
info, view and convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from ome_types import from_xml

import omestream.cli.convert
import omestream.cli.info
import omestream.cli.validate
import omestream.cli.view  # noqa: F401  (the commands register on import)
from omestream.cli.app import main
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
