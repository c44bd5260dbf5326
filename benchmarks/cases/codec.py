"""CPU limit for compressed workloads: blosc encode of every chunk, no I/O.

numcodecs' Blosc uses its global, internally-threaded context only when
``numcodecs.blosc.use_threads`` is true (or None and called from the main
thread); with ``use_threads = False`` every call uses a private context with
one internal thread and releases the GIL, so a pool of ``os.cpu_count()``
Python threads encodes independent chunks on all cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from benchmarks.context import CaseContext, RunFn
from benchmarks.workloads import BLOSC_BLOCKSIZE


def codec_limit(ctx: CaseContext, cname: str = "zstd") -> RunFn:
    import numcodecs.blosc
    from numcodecs import Blosc

    numcodecs.blosc.use_threads = False
    codec = Blosc(cname=cname, clevel=1, shuffle=Blosc.BITSHUFFLE, blocksize=BLOSC_BLOCKSIZE)
    w = ctx.workload
    _, cy, cx = w.chunk
    threads = os.cpu_count() or 1

    def encode(block: np.ndarray, y: int, x: int) -> int:
        chunk = np.ascontiguousarray(block[:, y : y + cy, x : x + cx])
        return len(codec.encode(chunk))

    def run() -> dict[str, Any]:
        compressed = 0
        pending: list[Any] = []
        with ThreadPoolExecutor(threads) as ex:
            for _, block in ctx.blocks():
                for y in range(0, w.height, cy):
                    for x in range(0, w.width, cx):
                        pending.append(ex.submit(encode, block, y, x))
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
