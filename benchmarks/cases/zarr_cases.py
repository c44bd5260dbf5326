"""zarr-python 3 ``create_array`` + ``arr[block] = data``.

Data is written in chunk-aligned blocks (one frame per write when the chunk
depth is 1) so that no chunk is read-modified-written.  Unbounded workloads
start at length 0 and grow the array geometrically, then shrink it to the
written length.
"""

from __future__ import annotations

from typing import Any

from benchmarks.context import CaseContext, RunFn
from benchmarks.workloads import BLOSC_BLOCKSIZE


def zarr_python_case(ctx: CaseContext, write_empty_chunks: bool | None = None) -> RunFn:
    import zarr
    from zarr.codecs import BloscCodec

    w = ctx.workload
    compressors = (
        [
            BloscCodec(
                cname="zstd", clevel=1, shuffle="bitshuffle", typesize=2, blocksize=BLOSC_BLOCKSIZE
            )
        ]
        if w.compressed
        else None
    )
    config: Any = (
        None if write_empty_chunks is None else {"write_empty_chunks": write_empty_chunks}
    )
    length = 0 if w.unbounded else w.count

    def run() -> dict[str, Any]:
        arr = zarr.create_array(
            store=str(ctx.out / "data.zarr"),
            shape=(length, w.height, w.width),
            dtype="uint16",
            chunks=w.chunk,
            shards=w.shard,
            compressors=compressors,
            fill_value=0,
            dimension_names=[w.axis, "y", "x"],
            overwrite=True,
            config=config,
        )
        size = length
        for start, block in ctx.blocks():
            stop = start + block.shape[0]
            if stop > size:
                size = max(stop, 2 * size, 64)
                arr.resize((size, w.height, w.width))
            arr[start:stop] = block
        if size != w.count:
            arr.resize((w.count, w.height, w.width))
        return {}

    return run
