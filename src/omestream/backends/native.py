"""The built-in Zarr engine: frames assembled into whole chunks/shards in memory,
encoded on a thread pool and written as complete files.

Why not write each frame through zarr-python: its per-write overhead (empty-chunk
checks, read-modify-write of partial chunks, one task per chunk) keeps it far from
disk speed. Here a "slab" holds one write unit (a shard, or a chunk when not
sharded) along the outer axes and the whole frame along y/x. The slab is laid out
*chunk-major*: every inner chunk is contiguous and the chunks of one write unit
follow each other in the order of the shard index. So ``append`` does exactly one
copy (the frame into the slab, which also frees the caller's buffer), and an
uncompressed unit is written straight from the slab with one ``writev``.
Array and group metadata are still produced by zarr-python and omestream's
metadata layer; only chunk bytes are produced here, with numcodecs.
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

from omestream.backends.buffers import BufferPool
from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import WriteError
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import ArrayPlan, StoragePlan
from omestream.settings import WriterOptions

__all__ = ["NativeZarrBackend", "shard_index_bytes"]

_EMPTY = np.uint64(2**64 - 1)


def shard_index_bytes(offsets_nbytes: np.ndarray) -> bytes:
    """The Zarr v3 shard index (little-endian uint64 pairs) followed by its crc32c."""
    from numcodecs import CRC32C

    return bytes(CRC32C().encode(np.ascontiguousarray(offsets_nbytes, dtype="<u8").tobytes()))


@dataclass(frozen=True)
class _Geometry:
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

    def chunk_presence(self, present: np.ndarray) -> np.ndarray:
        """Per inner chunk of a unit (C order): does any of its frames hold data?"""
        shape: list[int] = []
        for g, c in zip(self.grid_outer, self.chunk_outer, strict=True):
            shape += [g, c]
        n = len(self.grid_outer)
        per_outer = (
            np.asarray(present.reshape(shape).any(axis=tuple(range(1, 2 * n, 2))))
            if n
            else present
        )
        return np.broadcast_to(
            per_outer[..., None, None], (*self.grid_outer, *self.grid_yx)
        ).ravel()


class _Slab:
    __slots__ = ("buf", "count", "dirty", "expected", "key", "present")

    def __init__(self, key: tuple, buf: np.ndarray, outer: tuple[int, ...], expected: int) -> None:
        self.key = key
        self.buf = buf
        self.expected = expected
        self.count = 0
        self.present = np.zeros(outer, dtype=bool)
        self.dirty = False


class NativeZarrBackend(ZarrArrayBackend):
    name = "omestream"
    close_syncs_all = True  # close() ends with one syncfs

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
        self._buffers = BufferPool(self._budget)
        self._scratch: dict[tuple[int, int], np.ndarray] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._geom = {
            (i, lv): _geometry(level, plan.zarr_format == 3 and level.shards is not None)
            for i, im in enumerate(plan.images)
            for lv, level in enumerate(im.levels)
        }

    # -- frames -----------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        slab, local, g = self._slab_for(image, level, index)
        if g.padded != g.frame:
            scratch = self._scratch.get((image, level))
            if scratch is None:
                scratch = np.full(g.padded, self.plan.fill_value, dtype=self.plan.dtype)
                self._scratch[(image, level)] = scratch
            scratch[: g.frame[0], : g.frame[1]] = frame
            frame = scratch
        np.copyto(g.frame_view(slab.buf, local), g.as_6d(frame), casting="no")
        self._mark(slab, local)

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        slab, local, g = self._slab_for(image, level, index)
        g.frame_view(slab.buf, local)[...] = self.plan.fill_value
        self._mark(slab, local)

    def _slab_for(
        self, image: int, level: int, index: tuple[int, ...]
    ) -> tuple[_Slab, tuple[int, ...], _Geometry]:
        self._raise_if_failed()
        g = self._geom[(image, level)]
        block = tuple(i // u for i, u in zip(index, g.unit_outer, strict=True))
        local = tuple(i % u for i, u in zip(index, g.unit_outer, strict=True))
        key = (image, level, block)
        slab = self._slabs.get(key)
        if slab is None:
            expected = 1
            for a, (b, u) in enumerate(zip(block, g.unit_outer, strict=True)):
                size = g.level.shape[a]
                expected *= u if a == self.plan.unbounded_axis else min(u, size - b * u)
            buf = self._buffers.take(g.slab_shape, self.plan.dtype)
            slab = self._slabs[key] = _Slab(key, buf, g.unit_outer, expected)
        return slab, local, g

    def _mark(self, slab: _Slab, local: tuple[int, ...]) -> None:
        if not slab.present[local]:
            slab.present[local] = True
            slab.count += 1
        slab.dirty = True
        if slab.count >= slab.expected:
            del self._slabs[slab.key]
            self._submit(slab, final=True)

    # -- encoding and I/O ---------------------------------------------------------------
    def _submit(self, slab: _Slab, final: bool) -> None:
        image, level, block = slab.key
        g = self._geom[(image, level)]
        if final:
            buf, present = slab.buf, slab.present
        else:
            buf = self._buffers.take(g.slab_shape, self.plan.dtype)
            np.copyto(buf, slab.buf)
            present = slab.present.copy()
        slab.dirty = False
        self._wait_for_budget(buf.nbytes)
        if not present.all():
            for local in zip(*np.nonzero(~present), strict=True):
                g.frame_view(buf, tuple(int(i) for i in local))[...] = self.plan.fill_value
        chunk_present = None if present.all() else g.chunk_presence(present)
        previous = self._last.get(slab.key, [])
        futures = [
            self._pool.submit(
                self._write_unit, g, image, level, block, (ty, tx), buf, chunk_present, previous
            )
            for ty in range(g.tiles[0])
            for tx in range(g.tiles[1])
        ]
        if final:
            self._last.pop(slab.key, None)
        else:
            self._last[slab.key] = futures
        remaining = [len(futures)]

        def release(_f: Future[None]) -> None:
            with self._lock:
                remaining[0] -= 1
                done = remaining[0] == 0
            if done:
                self._buffers.give_back(buf)

        for f in futures:
            f.add_done_callback(release)
        with self._lock:
            self._inflight.append((futures, buf.nbytes))
            self._inflight_bytes += buf.nbytes

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

    @property
    def bytes_in_flight(self) -> int:
        """Slab bytes handed to writer threads and not yet written (for diagnostics)."""
        with self._lock:
            return self._inflight_bytes

    def _write_unit(
        self,
        g: _Geometry,
        image: int,
        level: int,
        block: tuple[int, ...],
        tile: tuple[int, int],
        buf: np.ndarray,
        chunk_present: np.ndarray | None,
        previous: list[Future[None]],
    ) -> None:
        try:
            for f in previous:  # an earlier partial write of the same unit lands first
                with contextlib.suppress(BaseException):
                    f.result()
            unit = buf[tile]  # contiguous: this unit's inner chunks in shard-index order
            key = self._chunk_key(image, level, (*block, *tile))
            if g.sharded:
                parts = self._shard_parts(g, unit, chunk_present)
            elif self._encoder is not None:
                parts = [self._encoder.encode(unit)]
            else:
                parts = [unit.reshape(-1).view(np.uint8)]
            self._put(key, parts)
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            raise

    def _shard_parts(
        self, g: _Geometry, unit: np.ndarray, chunk_present: np.ndarray | None
    ) -> list[bytes | memoryview | np.ndarray]:
        n = g.chunks_per_unit
        flat = unit.reshape(n, -1)
        index = np.empty((n, 2), dtype="<u8")
        if self._encoder is None and chunk_present is None:
            size = flat[0].nbytes
            index[:, 0] = np.arange(n, dtype="<u8") * size
            index[:, 1] = size
            return [flat.reshape(-1).view(np.uint8), shard_index_bytes(index)]
        parts: list[bytes | memoryview | np.ndarray] = []
        offset = 0
        for k in range(n):
            if chunk_present is not None and not chunk_present[k]:
                index[k] = (_EMPTY, _EMPTY)  # reads as the fill value
                continue
            data = (
                self._encoder.encode(flat[k])
                if self._encoder is not None
                else flat[k].view(np.uint8)
            )
            nbytes = len(data) if not isinstance(data, np.ndarray) else data.nbytes
            index[k] = (offset, nbytes)
            parts.append(data)
            offset += nbytes
        grid = (*g.grid_outer, *g.grid_yx, 2)
        parts.append(shard_index_bytes(index.reshape(grid)))
        return parts

    def _chunk_key(self, image: int, level: int, grid_index: tuple[int, ...]) -> str:
        base = self.path(image, level)
        coords = "/".join(str(i) for i in grid_index)
        if self.plan.zarr_format == 3:
            return f"{base}/c/{coords}" if base else f"c/{coords}"
        return f"{base}/{coords}" if base else coords

    def _put(self, key: str, parts: list[bytes | memoryview | np.ndarray]) -> None:
        # The ignores: numpy's stubs declare ndarray's buffer protocol only for Python
        # 3.12+, yet every ndarray is a buffer.
        if isinstance(self.kv, LocalKV):
            self.kv.set_parts(key, parts, durable=False, writeback=self.options.fsync)  # type: ignore[arg-type]
        else:
            self.kv.set(key, b"".join(bytes(memoryview(p).cast("B")) for p in parts))  # type: ignore[arg-type]

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
            self._buffers.clear()

    def abort(self) -> None:
        self._slabs.clear()
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


def _geometry(level: ArrayPlan, sharded: bool) -> _Geometry:
    unit = level.write_unit
    chunks = level.chunks
    fy, fx = level.shape[-2:]
    uy, ux = unit[-2:]
    cy, cx = chunks[-2:]
    tiles = (math.ceil(fy / uy), math.ceil(fx / ux))
    return _Geometry(
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
