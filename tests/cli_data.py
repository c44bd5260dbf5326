"""Small datasets for the command-line tests: ours (create_stream) and ome-zarr-py's."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import zarr

from omestream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    Pyramid,
    create_stream,
)
from tests.cases import CASES
from tests.streaming import stream_case

PLATE_WELLS = [("A", "1"), ("A", "3"), ("B", "2")]
BRIGHT_WELL = ("A", "3")


def write_case(root: Path, case_id: str, version: str = "0.5") -> str:
    case = next(c for c in CASES if c.id == case_id)
    settings = case.settings(str(root), {"name": "ome-zarr", "version": version})
    stream_case(case, settings)
    return settings.output_path


def write_plate(root: Path, version: str = "0.5") -> str:
    """A 2x4 plate with three wells; BRIGHT_WELL is 20x brighter than the others."""
    positions = [Position(name="0", plate_row=r, plate_column=c) for r, c in PLATE_WELLS]
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            PositionDimension(positions=positions),
            Dimension(
                name="c",
                count=2,
                coords=[Channel(name="DNA", color="0000FF"), Channel(name="GFP", color="00FF00")],
            ),
            Dimension(name="y", count=32, chunk_size=16),
            Dimension(name="x", count=32, chunk_size=16),
        ],
        dtype="uint16",
        plate=Plate(row_names=["A", "B"], column_names=["1", "2", "3", "4"], name="screen"),
        format={"name": "ome-zarr", "version": version},
    )
    rng = np.random.default_rng(1)
    with create_stream(settings) as stream:
        for r, c in PLATE_WELLS:
            level = 2000 if (r, c) == BRIGHT_WELL else 100
            for _ch in range(2):
                stream.append(rng.integers(level, level + 50, (32, 32), dtype=np.uint16))
    return settings.output_path


def write_pyramid_image(root: Path) -> str:
    """A 2-channel image with 3 levels: channel 0 bright on the left, channel 1 on the right."""
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(
                name="c",
                count=2,
                coords=[
                    Channel(name="red", color="FF0000"),
                    Channel(name="green", color="00FF00"),
                ],
            ),
            Dimension(name="z", count=3, type="space", unit="um", scale=2.0),
            Dimension(name="y", count=64, type="space", unit="um", scale=0.5),
            Dimension(name="x", count=64, type="space", unit="um", scale=0.5),
        ],
        dtype="uint16",
        pyramid=Pyramid(levels=3),
    )
    with create_stream(settings) as stream:
        for c in range(2):
            for z in range(3):
                frame = np.full((64, 64), 10, np.uint16)
                half = slice(0, 32) if c == 0 else slice(32, 64)
                frame[:, half] = 1000 + 100 * z  # max projection = the last plane
                stream.append(frame)
    return settings.output_path


def write_ome_zarr_py_image(root: Path, version: str = "0.4") -> tuple[str, np.ndarray]:
    """An image written by ome-zarr-py (its own level naming and rounding)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    data = np.arange(2 * 3 * 40 * 36, dtype=np.uint16).reshape(2, 3, 40, 36)
    fmt = FormatV04() if version == "0.4" else FormatV05()
    window = {"min": 0, "max": 65535, "start": 0, "end": 8000}
    group = zarr.open_group(str(root), mode="w", zarr_format=2 if version == "0.4" else 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(data, group, axes="czyx", fmt=fmt, scale_factors=(2,),
                    omero={"channels": [{"label": "a", "color": "FF0000", "window": window},
                                         {"label": "b", "color": "00FF00", "window": window}]})  # fmt: skip
    return str(root), data


def write_ome_zarr_py_plate(root: Path) -> tuple[str, dict[str, np.ndarray]]:
    """A 0.4 plate written by ome-zarr-py's plate and well writers."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV04()
    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    wells = ["A/1", "B/2"]
    write_plate_metadata(group, ["A", "B"], ["1", "2"], wells, fmt=fmt)
    pixels = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, w in enumerate(wells):
            well = group.require_group(w)
            write_well_metadata(well, [{"path": "0"}], fmt=fmt)
            data = np.full((2, 16, 16), 20 + 200 * k, np.uint8)
            write_image(data, well.require_group("0"), axes="cyx", fmt=fmt, scale_factors=())
            pixels[w] = data
    return str(root), pixels
