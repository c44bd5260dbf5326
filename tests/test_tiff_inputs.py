"""TIFF inputs that are not plain (y, x) page stacks: planar and contiguous samples,
and descriptions that are not OME-XML, through `info`, `convert` and `repair`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

import omestream.cli.convert  # noqa: F401  (the commands register on import)
from omestream.cli.app import app, main
from omestream.convert import ConvertOptions, convert
from omestream.errors import StoreExistsError, StoreFormatError
from omestream.summary import describe
from omestream.tiff.recover import recover
from omestream.tiff.xml import read_record
from tests.checks import validate_ome_zarr

runner = CliRunner()


def _data(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


# -- convert: planar samples are channels ------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_one_page_of_planar_samples_converts_as_channels(tmp_path: Path, workers: int) -> None:
    data = _data((3, 16, 16))
    src, dst = tmp_path / "planar.tif", tmp_path / "planar.ome.zarr"
    tifffile.imwrite(src, data, photometric="rgb", planarconfig="separate")
    # one page holding 3 separate sample planes: tifffile axes SYX
    assert [a.name for a in describe(str(src)).images[0].axes] == ["c", "y", "x"]
    convert(src, dst, ConvertOptions(workers=workers))
    group = zarr.open_group(str(dst), mode="r")
    assert [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]] == ["c", "y", "x"]
    assert np.array_equal(zarr.open_array(str(dst / "0"), mode="r")[...], data)
    validate_ome_zarr(dst)


def test_pages_of_planar_samples_convert_with_the_cli(tmp_path: Path) -> None:
    data = _data((2, 3, 32, 32))
    src, dst = tmp_path / "tiled.tif", tmp_path / "tiled.ome.zarr"
    tifffile.imwrite(src, data, photometric="rgb", planarconfig="separate", tile=(16, 16))
    # 2 pages of 3 planar samples each: QSYX
    result = runner.invoke(app, ["convert", str(src), str(dst), "-q", "-w", "2"])
    assert result.exit_code == 0, result.output
    # the page sequence becomes z; NGFF puts c before z
    assert np.array_equal(
        zarr.open_array(str(dst / "0"), mode="r")[...], data.transpose(1, 0, 2, 3)
    )
    validate_ome_zarr(dst)


def test_ome_tiff_with_planar_samples_keeps_time_and_channels(tmp_path: Path) -> None:
    data = _data((2, 3, 16, 16))
    src, dst = tmp_path / "tsyx.ome.tiff", tmp_path / "tsyx.ome.zarr"
    tifffile.imwrite(
        src, data, ome=True, photometric="minisblack", planarconfig="separate",
        metadata={"axes": "TSYX"},
    )  # fmt: skip
    convert(src, dst, ConvertOptions(workers=2))
    assert np.array_equal(zarr.open_array(str(dst / "0"), mode="r")[...], data)
    validate_ome_zarr(dst)


def test_contiguous_rgb_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "rgb.tif", tmp_path / "rgb.ome.zarr"
    tifffile.imwrite(src, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(StoreFormatError, match=r"not supported.*separate planes"):
        convert(src, dst)
    assert not dst.exists()
    assert main(["convert", str(src), str(dst), "-q"]) == 1
    assert "RGB samples" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [src]


# -- convert: a failure leaves no partial output ---------------------------------------


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff", ""])  # "": OME-Zarr, suffix added
def test_a_failed_convert_removes_the_output_it_created(tmp_path: Path, suffix: str) -> None:
    src, dst = tmp_path / "stack.tif", tmp_path / f"out{suffix}"
    tifffile.imwrite(src, _data((6, 16, 16)))

    def stop(frames: int, _bytes: int) -> None:
        if frames == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(src, dst, ConvertOptions(workers=1), progress=stop)
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == [src]  # no lock folder either


def test_a_failed_convert_keeps_a_path_that_existed_before(tmp_path: Path) -> None:
    src, dst = tmp_path / "stack.tif", tmp_path / "out.ome.zarr"
    tifffile.imwrite(src, _data((6, 16, 16)))
    convert(src, dst)
    with pytest.raises(StoreExistsError):  # not ours: left exactly as it was
        convert(src, dst)
    assert np.array_equal(zarr.open_array(str(dst / "0"), mode="r")[...], _data((6, 16, 16)))

    def stop(frames: int, _bytes: int) -> None:
        if frames == 2:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        convert(src, dst, ConvertOptions(overwrite=True, workers=1), progress=stop)
    assert dst.exists()  # replaced on request, but a path the user had is never deleted


# -- info: chunks follow the series axes -------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "kwargs", "axes", "chunks"),
    [
        ((16, 16, 3), {"photometric": "rgb"}, ["y", "x", "c"], (16, 16, 3)),
        ((2, 32, 32, 3), {"photometric": "rgb", "tile": (16, 16)}, ["q", "y", "x", "c"],
         (1, 16, 16, 3)),
        ((3, 16, 16), {"photometric": "rgb", "planarconfig": "separate"}, ["c", "y", "x"],
         (1, 16, 16)),
        ((2, 3, 32, 32), {"photometric": "rgb", "planarconfig": "separate", "tile": (16, 16)},
         ["q", "c", "y", "x"], (1, 1, 16, 16)),
        ((4, 40, 16), {"photometric": "minisblack", "rowsperstrip": 8}, ["q", "y", "x"],
         (1, 8, 16)),
    ],
)  # fmt: skip
def test_info_chunks_follow_the_series_axes(
    tmp_path: Path, shape: tuple[int, ...], kwargs: dict, axes: list[str], chunks: tuple
) -> None:
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.zeros(shape, np.uint8), **kwargs)
    (image,) = describe(str(src)).images
    assert [a.name for a in image.axes] == axes
    assert image.levels[0].shape == shape
    assert image.levels[0].chunks == chunks


# -- repair: descriptions that are not OME-XML -------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("shaped.tif", {}),  # tifffile's JSON shape description
        ("imagej.tif", {"imagej": True}),
        ("nodesc.tif", {"metadata": None}),
    ],
)
def test_repair_of_a_tiff_without_ome_xml_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, kwargs: dict
) -> None:
    path = tmp_path / name
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint16), **kwargs)
    before = path.read_bytes()
    with pytest.raises(StoreFormatError, match="no OME-TIFF written by omestream found"):
        recover(path)
    assert main(["repair", str(path)]) == 1
    err = capsys.readouterr().err
    assert "nothing can be recovered" in err and "Could not parse XML" not in err
    assert path.read_bytes() == before


def test_a_description_that_is_not_ome_xml_is_a_store_format_error() -> None:
    with pytest.raises(StoreFormatError, match="not readable OME-XML"):
        read_record('{"shape": [2, 16, 16]}')
    with pytest.raises(StoreFormatError, match="not readable OME-XML"):
        read_record("<OME><Image")
