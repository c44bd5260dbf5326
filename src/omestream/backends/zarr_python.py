"""The zarr-python engine: every chunk is encoded and stored by zarr-python itself.

Frames are gathered per write unit (a shard, or a chunk when not sharded) and each
complete unit is written with one ``array[selection] = block`` call on a small
thread pool. Writing frame by frame instead would make zarr-python read, merge and
rewrite a whole shard for every frame. Works on any store zarr-python opens (local
folders, fsspec URLs such as ``s3://``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import WriteError
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import StoragePlan
from omestream.settings import WriterOptions

__all__ = ["ZarrPythonBackend"]


class _Block:
    """Frames of one write unit along the outer axes, whole frames along y/x."""

    __slots__ = ("buf", "count", "dirty", "expected", "key", "present", "start")

    def __init__(self, key: tuple, start: tuple[int, ...], buf: np.ndarray, expected: int) -> None:
        self.key = key  # (image, level, block grid index)
        self.start = start
        self.buf = buf
        self.expected = expected
        self.present = np.zeros(buf.shape[:-2], dtype=bool)
        self.count = 0
        self.dirty = False


class ZarrPythonBackend(ZarrArrayBackend):
    name = "zarr-python"

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        super().__init__(plan, kv, options)
        threads = options.threads or max(2, min(4, os.cpu_count() or 2))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="omestream-zarr")
        self._budget = options.memory_budget_mb * 2**20
        self._store: Any = None
        self._arrays: dict[tuple[int, int], Any] = {}
        self._blocks: dict[tuple, _Block] = {}
        self._last: dict[tuple, Future[None]] = {}  # latest write of a block still open
        self._inflight: deque[tuple[Future[None], int]] = deque()
        self._inflight_bytes = 0
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False

    # -- arrays -------------------------------------------------------------------------
    def _array(self, image: int, level: int) -> Any:
        arr = self._arrays.get((image, level))
        if arr is None:
            import zarr

            if self._store is None:
                self._store = self.kv.zarr_store()
            arr = zarr.open_array(self._store, path=self.path(image, level), mode="r+")
            self._arrays[(image, level)] = arr
        return arr

    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        super().resize(image, level, shape)
        # the cached zarr.Array keeps the old shape: open it again on next use
        self._arrays.pop((image, level), None)

    # -- frames -------------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        block, local = self._block_for(image, level, index)
        block.buf[local] = frame
        self._mark(block, local)

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        block, local = self._block_for(image, level, index)
        block.buf[local].fill(self.plan.fill_value)
        self._mark(block, local)

    def _block_for(
        self, image: int, level: int, index: tuple[int, ...]
    ) -> tuple[_Block, tuple[int, ...]]:
        self._raise_if_failed()
        plan = self.plan.images[image].levels[level]
        unit = plan.write_unit[:-2]
        grid = tuple(i // u for i, u in zip(index, unit, strict=True))
        local = tuple(i % u for i, u in zip(index, unit, strict=True))
        key = (image, level, grid)
        block = self._blocks.get(key)
        if block is None:
            start = tuple(g * u for g, u in zip(grid, unit, strict=True))
            expected = 1
            for a, (s, u) in enumerate(zip(start, unit, strict=True)):
                # the unbounded axis has no size yet: a block along it is full at u frames
                expected *= u if a == self.plan.unbounded_axis else min(u, plan.shape[a] - s)
            buf = np.empty((*unit, *plan.shape[-2:]), dtype=self.plan.dtype)
            block = self._blocks[key] = _Block(key, start, buf, expected)
        return block, local

    def _mark(self, block: _Block, local: tuple[int, ...]) -> None:
        if not block.present[local]:
            block.present[local] = True
            block.count += 1
        block.dirty = True
        if block.count >= block.expected:
            del self._blocks[block.key]
            self._submit(block, final=True)

    # -- writing ------------------------------------------------------------------------
    def _submit(self, block: _Block, final: bool) -> None:
        """Write the frames a block holds; open blocks are written from a copy."""
        block.dirty = False
        image, level, _ = key = block.key
        shape = self.shapes[(image, level)]
        # only the part inside the array (edge blocks, the unbounded axis so far)
        unit: tuple[int, ...] = block.present.shape
        extent = [min(n, s - b) for n, s, b in zip(unit, shape, block.start, strict=False)]
        grow = self.plan.unbounded_axis
        if grow is not None:
            others = tuple(a for a in range(len(unit)) if a != grow)
            filled = np.flatnonzero(block.present.any(axis=others))
            extent[grow] = min(extent[grow], int(filled[-1]) + 1 if filled.size else 0)
        sub = tuple(slice(0, e) for e in extent)
        data = block.buf[sub]
        present = block.present[sub]
        if not final:
            data, present = data.copy(), present.copy()
        if not present.all():
            data = data.copy() if final else data
            data[~present] = self.plan.fill_value  # frames not yet seen read as fill
        selection = tuple(slice(b, b + e) for b, e in zip(block.start, extent, strict=True))
        previous = self._last.pop(key, None)
        self._wait_for_budget(data.nbytes)
        # the handle is taken here, on the caller's thread, after any resize
        arr = self._array(image, level)
        future = self._pool.submit(self._write, arr, selection, data, previous)
        if not final:
            self._last[key] = future
        with self._lock:
            self._inflight.append((future, data.nbytes))
            self._inflight_bytes += data.nbytes

    def _write(
        self,
        arr: Any,
        selection: tuple[slice, ...],
        data: np.ndarray,
        previous: Future[None] | None,
    ) -> None:
        try:
            if previous is not None:  # an earlier partial write of this block lands first
                with contextlib.suppress(BaseException):
                    previous.result()
            if data.size:
                arr[selection] = data
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            raise

    def _wait_for_budget(self, nbytes: int) -> None:
        while True:
            with self._lock:
                while self._inflight and self._inflight[0][0].done():
                    self._inflight_bytes -= self._inflight.popleft()[1]
                if not self._inflight or self._inflight_bytes + nbytes <= self._budget:
                    return
                oldest = self._inflight[0][0]
            with contextlib.suppress(BaseException):
                oldest.result()
            self._raise_if_failed()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._inflight:
                    break
                future, nbytes = self._inflight.popleft()
                self._inflight_bytes -= nbytes
            with contextlib.suppress(BaseException):
                future.result()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        err = self._error
        if err is not None:
            if isinstance(err, WriteError):
                raise err
            raise WriteError(0, f"zarr-python failed writing to {self.kv.url}: {err}") from err

    # -- regions ------------------------------------------------------------------------
    def write_region(
        self, image: int, level: int, selection: tuple[slice, ...], data: np.ndarray
    ) -> None:
        self.flush(wait=True)
        self._array(image, level)[selection] = data

    # -- lifecycle ----------------------------------------------------------------------
    def flush(self, wait: bool = False) -> None:
        for block in list(self._blocks.values()):
            if block.dirty and block.count:
                self._submit(block, final=False)
        if wait:
            self._drain()

    def close(self) -> None:
        if self._closed:
            return
        try:
            for block in list(self._blocks.values()):
                if block.count:
                    self._submit(block, final=True)
            self._blocks.clear()
            self._drain()
            if self.options.fsync and isinstance(self.kv, LocalKV):
                from omestream.io.durability import syncfs

                syncfs(self.kv.root)
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        self._blocks.clear()
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
