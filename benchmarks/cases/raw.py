"""Disk limits: sequential writes of the frame bytes into one file + fsync."""

from __future__ import annotations

import errno
import mmap
import os
from typing import Any

from benchmarks.context import CaseContext, RunFn


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


def raw_direct(ctx: CaseContext) -> RunFn:
    """O_DIRECT writes from page-aligned anonymous-mmap copies of the pool.

    Falls back to buffered writes + fsync (with a note) if O_DIRECT is refused.
    """
    maps: list[mmap.mmap] = []
    for f in ctx.pool:
        m = mmap.mmap(-1, f.nbytes)
        m[:] = f.tobytes()
        maps.append(m)
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
    bufs = [memoryview(m) for m in maps]

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


def _write_all(fd: int, buf: memoryview) -> None:
    done = 0
    while done < len(buf):
        done += os.write(fd, buf[done:])
