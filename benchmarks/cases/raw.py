"""Disk limits: sequential writes of the frame bytes into one file + fsync.

``raw-direct-files4`` is a reference, not the limit: the frames as files of about
8 MiB, four written at once with O_DIRECT, then one ``syncfs``; the device's
ceiling when several writes are in flight (what omestream's direct I/O does).
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path
from typing import Any

from benchmarks.context import CaseContext, RunFn, Skip


def raw_buffered(ctx: CaseContext) -> RunFn:
    """Page-cache writes of the pool frames, then one fsync."""
    bufs = [f.data.cast("B") for f in ctx.pool]
    path = ctx.out / "raw.bin"

    def run() -> dict[str, Any]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for i in range(ctx.n):
                _write_all(fd, bufs[i % len(bufs)])
            os.fsync(fd)
        finally:
            os.close(fd)
        return {}

    return run


def _aligned_copies(ctx: CaseContext) -> list[memoryview]:
    """Page-aligned (anonymous mmap) copies of the pool frames, as O_DIRECT needs."""
    out = []
    for f in ctx.pool:
        m = mmap.mmap(-1, f.nbytes)
        m[:] = f.tobytes()
        out.append(memoryview(m))
    return out


def raw_direct(ctx: CaseContext) -> RunFn:
    """O_DIRECT writes from page-aligned anonymous-mmap copies of the pool.

    Falls back to buffered writes + fsync (with a note) if O_DIRECT is refused.
    """
    bufs = _aligned_copies(ctx)
    path = ctx.out / "raw-direct.bin"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    note = ""
    aligned = ctx.workload.frame_bytes % mmap.PAGESIZE == 0
    try:
        if not aligned:
            raise OSError(errno.EINVAL, "frame size is not a multiple of the page size")
        os.close(os.open(path, flags | os.O_DIRECT, 0o644))
        flags |= os.O_DIRECT
    except OSError as e:
        note = f"O_DIRECT refused ({e.strerror}); fell back to buffered + fsync"

    def run() -> dict[str, Any]:
        fd = os.open(path, flags, 0o644)
        try:
            for i in range(ctx.n):
                _write_all(fd, bufs[i % len(bufs)])
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"note": note} if note else {"o_direct": True}

    return run


def raw_direct_files(ctx: CaseContext, in_flight: int = 4, file_mib: int = 8) -> RunFn:
    """O_DIRECT writes of ~``file_mib`` MiB files (whole frames), ``in_flight`` at once."""
    from concurrent.futures import ThreadPoolExecutor

    w = ctx.workload
    if w.frame_bytes % mmap.PAGESIZE:
        raise Skip("frame size is not a multiple of the page size")
    bufs = _aligned_copies(ctx)
    per_file = max(1, (file_mib << 20) // w.frame_bytes)
    files = [range(i, min(i + per_file, ctx.n)) for i in range(0, ctx.n, per_file)]
    require_direct_io(ctx.out)

    def write_file(k: int) -> None:
        fd = os.open(ctx.out / f"f{k}", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        try:
            views = [bufs[i % len(bufs)] for i in files[k]]
            while views:
                n = os.writev(fd, views)
                while n:
                    if n >= len(views[0]):
                        n -= len(views.pop(0))
                    else:  # a short write ends on a block boundary: still aligned
                        views[0], n = views[0][n:], 0
        finally:
            os.close(fd)

    def run() -> dict[str, Any]:
        with ThreadPoolExecutor(in_flight) as ex:
            list(ex.map(write_file, range(len(files))))
        sync_all(ctx.out)
        return {"files": len(files), "in_flight": in_flight}

    return run


def require_direct_io(out: Path) -> None:
    """Skip the case where the output's file system refuses ``O_DIRECT``."""
    probe = out / "probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644))
    except OSError as e:
        raise Skip(f"O_DIRECT refused ({e.strerror})") from e
    os.unlink(probe)


def sync_all(out: Path) -> None:
    """One ``syncfs`` for all files and the device cache, as omestream's close."""
    import ctypes

    fd = os.open(out, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _write_all(fd: int, buf: memoryview) -> None:
    done = 0
    while done < len(buf):
        done += os.write(fd, buf[done:])
