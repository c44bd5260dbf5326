"""`omestream convert` never writes over what it reads and never calls a partial copy
complete: outputs that are, hold or lie inside the source, truncated TIFFs, OME-TIFFs
a killed stream left unrepaired and options that name no axis are refused, with
messages in the words of the interface that was used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from omestream.cli.app import main
from omestream.convert import ConvertOptions, convert
from omestream.errors import SettingsError, StoreExistsError, StoreFormatError
from omestream.repair import repair
from omestream.summary import describe
from tests.cases import frame_for
from tests.cli_data import PLATE_WELLS, write_plate
from tests.test_tiff_crash import crash_settings, run_and_kill


def _stack(shape: tuple[int, ...] = (3, 32, 24), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 4000, shape, dtype=np.uint16)


def _write(path: Path, data: np.ndarray, **kwargs: object) -> None:
    tifffile.imwrite(path, data, photometric="minisblack", **kwargs)  # type: ignore[arg-type]


def _pixels(path: Path | str) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


# -- the output is the source, holds it or lies inside it ------------------------------


def test_an_output_named_without_its_suffix_is_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _stack()
    _write(tmp_path / "s.tif", data)
    src = tmp_path / "a.ome.zarr"
    convert(tmp_path / "s.tif", src)
    # 'a' gains the .ome.zarr suffix: the output would be the source itself
    assert main(["convert", str(src), str(tmp_path / "a"), "--overwrite", "-q"]) == 1
    err = capsys.readouterr().err
    assert "the output is the source" in err and "nothing was changed" in err
    with pytest.raises(SettingsError, match="the output is the source"):
        convert(src, tmp_path / "a", ConvertOptions(overwrite=True))
    assert np.array_equal(_pixels(src / "0"), data)
    assert describe(str(src)).acquisition.complete  # type: ignore[union-attr]


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_a_source_reached_through_a_symbolic_link_is_the_source(
    tmp_path: Path, suffix: str
) -> None:
    data = _stack()
    _write(tmp_path / "s.tif", data)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "lnk").symlink_to(real)
    convert(tmp_path / "s.tif", real / f"a{suffix}")
    with pytest.raises(SettingsError, match="the output is the source"):
        convert(
            tmp_path / "lnk" / f"a{suffix}", real / f"a{suffix}", ConvertOptions(overwrite=True)
        )
    kept = (
        _pixels(real / "a.ome.zarr" / "0")
        if suffix == ".ome.zarr"
        else tifffile.imread(real / "a.ome.tiff")
    )
    assert np.array_equal(kept, data)


def test_an_output_that_holds_or_lies_inside_the_source_is_refused(tmp_path: Path) -> None:
    plate = Path(write_plate(tmp_path / "plate.ome.zarr"))
    before = {w: _pixels(plate / r / c / "0" / "0") for r, c in PLATE_WELLS if (w := f"{r}/{c}")}
    field = plate / "A" / "1" / "0"
    with pytest.raises(SettingsError, match="the output holds the source"):
        convert(field, plate, ConvertOptions(overwrite=True))
    with pytest.raises(SettingsError, match="the output is inside the source"):
        convert(plate, field / "copy.ome.zarr", ConvertOptions(overwrite=True))
    assert not (field / "copy.ome.zarr").exists()
    info = describe(str(plate))
    assert info.kind == "plate" and len(info.images) == len(PLATE_WELLS)
    for w, pixels in before.items():
        assert np.array_equal(_pixels(plate / w / "0" / "0"), pixels)
    # beside it is fine
    convert(field, tmp_path / "field.ome.zarr")
    assert np.array_equal(_pixels(tmp_path / "field.ome.zarr" / "0"), before["A/1"])


# -- truncated and empty TIFF files ----------------------------------------------------


def test_a_truncated_tiff_is_refused_and_info_says_pages_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _stack((5, 64, 80))
    whole, cut = tmp_path / "p.tif", tmp_path / "t.tif"
    _write(whole, data)
    cut.write_bytes(whole.read_bytes()[:30000])  # frame 0 and part of frame 1
    out = tmp_path / "t.ome.zarr"
    with pytest.raises(StoreFormatError, match=r"t\.tif: series 0 has 1 of the 5 pages"):
        convert(cut, out)
    assert main(["convert", str(cut), str(out), "-q"]) == 1
    assert "1 of the 5 pages" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == [whole, cut]  # no output, no lock folder
    notes = describe(str(cut)).notes
    assert any("1 of the 5 pages" in n and "truncated" in n for n in notes), notes
    assert main(["info", str(cut)]) == 0
    assert "1 of the 5 pages" in capsys.readouterr().out.replace("\n", " ")
    # the whole file: no note, every frame
    assert describe(str(whole)).notes == []
    convert(whole, tmp_path / "p.ome.zarr")
    assert np.array_equal(_pixels(tmp_path / "p.ome.zarr" / "0"), data)


@pytest.mark.parametrize(
    "kwargs", [{"imagej": True}, {"compression": "zlib"}], ids=["imagej", "zlib"]
)
def test_tiffs_cut_elsewhere_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    """ImageJ metadata tifffile can no longer follow (it reads one plain page), and
    pixel data of the last page cut off."""
    whole, cut = tmp_path / "p.tif", tmp_path / "t.tif"
    _write(whole, _stack((6, 64, 80)), **kwargs)
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(StoreFormatError, match=r"t\.tif: .*(6 pages|past the end)"):
        convert(cut, tmp_path / "t.ome.zarr")
    assert not (tmp_path / "t.ome.zarr").exists()
    assert describe(str(cut)).notes


def test_a_page_that_cannot_be_decoded_stops_the_convert_and_removes_its_output(
    tmp_path: Path,
) -> None:
    src = tmp_path / "z.tif"
    _write(src, _stack((6, 32, 32)), compression="zlib")
    with tifffile.TiffFile(src) as tif:
        offset = tif.pages[3].dataoffsets[0]
    raw = bytearray(src.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16  # not zlib data any more
    src.write_bytes(bytes(raw))
    out = tmp_path / "z.ome.zarr"
    with pytest.raises(StoreFormatError, match=r"z\.tif: page 3 of series 0 cannot be read"):
        convert(src, out, ConvertOptions(workers=1))
    assert not out.exists()


def test_a_tiff_without_pages_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "h.tif"
    src.write_bytes(b"II*\x00\x00\x00\x00\x00")  # a header, no page
    with pytest.raises(StoreFormatError, match="without pages"):
        convert(src, tmp_path / "h.ome.zarr")
    assert not (tmp_path / "h.ome.zarr").exists()
    with pytest.raises(StoreFormatError, match="without pages: no image to read"):
        describe(str(src))  # no OME-XML either: nothing to describe


# -- an OME-TIFF whose stream was killed -----------------------------------------------


def test_a_killed_ome_tiff_is_converted_only_once_repaired(tmp_path: Path) -> None:
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("running", root, "40")
    path = crash_settings("running", root).output_path
    out = tmp_path / "run.ome.zarr"
    with pytest.raises(
        StoreFormatError, match=r"did not close it.*omestream repair .*run\.ome\.tiff"
    ):
        convert(path, out)
    assert not out.exists()
    report = repair(path)
    convert(path, out)
    arr = _pixels(out / "0")  # t, c, y, x
    frames = arr.reshape(-1, *arr.shape[-2:])
    assert len(frames) >= report.frames_present >= 9
    for n in range(report.frames_present):
        np.testing.assert_array_equal(frames[n], frame_for(n, arr.shape[-2:], "uint16"))


# -- options and messages --------------------------------------------------------------


def test_chunks_or_shards_of_an_axis_the_source_lacks_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "s.tif", _stack())
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(SettingsError, match=r"chunk sizes given for 'w'.*axes are z, y, x"):
        convert(tmp_path / "s.tif", out, ConvertOptions(chunks={"w": 3}))
    assert main(["convert", str(tmp_path / "s.tif"), str(out), "--shard", "t=2", "-q"]) == 1
    assert "shard sizes given for 't'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tiff"])
def test_cli_errors_name_the_cli_options(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "s.tif", tmp_path / f"o{suffix}"
    _write(src, _stack())
    convert(src, out)
    assert main(["convert", str(src), str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite to replace it" in err and "DST" in err
    assert "overwrite=True" not in err and "root_path" not in err
    with pytest.raises(StoreExistsError, match=r"pass overwrite=True"):  # the API's words
        convert(src, out)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_damaged_chunk_is_named_and_nothing_is_written(tmp_path: Path, version: str) -> None:
    from omestream import AcquisitionSettings, Dimension, create_stream

    settings = AcquisitionSettings(
        root_path=str(tmp_path / "src.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=4, chunk_size=1),
            Dimension(name="y", count=32),
            Dimension(name="x", count=24),
        ],
        dtype="uint16",
        compression="blosc-zstd",
        format={"name": "ome-zarr", "version": version},
    )
    with create_stream(settings) as stream:
        for t in range(4):
            stream.append(_stack((1, 32, 24), seed=t)[0])
    # a chunk (0.4) or shard (0.5) file of the image, cut short
    files = [
        f for f in Path(settings.output_path, "0").rglob("*")
        if f.is_file() and not f.name.startswith((".z", "zarr.json"))
    ]  # fmt: skip
    chunk = max(files, key=lambda f: f.stat().st_size)
    chunk.write_bytes(chunk.read_bytes()[:20])
    dst = tmp_path / "out.ome.zarr"
    with pytest.raises(StoreFormatError, match=r"array 0 cannot be read at t=\d+\.\.\d+.*damaged"):
        convert(settings.output_path, dst, ConvertOptions(workers=1))
    assert not dst.exists()
