"""Read-only descriptions of datasets (used by ``info``, ``tree`` and ``view``)."""

from __future__ import annotations

import dataclasses
import os

from omestream.io.paths import missing
from omestream.summary.model import (
    AcquisitionInfo,
    AxisInfo,
    ChannelInfo,
    DatasetInfo,
    ImageInfo,
    LevelInfo,
    PlateInfo,
    WellInfo,
)

__all__ = [
    "AcquisitionInfo",
    "AxisInfo",
    "ChannelInfo",
    "DatasetInfo",
    "ImageInfo",
    "LevelInfo",
    "PlateInfo",
    "WellInfo",
    "describe",
    "is_tiff",
    "tiff_file",
    "tiff_files",
]

_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


def is_tiff(location: str | os.PathLike[str]) -> bool:
    """A TIFF file, or a folder of TIFF files (one per position) that is not Zarr."""
    loc = os.fspath(location)
    if loc.lower().endswith(_TIFF_SUFFIXES):
        return True
    if os.path.isfile(loc):
        return _tiff_magic(loc)
    return _tiff_folder_files(loc) != []


def _tiff_folder_files(loc: str) -> list[str]:
    if "://" in loc or not os.path.isdir(loc):
        return []
    names = os.listdir(loc)
    if {"zarr.json", ".zgroup", ".zattrs", ".zarray"} & set(names):
        return []
    return sorted(n for n in names if n.lower().endswith(_TIFF_SUFFIXES))


def tiff_files(location: str | os.PathLike[str]) -> list[str]:
    """The files of a TIFF location: the file itself, or every TIFF file of a folder with
    one OME-TIFF file per position (as the OME-TIFF writer makes it), in name order."""
    loc = os.fspath(location)
    files = _tiff_folder_files(loc)
    return [os.path.join(loc, f) for f in files] if files else [loc]


def tiff_file(location: str | os.PathLike[str]) -> str:
    """The file to open for a TIFF location: the file itself or the first file of a
    folder of them, whose OME-XML names the others' images."""
    return tiff_files(location)[0]


def _tiff_magic(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:2] in (b"II", b"MM") and head[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def describe(location: str | os.PathLike[str]) -> DatasetInfo:
    """Describe the OME-Zarr store or (OME-)TIFF file at ``location``."""
    loc = os.fspath(location)
    if "://" not in loc and not os.path.exists(loc):
        raise missing(loc)
    if is_tiff(loc):
        from omestream.summary.tiff import describe_tiff

        info = describe_tiff(loc)
    else:
        from omestream.summary.zarr_store import describe_zarr

        info = describe_zarr(loc)
    acq = info.acquisition
    if acq is not None and not acq.complete and not acq.mended:
        info = dataclasses.replace(info, acquisition=dataclasses.replace(acq, writer=_writer(loc)))
    return info


def _writer(location: str) -> str | None:
    """Whether the stream of an unfinished dataset is still at work, from its stream
    lock: "streaming", "gone", or None when nothing says (a copied dataset, a store
    without locks)."""
    from omestream.errors import ConcurrentModificationError
    from omestream.io.kv import open_kv
    from omestream.io.locks import check_no_stream

    try:
        where = open_kv(location) if "://" in location else location
        return "gone" if check_no_stream(where, "describe it") else None
    except ConcurrentModificationError:
        return "streaming"
    except Exception:  # a lock this user cannot read, a store that cannot say: unknown
        return None
