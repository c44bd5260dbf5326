"""Frames gathered into whole write units for engines that write through a library.

A write unit is a shard, or a chunk when the array is not sharded. Writing frame by
frame would make zarr-python or tensorstore read, merge and rewrite a whole unit
for every frame (or hold every frame in a transaction), so frames are copied into a
unit-sized buffer and each complete unit is handed to the library in one call. The
writes in flight are bounded by the memory budget, which is what makes ``append``
block when the library falls behind. Subclasses say how one unit is written.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from abc import abstractmethod
from collections import deque
from typing import Any, ClassVar, Protocol

import numpy as np

from omestream.backends.buffers import BufferPool
from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import WriteError
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import StoragePlan
from omestream.settings import WriterOptions

__all__ = ["Pending", "UnitBackend"]


class Pending(Protocol):
    """A write in flight: a ``concurrent.futures.Future`` or a tensorstore future."""

    def done(self) -> bool: ...

    def result(self) -> Any: ...


class _Block:
    """Frames of one write unit along the outer axes, whole frames along y/x."""

    __slots__ = ("buf", "count", "data", "dirty", "expected", "key", "present", "start")

    def __init__(self, key: tuple, start: tuple[int, ...], buf: np.ndarray, expected: int) -> None:
        self.key = key  # (image, level, block grid index)
        self.start = start
        self.buf = buf
        self.expected = expected
        self.present = np.zeros(buf.shape[:-2], dtype=bool)  # frames appended or skipped
        self.data = False  # whether any frame was appended (not skipped)
        self.count = 0
        self.dirty = False


class UnitBackend(ZarrArrayBackend):
    """Assembles frames into write units and keeps the unit writes within the budget."""

    #: whether the library may keep referencing the data it is given, past the end of
    #: the write, instead of copying it (tensorstore's
    #: ``can_reference_source_data_indefinitely``): it then gets a view of its own, and
    #: the unit's buffer goes back to the pool only once the library has dropped it
    lends_data: ClassVar[bool] = False

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        super().__init__(plan, kv, options)
        self._budget = options.memory_budget_mb * 2**20
        # unit buffers come back once written: fresh memory is slow to touch on VMs
        self._buffers = BufferPool(self._budget)
        self._blocks: dict[tuple, _Block] = {}
        self._last: dict[tuple, Pending] = {}  # latest write of a block still open
        # (write, bytes it holds, its data, unit buffer to reuse once it is done); the
        # data is kept alive here because a library may read it until the write is done
        # (None when the library has its own copy or its own view)
        self._inflight: deque[tuple[Pending, int, np.ndarray | None, np.ndarray | None]] = deque()
        self._inflight_bytes = 0
        # views lent to the library (see lends_data), each returning its buffer when dropped
        # (keyed by the weak reference's id: a reference to an array has no hash)
        self._lent: dict[int, weakref.ref[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False

    # -- what a subclass provides -------------------------------------------------------
    @abstractmethod
    def _start_write(
        self,
        image: int,
        level: int,
        selection: tuple[slice, ...],
        data: np.ndarray,
        previous: Pending | None,
        lent: bool,
    ) -> Pending:
        """Start writing ``data`` at ``selection``, after ``previous`` (same unit) landed.
        ``lent``: the library may keep ``data`` as long as it wants (see ``lends_data``);
        otherwise it is the caller's frame (see ``_takes_frames``) or a unit buffer that is
        reused once the write is done."""

    def _takes_frames(self, image: int, level: int) -> bool:
        """Whether a unit of one frame goes to the library straight from the caller's
        buffer: ``_start_write`` then returns once the library has its own copy."""
        return False

    def _shutdown(self, cancel: bool) -> None:
        """Release the engine's workers (after the last write finished, unless cancel)."""
        return None  # engines whose library owns its threads have nothing to stop

    # -- frames -------------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        if self._takes_frames(image, level):
            self._raise_if_failed()
            height, width = frame.shape
            at = (*(slice(i, i + 1) for i in index), slice(0, height), slice(0, width))
            data = frame.reshape((1,) * len(index) + frame.shape)
            self._send((image, level, index), at, data, None, final=True, borrowed=True)
            return
        block, local = self._block_for(image, level, index)
        block.buf[local] = frame
        block.data = True
        self._mark(block, local)

    def _one_frame_units(self, image: int, level: int) -> bool:
        return all(u == 1 for u in self.plan.images[image].levels[level].write_unit[:-2])

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        if self.absent_is_fill and self._takes_frames(image, level):
            self._raise_if_failed()
            return  # a unit of this frame alone stays absent: it reads as fill
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
            buf = self._buffers.take((*unit, *plan.shape[-2:]), self.plan.dtype)
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
        if self.absent_is_fill and not block.data:
            # Skipped frames only: a new dataset reads the unit as fill without it (and
            # no earlier write of it exists, as each held data).
            if final:
                self._buffers.give_back(block.buf)
            return
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
        self._send(key, selection, data, block.buf if final else None, final)

    def _send(
        self,
        key: tuple,
        selection: tuple[slice, ...],
        data: np.ndarray,
        reuse: np.ndarray | None,
        final: bool,
        borrowed: bool = False,
    ) -> None:
        """Start one unit's write once the budget has room, and account for it.
        ``borrowed``: ``data`` is the caller's frame (see ``_takes_frames``)."""
        image, level, _ = key
        lend = self.lends_data and not borrowed
        previous = self._last.pop(key, None)
        # A lent unit is in memory twice until it is written: in its buffer and in the
        # chunks the library encodes from it (peak RSS ~2x the budget when counted once).
        held = data.nbytes * (2 if lend else 1)
        self._wait_for_budget(held)
        if lend:
            lent = self._lend(data, reuse)
            pending = self._start_write(image, level, selection, lent, previous, lent=True)
            reuse = None  # back to the pool when the library drops its view, not before
        else:
            pending = self._start_write(image, level, selection, data, previous, lent=False)
        if not final:
            self._last[key] = pending
        kept = None if lend or borrowed else data
        with self._lock:
            self._inflight.append((pending, held, kept, reuse))
            self._inflight_bytes += held

    def _lend(self, data: np.ndarray, buf: np.ndarray | None) -> np.ndarray:
        """A view of ``data`` for the library to keep as long as it wants; ``buf`` (what
        ``data`` lives in, None if it is not reused) returns to the pool once the view is
        gone. tensorstore drops it when the write is committed, or just after."""
        view = data[...]
        if buf is not None:
            lent, pool = self._lent, self._buffers  # not self: no cycle through the callback

            def dropped(ref: weakref.ref[np.ndarray]) -> None:
                lent.pop(id(ref), None)
                pool.give_back(buf)

            ref = weakref.ref(view, dropped)
            lent[id(ref)] = ref
        return view

    def _settle(self, pending: Pending, buf: np.ndarray | None) -> None:
        """Wait for one write; keep its error for the caller, its buffer for reuse."""
        try:
            pending.result()
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            return
        if buf is not None:
            self._buffers.give_back(buf)

    def _wait_for_budget(self, nbytes: int) -> None:
        while True:
            with self._lock:
                done = []
                while self._inflight and self._inflight[0][0].done():
                    pending, held, _, buf = self._inflight.popleft()
                    self._inflight_bytes -= held
                    done.append((pending, buf))
                room = not self._inflight or self._inflight_bytes + nbytes <= self._budget
                oldest = None if room else self._inflight[0]
            for pending, buf in done:
                self._settle(pending, buf)
            self._raise_if_failed()
            if oldest is None:
                return
            with contextlib.suppress(Exception):
                oldest[0].result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._inflight:
                    break
                pending, held, _, buf = self._inflight.popleft()
                self._inflight_bytes -= held
            self._settle(pending, buf)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        err = self._error
        if err is not None:
            if isinstance(err, WriteError):
                raise err
            raise WriteError(0, f"{self.name} failed writing to {self.kv.url}: {err}") from err

    @property
    def bytes_in_flight(self) -> int:
        """Bytes of units handed to the library and not yet written."""
        with self._lock:
            return self._inflight_bytes

    # -- lifecycle ----------------------------------------------------------------------
    def flush(self, wait: bool = False) -> None:
        """Write open blocks (from a copy); without ``wait`` a block whose last such
        write is still in flight waits for the next flush rather than queue another
        copy of itself."""
        for block in list(self._blocks.values()):
            if not (block.dirty and block.count):
                continue
            previous = self._last.get(block.key)
            if not wait and previous is not None and not previous.done():
                continue
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
            self._shutdown(cancel=False)

    def abort(self) -> None:
        self._blocks.clear()
        self._closed = True
        self._shutdown(cancel=True)
        with self._lock:
            pending = list(self._inflight)
            self._inflight.clear()
            self._inflight_bytes = 0
        for p, *_ in pending:  # let writes already started finish before returning
            with contextlib.suppress(Exception):
                p.result()
