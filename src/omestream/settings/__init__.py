"""Settings: frozen, validated descriptions of what to write (no I/O)."""

from omestream.settings.acquisition import AcquisitionSettings, Plate, Pyramid, WriterOptions
from omestream.settings.dimensions import (
    Channel,
    ChannelDisplay,
    Dimension,
    Position,
    PositionDimension,
    StandardAxis,
    dims_from_standard_axes,
)
from omestream.settings.formats import ENGINES, FormatSpec

__all__ = [
    "ENGINES",
    "AcquisitionSettings",
    "Channel",
    "ChannelDisplay",
    "Dimension",
    "FormatSpec",
    "Plate",
    "Position",
    "PositionDimension",
    "Pyramid",
    "StandardAxis",
    "WriterOptions",
    "dims_from_standard_axes",
]
