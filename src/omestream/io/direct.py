"""Direct I/O (``O_DIRECT``) helpers: what fits it, and positioned writes with it.

Writes that bypass the page cache skip the kernel's copy of every byte, which on
disks that take large sequential writes faster than writeback delivers them is the
difference between following the page cache and following the device. They need
buffer address, length and file offset in whole blocks (see
:data:`~omestream.io.libc.DIRECT_IO_ALIGN`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from omestream.io.libc import DIRECT_IO_ALIGN

__all__ = ["direct_fits", "drop_written", "open_direct", "pwrite_all"]


def direct_fits(part: object, whole: bool = True) -> bool:
    """Whether ``part`` may be written with direct I/O: a contiguous buffer with an
    aligned address and (``whole``) length (anything else, such as a list of strips:
    no). Without ``whole`` the caller writes the last partial block another way."""
    if isinstance(part, np.ndarray):
        arr = part
    elif isinstance(part, bytes | bytearray | memoryview):
        arr = np.frombuffer(part, np.uint8)
    else:
        return False
    if not arr.flags.c_contiguous or not arr.nbytes:
        return False
    if whole and arr.nbytes % DIRECT_IO_ALIGN:
        return False
    return bool(arr.ctypes.data % DIRECT_IO_ALIGN == 0)


def open_direct(path: str) -> int | None:
    """A second, write-only descriptor of ``path`` with direct I/O, or None where this
    system or file system has none (tmpfs, macOS, Windows)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def pwrite_all(fd: int, parts: Sequence[memoryview | np.ndarray], offset: int) -> None:
    """Write ``parts`` back to back at ``offset``, as few calls as the kernel allows.

    A short write of direct I/O ends on a block boundary, so the rest stays aligned.
    """
    views = [v for v in (memoryview(cast(Any, p)).cast("B") for p in parts) if len(v)]
    while views:
        n = os.pwritev(fd, views[:1024], offset)
        offset += n
        drop_written(views, n)


def drop_written(views: list[memoryview], n: int) -> None:
    """Remove the first ``n`` bytes of ``views``: what a (vectored) write just took."""
    while n:
        if n >= len(views[0]):
            n -= len(views.pop(0))
        else:
            views[0] = views[0][n:]
            n = 0
