"""tensorstore used directly (zarr v3 with optional sharding, or zarr v2).

Chunk-aligned blocks are written with up to ``in_flight`` writes outstanding
(futures), then all are awaited.  tensorstore's file kvstore fsyncs by default
(``file_io_sync``).  Unbounded workloads open a huge t-domain and shrink it
(metadata only) to the written length at the end.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from benchmarks.context import CaseContext, RunFn
from benchmarks.workloads import BLOSC_BLOCKSIZE, Workload

UNBOUNDED_EXTENT = 1 << 31


def _blosc3() -> dict[str, Any]:
    cfg = {"cname": "zstd", "clevel": 1, "shuffle": "bitshuffle", "typesize": 2}
    return {"name": "blosc", "configuration": cfg | {"blocksize": BLOSC_BLOCKSIZE}}


def _zarr3_metadata(w: Workload, shape: list[int]) -> dict[str, Any]:
    inner: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if w.compressed:
        inner.append(_blosc3())
    grid = list(w.shard or w.chunk)
    codecs = inner
    if w.shard is not None:
        index = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
        shard_cfg = {"chunk_shape": list(w.chunk), "codecs": inner, "index_codecs": index}
        codecs = [{"name": "sharding_indexed", "configuration": shard_cfg}]
    return {
        "shape": shape,
        "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": codecs,
        "dimension_names": [w.axis, "y", "x"],
    }


def _zarr2_metadata(w: Workload, shape: list[int]) -> dict[str, Any]:
    comp = {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": 2} if w.compressed else None
    return {
        "shape": shape,
        "chunks": list(w.chunk),
        "dtype": "<u2",
        "compressor": comp,
        "fill_value": 0,
        "order": "C",
        "dimension_separator": "/",
    }


def tensorstore_case(ctx: CaseContext, zarr_format: int = 3, in_flight: int = 0) -> RunFn:
    import tensorstore as ts

    w = ctx.workload
    in_flight = in_flight or 2 * (os.cpu_count() or 1)
    shape = [UNBOUNDED_EXTENT if w.unbounded else w.count, w.height, w.width]
    meta = _zarr3_metadata(w, shape) if zarr_format == 3 else _zarr2_metadata(w, shape)
    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": str(ctx.out / "data.zarr")},
        "metadata": meta,
        "create": True,
        "delete_existing": True,
        "context": {"cache_pool": {"total_bytes_limit": 0}},
    }
    note = "zarr v2: no sharding, chunks only" if zarr_format == 2 and w.shard else ""

    def run() -> dict[str, Any]:
        store = ts.open(spec).result()
        pending: deque[Any] = deque()
        for start, block in ctx.blocks():
            pending.append(store[start : start + block.shape[0]].write(block))
            while len(pending) >= in_flight:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
        if w.unbounded:
            store.resize(exclusive_max=[w.count, None, None], resize_metadata_only=True).result()
        return {"in_flight": in_flight, "note": note}

    return run
