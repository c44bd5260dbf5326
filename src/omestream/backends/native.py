"""The built-in Zarr engine: frames assembled into whole chunks/shards in memory,
encoded on a thread pool and written as complete files.

Why not write each frame through zarr-python: its per-write overhead (empty-chunk
checks, read-modify-write of partial chunks, one task per chunk) keeps it far from
disk speed. Here a "slab" buffer holds one write unit (shard, or chunk when not
sharded) along the outer axes and the whole frame along y/x; when every frame of a
slab has arrived its tiles are encoded and written in parallel, each file replaced
atomically. Array and group metadata are still produced by zarr-python and
omestream's metadata layer; only chunk bytes are produced here, with numcodecs.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import WriteError
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import ArrayPlan, StoragePlan
from omestream.settings import WriterOptions

__all__ = ["NativeZarrBackend", "encode_shard"]

_EMPTY = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class _Geometry:
    level: ArrayPlan
    unit: tuple[int, ...]  # write unit (shard or chunk), all axes
    frame: tuple[int, int]  # y, x of this level
    padded: tuple[int, int]  # frame rounded up to whole units
    tiles: tuple[int, int]  # units per frame along y, x


class _Slab:
    __slots__ = ("buf", "count", "dirty", "expected", "key", "present", "start")

    def __init__(self, key: tuple, start: tuple[int, ...], buf: np.ndarray, expected: int):
        self.key = key
        self.start = start
        self.buf = buf
        self.expected = expected
        self.count = 0
        self.present = np.zeros(buf.shape[:-2], dtype=bool)
        self.dirty = False


def encode_shard(
    block: np.ndarray, chunks: tuple[int, ...], encoder: object | None, present: np.ndarray | None
) -> list[bytes | memoryview]:
    """Zarr v3 ``sharding_indexed`` bytes for one shard (index at the end, crc32c).

    ``present`` (over the outer axes of ``block``) marks frames that hold data; inner
    chunks without any are stored as empty, which readers return as the fill value.
    """
    from numcodecs import CRC32C

    grid = tuple(s // c for s, c in zip(block.shape, chunks, strict=True))
    index = np.empty((*grid, 2), dtype="<u8")
    parts: list[bytes | memoryview] = []
    offset = 0
    n_outer = block.ndim - 2
    for pos in np.ndindex(*grid):
        sel = tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, chunks, strict=True))
        if present is not None and not present[sel[:n_outer]].any():
            index[pos] = (_EMPTY, _EMPTY)
            continue
        raw = np.ascontiguousarray(block[sel])
        data = encoder.encode(raw) if encoder is not None else memoryview(raw).cast("B")  # type: ignore[attr-defined]
        n = len(data)
        index[pos] = (offset, n)
        parts.append(data)
        offset += n
    parts.append(CRC32C().encode(index.tobytes()))
    return parts


class NativeZarrBackend(ZarrArrayBackend):
    name = "omestream"

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        super().__init__(plan, kv, options)
        threads = options.threads or max(2, os.cpu_count() or 2)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="omestream-write")
        self._encoder = self.codec.numcodecs(plan.dtype)
        self._budget = options.memory_budget_mb * 2**20
        self._inflight: deque[tuple[list[Future[None]], int]] = deque()
        self._inflight_bytes = 0
        self._slabs: dict[tuple, _Slab] = {}
        self._last: dict[tuple, list[Future[None]]] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._geom: dict[tuple[int, int], _Geometry] = {}
        for i, im in enumerate(plan.images):
            for lv, level in enumerate(im.levels):
                unit = level.write_unit
                fy, fx = level.shape[-2:]
                uy, ux = unit[-2:]
                padded = (math.ceil(fy / uy) * uy, math.ceil(fx / ux) * ux)
                tiles = (padded[0] // uy, padded[1] // ux)
                self._geom[(i, lv)] = _Geometry(level, unit, (fy, fx), padded, tiles)

    # -- frames -----------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        slab, local = self._slab_for(image, level, index)
        fy, fx = self._geom[(image, level)].frame
        np.copyto(slab.buf[local][:fy, :fx], frame, casting="no")
        self._mark(slab, local)

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        slab, local = self._slab_for(image, level, index)
        slab.buf[local].fill(self.plan.fill_value)
        self._mark(slab, local)

    def _slab_for(self, image: int, level: int, index: tuple[int, ...]) -> tuple[_Slab, tuple]:
        self._raise_if_failed()
        g = self._geom[(image, level)]
        outer_unit = g.unit[:-2]
        block = tuple(i // u for i, u in zip(index, outer_unit, strict=True))
        local = tuple(i % u for i, u in zip(index, outer_unit, strict=True))
        key = (image, level, block)
        slab = self._slabs.get(key)
        if slab is None:
            start = tuple(b * u for b, u in zip(block, outer_unit, strict=True))
            expected = 1
            unbounded = self.plan.unbounded_axis
            for a, (s, u) in enumerate(zip(start, outer_unit, strict=True)):
                size = g.level.shape[a]
                expected *= u if a == unbounded else min(u, size - s)
            buf = np.empty((*outer_unit, *g.padded), dtype=self.plan.dtype)
            fy, fx = g.frame
            if g.padded[0] > fy:
                buf[..., fy:, :] = self.plan.fill_value
            if g.padded[1] > fx:
                buf[..., :, fx:] = self.plan.fill_value
            slab = self._slabs[key] = _Slab(key, start, buf, expected)
        return slab, local

    def _mark(self, slab: _Slab, local: tuple) -> None:
        if not slab.present[local]:
            slab.present[local] = True
            slab.count += 1
        slab.dirty = True
        if slab.count >= slab.expected:
            del self._slabs[slab.key]
            self._submit(slab, final=True)

    # -- encoding and I/O ---------------------------------------------------------------
    def _submit(self, slab: _Slab, final: bool) -> None:
        buf, present = (slab.buf, slab.present) if final else (slab.buf.copy(), slab.present.copy())
        slab.dirty = False
        nbytes = buf.nbytes
        self._wait_for_budget(nbytes)
        image, level, block = slab.key
        g = self._geom[(image, level)]
        previous = self._last.get(slab.key, [])
        futures = []
        for ty in range(g.tiles[0]):
            for tx in range(g.tiles[1]):
                futures.append(
                    self._pool.submit(
                        self._write_unit, g, image, level, block, (ty, tx), buf, present, previous
                    )
                )
        if final:
            self._last.pop(slab.key, None)
        else:
            self._last[slab.key] = futures
        with self._lock:
            self._inflight.append((futures, nbytes))
            self._inflight_bytes += nbytes

    def _wait_for_budget(self, nbytes: int) -> None:
        """Backpressure: block until the bytes in flight fit the memory budget."""
        while True:
            with self._lock:
                while self._inflight and all(f.done() for f in self._inflight[0][0]):
                    self._inflight_bytes -= self._inflight.popleft()[1]
                if not self._inflight or self._inflight_bytes + nbytes <= self._budget:
                    return
                oldest = self._inflight[0][0]
            for f in oldest:
                with contextlib.suppress(BaseException):
                    f.result()
            self._raise_if_failed()

    def _write_unit(
        self,
        g: _Geometry,
        image: int,
        level: int,
        block: tuple[int, ...],
        tile: tuple[int, int],
        buf: np.ndarray,
        present: np.ndarray,
        previous: list[Future[None]],
    ) -> None:
        try:
            for f in previous:  # an earlier partial write of the same unit lands first
                with contextlib.suppress(BaseException):
                    f.result()
            uy, ux = g.unit[-2:]
            ty, tx = tile
            data = buf[..., ty * uy : (ty + 1) * uy, tx * ux : (tx + 1) * ux]
            full = bool(present.all())
            if not full:
                data = data.copy()
                data[~present] = self.plan.fill_value
            key = self._chunk_key(image, level, (*block, ty, tx))
            if g.level.shards is not None:
                parts = encode_shard(data, g.level.chunks, self._encoder, None if full else present)
            else:
                raw = np.ascontiguousarray(data)
                encoded = self._encoder.encode(raw) if self._encoder is not None else raw
                parts = [memoryview(encoded).cast("B") if isinstance(encoded, np.ndarray) else encoded]
            self._put(key, parts)
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            raise

    def _chunk_key(self, image: int, level: int, grid_index: tuple[int, ...]) -> str:
        base = self.path(image, level)
        coords = "/".join(str(i) for i in grid_index)
        if self.plan.zarr_format == 3:
            return f"{base}/c/{coords}" if base else f"c/{coords}"
        return f"{base}/{coords}" if base else coords

    def _put(self, key: str, parts: list[bytes | memoryview]) -> None:
        if isinstance(self.kv, LocalKV):
            self.kv.set_parts(key, parts, durable=False)
        else:
            self.kv.set(key, b"".join(bytes(p) for p in parts))

    def _raise_if_failed(self) -> None:
        err = self._error
        if err is not None:
            if isinstance(err, WriteError):
                raise err
            raise WriteError(0, f"writing to {self.kv.url} failed: {err}") from err

    # -- regions (rewrites, pyramid building after the fact) ----------------------------
    def write_region(
        self, image: int, level: int, selection: tuple[slice, ...], data: np.ndarray
    ) -> None:
        import zarr

        self.flush(wait=True)
        arr = zarr.open_array(self.kv.zarr_store(), path=self.path(image, level), mode="r+")
        arr[selection] = data

    # -- lifecycle ----------------------------------------------------------------------
    def flush(self, wait: bool = False) -> None:
        """Write partial slabs so data survives a crash; final writes replace them later."""
        for slab in list(self._slabs.values()):
            if slab.dirty and slab.count:
                self._submit(slab, final=False)
        if wait:
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._inflight:
                    break
                futures, nbytes = self._inflight.popleft()
                self._inflight_bytes -= nbytes
            for f in futures:
                with contextlib.suppress(BaseException):
                    f.result()
        self._raise_if_failed()

    def sync(self) -> None:
        """Make written chunk files durable (one syncfs for the whole file system)."""
        if isinstance(self.kv, LocalKV):
            _syncfs(self.kv.root)

    def close(self) -> None:
        if self._closed:
            return
        try:
            for slab in list(self._slabs.values()):
                if slab.count:
                    self._submit(slab, final=True)
            self._slabs.clear()
            self._drain()
            if self.options.fsync:
                self.sync()
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        self._slabs.clear()
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


def _syncfs(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        os.sync()
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)
