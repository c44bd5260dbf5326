"""Holes: byte ranges of a file that were never written (``SEEK_DATA``).

Bytes a writer reserved but did not fill yet read as zeros on every file system; only
where the file system reports holes can a reader tell them from pixels that are zero.
The OME-TIFF engine relies on that when it reserves room for pages before writing
their pixels (see :mod:`omestream.tiff.ifd`), so it asks :func:`reports_holes` first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

from omestream.io.libc import open_anonymous

__all__ = ["has_data", "reports_holes"]

# the probe file's hole: a few blocks of any file system, below any preallocation unit
_PROBE_HOLE = 1 << 20


def has_data(fd: int, offset: int) -> bool:
    """False when ``offset`` lies in a hole of the file: bytes never written.

    True where the system cannot say (no ``SEEK_DATA``, or the query fails).
    """
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:
        return True
    try:
        return os.lseek(fd, offset, seek_data) == offset
    except OSError as exc:
        # ENXIO: no data at or after offset; anything else: the query is unsupported
        return exc.errno != errno.ENXIO


def reports_holes(directory: str) -> bool:
    """Whether files in ``directory`` report their holes, tried on a scratch file.

    False where they read as data: file systems without ``SEEK_DATA`` (NFS before
    4.2, for one) say every byte up to the end is data. The scratch file has no name
    where the file system allows it, and is removed otherwise.
    """
    if getattr(os, "SEEK_DATA", None) is None:
        return False
    path = None
    try:
        fd = open_anonymous(directory)
        if fd is None:
            fd, path = tempfile.mkstemp(prefix=".omestream-holes-", dir=directory)
    except OSError:
        return False
    try:
        os.pwrite(fd, b"\0", _PROBE_HOLE)
        return not has_data(fd, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
