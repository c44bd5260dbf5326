"""CPU limit for compressed workloads: blosc encode of every chunk, no I/O; and
``codec-write``, the same encodes with their output written (a reference).

numcodecs' Blosc uses its global, internally-threaded context only when
``numcodecs.blosc.use_threads`` is true (or None and called from the main
thread); with ``use_threads = False`` every call uses a private context with
one internal thread and releases the GIL, so a pool of ``os.cpu_count()``
Python threads encodes independent chunks on all cores.

``codec-limit-blosc2`` encodes the same chunks with C-Blosc2 through
python-blosc2's own API (one single-threaded context per call, GIL released):
a faster build of the same codecs, so the limit is the faster of the two (like
the disk limit, the faster of two raw writes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from benchmarks.context import CaseContext, RunFn
from benchmarks.workloads import BLOSC_BLOCKSIZE

_T = TypeVar("_T")


def _numcodecs_blosc(cname: str, typesize: int) -> Callable[[np.ndarray], bytes]:
    import numcodecs.blosc
    from numcodecs import Blosc

    numcodecs.blosc.use_threads = False
    codec = Blosc(cname=cname, clevel=1, shuffle=Blosc.BITSHUFFLE, blocksize=BLOSC_BLOCKSIZE)
    return codec.encode  # type: ignore[no-any-return]


def _blosc2(cname: str, typesize: int) -> Callable[[np.ndarray], bytes]:
    import blosc2

    blosc2.set_releasegil(True)
    params = {
        "codec": blosc2.Codec[cname.upper()],
        "clevel": 1,
        "filters": [blosc2.Filter.BITSHUFFLE],
        "typesize": typesize,
        "blocksize": BLOSC_BLOCKSIZE,
        "nthreads": 1,
        "splitmode": blosc2.SplitMode.FORWARD_COMPAT_SPLIT,
    }

    def encode(chunk: np.ndarray) -> bytes:
        return blosc2.compress2(chunk, **params)  # type: ignore[no-any-return]

    return encode


_ENCODERS = {"numcodecs": _numcodecs_blosc, "blosc2": _blosc2}


def _chunk_encoder(
    ctx: CaseContext, cname: str, then: Callable[[bytes], _T], impl: str = "numcodecs"
) -> Callable[[ThreadPoolExecutor, np.ndarray], list[Future[_T]]]:
    """``submit(pool, block)``: each chunk of ``block`` encoded on the pool's threads,
    with the workloads' Blosc codec (one private single-threaded context per call),
    and ``then`` applied to the encoded bytes on the same thread."""
    w = ctx.workload
    codec = _ENCODERS[impl](cname, np.dtype(w.dtype).itemsize)
    _, cy, cx = w.chunk

    def encode(block: np.ndarray, y: int, x: int) -> _T:
        return then(codec(np.ascontiguousarray(block[:, y : y + cy, x : x + cx])))

    def submit(pool: ThreadPoolExecutor, block: np.ndarray) -> list[Future[_T]]:
        return [
            pool.submit(encode, block, y, x)
            for y in range(0, w.height, cy)
            for x in range(0, w.width, cx)
        ]

    return submit


def codec_limit(ctx: CaseContext, cname: str = "zstd", impl: str = "numcodecs") -> RunFn:
    submit = _chunk_encoder(ctx, cname, len, impl)  # only the sizes are kept
    w = ctx.workload
    threads = os.cpu_count() or 1

    def run() -> dict[str, Any]:
        compressed = 0
        pending: list[Any] = []
        with ThreadPoolExecutor(threads) as ex:
            for _, block in ctx.blocks():
                pending.extend(submit(ex, block))
                if len(pending) > 8 * threads:
                    compressed += sum(f.result() for f in pending)
                    pending.clear()
            compressed += sum(f.result() for f in pending)
        return {
            "threads": threads,
            "compressed_bytes": compressed,
            "compression_ratio": w.total_bytes / compressed,
        }

    return run


def codec_write(ctx: CaseContext, cname: str = "zstd", in_flight: int = 4) -> RunFn:
    """A reference, not a limit: the codec limit's encodes, and each frame's encoded
    chunks written as one file (page-aligned, padded to whole pages) with O_DIRECT,
    ``in_flight`` files at once, then one ``syncfs``. What the simplest encode-and-write
    pipeline reaches: against ``codec-limit`` it shows what the I/O itself costs the
    CPU on this machine, against omestream what the Zarr engine adds."""
    import mmap

    from benchmarks.cases.raw import require_direct_io, sync_all
    from benchmarks.context import Skip

    submit = _chunk_encoder(ctx, cname, bytes)
    w = ctx.workload
    if w.chunk[0] != 1:
        raise Skip("only for workloads with one frame per chunk")
    threads = os.cpu_count() or 1
    require_direct_io(ctx.out)
    # page-aligned output buffers, one per frame in flight, reused (touched here)
    _, cy, cx = w.chunk
    room = w.frame_bytes + 64 * (w.height // cy + 1) * (w.width // cx + 1) + mmap.PAGESIZE
    free = [memoryview(mmap.mmap(-1, room)) for _ in range(in_flight + 1)]
    for buf in free:
        buf[:] = b"\0" * room

    def write(k: int, chunks: list[bytes], buf: memoryview) -> int:
        end = 0
        for c in chunks:
            buf[end : end + len(c)] = c
            end += len(c)
        size = -(-end // mmap.PAGESIZE) * mmap.PAGESIZE
        buf[end:size] = b"\0" * (size - end)
        fd = os.open(ctx.out / f"f{k}", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        try:
            done = 0
            while done < size:
                done += os.write(fd, buf[done:size])
        finally:
            os.close(fd)
        free.append(buf)
        return end

    def run() -> dict[str, Any]:
        compressed = 0
        frames: list[tuple[int, list[Any]]] = []
        written: list[Any] = []
        with ThreadPoolExecutor(threads) as enc, ThreadPoolExecutor(in_flight) as io:

            def hand_over(k: int, pending: list[Any]) -> None:
                nonlocal compressed
                while len(written) >= in_flight:  # bounded: wait for the oldest file
                    compressed += written.pop(0).result()
                written.append(io.submit(write, k, [f.result() for f in pending], free.pop()))

            for i, block in ctx.blocks():
                frames.append((i, submit(enc, block)))
                if len(frames) > 2:  # keep the encoders fed across frame ends
                    hand_over(*frames.pop(0))
            for k, pending in frames:
                hand_over(k, pending)
            compressed += sum(f.result() for f in written)
        sync_all(ctx.out)
        return {
            "threads": threads,
            "in_flight": in_flight,
            "compressed_bytes": compressed,
            "compression_ratio": w.total_bytes / compressed,
        }

    return run
