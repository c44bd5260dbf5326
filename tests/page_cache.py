"""How much of a file sits in the page cache (mincore over a private mapping), and
whether a folder's file system has what a test needs."""

from __future__ import annotations

import ctypes
import mmap
import os

import pytest

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # no C library to look symbols up in (Windows)
    _libc = None


def resident_pages(path: str | os.PathLike[str], start: int = 0, end: int | None = None) -> int:
    """Pages of ``path`` in ``[start, end)`` (byte offsets) that are in the page cache."""
    if _libc is None or not hasattr(_libc, "mincore"):
        pytest.skip("mincore is not available here")
    size = os.path.getsize(path)
    end = size if end is None else min(end, size)
    page = mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        anchor = ctypes.c_char.from_buffer(m)  # never written: pages stay the file's own
        try:
            n = (size + page - 1) // page
            vec = (ctypes.c_ubyte * n)()
            rc = _libc.mincore(
                ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec
            )
            if rc != 0:
                pytest.skip(f"mincore failed: {os.strerror(ctypes.get_errno())}")
            return sum(vec[i] & 1 for i in range(start // page, (end + page - 1) // page))
        finally:
            del anchor  # release the buffer before the mapping closes


def require_droppable_cache(path: str | os.PathLike[str]) -> None:
    """Skip where the file system keeps file data in memory only (tmpfs)."""
    best, fstype = "", ""
    if not os.path.exists("/proc/mounts") or not hasattr(os, "posix_fadvise"):
        pytest.skip("needs Linux: page-cache advice and /proc/mounts")
    target = os.path.abspath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            mountpoint, kind = line.split()[1:3]
            # whole path components: /tmp holds /tmp/x, not /tmpx
            inside = os.path.commonpath([target, mountpoint]) == mountpoint
            if inside and len(mountpoint) > len(best):
                best, fstype = mountpoint, kind
    if fstype in {"tmpfs", "ramfs", ""}:
        pytest.skip(f"{fstype or 'unknown'} file system: no page cache to drop")


def require_direct_io(folder: str | os.PathLike[str]) -> None:
    """Skip where the file system in ``folder`` has no direct I/O (O_DIRECT)."""
    from omestream.io.direct import open_direct

    probe = os.path.join(folder, ".direct-io-probe")
    open(probe, "wb").close()
    try:
        fd = open_direct(probe)
    finally:
        os.unlink(probe)
    if fd is None:
        pytest.skip("this file system has no direct I/O")
    os.close(fd)
