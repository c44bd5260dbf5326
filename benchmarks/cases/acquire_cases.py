"""acquire-zarr ``ZarrStream``: append frames one by one, then close.

acquire-zarr always writes sharded zarr v3; unsharded workloads use one chunk
per shard (``shard_size_chunks=1``).  Unbounded workloads use
``array_size_px=0`` on the append dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.context import CaseContext, RunFn


def acquire_zarr_case(ctx: CaseContext) -> RunFn:
    import acquire_zarr as aqz

    w = ctx.workload
    shard = w.shard_chunks or (1, 1, 1)
    kinds = [
        aqz.DimensionType.TIME if w.axis == "t" else aqz.DimensionType.SPACE,
        aqz.DimensionType.SPACE,
        aqz.DimensionType.SPACE,
    ]
    sizes = [0 if w.unbounded else w.count, w.height, w.width]
    dims = [
        aqz.Dimension(
            name=name, kind=kind, array_size_px=size, chunk_size_px=chunk, shard_size_chunks=sc
        )
        for name, kind, size, chunk, sc in zip(
            (w.axis, "y", "x"), kinds, sizes, w.chunk, shard, strict=True
        )
    ]
    compression = None
    if w.compressed:
        compression = aqz.CompressionSettings(
            compressor=aqz.Compressor.BLOSC1,
            codec=aqz.CompressionCodec.BLOSC_ZSTD,
            level=1,
            shuffle=2,
        )
    array = aqz.ArraySettings(dimensions=dims, data_type=np.uint16, compression=compression)
    settings = aqz.StreamSettings(
        store_path=str(ctx.out / "data.zarr"), arrays=[array], overwrite=True
    )
    aqz.set_log_level(aqz.LogLevel.ERROR)

    def run() -> dict[str, Any]:
        stream = aqz.ZarrStream(settings)
        try:
            for frame in ctx.frames():
                stream.append(frame)
        finally:
            stream.close()
        note = "" if w.shard else "always sharded: 1 chunk per shard"
        return {"max_memory_estimate": settings.get_maximum_memory_usage(), "note": note}

    return run
