"""`omestream convert`: pixels round-trip exactly between OME-TIFF, TIFF stacks and
OME-Zarr 0.4/0.5, and the outputs pass the independent validators."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import ome_types
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

import omestream.cli.convert
import omestream.cli.view  # noqa: F401  (the commands register on import)
from omestream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    build_pyramid,
    create_stream,
)
from omestream.cli.app import app
from omestream.cli.convert import parse_sizes
from omestream.convert import ConvertOptions, convert
from omestream.errors import SettingsError
from omestream.summary import describe
from tests.checks import validate_ome_zarr
from tests.cli_data import write_ome_zarr_py_image, write_ome_zarr_py_plate, write_plate

runner = CliRunner()


def tczyx() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 4000, (2, 3, 4, 40, 36), dtype=np.uint16)


def write_ome_tiff(path: Path, data: np.ndarray, axes: str = "TCZYX") -> None:
    tifffile.imwrite(
        path, data, ome=True, photometric="minisblack",
        metadata={"axes": axes, "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm",
                  "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 1.5,
                  "Channel": {"Name": ["DAPI", "GFP", "RFP"]}},
    )  # fmt: skip


def test_ome_tiff_to_zarr_to_tiff_round_trip(tmp_path: Path) -> None:
    data = tczyx()
    src = tmp_path / "in.ome.tiff"
    write_ome_tiff(src, data)
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "a.ome.zarr"),
                                 "--chunk", "y=16,x=16", "--shard", "y=2,x=2", "-w", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    arr = zarr.open_array(str(tmp_path / "a.ome.zarr" / "0"), mode="r")
    assert np.array_equal(arr[...], data)
    assert arr.chunks == (1, 1, 1, 16, 16) and arr.shards == (1, 1, 1, 32, 32)
    validate_ome_zarr(tmp_path / "a.ome.zarr")
    info = describe(str(tmp_path / "a.ome.zarr"))
    (im,) = info.images
    assert [c.label for c in im.channels] == ["DAPI", "GFP", "RFP"]
    assert [(a.name, a.scale, a.unit) for a in im.axes][2:] == [
        ("z", 1.5, "micrometer"), ("y", 0.25, "micrometer"), ("x", 0.25, "micrometer")]  # fmt: skip

    back = tmp_path / "back.ome.tiff"
    convert(tmp_path / "a.ome.zarr", back, ConvertOptions(compression="zstd"))
    assert np.array_equal(tifffile.imread(back), data)
    assert describe(str(back)).images[0].channels[1].label == "GFP"


def test_tiff_in_acquisition_order_lands_in_ngff_order(tmp_path: Path) -> None:
    data = tczyx().transpose(0, 2, 1, 3, 4)  # TZCYX
    src = tmp_path / "tz.ome.tiff"
    write_ome_tiff(src, data, "TZCYX")
    convert(src, tmp_path / "tz.ome.zarr", ConvertOptions(version="0.4", workers=2))
    arr = zarr.open_array(str(tmp_path / "tz.ome.zarr" / "0"), mode="r")
    assert np.array_equal(arr[...], data.transpose(0, 2, 1, 3, 4))
    assert describe(str(tmp_path / "tz.ome.zarr")).ngff_version == "0.4"


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"])
def test_an_imagej_hyperstack_keeps_its_pixel_sizes(tmp_path: Path, unit: str) -> None:
    # ImageJ keeps units and z spacing in its own metadata, x/y as resolution tags
    data = tczyx().transpose(0, 2, 1, 3, 4)  # TZCYX, ImageJ's order
    src = tmp_path / "ij.tif"
    tifffile.imwrite(
        src, data, imagej=True, resolution=(1 / 0.2, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": unit, "finterval": 30.0},
    )  # fmt: skip
    want = {"t": (30.0, "second"), "c": (1.0, None), "z": (1.5, "micrometer"),
            "y": (0.25, "micrometer"), "x": (0.2, "micrometer")}  # fmt: skip
    (im,) = describe(str(src)).images
    got = {a.name: (round(a.scale, 9), a.unit) for a in im.axes}
    assert got == want
    out = tmp_path / "ij.ome.zarr"
    convert(src, out, ConvertOptions(workers=2))
    validate_ome_zarr(out)
    ms = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"][0]
    assert [(a["name"], a.get("unit")) for a in ms["axes"]] == [
        (k, u) for k, (_, u) in want.items()
    ]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([s for s, _ in want.values()])
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[...], tczyx())


def test_resolution_tags_without_imagej_metadata(tmp_path: Path) -> None:
    # centimetres: a pixel size (here 0.5 um); inches: a print setting, not taken
    cm, inch = tmp_path / "cm.tif", tmp_path / "inch.tif"
    frame = np.zeros((2, 16, 16), np.uint16)
    tifffile.imwrite(cm, frame, resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    tifffile.imwrite(inch, frame, resolution=(72, 72), resolutionunit="INCH")
    axes = {a.name: (a.scale, a.unit) for a in describe(str(cm)).images[0].axes}
    assert axes["y"] == pytest.approx((0.5, "micrometer"))
    assert axes["x"] == pytest.approx((0.5, "micrometer"))
    axes = {a.name: (a.scale, a.unit) for a in describe(str(inch)).images[0].axes}
    assert axes["y"] == (1.0, None) and axes["x"] == (1.0, None)


def test_plain_tiff_stack_becomes_a_z_stack_with_a_pyramid(tmp_path: Path) -> None:
    stack = np.random.default_rng(3).integers(0, 255, (5, 64, 48), dtype=np.uint8)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack)  # no OME-XML: pages only
    convert(src, tmp_path / "s.ome.zarr", ConvertOptions(pyramid_levels=3, compression="zstd"))
    info = describe(str(tmp_path / "s.ome.zarr"))
    (im,) = info.images
    assert im.axis_names == "zyx" and len(im.levels) == 3
    assert [lv.shape for lv in im.levels] == [(5, 64, 48), (5, 32, 24), (5, 16, 12)]
    assert np.array_equal(zarr.open_array(str(tmp_path / "s.ome.zarr" / "0"))[...], stack)
    validate_ome_zarr(tmp_path / "s.ome.zarr")


def test_zarr_04_to_05_and_back_keeps_pixels_and_levels(tmp_path: Path) -> None:
    src, data = write_ome_zarr_py_image(tmp_path / "ozp.zarr")  # ome-zarr-py, 0.4, levels s0/s1
    convert(src, tmp_path / "v5.ome.zarr", ConvertOptions(version="0.5"))
    convert(tmp_path / "v5.ome.zarr", tmp_path / "v4.ome.zarr", ConvertOptions(version="0.4"))
    for path, version in (("v5.ome.zarr", "0.5"), ("v4.ome.zarr", "0.4")):
        info = describe(str(tmp_path / path))
        assert info.ngff_version == version
        assert len(info.images[0].levels) == 2
        assert [c.label for c in info.images[0].channels] == ["a", "b"]
        assert np.array_equal(zarr.open_array(str(tmp_path / path / "0"))[...], data)
        # level 1 is the source's own (ome-zarr-py's rounding), copied, not made anew
        ozp1 = zarr.open_array(f"{src}/s1", mode="r")[...]
        assert np.array_equal(zarr.open_array(str(tmp_path / path / "1"))[...], ozp1)
        validate_ome_zarr(tmp_path / path)


def test_plates_convert_well_by_well(tmp_path: Path) -> None:
    src, wells = write_ome_zarr_py_plate(tmp_path / "ozp_plate.zarr")
    out = tmp_path / "plate5.ome.zarr"
    convert(src, out, ConvertOptions(version="0.5"))
    info = describe(str(out))
    assert info.kind == "plate" and [w.path for w in info.plate.wells] == list(wells)  # type: ignore[union-attr]
    for w, pixels in wells.items():
        assert np.array_equal(zarr.open_array(str(out / w / "0" / "0"))[...], pixels)
    validate_ome_zarr(out)

    ours = write_plate(tmp_path / "ours.ome.zarr")
    exe = str(Path(sys.executable).with_name("omestream"))
    proc = subprocess.run([exe, "convert", ours, str(tmp_path / "ours04.ome.zarr"), "--version",
                           "0.4", "--compression", "gzip"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "frames/s" in proc.stderr and "ETA" in proc.stderr  # the progress bar
    for r, c in (("A", "1"), ("A", "3"), ("B", "2")):
        a = zarr.open_array(f"{ours}/{r}/{c}/0/0")[...]
        b = zarr.open_array(str(tmp_path / "ours04.ome.zarr" / r / c / "0" / "0"))[...]
        assert np.array_equal(a, b)
    assert describe(str(tmp_path / "ours04.ome.zarr")).images[0].codecs == ("zlib(level=5)",) or (
        "gzip" in describe(str(tmp_path / "ours04.ome.zarr")).images[0].codecs[0]
    )


def test_bad_options_and_existing_outputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="expected NAME=SIZE"):
        parse_sizes("y=0", "--chunk")
    assert parse_sizes("256", "--chunk") == {"y": 256, "x": 256}
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, np.zeros((2, 8, 8), np.uint8))
    convert(src, tmp_path / "o.ome.zarr")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.ome.zarr")])
    assert result.exit_code != 0 and "already exists" in str(result.exception)
    with pytest.raises(SettingsError, match="shard_size_chunks"):
        convert(src, tmp_path / "v4.ome.zarr", ConvertOptions(version="0.4", shards={"y": 2}))
    assert not (tmp_path / "v4.ome.zarr").exists()


def test_folder_of_ome_tiff_positions_is_described_converted_and_viewed(
    tmp_path: Path,
) -> None:
    """A multi-position OME-TIFF stream writes one file per position into a folder: the
    folder (or any of its files) is one dataset for info, convert and view."""
    import warnings

    from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream

    settings = AcquisitionSettings(
        root_path=str(tmp_path / "pos.ome.tiff"),
        dimensions=[
            PositionDimension(positions=["A", "B"]),
            Dimension(name="z", count=3, type="space"),
            Dimension(name="y", count=24, type="space"),
            Dimension(name="x", count=20, type="space"),
        ],
        dtype="uint16",
    )
    data = np.random.default_rng(3).integers(0, 4000, (2, 3, 24, 20), dtype=np.uint16)
    with create_stream(settings) as stream:
        for frame in data.reshape(-1, 24, 20):
            stream.append(frame)
    folder = Path(settings.output_path)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["A.ome.tiff", "B.ome.tiff"]

    for where in (folder, files[1]):
        info = describe(str(where))
        assert [im.name for im in info.images] == ["A", "B"]
        assert info.disk_bytes == sum(f.stat().st_size for f in files)  # both files

    out = tmp_path / "pos.ome.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no read reopens a file tifffile closed
        result = runner.invoke(app, ["convert", str(folder), str(out), "-w", "2"])
    assert result.exit_code == 0, result.output
    for k, name in enumerate(["A", "B"]):  # each image under its position's name
        assert np.array_equal(zarr.open_array(str(out / name / "0"), mode="r")[...], data[k])
    validate_ome_zarr(out)

    result = runner.invoke(app, ["view", str(folder), "-o", str(tmp_path / "pos.png")])
    assert result.exit_code == 0, result.output
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "pos.png"))
    assert picture.max() > 0  # both positions drawn from their own files


def test_an_ome_tiff_plate_converts_to_an_ome_zarr_plate(tmp_path: Path) -> None:
    fields = [("B", "2", "fov0"), ("D", "11", "fov0"), ("D", "11", "fov1")]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "plate.ome.tiff"),
        dimensions=[
            PositionDimension(
                positions=[Position(name=f, plate_row=r, plate_column=c) for r, c, f in fields]
            ),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=16, type="space"),
            Dimension(name="x", count=12, type="space"),
        ],
        dtype="uint16",
        plate=Plate(
            name="screen", row_names=list("ABCD"), column_names=[str(i) for i in range(1, 13)]
        ),
    )
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 4000, (6, 16, 12), dtype=np.uint16)
    with create_stream(settings) as stream:
        for f in frames:
            stream.append(f)
    info = describe(settings.output_path)
    assert info.kind == "plate" and info.plate is not None
    assert [w.path for w in info.plate.wells] == ["B/2", "D/11"]
    assert info.plate.rows == tuple("ABCD") and len(info.plate.columns) == 12

    out = tmp_path / "plate.ome.zarr"
    convert(settings.output_path, out, ConvertOptions(workers=2))
    validate_ome_zarr(out)
    plate = zarr.open_group(str(out), mode="r").attrs["ome"]["plate"]
    assert plate["name"] == "screen"
    assert [w["path"] for w in plate["wells"]] == ["B/2", "D/11"]
    for k, (r, c, f) in enumerate(fields):
        arr = zarr.open_array(str(out / r / c / f / "0"), mode="r")
        np.testing.assert_array_equal(arr[...], frames[2 * k : 2 * k + 2])


def _omero(root: Path) -> dict[str, Any]:
    attrs = zarr.open_group(str(root), mode="r").attrs.asdict()
    return attrs.get("ome", attrs)["omero"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_zarr_to_zarr_keeps_the_channel_display(tmp_path: Path, version: str) -> None:
    """The source's omero window (start/end/min/max), active and inverted are kept, not
    measured anew; a channel whose window the source does not give is measured."""
    src = tmp_path / "src.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(src),
        dimensions=[
            Dimension(name="c", count=3, type="channel", coords=["DAPI", "GFP", "RFP"]),
            Dimension(name="y", count=32, type="space"),
            Dimension(name="x", count=24, type="space"),
        ],
        dtype="uint16",
    )
    frames = np.random.default_rng(2).integers(1000, 3000, (3, 32, 24), dtype=np.uint16)
    with create_stream(settings) as stream:
        for f in frames:
            stream.append(f)
    doc_path = src / "zarr.json"
    doc = json.loads(doc_path.read_text())
    chans = doc["attributes"]["ome"]["omero"]["channels"]
    chans[0].update(window={"min": 0.0, "max": 4095.0, "start": 100.0, "end": 900.0}, active=False)
    chans[1].update(
        window={"min": 0.0, "max": 65535.0, "start": 5.0, "end": 60000.0}, inverted=True
    )
    del chans[2]["window"]
    doc_path.write_text(json.dumps(doc))

    out = tmp_path / "out.ome.zarr"
    convert(src, out, ConvertOptions(version=version))
    got = _omero(out)["channels"]
    assert got[0]["window"] == chans[0]["window"] and got[0]["active"] is False
    assert got[0]["inverted"] is False
    assert got[1]["window"] == chans[1]["window"] and got[1]["inverted"] is True
    assert got[1]["active"] is True
    lo, hi = got[2]["window"]["start"], got[2]["window"]["end"]  # measured from the frames
    assert 1000 <= lo < 1100 and 2900 < hi <= 3000, got[2]["window"]
    assert [c["label"] for c in got] == ["DAPI", "GFP", "RFP"]
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[...], frames)
    validate_ome_zarr(out)
    # and once more: the output's windows are the source's for the next conversion
    convert(out, tmp_path / "again.ome.zarr")
    assert _omero(tmp_path / "again.ome.zarr")["channels"] == got


def test_ome_tiff_channels_keep_wavelengths_and_fluorophores(tmp_path: Path) -> None:
    data = tczyx()[0, :2]  # c, z, y, x
    src = tmp_path / "ch.ome.tiff"
    tifffile.imwrite(
        src, data, ome=True, photometric="minisblack",
        metadata={"axes": "CZYX", "Channel": {
            "Name": ["DAPI", "GFP"], "ExcitationWavelength": [405.0, 0.488],
            "ExcitationWavelengthUnit": ["nm", "µm"], "EmissionWavelength": [450.0, 510.0],
            "Fluor": ["Hoechst", "EGFP"]}},
    )  # fmt: skip
    want = [(405.0, 450.0, "Hoechst"), (488.0, 510.0, "EGFP")]
    back = tmp_path / "back.ome.tiff"
    convert(src, back)
    assert np.array_equal(tifffile.imread(back), data)
    with tifffile.TiffFile(back) as tif:
        ome = ome_types.from_xml(tif.ome_metadata)
    got = [(ch.excitation_wavelength, ch.emission_wavelength, ch.fluor)
           for ch in ome.images[0].pixels.channels]  # fmt: skip
    assert got == want
    # OME-Zarr has no place for them in NGFF: they are kept in the record of the settings
    out = tmp_path / "ch.ome.zarr"
    convert(src, out)
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[...], data)
    record = zarr.open_group(str(out), mode="r").attrs["omestream"]
    coords = record["settings"]["dimensions"][0]["coords"]
    assert [(c["excitation_wavelength"], c["emission_wavelength"], c["fluorophore"])
            for c in coords] == want  # fmt: skip


@pytest.mark.parametrize(
    ("tunit", "unit"),
    [("min", "minute"), ("hour", "hour"), ("ms", "millisecond"), ("\\u00B5s", "microsecond"),
     ("sec", "second"), (None, "second"), ("frame", None)],
)  # fmt: skip
def test_an_imagej_frame_interval_keeps_its_time_unit(
    tmp_path: Path, tunit: str | None, unit: str | None
) -> None:
    data = tczyx()[:, 0]  # t, z, y, x
    src = tmp_path / "ij.tif"
    meta: dict[str, Any] = {"axes": "TZYX", "finterval": 120.0}
    if tunit is not None:
        meta["tunit"] = tunit
    tifffile.imwrite(src, data, imagej=True, metadata=meta)
    (im,) = describe(str(src)).images
    assert (im.axes[0].name, im.axes[0].scale, im.axes[0].unit) == ("t", 120.0, unit)
    out = tmp_path / "ij.ome.zarr"
    convert(src, out)
    ms = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"][0]
    assert ms["axes"][0].get("unit") == unit
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 120.0
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[...], data)


def test_pyramid_levels_are_written_to_ome_tiff_as_sub_ifds(tmp_path: Path) -> None:
    stack = np.random.default_rng(3).integers(0, 255, (3, 64, 48), dtype=np.uint8)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack, photometric="minisblack")
    out = tmp_path / "p.ome.tiff"
    result = runner.invoke(app, ["convert", str(src), str(out), "--pyramid-levels", "3", "-q"])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        (series,) = tif.series
        assert len(tif.pages) == 3  # reduced levels are SubIFDs of each plane
        assert [lv.shape for lv in series.levels] == [(3, 64, 48), (3, 32, 24), (3, 16, 12)]
        assert np.array_equal(series.levels[0].asarray(), stack)
        half = stack.reshape(3, 32, 2, 24, 2).astype(float).mean(axis=(2, 4))
        assert np.abs(series.levels[1].asarray() - half).max() <= 1  # the mean of 2 x 2
    assert len(describe(str(out)).images[0].levels) == 3
    # a pyramid source keeps its levels in OME-TIFF too
    convert(out, tmp_path / "p.ome.zarr")
    convert(tmp_path / "p.ome.zarr", tmp_path / "again.ome.tiff")
    with tifffile.TiffFile(tmp_path / "again.ome.tiff") as tif:
        assert [lv.shape for lv in tif.series[0].levels] == [(3, 64, 48), (3, 32, 24), (3, 16, 12)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--chunk", "y=16"], "--chunk {'y': 16}: only OME-Zarr outputs have chunks"),
        (["--shard", "y=2", "--version", "0.4"], "--shard {'y': 2}, --version '0.4'"),
        (["--compression", "blosc-lz4"], "'blosc-lz4' is not a TIFF compression"),
    ],
)
def test_options_an_ome_tiff_cannot_honour_are_refused(
    tmp_path: Path, args: list[str], says: str
) -> None:
    src = tmp_path / "in.ome.tiff"
    write_ome_tiff(src, tczyx())
    dst = tmp_path / "out.ome.tiff"
    proc = subprocess.run(
        [sys.executable, "-m", "omestream", "convert", str(src), str(dst), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and says in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not dst.exists()
    with pytest.raises(SettingsError, match="only OME-Zarr outputs"):
        convert(src, dst, ConvertOptions(chunks={"y": 16}))


def test_automatic_compression_fits_the_output(tmp_path: Path) -> None:
    data = tczyx()
    src = tmp_path / "in.ome.tiff"
    write_ome_tiff(src, data)
    zarr_out, tiff_out = tmp_path / "a.ome.zarr", tmp_path / "b.ome.tiff"
    assert convert(src, zarr_out).compression == "blosc-zstd"
    assert convert(zarr_out, tiff_out).compression == "zstd"
    with tifffile.TiffFile(tiff_out) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ZSTD
        assert np.array_equal(tif.asarray(), data)


def test_a_source_pyramid_is_copied_as_it_is(tmp_path: Path) -> None:
    """Levels halved along z too and smoothed (gaussian) are kept so; asking for a
    level count computes y/x levels anew instead."""
    src = tmp_path / "vol.ome.zarr"
    vol = np.random.default_rng(4).integers(0, 4000, (8, 40, 36), dtype=np.uint16)
    dims = [
        Dimension(name="z", count=8, type="space", scale=2.0, unit="micrometer"),
        Dimension(name="y", count=40, type="space", scale=0.5, unit="micrometer"),
        Dimension(name="x", count=36, type="space", scale=0.5, unit="micrometer"),
    ]
    with create_stream(
        AcquisitionSettings(root_path=str(src), dimensions=dims, dtype="uint16")
    ) as stream:
        for plane in vol:
            stream.append(plane)
    build_pyramid(src, levels=3, method="gaussian", factors={"z": 2, "y": 2, "x": 2})
    out = tmp_path / "vol04.ome.zarr"

    convert(src, out, ConvertOptions(version="0.4"))

    validate_ome_zarr(out)
    got, want = describe(str(out)).images[0], describe(str(src)).images[0]
    assert [lv.shape for lv in got.levels] == [(8, 40, 36), (4, 20, 18), (2, 10, 9)]
    assert [lv.scale for lv in got.levels] == [lv.scale for lv in want.levels]
    for lv in want.levels:
        a = zarr.open_array(str(out / lv.path), mode="r")[...]
        assert np.array_equal(a, zarr.open_array(str(src / lv.path), mode="r")[...]), lv.path
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["multiscales"][0]["type"] == "gaussian"

    convert(src, tmp_path / "yx.ome.zarr", ConvertOptions(pyramid_levels=2))
    rebuilt = describe(str(tmp_path / "yx.ome.zarr")).images[0]
    assert [lv.shape for lv in rebuilt.levels] == [(8, 40, 36), (8, 20, 18)]


def _tiff_pyramid(path: Path, volumes: list[np.ndarray], levels: int, axes: str = "ZCYX") -> None:
    """An OME-TIFF whose series keep reduced resolutions as SubIFDs, written by tifffile:
    every other pixel kept per level (no averaging, unlike the levels omestream computes)."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for vol in volumes:
            meta = {"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
            tif.write(vol, subifds=levels - 1, metadata=meta, photometric="minisblack")
            for k in range(1, levels):
                tif.write(vol[..., :: 2**k, :: 2**k], subfiletype=1, photometric="minisblack")


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_tiff_sub_ifd_levels_are_copied_as_they_are(tmp_path: Path, version: str) -> None:
    """Both series' SubIFD levels land in the OME-Zarr as they are (the source's
    decimation, not a mean computed anew), in the output's axis order, with scales
    that follow each level's step; asking for a level count computes them anew."""
    rng = np.random.default_rng(11)
    vols = [rng.integers(0, 4000, (3, 2, 40, 36), dtype=np.uint16) for _ in range(2)]
    src = tmp_path / "pyr.ome.tiff"
    _tiff_pyramid(src, vols, levels=3)
    out = tmp_path / "pyr.ome.zarr"

    convert(src, out, ConvertOptions(version=version))

    validate_ome_zarr(out)
    info = describe(str(out))
    assert len(info.images) == 2
    for im, vol in zip(info.images, vols, strict=True):
        assert im.axis_names == "czyx"  # NGFF order; the source's is z, c, y, x
        assert [lv.shape for lv in im.levels] == [(2, 3, 40, 36), (2, 3, 20, 18), (2, 3, 10, 9)]
        assert [lv.scale[-2:] for lv in im.levels] == [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0)]
        assert all(lv.scale[:2] == im.levels[0].scale[:2] for lv in im.levels)
        for k, lv in enumerate(im.levels):
            got = zarr.open_array(str(out / im.path / lv.path), mode="r")[...]
            want = vol[..., :: 2**k, :: 2**k].transpose(1, 0, 2, 3)
            assert np.array_equal(got, want), lv.path
    with tifffile.TiffFile(src) as tif:  # the same pixels tifffile reads as the levels
        assert np.array_equal(tif.series[1].levels[2].asarray(), vols[1][..., ::4, ::4])

    again = tmp_path / "computed.ome.zarr"
    convert(src, again, ConvertOptions(pyramid_levels=2))
    (first, _) = describe(str(again)).images
    low = zarr.open_array(str(again / first.path / first.levels[1].path), mode="r")[...]
    mean = vols[0].reshape(3, 2, 20, 2, 18, 2).mean(axis=(3, 5)).transpose(1, 0, 2, 3)
    assert np.abs(low - mean).max() <= 1  # computed: the mean of 2 x 2


def test_ome_tiff_levels_that_differ_between_series_are_computed_anew(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    src = tmp_path / "uneven.ome.tiff"
    with tifffile.TiffWriter(src, ome=True) as tif:
        for n_levels in (3, 2):
            vol = rng.integers(0, 4000, (2, 32, 32), dtype=np.uint16)
            tif.write(
                vol, subifds=n_levels - 1, metadata={"axes": "ZYX"}, photometric="minisblack"
            )
            for k in range(1, n_levels):
                tif.write(vol[..., :: 2**k, :: 2**k], subfiletype=1, photometric="minisblack")
    out = tmp_path / "uneven.ome.zarr"
    with pytest.warns(UserWarning, match="resolution levels cannot be copied .*computed anew"):
        convert(src, out)
    validate_ome_zarr(out)
    for im in describe(str(out)).images:
        assert [lv.shape[-2:] for lv in im.levels][:2] == [(32, 32), (16, 16)]
