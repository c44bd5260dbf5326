"""Read-only descriptions of datasets (used by ``info``, ``tree`` and ``view``)."""

from __future__ import annotations

import os

from omestream.summary.model import (
    AxisInfo,
    ChannelInfo,
    DatasetInfo,
    ImageInfo,
    LevelInfo,
    PlateInfo,
    WellInfo,
)

__all__ = [
    "AxisInfo",
    "ChannelInfo",
    "DatasetInfo",
    "ImageInfo",
    "LevelInfo",
    "PlateInfo",
    "WellInfo",
    "describe",
    "is_tiff",
]

_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


def is_tiff(location: str | os.PathLike[str]) -> bool:
    loc = os.fspath(location)
    return loc.lower().endswith(_TIFF_SUFFIXES) or (os.path.isfile(loc) and _tiff_magic(loc))


def _tiff_magic(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:2] in (b"II", b"MM") and head[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def describe(location: str | os.PathLike[str]) -> DatasetInfo:
    """Describe the OME-Zarr store or (OME-)TIFF file at ``location``."""
    loc = os.fspath(location)
    if "://" not in loc and not os.path.exists(loc):
        raise FileNotFoundError(f"{loc}: no such file or directory")
    if is_tiff(loc):
        from omestream.summary.tiff import describe_tiff

        return describe_tiff(loc)
    from omestream.summary.zarr_store import describe_zarr

    return describe_zarr(loc)
