"""How many write units (shards, or chunks when not sharded) a stream fills at once.

A Zarr engine gathers the frames of a write unit in memory until the unit is complete,
then encodes and writes it whole. Frames of one unit may arrive far apart: with many
positions, each position's unit waits while every other position gets its frames; when
the storage order differs from the acquisition order (z acquired outside t, stored
inside it), every t of one z plane opens a unit of its own. Memory is then the number of
units open at once times their size, which the engine's budget for work in flight does
not see. Planning counts those units (pure arithmetic over frame numbers, no I/O) so
automatic shards can be made small enough, and a layout the user chose that cannot fit
is named before the first frame.
"""

from __future__ import annotations

import math

import numpy as np

from omestream.settings import AcquisitionSettings

__all__ = ["open_units", "slab_budget_bytes"]

# Frames looked at: enough for every pattern of open units to repeat (the window
# spans one write unit along the first acquisition axis, all other axes included).
_MAX_FRAMES = 2_000_000


def slab_budget_bytes(settings: AcquisitionSettings) -> int:
    """Bytes of level-0 units that may be filling at once: half the memory budget, so
    that the frames being encoded and written (the other half) fit beside them."""
    return settings.writer.memory_budget_mb * 2**20 // 2


def open_units(settings: AcquisitionSettings, unit: tuple[int, ...]) -> int:
    """The most level-0 write units of shape ``unit`` (storage order, all array axes)
    that hold some but not all of their frames at once, over the acquisition."""
    y, x = settings.frame_shape
    tiles = -(-y // unit[-2]) * -(-x // unit[-1])  # units side by side in every frame
    outer = settings.dimensions[:-2]
    if not outer:
        return tiles
    storage = settings.storage_dimension_names[:-2]
    names = [d.name for d in outer]
    counts = [d.count for d in outer]  # positions count too; the first may be None
    unit_by_name = dict(zip(storage, unit[:-2], strict=True))
    first = names[0]
    per_first = math.prod(c or 1 for c in counts[1:])
    steps = unit_by_name.get(first, 1)  # one unit along the first axis (1: positions)
    if counts[0] is not None:
        steps = min(steps, counts[0])
    n = min(per_first * steps, _MAX_FRAMES)
    frames = np.arange(n, dtype=np.int64)
    # the acquisition index of every frame (mixed radix, first axis outermost)
    key = np.zeros(n, dtype=np.int64)
    rest = frames
    radix = 1
    for name, count in reversed(list(zip(names, counts, strict=True))):
        size = count if count is not None else (n // per_first + 1)
        idx = rest % size
        rest = rest // size
        u = unit_by_name.get(name, 1)
        key += (idx // u) * radix  # which unit along this axis (each position its own)
        radix *= -(-size // u)
    # each unit opens at its first frame and closes at its last; count the overlap
    order = np.argsort(key, kind="stable")  # frame numbers, grouped by unit, ascending
    sorted_keys = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], n] - 1
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, order[starts], 1)
    np.add.at(delta, order[ends] + 1, -1)
    return tiles * max(1, int(np.cumsum(delta).max()))
