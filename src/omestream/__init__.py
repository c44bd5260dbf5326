"""omestream: stream microscopy acquisitions to OME-Zarr and OME-TIFF.

Describe the dataset once with :class:`AcquisitionSettings`, then
``with create_stream(settings) as stream: stream.append(frame)``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("omestream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from omestream.errors import (
    BackendUnavailableError,
    ConcurrentModificationError,
    FrameCountError,
    FrameDtypeError,
    FrameError,
    FrameShapeError,
    OmeStreamError,
    ReadOnlyError,
    SettingsError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StreamClosedError,
    WriteError,
)
from omestream.pyramid import build_pyramid
from omestream.repair import RepairReport, repair
from omestream.settings import (
    AcquisitionSettings,
    Channel,
    ChannelDisplay,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    Pyramid,
    StandardAxis,
    WriterOptions,
    dims_from_standard_axes,
)
from omestream.store import open_store
from omestream.stream import OMEStream, create_stream

__all__ = [
    "AcquisitionSettings",
    "BackendUnavailableError",
    "Channel",
    "ChannelDisplay",
    "ConcurrentModificationError",
    "Dimension",
    "FrameCountError",
    "FrameDtypeError",
    "FrameError",
    "FrameShapeError",
    "OMEStream",
    "OmeStreamError",
    "Plate",
    "Position",
    "PositionDimension",
    "Pyramid",
    "ReadOnlyError",
    "RepairReport",
    "SettingsError",
    "StandardAxis",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StreamClosedError",
    "WriteError",
    "WriterOptions",
    "__version__",
    "build_pyramid",
    "create_stream",
    "dims_from_standard_axes",
    "open_store",
    "repair",
]
