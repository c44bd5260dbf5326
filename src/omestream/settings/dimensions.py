"""Dimensions of an acquisition: axes, channels and stage positions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from omestream.settings._base import FrozenModel
from omestream.settings.colors import NAMED_COLORS
from omestream.settings.names import check_label
from omestream.settings.units import normalize_unit

__all__ = [
    "Channel",
    "ChannelDisplay",
    "Dimension",
    "DimensionType",
    "Position",
    "PositionDimension",
    "StandardAxis",
    "dims_from_standard_axes",
]

DimensionType = Literal["space", "time", "channel", "other", "position"]


class ChannelDisplay(FrozenModel):
    """How viewers first show a channel: OME-Zarr's ``omero`` window and flags (OME-XML
    has no place for them). Given, they are written as they are; a channel without a
    ``window`` gets one measured from its frames."""

    window: tuple[float, float] | None = Field(
        default=None, description="start, end of the intensity window; None = measured"
    )
    limits: tuple[float, float] | None = Field(
        default=None, description="min, max the window can span; None = the dtype's range"
    )
    active: bool = True
    inverted: bool = False

    @field_validator("window", "limits")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] <= v[1]):
            raise ValueError(
                f"expected two finite numbers, the first not above the second; got {v}"
            )
        return v


class Channel(FrozenModel):
    """One channel, used as a coordinate of a channel dimension."""

    name: str
    color: str | None = Field(
        default=None,
        description="'RRGGBB' hex (a leading '#' is accepted), a colour name, an "
        "integer (0xRRGGBB, or OME's 32-bit RGBA when negative or above 0xFFFFFF) or an "
        "ome-types Color; None = "
        "the dye's usual colour (from the wavelengths, fluorophore or name), else a free "
        "palette colour.",
    )
    excitation_wavelength: float | None = Field(default=None, gt=0, description="nm")
    emission_wavelength: float | None = Field(default=None, gt=0, description="nm")
    fluorophore: str | None = None
    display: ChannelDisplay | None = Field(
        default=None, description="OME-Zarr display window and flags; None = measured, shown"
    )

    if TYPE_CHECKING:
        # The validator also takes a 0xRRGGBB integer colour, and the wavelengths
        # under ome-writers' names with their unit (``*_wavelength_nm``).
        def __init__(
            self,
            *,
            name: str,
            color: str | int | tuple[int, ...] | None = None,
            excitation_wavelength: float | None = None,
            emission_wavelength: float | None = None,
            fluorophore: str | None = None,
            display: ChannelDisplay | None = None,
            excitation_wavelength_nm: float | None = None,
            emission_wavelength_nm: float | None = None,
        ) -> None: ...

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_label(v, "channel")

    @field_validator("color", mode="before")
    @classmethod
    def _color(cls, v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return _int_color(v)
        if callable(getattr(v, "as_rgb_tuple", None)):  # ome-types / pydantic Color
            return _rgb_hex(v.as_rgb_tuple())
        if isinstance(v, tuple | list):  # (r, g, b) or (r, g, b, alpha), 0-255
            if len(v) in (3, 4) and all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v[:3]
            ):
                return _rgb_hex(v)
            raise ValueError(f"color {v!r} is not an (r, g, b) tuple of integers 0-255")
        s = str(v).strip()
        s = NAMED_COLORS.get(s.lower(), s).removeprefix("#")
        if len(s) == 8:  # RRGGBBAA: alpha is not part of NGFF colours
            s = s[:6]
        try:
            int(s, 16)
        except ValueError:
            s = ""
        if len(s) == 6:
            return s.upper()
        # other CSS names ('lime', 'navy'), '#0f0', 'rgb(0, 255, 0)'; ours come first:
        # microscopy's green is 00FF00 where CSS says 008000
        from pydantic_extra_types.color import Color

        try:
            return _rgb_hex(Color(str(v).strip()).as_rgb_tuple())
        except ValueError:
            raise ValueError(
                f"color {v!r} is not 'RRGGBB' hex, an (r, g, b) tuple or a colour name"
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and any(k in v for k in _NM_ALIASES):
            # ome-writers spells the wavelengths with their unit
            v = {_NM_ALIASES.get(k, k): x for k, x in v.items()}
        return v


def _rgb_hex(rgb: Sequence[Any]) -> str:
    r, g, b = (int(c) for c in rgb[:3])
    return f"{r:02X}{g:02X}{b:02X}"


def _int_color(v: int) -> str:
    """An integer colour as 'RRGGBB'. Up to 0xFFFFFF it is 0xRRGGBB; a negative value
    or one above 24 bits can only be OME-XML's signed or unsigned 32-bit RGBA."""
    if 0 <= v <= 0xFFFFFF:
        return f"{v:06X}"
    if -(2**31) <= v < 0 or 0xFFFFFF < v <= 0xFFFFFFFF:
        return f"{(v & 0xFFFFFFFF) >> 8:06X}"
    raise ValueError(
        f"color {v} is outside 32 bits; give 0xRRGGBB, OME's RGBA integer or 'RRGGBB' hex"
    )


