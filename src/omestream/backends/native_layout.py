"""Where a frame's pixels go inside the built-in engine's write units (pure layout).

A *write unit* is what becomes one file: a shard, or a chunk when not sharded. A
*slab* holds one write unit along the outer axes and the whole frame along y/x,
laid out chunk-major: every inner chunk is contiguous and the chunks of one unit
follow each other in the order of the Zarr v3 shard index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from omestream.plan import ArrayPlan

__all__ = ["EMPTY", "Geometry", "geometry", "shard_index", "shard_index_bytes"]

EMPTY = np.uint64(2**64 - 1)  # shard index entry of a chunk that is not stored


def shard_index_bytes(offsets_nbytes: np.ndarray) -> bytes:
    """The Zarr v3 shard index (little-endian uint64 pairs) followed by its crc32c."""
    from numcodecs import CRC32C

    return bytes(CRC32C().encode(np.ascontiguousarray(offsets_nbytes, dtype="<u8").tobytes()))


def shard_index(
    sizes: list[int | None], grid: tuple[int, ...], spans: list[int] | None = None
) -> bytes:
    """The index of a shard whose chunks (C order over ``grid``) follow each other
    with these byte sizes; ``None`` marks a chunk that is not stored. ``spans`` (one
    per stored chunk) are the bytes each takes in the shard when padded."""
    index = np.empty((len(sizes), 2), dtype="<u8")
    offset = 0
    stored = iter(spans) if spans is not None else None
    for k, size in enumerate(sizes):
        if size is None:
            index[k] = (EMPTY, EMPTY)  # reads as the fill value
        else:
            index[k] = (offset, size)
            offset += size if stored is None else next(stored)
    return shard_index_bytes(index.reshape(*grid, 2))


@dataclass(frozen=True)
class Geometry:
    level: ArrayPlan
    unit_outer: tuple[int, ...]  # write unit along the outer axes
    chunk_outer: tuple[int, ...]  # chunk along the outer axes
    grid_outer: tuple[int, ...]  # inner chunks per unit along the outer axes
    tiles: tuple[int, int]  # write units per frame along y, x
    grid_yx: tuple[int, int]  # inner chunks per unit along y, x
    chunk_yx: tuple[int, int]
    frame: tuple[int, int]  # y, x of this level
    padded: tuple[int, int]  # frame rounded up to whole units
    sharded: bool

    @property
    def slab_shape(self) -> tuple[int, ...]:
        return (*self.tiles, *self.grid_outer, *self.grid_yx, *self.chunk_outer, *self.chunk_yx)

    @property
    def chunks_per_unit(self) -> int:
        return math.prod(self.grid_outer) * math.prod(self.grid_yx)

    def frame_view(self, slab: np.ndarray, local: tuple[int, ...]) -> np.ndarray:
        """The 6-D view (ty, gy, cy, tx, gx, cx) of one frame inside a chunk-major slab."""
        gi = tuple(i // c for i, c in zip(local, self.chunk_outer, strict=True))
        ci = tuple(i % c for i, c in zip(local, self.chunk_outer, strict=True))
        full = slice(None)
        sl: tuple[slice | int, ...] = (full, full, *gi, full, full, *ci)
        return slab[sl].transpose(0, 2, 4, 1, 3, 5)

    def as_6d(self, frame: np.ndarray) -> np.ndarray:
        (ty, tx), (gy, gx), (cy, cx) = self.tiles, self.grid_yx, self.chunk_yx
        return frame.reshape(ty, gy, cy, tx, gx, cx)

    def _by_chunk(self, present: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """``present`` with each outer axis split into (chunk, frame in the chunk), and
        the axes of the latter."""
        shape = [n for g, c in zip(self.grid_outer, self.chunk_outer, strict=True) for n in (g, c)]
        return present.reshape(shape), tuple(range(1, 2 * len(self.grid_outer), 2))

    def whole_chunks(self, present: np.ndarray) -> bool:
        """Whether each inner chunk has all of its frames present or none."""
        if all(c == 1 for c in self.chunk_outer):
            return True
        by_chunk, within = self._by_chunk(present)
        return bool((by_chunk.all(axis=within) == by_chunk.any(axis=within)).all())

    def chunk_presence(self, present: np.ndarray) -> np.ndarray:
        """Per inner chunk of a unit (C order): does any of its frames hold data?"""
        by_chunk, within = self._by_chunk(present)
        per_outer = np.asarray(by_chunk.any(axis=within)) if within else present
        return np.broadcast_to(
            per_outer[..., None, None], (*self.grid_outer, *self.grid_yx)
        ).ravel()


def geometry(level: ArrayPlan, sharded: bool) -> Geometry:
    unit = level.write_unit
    chunks = level.chunks
    fy, fx = level.shape[-2:]
    uy, ux = unit[-2:]
    cy, cx = chunks[-2:]
    tiles = (math.ceil(fy / uy), math.ceil(fx / ux))
    return Geometry(
        level=level,
        unit_outer=tuple(unit[:-2]),
        chunk_outer=tuple(chunks[:-2]),
        grid_outer=tuple(u // c for u, c in zip(unit[:-2], chunks[:-2], strict=True)),
        tiles=tiles,
        grid_yx=(uy // cy, ux // cx),
        chunk_yx=(cy, cx),
        frame=(fy, fx),
        padded=(tiles[0] * uy, tiles[1] * ux),
        sharded=sharded,
    )
