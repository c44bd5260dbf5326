"""One table of acquisition setups, shared by every format and engine.

Each case builds AcquisitionSettings for a root path and format, and knows the
frames it appends and where each lands, so tests can compare pixel for pixel.
Cases follow the usage guide's setups, scaled down to test size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
)


@dataclass(frozen=True)
class Case:
    id: str
    dims: Callable[[], list[Dimension | PositionDimension]]
    dtype: str = "uint16"
    plate: Plate | None = None
    storage_order: Any = "ome"
    n_frames: int | None = None  # frames to append when the first axis is unbounded
    skip: tuple[int, ...] = ()  # frame numbers skipped instead of appended
    metadata: bool = False  # append per-frame metadata
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self, root: str, fmt: Any, **kw: Any) -> AcquisitionSettings:
        return AcquisitionSettings(
            root_path=root,
            dimensions=self.dims(),
            dtype=self.dtype,
            plate=self.plate,
            storage_order=self.storage_order,
            format=fmt,
            **{**self.extra, **kw},
        )


def frame_for(n: int, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """A deterministic frame whose pixels encode its frame number (and vary in y/x)."""
    y, x = np.indices(shape)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (n * 1000.0 + y * 0.5 + x * 0.25).astype(dt)
    hi = min(np.iinfo(dt).max, 2**31 - 1)
    base = (n * 37 + y * 3 + x) % (hi + 1)
    if dt.kind == "i" and np.iinfo(dt).min < 0:
        base = base - (hi + 1) // 2 if hi < 2**31 - 1 else base
    return base.astype(dt)


def _tczyx() -> list[Dimension | PositionDimension]:
    return [
        Dimension(name="t", count=2, chunk_size=1, type="time", unit="s", scale=2.0),
        Dimension(name="c", count=3, chunk_size=1, type="channel",
                  coords=[Channel(name="DAPI", color="0000FF", excitation_wavelength=405),
                          Channel(name="GFP", color="00FF00", emission_wavelength=510),
                          Channel(name="mCherry", color="FF0000", fluorophore="mCherry")]),
        Dimension(name="z", count=4, chunk_size=2, type="space", scale=0.5, unit="um"),
        Dimension(name="y", count=48, chunk_size=16, type="space", scale=0.1, unit="um"),
        Dimension(name="x", count=40, chunk_size=16, type="space", scale=0.1, unit="um"),
    ]  # fmt: skip


def _tzcyx() -> list[Dimension | PositionDimension]:
    d = _tczyx()
    return [d[0], d[2], d[1], d[3], d[4]]


def _multipos() -> list[Dimension | PositionDimension]:
    return [
        Dimension(name="t", count=2, chunk_size=1, type="time"),
        PositionDimension(positions=["Pos0", "Pos1", "Pos2"]),
        Dimension(name="c", count=2, chunk_size=1, type="channel"),
        Dimension(name="z", count=3, chunk_size=1, type="space", scale=5, unit="um"),
        Dimension(name="y", count=32, chunk_size=16, type="space", scale=2, unit="um"),
        Dimension(name="x", count=32, chunk_size=16, type="space", scale=2, unit="um"),
    ]


def _plate_dims() -> list[Dimension | PositionDimension]:
    return [
        Dimension(name="t", count=2, chunk_size=1, type="time"),
        PositionDimension(
            positions=[
                Position(name="fov0", plate_row="A", plate_column="1"),
                Position(name="fov0", plate_row="A", plate_column="2"),
                Position(name="fov0", plate_row="C", plate_column="4"),
                Position(name="fov1", plate_row="C", plate_column="4"),
            ]
        ),
        Dimension(name="c", count=2, chunk_size=1, type="channel"),
        Dimension(name="z", count=2, chunk_size=1, type="space"),
        Dimension(name="y", count=32, chunk_size=16, type="space"),
        Dimension(name="x", count=32, chunk_size=16, type="space"),
    ]


def _unbounded() -> list[Dimension | PositionDimension]:
    return [
        Dimension(name="t", count=None, chunk_size=3, type="time"),
        PositionDimension(positions=["Pos0", "Pos1"]),
        Dimension(name="y", count=24, chunk_size=16, type="space"),
        Dimension(name="x", count=20, chunk_size=16, type="space"),
    ]


def _event_driven() -> list[Dimension | PositionDimension]:
    return [
        Dimension(name="t", count=None, type="time"),
        Dimension(name="y", count=32, chunk_size=32, type="space"),
        Dimension(name="x", count=32, chunk_size=32, type="space"),
    ]


PLATE = Plate(
    name="Example Plate",
    row_names=["A", "B", "C", "D"],
    column_names=["1", "2", "3", "4", "5", "6", "7", "8"],
)

CASES: list[Case] = [
    Case("single-5d", _tczyx),
    Case("tzcyx-ome-order", _tzcyx),
    Case("tzcyx-acquisition-order", _tzcyx, storage_order="acquisition"),
    Case("explicit-order", _tzcyx, storage_order=["c", "t", "z", "y", "x"]),
    Case("multi-position", _multipos),
    Case("plate", _plate_dims, plate=PLATE),
    Case("unbounded", _unbounded, n_frames=13),
    Case("event-driven", _event_driven, n_frames=7, metadata=True),
    Case("skip-frames", _tczyx, skip=(3, 4, 5, 20)),
    Case("float32", _event_driven, dtype="float32", n_frames=4),
    Case("int8", _event_driven, dtype="int8", n_frames=3),
]

CASE_IDS = [c.id for c in CASES]