_NM_ALIASES = {
    "excitation_wavelength_nm": "excitation_wavelength",
    "emission_wavelength_nm": "emission_wavelength",
}


class Position(FrozenModel):
    """One stage position; on a plate also its well (``plate_row``, ``plate_column``)."""

    name: str
    plate_row: str | None = None
    plate_column: str | None = None
    x_coord: float | None = Field(default=None, description="stage x, in micrometer")
    y_coord: float | None = Field(default=None, description="stage y, in micrometer")
    z_coord: float | None = Field(default=None, description="stage z, in micrometer")
    grid_row: int | None = Field(default=None, ge=0, description="row in a tiled grid")
    grid_column: int | None = Field(default=None, ge=0, description="column in a tiled grid")

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_label(v, "position")

    @model_validator(mode="after")
    def _well(self) -> Position:
        if (self.plate_row is None) != (self.plate_column is None):
            raise ValueError(
                f"position {self.name!r}: give both plate_row and plate_column, or neither"
            )
        if (self.grid_row is None) != (self.grid_column is None):
            raise ValueError(
                f"position {self.name!r}: give both grid_row and grid_column, or neither"
            )
        return self

    @property
    def well(self) -> tuple[str, str] | None:
        if self.plate_row is None or self.plate_column is None:
            return None
        return (self.plate_row, self.plate_column)


