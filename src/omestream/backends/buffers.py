"""Reusable frame and slab buffers for the write engines.

Fresh memory is slow to touch (on VMs that hand freed pages back to the host, the
first write runs at a fraction of memory speed), so buffers that have been written
out are kept for the next frame. The memory budget already bounds how many buffers
are in use at once; the pool keeps at most as many idle ones as the budget holds.

Large buffers start on a page boundary, as direct I/O (``O_DIRECT``) requires.
"""

from __future__ import annotations

import threading

import numpy as np

from omestream.io.libc import DIRECT_IO_ALIGN as PAGE

__all__ = ["BufferPool", "aligned_empty"]

_ALIGN_FROM = PAGE  # smaller buffers are never written with direct I/O


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """``np.empty`` whose data starts on a page boundary (for buffers of a page or more)."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if nbytes < _ALIGN_FROM:
        return np.empty(shape, dtype=dt)
    raw = np.empty(nbytes + PAGE, dtype=np.uint8)
    start = -raw.ctypes.data % PAGE
    return raw[start : start + nbytes].view(dt).reshape(shape)


class BufferPool:
    """Thread-safe free lists of numpy buffers, keyed by shape and dtype."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
        """A buffer of ``shape`` and ``dtype`` (contents undefined)."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        return aligned_empty(shape, dtype)

    def give_back(self, buf: np.ndarray) -> None:
        """Return a buffer nobody uses any more."""
        key = (buf.shape, buf.dtype.str)
        keep = max(2, self._budget // max(buf.nbytes, 1))
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < keep:
                free.append(buf)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
