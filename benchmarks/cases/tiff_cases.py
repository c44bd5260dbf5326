"""tifffile ``TiffWriter(bigtiff=True)``: one page per frame.

Uncompressed workloads write contiguous pages (``contiguous=True``);
compressed workloads write zstd (level 1) pages encoded on all cores.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.context import CaseContext, RunFn


def tifffile_case(ctx: CaseContext) -> RunFn:
    import tifffile

    w = ctx.workload
    path = ctx.out / "data.tif"
    if w.compressed:
        kwargs: dict[str, Any] = {
            "compression": "zstd",
            "compressionargs": {"level": 1},
            "maxworkers": os.cpu_count() or 1,
            "tile": (w.chunk[1], w.chunk[2]),
        }
    else:
        kwargs = {"contiguous": True}

    def run() -> dict[str, Any]:
        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            for frame in ctx.frames():
                tw.write(frame, photometric="minisblack", **kwargs)
        return {"note": "zstd level 1, tiled" if w.compressed else "contiguous"}

    return run
