"""The exceptions omestream raises.

Every error derives from :class:`OmeStreamError`, and also from the builtin a
user would already catch for that kind of problem::

    OmeStreamError
    ├── SettingsError(ValueError)            settings or names that cannot be written
    ├── FrameError(ValueError)               a frame that does not fit the stream
    │   ├── FrameShapeError
    │   ├── FrameDtypeError(TypeError)
    │   └── FrameCountError(IndexError)      more frames than the acquisition holds
    ├── StreamClosedError(RuntimeError)      append/skip after close
    ├── BackendUnavailableError(ImportError) an optional engine is not installed
    ├── StoreError
    │   ├── StoreExistsError(FileExistsError)
    │   ├── StoreFormatError(ValueError)     not OME-Zarr/OME-TIFF, or malformed metadata
    │   ├── ReadOnlyError(PermissionError)
    │   └── ConcurrentModificationError(RuntimeError)
    └── WriteError(OSError)                  the storage layer failed (disk full, permissions)

Messages say where the problem is, what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ConcurrentModificationError",
    "FrameCountError",
    "FrameDtypeError",
    "FrameError",
    "FrameShapeError",
    "OmeStreamError",
    "ReadOnlyError",
    "SettingsError",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StreamClosedError",
    "WriteError",
]


class OmeStreamError(Exception):
    """Root of every error raised by omestream."""


class SettingsError(OmeStreamError, ValueError):
    """Acquisition settings, names or options that cannot be written."""


class FrameError(OmeStreamError, ValueError):
    """A frame passed to ``append`` does not fit the stream; nothing was written."""


class FrameShapeError(FrameError):
    """The frame has the wrong shape."""


class FrameDtypeError(FrameError, TypeError):
    """The frame has the wrong dtype (omestream never casts silently)."""


class FrameCountError(FrameError, IndexError):
    """More frames were appended or skipped than the acquisition holds."""


class StreamClosedError(OmeStreamError, RuntimeError):
    """The stream was already closed."""


class BackendUnavailableError(OmeStreamError, ImportError):
    """An optional storage engine is not installed."""


class StoreError(OmeStreamError):
    """Problems with an output location or an existing dataset."""


class StoreExistsError(StoreError, FileExistsError):
    """The output exists and ``overwrite`` was not requested."""


class StoreFormatError(StoreError, ValueError):
    """The location is not a valid OME-Zarr/OME-TIFF dataset or its metadata is malformed."""


class ReadOnlyError(StoreError, PermissionError):
    """A change was requested on a dataset opened read-only."""


class ConcurrentModificationError(StoreError, RuntimeError):
    """Another writer changed the same data or metadata at the same time."""


class WriteError(OmeStreamError, OSError):
    """The storage layer failed while writing (disk full, permission denied, ...)."""
