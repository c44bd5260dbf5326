"""`omestream validate` on OME-TIFF: files written by omestream and by tifffile pass;
each deliberately broken file fails with a message that says what and where."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import omestream.cli.validate  # noqa: F401  (the command registers on import)
from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream
from omestream.cli.app import app
from omestream.validate import validate_store
from omestream.validate.tiff import plane_index, tiffdata_planes

runner = CliRunner()


def _stream(path: Path, *, positions: int = 0, unbounded: bool = False, **kw: object) -> str:
    dims: list = [Dimension(name="t", count=None if unbounded else 3, type="time")]
    if positions:
        dims.append(PositionDimension(positions=[f"p{i}" for i in range(positions)]))
    dims += [
        Dimension(name="c", count=2, type="channel"),
        Dimension(name="y", count=24, type="space"),
        Dimension(name="x", count=32, type="space"),
    ]
    s = AcquisitionSettings(root_path=str(path), dimensions=dims, dtype="uint16", **kw)
    with create_stream(s) as stream:
        for v in range(3 * max(positions, 1) * 2):
            stream.append(np.full((24, 32), v, np.uint16), metadata={"v": v})
    return s.output_path


def _ome_xml(
    size_t: int, size_x: int = 32, planes: str = "", plane_count: int | None = None
) -> str:
    count = size_t if plane_count is None else plane_count
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" '
        f'SizeX="{size_x}" SizeY="24" SizeZ="1" SizeC="1" SizeT="{size_t}">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f'<TiffData IFD="0" PlaneCount="{count}"/>{planes}</Pixels></Image></OME>'
    )


def _hand_written(path: Path, pages: int, xml: str) -> str:
    """A TIFF of ``pages`` 24x32 uint16 pages whose first page carries ``xml``."""
    data = np.arange(pages * 24 * 32, dtype=np.uint16).reshape(pages, 24, 32)
    tifffile.imwrite(path, data, description=xml, metadata=None, photometric="minisblack")
    return str(path)


@pytest.mark.parametrize(
    "kind", ["single", "zstd", "unbounded", "positions", "positions-one-file"]
)
def test_omestream_ome_tiff_is_valid(tmp_path: Path, kind: str) -> None:
    kw: dict = {
        "single": {},
        "zstd": {"compression": "zstd"},
        "unbounded": {"unbounded": True},
        "positions": {"positions": 3},
        "positions-one-file": {"positions": 2, "writer": {"tiff_single_file": True}},
    }[kind]
    out = _stream(tmp_path / "a.ome.tiff", **kw)
    report = validate_store(out)
    assert report.ok, report.to_dict()
    assert report.problems == []
    assert [v.name for v in report.validators] == ["ome-types (OME schema)", "tifffile"]
    assert all(v.status == "passed" for v in report.validators), report.to_dict()
    if kind == "positions":
        assert os.path.isdir(out) and len(os.listdir(out)) == 3


def test_an_ome_tiff_written_by_tifffile_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "tf.ome.tif"
    data = np.arange(2 * 3 * 4 * 16 * 20, dtype=np.uint8).reshape(2, 3, 4, 16, 20)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCZYX"})
    report = validate_store(str(path))
    assert report.ok, report.to_dict()


def test_tiffdata_past_the_last_page_is_an_error(tmp_path: Path) -> None:
    # a writer killed before it closed: the XML promises 8 time points, 5 pages exist
    path = _hand_written(tmp_path / "cut.ome.tif", 5, _ome_xml(8))
    report = validate_store(path)
    assert not report.ok
    (p,) = report.errors
    assert p.where == "cut.ome.tif:Image:0"
    assert "page 5 of cut.ome.tif, which has 5 page(s)" in p.message
    assert "cut short" in p.message
    result = runner.invoke(app, ["validate", "--structure-only", path])
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # the terminal's width wraps lines
    assert "which has 5 page(s)" in text and "INVALID" in text


def test_unmapped_planes_are_a_warning_and_mapped_ones_still_read(tmp_path: Path) -> None:
    path = _hand_written(tmp_path / "part.ome.tif", 6, _ome_xml(6, plane_count=4))
    report = validate_store(path)
    assert report.ok  # allowed by the specification
    (w,) = report.warnings
    assert "2 of 6 planes are mapped to no page" in w.message


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (_ome_xml(3, size_x=40), "pages of bad.ome.tif are 24x32, Pixels declares 24x40"),
        (
            _ome_xml(3, planes='<Plane TheZ="0" TheC="0" TheT="7"/>'),
            "Plane TheZ=0 TheC=0 TheT=7 outside SizeZ=1 SizeC=1 SizeT=3",
        ),
        (
            _ome_xml(3).replace('Type="uint16"', 'Type="uint8"'),
            "hold uint16, Pixels Type is uint8",
        ),
        (_ome_xml(3).replace('SizeT="3"', 'SizeT="2"'), "TiffData maps plane 2 of only 2"),
    ],
)
def test_declared_geometry_that_the_pages_contradict(
    tmp_path: Path, xml: str, message: str
) -> None:
    report = validate_store(_hand_written(tmp_path / "bad.ome.tif", 3, xml))
    assert not report.ok
    assert any(message in p.message for p in report.errors), report.to_dict()


def test_a_plain_tiff_is_not_an_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), metadata=None, photometric="minisblack")
    report = validate_store(str(path))
    assert not report.ok
    assert report.errors[0].message == "not an OME-TIFF: no OME-XML in its first page"
    schema = next(v for v in report.validators if v.name == "ome-types (OME schema)")
    assert schema.status == "failed" and "has no OME-XML" in schema.detail


def test_the_schema_validator_fails_what_the_ome_schema_forbids(tmp_path: Path) -> None:
    # an attribute the schema does not have: lenient parsers read past it
    xml = _ome_xml(3).replace(
        '<Channel ID="Channel:0:0"', '<Channel Colour="red" ID="Channel:0:0"'
    )
    report = validate_store(_hand_written(tmp_path / "schema.ome.tif", 3, xml))
    schema = next(v for v in report.validators if v.name == "ome-types (OME schema)")
    assert schema.status == "failed", report.to_dict()
    assert "Colour" in schema.detail
    assert not report.ok


def test_a_missing_file_of_a_multi_file_dataset(tmp_path: Path) -> None:
    out = _stream(tmp_path / "multi.ome.tiff", positions=3)
    names = sorted(os.listdir(out))
    os.remove(os.path.join(out, names[1]))
    report = validate_store(out)
    assert not report.ok
    missing = [p for p in report.errors if f"names {names[1]}, which is missing" in p.message]
    assert missing, report.to_dict()


def test_a_truncated_file_fails_the_tifffile_reader(tmp_path: Path) -> None:
    out = _stream(tmp_path / "trunc.ome.tiff")
    size = os.path.getsize(out)
    with open(out, "r+b") as f:  # the pixels of the last pages are gone
        f.truncate(size - 24 * 32 * 2 * 2)
    report = validate_store(out)
    assert not report.ok, report.to_dict()


@given(
    order=st.sampled_from(["XYZCT", "XYZTC", "XYCZT", "XYCTZ", "XYTZC", "XYTCZ"]),
    z=st.integers(1, 4),
    c=st.integers(1, 4),
    t=st.integers(1, 4),
)
def test_plane_numbers_are_a_bijection_in_every_order(order: str, z: int, c: int, t: int) -> None:
    sizes = {"Z": z, "C": c, "T": t}
    seen = {
        plane_index(order, sizes, zi, ci, ti)
        for zi in range(z)
        for ci in range(c)
        for ti in range(t)
    }
    assert seen == set(range(z * c * t))
    # the axis right after XY varies fastest
    fastest = order[2]
    one = {"Z": 0, "C": 0, "T": 0} | {fastest: 1}
    if sizes[fastest] > 1:
        assert plane_index(order, sizes, one["Z"], one["C"], one["T"]) == 1


def test_tiffdata_defaults() -> None:
    from ome_types import model as m

    sizes = {"Z": 2, "C": 1, "T": 3}
    whole = list(tiffdata_planes(m.TiffData(), "XYZCT", sizes, only_block=True))
    assert whole == [(k, k) for k in range(6)]
    one = list(tiffdata_planes(m.TiffData(ifd=4, first_t=2), "XYZCT", sizes, only_block=False))
    assert one == [(4, 4)]
    run = m.TiffData(ifd=10, first_z=1, first_t=1, plane_count=3)
    assert list(tiffdata_planes(run, "XYZCT", sizes, only_block=False)) == [
        (3, 10),
        (4, 11),
        (5, 12),
    ]
