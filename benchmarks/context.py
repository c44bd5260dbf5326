"""What a case function receives, and what it returns.

A case is ``def case(ctx: CaseContext, **options) -> RunFn``: it does its
untimed setup, then returns a zero-argument closure that performs the timed
writes (until the writer is closed) and optionally returns extra info.
Raise :class:`Skip` (in setup or in the closure) to skip with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.workloads import Workload

RunFn = Callable[[], "dict[str, Any] | None"]


class Skip(Exception):
    """Raised by a case that cannot run here; the message is the reason."""


@dataclass
class CaseContext:
    workload: Workload
    pool: list[np.ndarray]
    out: Path  # empty directory owned by this case; deleted afterwards

    @property
    def n(self) -> int:
        return self.workload.count

    def frames(self) -> Iterator[np.ndarray]:
        """The ``n`` frames, cycling through the pool.

        With ``fresh_buffers`` every frame is a newly allocated array
        (``np.empty`` + copy), like a camera driver handing out new buffers.
        """
        pool, k = self.pool, len(self.pool)
        if self.workload.fresh_buffers:
            for i in range(self.n):
                buf = np.empty_like(pool[i % k])
                np.copyto(buf, pool[i % k])
                yield buf
        else:
            for i in range(self.n):
                yield pool[i % k]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Chunk-aligned blocks along the append axis: ``(start, block)``.

        For chunk depth 1 a block is a view of the frame (no copy); otherwise
        frames are copied into a newly allocated ``(depth, H, W)`` block so
        that asynchronous writers may keep referencing earlier blocks.
        """
        depth = self.workload.chunk[0]
        if depth == 1:
            for i, f in enumerate(self.frames()):
                yield i, f[np.newaxis]
            return
        h, w = self.workload.height, self.workload.width
        it = self.frames()
        for start in range(0, self.n, depth):
            k = min(depth, self.n - start)
            block = np.empty((k, h, w), dtype=self.workload.dtype)
            for j in range(k):
                block[j] = next(it)
            yield start, block