class Dimension(FrozenModel):
    """One axis of the acquisition, in acquisition order (slowest first)."""

    name: str
    count: PositiveInt | None = Field(
        default=None, description="Size; None = unbounded (first dimension only)."
    )
    chunk_size: PositiveInt | None = Field(
        default=None, description="Elements per chunk; None = chosen automatically."
    )
    shard_size_chunks: PositiveInt | None = Field(
        default=None, description="Chunks per shard (Zarr v3); None = chosen automatically."
    )
    type: DimensionType | None = None
    unit: str | None = None
    scale: float | None = Field(default=None, gt=0)
    translation: float | None = None
    # type="position" (ome-writers' spelling of a PositionDimension): Positions
    coords: tuple[Channel | Position | str | float, ...] | None = None

    if TYPE_CHECKING:
        # Any sequence of coords is accepted; the field holds a tuple.
        def __init__(
            self,
            *,
            name: str,
            count: int | None = None,
            chunk_size: int | None = None,
            shard_size_chunks: int | None = None,
            type: DimensionType | None = None,
            unit: str | None = None,
            scale: float | None = None,
            translation: float | None = None,
            coords: Sequence[Channel | Position | str | float | dict[str, Any]] | None = None,
        ) -> None: ...

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_label(v, "dimension")

    @field_validator("scale", "translation")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _infer(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = str(data.get("name", ""))
        dim_type = data.get("type")
        coords = data.get("coords")
        if isinstance(coords, Iterable) and not isinstance(coords, str | bytes | dict):
            coords = data["coords"] = tuple(coords)  # ranges, arrays, generators alike
        else:
            coords = None  # not a sequence: field validation reports it
        if data.get("unit") is not None:
            data["unit"], dim_type = normalize_unit(str(data["unit"]), dim_type)
        if dim_type is None and coords and any(isinstance(c, Channel) for c in coords):
            dim_type = "channel"
        if dim_type is None:
            dim_type = _STANDARD_TYPES.get(name.lower())
        if dim_type == "channel" and coords is not None:
            coords = tuple(Channel.model_validate(c) if isinstance(c, str) else c for c in coords)
            data["coords"] = coords
        if dim_type == "position" and coords is not None:
            coords = tuple(Position.model_validate(c) for c in coords)
            data["coords"] = coords
        if coords is not None and data.get("count") is None:
            data["count"] = len(coords)
        data["type"] = dim_type
        return data

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        if self.coords is not None and self.count is not None and len(self.coords) != self.count:
            raise ValueError(
                f"dimension {self.name!r}: {len(self.coords)} coords given for count={self.count}"
            )
        if self.count is not None and self.chunk_size is not None and self.chunk_size > self.count:
            raise ValueError(
                f"dimension {self.name!r}: chunk_size={self.chunk_size} is larger than "
                f"count={self.count}"
            )
        return self

    @property
    def channels(self) -> tuple[Channel, ...] | None:
        """Channel coords (only for channel dimensions with coords)."""
        if self.coords is None or self.type != "channel":
            return None
        return tuple(c for c in self.coords if isinstance(c, Channel))


_MAX_POSITIONS = 1_000_000  # 1536 wells x 600 fields; more is a mistake, not a plate


class PositionDimension(FrozenModel):
    """The positions visited, in acquisition order; each becomes its own image."""

    positions: tuple[Position, ...]
    name: str = "p"

    if TYPE_CHECKING:
        # Positions may be given as names, dicts or a count; the field holds Positions.
        def __init__(
            self,
            *,
            positions: Sequence[Position | str | dict[str, Any]] | int,
            name: str = "p",
            type: Literal["position"] = "position",
            unit: None = None,
            chunk_size: None = None,
        ) -> None: ...

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        """ome-writers' position axis, ``type="position"`` with ``coords=[...]`` or
        ``count=n``, names the positions; its empty axis fields are dropped. Only with
        that type given: an axis that failed as a Dimension (a channel axis with a
        wrong count, say) must not pass as positions."""
        if not isinstance(data, dict) or data.get("type") != "position":
            return data
        data = dict(data)
        coords, count = data.pop("coords", None), data.pop("count", None)
        if "positions" not in data:
            data["positions"] = coords if coords is not None else count
        elif coords is not None or count is not None:
            raise ValueError("give positions=, or coords= / count=, not both")
        for key in ("unit", "chunk_size", "shard_size_chunks", "scale", "translation"):
            # each position is an image of its own: one per chunk is all there is
            one = key in ("chunk_size", "shard_size_chunks") and data.get(key) == 1
            if data.get(key) is None or one:
                data.pop(key, None)
        return data

    @field_validator("positions", mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v > _MAX_POSITIONS:
                raise ValueError(f"{v} positions is more than {_MAX_POSITIONS} (an image each)")
            return [Position(name=str(i)) for i in range(v)]
        return v

    @model_validator(mode="after")
    def _check(self) -> PositionDimension:
        if not self.positions:
            raise ValueError("a PositionDimension needs at least one position")
        seen: dict[tuple[str | None, str | None, int | None, int | None, str], int] = {}
        for i, p in enumerate(self.positions):
            # on a plate the name is the field's group path, so unique per well whatever
            # the grid; elsewhere names only label images, so a grid cell may repeat one
            grid = (None, None) if p.well else (p.grid_row, p.grid_column)
            key = (p.plate_row, p.plate_column, *grid, p.name)
            if key in seen:
                where = f" in well {p.plate_row}{p.plate_column}" if p.well else ""
                if p.grid_row is not None and not p.well:
                    where += f" at grid ({p.grid_row}, {p.grid_column})"
                raise ValueError(
                    f"duplicate position name {p.name!r}{where} (positions {seen[key]} and {i})"
                )
            seen[key] = i
        return self

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.positions]

    # Symmetry with Dimension, so code can treat both alike where it only reads these.
    type: Literal["position"] = "position"
    unit: None = None
    chunk_size: None = None


_STANDARD_TYPES: dict[str, DimensionType] = {
    "t": "time",
    "c": "channel",
    "z": "space",
    "y": "space",
    "x": "space",
}


class StandardAxis(StrEnum):
    """The conventional axis names and what they mean."""

    POSITION = "p"
    TIME = "t"
    CHANNEL = "c"
    Z = "z"
    Y = "y"
    X = "x"

    def dimension_type(self) -> DimensionType | None:
        return _STANDARD_TYPES.get(self.value)

    def default_unit(self) -> str | None:
        if self.value in "zyx":
            return "micrometer"
        return "second" if self.value == "t" else None


def dims_from_standard_axes(
    sizes: dict[str, int | list[Any] | None],
    chunk_shapes: dict[str, int] | None = None,
    shard_shapes: dict[str, int] | None = None,
) -> list[Dimension | PositionDimension]:
    """Build dimensions from standard axis names, in the order given.

    ``sizes`` maps ``"p" "t" "c" "z" "y" "x"`` to a count (``None`` = unbounded), or for
    ``"p"`` / ``"c"`` also to a list of position / channel names. ``shard_shapes`` counts
    chunks per shard, like ``Dimension.shard_size_chunks``.
    """
    chunk_shapes = chunk_shapes or {}
    shard_shapes = shard_shapes or {}
    unknown = set(sizes) - {a.value for a in StandardAxis}
    unknown |= (set(chunk_shapes) | set(shard_shapes)) - set(sizes)
    if unknown:
        raise ValueError(
            f"unknown axis names {sorted(unknown)}: expected some of p, t, c, z, y, x "
            "(chunk/shard shapes only for axes listed in sizes)"
        )
    dims: list[Dimension | PositionDimension] = []
    for key, size in sizes.items():
        axis = StandardAxis(key)
        if axis is StandardAxis.POSITION:
            dims.append(PositionDimension.model_validate({"positions": size}))
            continue
        coords = list(size) if isinstance(size, list | tuple) else None
        dims.append(
            Dimension(
                name=axis.value,
                count=None if coords is not None else size,  # type: ignore[arg-type]
                coords=tuple(coords) if coords is not None else None,
                chunk_size=chunk_shapes.get(key),
                shard_size_chunks=shard_shapes.get(key),
                type=axis.dimension_type(),
                unit=axis.default_unit(),
            )
        )
    return dims
