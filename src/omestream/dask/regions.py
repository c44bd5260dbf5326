"""Write-unit geometry: align Dask chunks to shards/chunks and name the units a region covers.

Pure functions (no I/O, no Dask import), so the rule "no two tasks touch the same
chunk or shard" can be checked on plain tuples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

__all__ = [
    "aligned_chunks",
    "block_selections",
    "is_aligned",
    "units_covered",
]

Chunks = tuple[tuple[int, ...], ...]


def _boundaries(sizes: Sequence[int]) -> list[int]:
    return list(itertools.accumulate(sizes))


def is_aligned(chunks: Chunks, unit: Sequence[int]) -> bool:
    """Whether every block boundary (except the array end) falls on a unit boundary."""
    return all(
        all(b % u == 0 for b in _boundaries(sizes)[:-1])
        for sizes, u in zip(chunks, unit, strict=True)
    )


def aligned_chunks(chunks: Chunks, unit: Sequence[int]) -> Chunks:
    """Dask chunks on the write-unit grid.

    Axes whose blocks already end on unit boundaries keep them (a task may then write
    several whole units); other axes are cut into one unit per block.
    """
    out = []
    for sizes, u in zip(chunks, unit, strict=True):
        if all(b % u == 0 for b in _boundaries(sizes)[:-1]):
            out.append(tuple(sizes))
            continue
        n = sum(sizes)
        full, rest = divmod(n, u)
        out.append((u,) * full + ((rest,) if rest else ()) or (0,))
    return tuple(out)


def block_selections(chunks: Chunks) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(block index, selection) of every Dask block, in C order."""
    starts = [[0, *_boundaries(sizes)] for sizes in chunks]
    for idx in itertools.product(*(range(len(sizes)) for sizes in chunks)):
        yield idx, tuple(slice(starts[a][i], starts[a][i + 1]) for a, i in enumerate(idx))


def units_covered(selection: Sequence[slice], unit: Sequence[int]) -> list[tuple[int, ...]]:
    """Grid indices of every write unit that ``selection`` touches (whole or in part)."""
    ranges = []
    for s, u in zip(selection, unit, strict=True):
        start, stop = s.start or 0, s.stop
        if stop <= start:
            return []
        ranges.append(range(start // u, math.ceil(stop / u)))
    return list(itertools.product(*ranges))
