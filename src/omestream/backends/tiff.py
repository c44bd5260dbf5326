"""The OME-TIFF engine: BigTIFF pages written by tifffile, OME-XML by omestream.

Pages are written in arrival order on a single writer thread, while an encoding
pool compresses the strips of many pages at once (one task per page, so every core
is used even for small frames). ``append`` returns after copying the frame; a memory
budget bounds the frames in flight.

Why not tifffile's contiguous mode: a contiguous series keeps its IFDs in memory
until the file is closed, so a killed process would leave pixels without pages.
Here every write call ends with all its pages linked into the file, and
:func:`omestream.tiff.recover` can describe them after a crash. Compressed pages
and pyramid levels take one ``TiffWriter.write`` each; uncompressed pages that queue
up behind the disk are written by two calls per batch (a multi-page array, then its
last page, which makes tifffile write the batch's IFDs): tifffile's Python cost per
call is ~10x the write of a 512x512 page. Where the file system allows it (and
``WriterOptions.direct_io`` is on, the default; the file system must report holes,
see :func:`~omestream.io.holes.reports_holes`), uncompressed pages of 2 MiB or more
take another path, unless the acquisition is bounded and smaller than
:data:`_SHORT_BURST_BYTES`: tifffile writes the IFDs and reserves page-aligned pixel bytes,
and the pixels go to the disk with direct I/O (:meth:`TiffBackend._write_direct`).
Otherwise, with ``fsync`` on, writeback of each file starts every few megabytes, so
the disk works while frames still arrive and the fsync in ``close`` has little left
to wait for; in files past 256 MB, bytes 32 MB behind the end are then dropped from
the page cache once written back (:func:`~omestream.io.durability.settle_and_drop`:
~7% faster on 512x512 frames in alternating runs, and a long acquisition does not
flood the cache).
The Zarr engine's :class:`~omestream.io.durability.BackgroundSync` is not used here:
with one growing file, periodic ``syncfs`` calls slowed 512x512 streams by 12-27%
on the benchmark machine (against writeback alone) and did not help large frames.

Planes are described through ``TiffData`` elements, so the physical page order may
differ from the declared ``DimensionOrder`` (explicit ``storage_order`` lists, or
several positions sharing one file) while readers still see the storage order.

The OME-XML in page 0 of each file first describes the first step of the outermost
acquisition dimension; ``close`` writes the final document (see
:func:`omestream.tiff.ifd.replace_description` for how it is swapped safely).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

from omestream import __version__
from omestream.backends.base import ArrayBackend
from omestream.backends.buffers import BufferPool
from omestream.backends.codecs import codec_choice
from omestream.errors import SettingsError, StoreExistsError, StoreFormatError, WriteError
from omestream.io.direct import direct_fits, open_direct, pwrite_all
from omestream.io.durability import settle_and_drop, start_writeback
from omestream.io.holes import reports_holes
from omestream.io.journal import MetadataJournal
from omestream.io.kv import KVStore, LocalKV, open_kv
from omestream.io.libc import DIRECT_IO_ALIGN
from omestream.plan import FrameRouter, StoragePlan
from omestream.settings import AcquisitionSettings, WriterOptions
from omestream.stream.state import StreamState
from omestream.tiff.ifd import replace_description
from omestream.tiff.journal import TIFF_JOURNAL, metadata_journal_root
from omestream.tiff.layout import (
    TIFF_SUFFIXES,
    TiffLayout,
    arrival_pages,
    declared_shapes,
    first_outer_axis,
    tiff_layout,
)
from omestream.tiff.pagemap import PageMap, PlaneBits, plane_keys
from omestream.tiff.pages import PageFormat
from omestream.tiff.xml import TiffDocument, assemble_ome, file_xmls

__all__ = ["TiffBackend"]


_FLUSH, _REFRESH = -1, -2  # markers in the page queue
REFRESH_GROWTH = 4
# A refresh rebuilds the whole document; it waits until the writer has worked this many
# times as long as the last one took, so refreshing stays a small share of its time.
_REFRESH_COST_RATIO = 20
# Uncompressed pages waiting in the queue are written by one tifffile call (its
# per-call cost is ~10x a small page's write): at most this many bytes at once.
_BATCH_BYTES = 16 << 20
_NOTHING = object()
_WRITEBACK_BYTES = 4 << 20  # with fsync on: start writeback after this many bytes
# ... and, once a file is this long, free the cache of bytes _DROP_LAG behind its end
# (drop-behind; tifffile still patches the last IFDs, well within that distance).
# Shorter files are left to the fsync at close: waiting for writeback during a burst
# (a 134 MB z-stack) left it 2-3x slower in 3 of 4 alternating runs (1 of 4 without),
# while long streams of small frames ran ~7% faster with the page cache kept small.
_DROP_AFTER = 256 << 20
_DROP_LAG = 32 << 20
# Pages smaller than this go through the page cache. Direct writes of 2 MiB and 8 MiB
# pages kept pace with buffered ones or beat them (1024x1024: 1.05x, 6 alternating
# pairs; 2048x2048: 1.09-1.39x, 4 of 4), while 512x512 pages ran faster buffered
# (median 1.12x, 12 of 16 pairs; one process, memory pre-touched, 2.6 GB a stream).
_DIRECT_MIN_BYTES = 2 << 20
# Batches of direct writes in flight: one being written while the next is reserved.
_DIRECT_IN_FLIGHT = 2
# ... and their size: larger than through the cache, as fewer, larger direct writes
# gained 0.5-7% on 8 MB pages (64 vs 16 MB, 9 alternating runs, all faster).
_DIRECT_BATCH_BYTES = 64 << 20
# A bounded acquisition smaller than this (all its files together) goes through the page
# cache: the cache absorbs it while frames arrive, and the fsync at close writes it
# back in one go (a 134 MB z-stack: median 87 ms against 108 ms direct, 10 alternating
# pairs). Writing only the first 256 MB of longer files that way cost their streams 5%.
_SHORT_BURST_BYTES = _DROP_AFTER


@dataclass
class _Page:
    file: int
    image: int
    index: tuple[int, ...]
    level: int
    # encoded strips (a Future) or the frame; an Event for _FLUSH, lengths for _REFRESH
    data: Any
    nbytes: int
    frame: np.ndarray | None = None  # the pooled copy, given back once written or encoded


class TiffBackend(ArrayBackend):
    name = "tifffile"
    supports_regions = False

    def __init__(
        self,
        plan: StoragePlan,
        kv: KVStore,
        options: WriterOptions,
        settings: AcquisitionSettings | None = None,
    ) -> None:
        super().__init__(plan, kv, options)
        if settings is None:
            raise SettingsError("the OME-TIFF engine is created with TiffBackend.from_settings")
        self.settings = settings
        self.layout: TiffLayout = tiff_layout(settings, plan)
        self.uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in self.layout.files]
        shapes = [(lv.shape[-2], lv.shape[-1]) for lv in plan.images[0].levels]
        # The same default levels as the Zarr engines (zstd 1 encodes ~3x faster than
        # its library default of 3 for a few percent of size).
        level = codec_choice(plan.compression, options).level
        self.format = PageFormat(plan.dtype, plan.compression, shapes, level)
        self.n_levels = len(shapes)
        page_bytes = shapes[0][0] * shapes[0][1] * self.format.dtype.itemsize
        # only plain pages share calls: compressed ones and pyramid levels go one by one
        plain = self.n_levels == 1 and not self.format.compressed
        # plain pages of 2 MiB or more go around the page cache (see _write_direct),
        # unless the whole acquisition is known to be a short burst
        self._plain_page_bytes = page_bytes if plain else 0
        self._use_direct_io(
            options.direct_io
            and plain
            and page_bytes >= _DIRECT_MIN_BYTES
            and not self._short_burst()
        )
        # pages of whole blocks share a reservation; others get one each (aligned start)
        self._whole_blocks = page_bytes % DIRECT_IO_ALIGN == 0
        self._direct_fds: list[int | None] = [None] * len(self.layout.files)
        self._direct_refused = [False] * len(self.layout.files)
        self._direct_pending = 0  # batches handed to the direct-write thread
        self._io: ThreadPoolExecutor | None = None
        # first acquisition dimension, as a storage axis: its extent grows as data comes
        self._first_axis = first_outer_axis(settings)
        # the stream's own state, given at start: what every document describes (a
        # refresh's copy of it only fixes how many records that refresh describes)
        self._state: StreamState | None = None
        self._writers: list[tifffile.TiffWriter | None] = [None] * len(self.layout.files)
        self._keys = plane_keys(plan, self._first_axis)
        # level-0 pages per file, as runs (see omestream.tiff.pagemap)
        self._pages = PageMap(self._keys, len(self.layout.files))
        self._unsynced = [0 for _ in self.layout.files]  # bytes written since writeback began
        self._dropped = [0 for _ in self.layout.files]  # file offset up to which cache is freed
        self._queued = [PlaneBits(k) for k in self._keys]  # level-0 planes put in the queue
        self._initial: list[bytes] = []
        self._queue: queue.Queue[_Page | None] = queue.Queue()
        self._budget = options.memory_budget_mb * 2**20
        self._inflight = 0
        self._buffers = BufferPool(self._budget)  # frame copies, reused
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._created_folder = False
        self._closed = False
        self._final = False
        self._refresh_pending = False
        self._described_bytes = 0  # file bytes when the OME-XML was last refreshed
        self._refresh_cost = 0.0  # seconds the last refresh took ...
        self._refreshed_at = 0.0  # ... and when it ended (monotonic)
        self._xml_bytes = 0  # size of the last OME-XML written, all files
        self._resume_marks: dict[str, list[int]] = {}  # set when resuming (adopt)
        # per-frame metadata appended on the metadata cadence, beside the stream lock,
        # so a killed stream keeps the records its last OME-XML refresh had not reached
        root = metadata_journal_root(settings.output_path)
        self._journal = MetadataJournal(LocalKV(root), TIFF_JOURNAL, len(plan.images))

    def _use_direct_io(self, on: bool) -> None:
        """Direct I/O or not, and the pages per batch that go with it."""
        self._direct_io = on
        page_bytes = self._plain_page_bytes
        batch_bytes = _DIRECT_BATCH_BYTES if on else _BATCH_BYTES
        self._batch_pages = max(1, batch_bytes // page_bytes) if page_bytes else 1

    def _short_burst(self) -> bool:
        """Whether the acquisition is bounded and all its pixels, in every file
        together, stay under :data:`_SHORT_BURST_BYTES` (what the page cache absorbs)."""
        if self.plan.unbounded_axis is not None:
            return False
        itemsize = self.format.dtype.itemsize
        total = sum(math.prod(image.levels[0].shape) for image in self.plan.images)
        return total * itemsize < _SHORT_BURST_BYTES

    # -- construction -------------------------------------------------------------------
    @classmethod
    def check(cls, settings: AcquisitionSettings) -> str | None:
        root = settings.root_path
        if "://" in root and not root.startswith("file://"):
            return "OME-TIFF is written to local files only"
        pyr = settings.pyramid
        if pyr is not None and pyr.levels > 1:
            frame = {d.name for d in settings.frame_dimensions}
            outer = sorted(n for n, f in pyr.factors.items() if f != 1 and n not in frame)
            if outer:
                return (
                    "OME-TIFF stores reduced resolutions as SubIFDs of each plane, so "
                    f"pyramid factors apply to the frame's y and x only, not to {outer}"
                )
        return None

    @classmethod
    def from_settings(cls, settings: AcquisitionSettings, plan: StoragePlan) -> TiffBackend:
        """Check the output location (nothing is written yet) and build the engine."""
        layout = tiff_layout(settings, plan)
        _check_location(settings, layout)
        return cls(plan, open_kv(layout.folder), settings.writer, settings)

    def create_arrays(self) -> None:
        out = self.settings.output_path
        folder = self.layout.folder
        self._journal.finish()  # an earlier dataset's records (overwrite=True) go too
        try:
            if self.layout.in_folder and os.path.isdir(folder):
                for name in os.listdir(folder):  # only TIFFs: _check_location made sure
                    os.unlink(os.path.join(folder, name))
            if not os.path.isdir(folder):
                os.makedirs(folder)
                self._created_folder = True
        except OSError as exc:
            raise WriteError(exc.errno or 0, f"cannot create {out!r}: {exc}") from exc
        self._open_files([False] * len(self.layout.paths), "create")

    def adopt(self, uuids: Sequence[str], pages: PageMap) -> None:
        """Take over the files of an earlier stream (``resume``): their UUIDs, and the
        level-0 pages ``pages`` says each keeps. Nothing is opened yet: the resuming
        code describes the pages kept (:meth:`describe_resumed`), cuts each chain
        after them, then calls :meth:`reopen`."""
        self.uuids = list(uuids)
        self._pages = pages
        self._queued = [pages.present(i) for i in range(len(self.plan.images))]
        # every document from now on says where the kept pages end: pages after them
        # and before these sizes are fill pages being cut off (see tiff.xml.resume_marks)
        self._resume_marks = {
            "resume_pages": [pages.pages(f) for f in range(len(self.layout.files))],
            "resume_sizes": [os.path.getsize(p) for p in self.layout.paths],
        }

    def reopen(self) -> None:
        """Open the adopted files for appending: new pages are linked after the last
        page of each chain. A file that keeps no page starts afresh (its first page
        carries the OME-XML)."""
        self._open_files(
            [self._pages.pages(f) > 0 for f in range(len(self.layout.paths))], "reopen"
        )

    def _open_files(self, append: list[bool], verb: str) -> None:
        """A tifffile writer per file (appending to the files marked so, else writing
        them anew), direct I/O descriptors where used, then the writer threads."""
        try:
            if self._direct_io and not reports_holes(self.layout.folder):
                # pages reserved for direct writes are linked before their pixels land;
                # where holes read as data, a killed writer's unwritten pages would look
                # like zero-valued frames to recovery, so pixels go first, with their IFDs
                self._use_direct_io(False)
            for f, path in enumerate(self.layout.paths):
                self._writers[f] = tifffile.TiffWriter(
                    path, bigtiff=True, byteorder="<", append="force" if append[f] else False
                )
                if self._direct_io:
                    self._direct_fds[f] = open_direct(path)
        except OSError as exc:
            self._close_writers()
            where = self.settings.output_path
            raise WriteError(exc.errno or 0, f"cannot {verb} {where!r}: {exc}") from exc
        self._start_threads()

    def _start_threads(self) -> None:
        threads = self.options.threads or max(2, os.cpu_count() or 2)
        if self.format.compressed:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="omestream-tiff-encode")
        if any(fd is not None for fd in self._direct_fds):
            self._io = ThreadPoolExecutor(1, thread_name_prefix="omestream-tiff-direct")
        self._thread = threading.Thread(target=self._run, name="omestream-tiff-write", daemon=True)
        self._thread.start()

    # -- metadata sink ------------------------------------------------------------------
    def start(self, state: StreamState) -> None:
        self._state = state
        self._journal.skip_to(state)  # a resumed stream's records are in its document
        os.makedirs(self._journal.kv.root, exist_ok=True)  # (the stream lock's folder)
        router = FrameRouter(self.settings)
        pages, _ = arrival_pages(router, self.layout, self._keys, router.per_outer)
        extents = [max(1, pages.extent(i)) for i in range(len(self.plan.images))]
        ome = self._document(pages, self._shapes(extents), state, "streaming")
        self._initial = [x.encode("utf-8") for x in file_xmls(ome, self.uuids)]
        self._xml_bytes = sum(len(x) for x in self._initial)

    def update(self, state: StreamState, final: bool) -> None:
        """Final: write the closing document (``close`` already did unless it failed).

        Otherwise ask the writer thread to refresh the OME-XML between two pages, so a
        killed acquisition keeps most of its per-frame metadata. Each refresh leaves
        the previous document as dead bytes, so it happens only once the files have
        grown by :data:`REFRESH_GROWTH` times the document's size since the last one.
        """
        if final or self._state is None:
            self._state = state
        if final:
            if not self._final:
                self.close()
            return
        if not self._closed:
            self._journal.absorb(state)
        if not self._closed and not self._refresh_pending:
            self._refresh_pending = True
            lengths = [len(r) for r in state.frame_metadata]  # records are append-only
            self._queue.put(_Page(_REFRESH, -1, (), -1, lengths, 0))

    # -- frames -------------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        self._raise_if_failed()
        copy = self._buffers.take(frame.shape, self.format.dtype)
        np.copyto(copy, frame, casting="unsafe")  # dtype was checked by the stream
        self._wait_for_budget(copy.nbytes)
        if self._pool is not None:
            self._put(
                image, index, level, self._pool.submit(self._encode, copy, level), copy.nbytes
            )
        else:
            self._put(image, index, level, copy, copy.nbytes, frame=copy)

    def _encode(self, frame: np.ndarray, level: int) -> list[bytes] | np.ndarray:
        try:
            return self.format.encode(frame, level)
        finally:
            self._buffers.give_back(frame)

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        self._raise_if_failed()
        self._put(image, index, level, self.format.fill(level, self.plan.fill_value), 0)

    def _put(
        self,
        image: int,
        index: tuple[int, ...],
        level: int,
        data: Any,
        nbytes: int,
        frame: np.ndarray | None = None,
    ) -> None:
        if level == 0:
            self._queued[image].add(index)
        self._queue.put(
            _Page(self.layout.image_file[image], image, tuple(index), level, data, nbytes, frame)
        )

    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        """Nothing to allocate: pages are appended; the XML states the final extent."""

    def flush(self) -> None:
        """Wait until every page appended so far is written (and readable by others)."""
        done = threading.Event()
        self._queue.put(_Page(_FLUSH, -1, (), -1, done, 0))
        while not done.wait(0.05):
            if self._thread is None or not self._thread.is_alive():
                break
        self._raise_if_failed()

    # -- writer thread ------------------------------------------------------------------
    def _wait_for_budget(self, nbytes: int) -> None:
        with self._cond:
            while (
                self._inflight and self._inflight + nbytes > self._budget and self._error is None
            ):
                self._cond.wait(0.1)
            self._inflight += nbytes

    def _run(self) -> None:
        held: Any = _NOTHING  # taken from the queue while batching, handled next
        while True:
            page = self._queue.get() if held is _NOTHING else held
            held = _NOTHING
            if page is None:
                return
            batch = [page]
            if self._batchable(page):
                while len(batch) < self._batch_pages:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or not self._batchable(nxt) or nxt.file != page.file:
                        held = nxt
                        break
                    batch.append(nxt)
            self._handle(batch)

    def _batchable(self, page: _Page) -> bool:
        """Whether ``page`` is a level-0 page (not a marker) that may share a call."""
        return page.file >= 0 and page.level == 0

    def _handle(self, batch: list[_Page]) -> None:
        page = batch[0]
        handed_over = False  # to the direct-write thread, which releases the batch
        try:
            if page.file == _FLUSH:
                self._wait_for_direct_writes(0)
                page.data.set()
            elif page.file == _REFRESH:
                self._refresh_pending = False
                if self._error is None:
                    self._refresh(page.data)
            elif self._error is None:
                if self._direct_fds[page.file] is not None and all(
                    p.level == 0 and direct_fits(p.data, whole=self._whole_blocks) for p in batch
                ):
                    handed_over = self._write_direct(batch)
                elif len(batch) == 1:
                    self._write(page)
                else:
                    self._write_batch(batch)
        except BaseException as exc:
            with self._cond:
                self._error = self._error or exc
        finally:
            if not handed_over:
                self._release(batch)

    def _release(self, batch: list[_Page]) -> None:
        """The pages of ``batch`` are written (or failed): their memory is free again."""
        for p in batch:
            if p.frame is not None:
                self._buffers.give_back(p.frame)
        with self._cond:
            self._inflight -= sum(p.nbytes for p in batch)
            self._cond.notify_all()

    def _write(self, page: _Page) -> None:
        data = page.data.result() if isinstance(page.data, Future) else page.data
        writer = self._writers[page.file]
        assert writer is not None
        description = self._description(page.file) if page.level == 0 else None
        writer.write(PageFormat.data(data), **self.format.write_args(page.level, description))
        if page.level == 0:
            self._pages.add(page.file, page.image, page.index)
        self._written(page.file, page.nbytes)

    def _write_batch(self, batch: list[_Page]) -> None:
        """Uncompressed level-0 pages of one file, in order, with two tifffile calls.

        tifffile writes a multi-page array as the first IFD, all the data, and the
        other IFDs only when the next write begins; the last page is therefore
        written by a call of its own, which completes the chain: no page is left
        without its IFD while the writer waits for more frames.
        """
        f = batch[0].file
        writer = self._writers[f]
        assert writer is not None
        head = batch[:-1]
        args = self.format.write_args(0, self._description(f))
        args["shape"] = (len(head), *args["shape"])
        writer.write(iter([p.data for p in head]), **args)
        writer.write(batch[-1].data, **self.format.write_args(0))
        for p in batch:
            self._pages.add(f, p.image, p.index)
        self._written(f, sum(p.nbytes for p in batch))

    def _write_direct(self, batch: list[_Page]) -> bool:
        """Uncompressed level-0 pages of one file, their pixels around the page cache.

        tifffile writes the IFDs and reserves the pixel bytes at page-aligned offsets
        (``data=None``), in the same two calls as :meth:`_write_batch` (one call per
        page when pages are not whole 4 KiB blocks, so each starts aligned). The pixels
        then go to the disk with one positioned direct write per call (all but its
        last block, partial or not), on a thread of their own, so that the next batch
        is reserved while this one is in flight: at most :data:`_DIRECT_IN_FLIGHT`
        batches, which is all a crash can lose, and :func:`~omestream.tiff.recover`
        tells their pages by the still sparse pixel ranges. The kernel's copy into
        the page cache and its writeback are skipped: on disks that take sequential
        direct writes faster than buffered ones, the stream follows the device rather
        than the cache. Returns True: the batch is handed over.
        """
        f = batch[0].file
        writer = self._writers[f]
        assert writer is not None and self._io is not None
        spans: list[tuple[int, list[memoryview]]] = []
        description = self._description(f)
        groups = (batch[:-1], batch[-1:]) if self._whole_blocks else [[p] for p in batch]
        for pages in groups:
            if not pages:
                continue
            args = self.format.write_args(0, description)
            if len(pages) > 1:
                args["shape"] = (len(pages), *args["shape"])
            where = writer.write(None, align=DIRECT_IO_ALIGN, returnoffset=True, **args)
            assert where is not None  # (data offset, bytes per page)
            spans.append((where[0], [memoryview(p.data).cast("B") for p in pages]))
            description = None
        # tifffile ends each reservation with one byte, written through the cache: the
        # block holding it goes through the cache too, or the direct write would wait
        # for the kernel to write that block out first (~7% slower on 8 MB pages)
        writer.filehandle.flush()
        buffered = writer.filehandle.fileno()
        for offset, views in spans:
            total = sum(len(v) for v in views)
            direct = (total - 1) // DIRECT_IO_ALIGN * DIRECT_IO_ALIGN  # whole blocks
            cut = len(views[-1]) - (total - direct)  # pages >= _DIRECT_MIN_BYTES: within the last
            pwrite_all(buffered, [views[-1][cut:]], offset + direct)
            views[-1] = views[-1][:cut]
        for p in batch:
            self._pages.add(f, p.image, p.index)
        self._wait_for_direct_writes(_DIRECT_IN_FLIGHT - 1)
        with self._cond:
            self._direct_pending += 1
        self._io.submit(self._write_spans, f, spans, batch)
        return True

    def _write_spans(
        self, f: int, spans: list[tuple[int, list[memoryview]]], batch: list[_Page]
    ) -> None:
        """Direct-write thread: the pixels of one batch; a file system that refuses
        direct writes (EINVAL) gets them through the page cache from then on."""
        try:
            fd = self._direct_fds[f]
            if fd is not None and not self._direct_refused[f]:
                try:
                    for offset, views in spans:
                        pwrite_all(fd, views, offset)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._direct_refused[f] = True
            writer = self._writers[f]
            assert writer is not None
            for offset, views in spans:
                pwrite_all(writer.filehandle.fileno(), views, offset)
        except BaseException as exc:
            with self._cond:
                self._error = self._error or exc
        finally:
            self._release(batch)
            with self._cond:
                self._direct_pending -= 1
                self._cond.notify_all()

    def _wait_for_direct_writes(self, most: int) -> None:
        """Until at most ``most`` batches are still being written directly."""
        with self._cond:
            while self._direct_pending > most:
                self._cond.wait(0.1)

    def _description(self, f: int) -> bytes | None:
        """The OME-XML to give the next level-0 page of file ``f``: only its first."""
        return None if self._pages.pages(f) else self._initial[f]

    def _written(self, f: int, nbytes: int) -> None:
        if self.options.fsync:
            # Let the disk work while frames still arrive, so close() has little to sync.
            self._unsynced[f] += nbytes
            if self._unsynced[f] >= _WRITEBACK_BYTES:
                self._unsynced[f] = 0
                writer = self._writers[f]
                assert writer is not None
                fh = writer.filehandle
                fh.flush()
                fd = fh.fileno()
                start_writeback(fd)
                size = fh.tell()
                end = (size - _DROP_LAG) & ~(_WRITEBACK_BYTES - 1)
                if size >= _DROP_AFTER and end > self._dropped[f]:
                    settle_and_drop(fd, self._dropped[f], end)
                    self._dropped[f] = end

    def _raise_if_failed(self) -> None:
        err = self._error
        if err is not None:
            if isinstance(err, WriteError):
                raise err
            if isinstance(err, OSError):
                raise WriteError(
                    err.errno or 0, f"writing {self.settings.output_path!r} failed: {err}"
                ) from err
            raise WriteError(0, f"writing {self.settings.output_path!r} failed: {err!r}") from err

    # -- closing ------------------------------------------------------------------------
    def close(self) -> None:
        """Pad missing planes, write every page, make them durable, then the final XML."""
        if self._final:
            return
        if not self._closed:
            self._closed = True
            if self._error is None:
                self._pad()
            self._stop()
        try:
            self._raise_if_failed()
            for path in self.layout.paths:
                if self.options.fsync:
                    _fsync_path(path)
            self._write_final()
        except BaseException:
            self._final = True
            with contextlib.suppress(Exception):
                from omestream.tiff.recover import recover

                recover(self.layout.paths[0])  # describe what did reach the disk
            raise

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._final = True
        with self._cond:
            self._error = self._error or WriteError(0, "the stream was aborted")
        self._stop()
        if not len(self._pages):  # nothing was written: leave nothing behind
            self._journal.finish()
            for path in self.layout.paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if self._created_folder:
                with contextlib.suppress(OSError):
                    os.rmdir(self.layout.folder)

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._io is not None:
            self._io.shutdown(wait=True)  # every batch handed over is written
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._close_writers()

    def _close_writers(self) -> None:
        for f, fd in enumerate(self._direct_fds):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._direct_fds[f] = None
        for f, w in enumerate(self._writers):
            if w is not None:
                try:
                    w.close()
                except Exception as exc:
                    with self._cond:
                        self._error = self._error or exc
                self._writers[f] = None

    def _extents(self) -> list[int]:
        """Per image, the extent of the first acquisition dimension to declare."""
        shapes = [im.levels[0].shape for im in self.plan.images]
        if self.plan.unbounded_axis is None:
            return [s[self._first_axis] if self._first_axis is not None else 1 for s in shapes]
        state = self._state
        ext = list(state.extents) if state is not None else [0] * len(shapes)
        return [max(e, 1) for e in ext]  # OME sizes are at least 1: pad one step if empty

    def _pad(self) -> None:
        """Write fill pages for planes that never came (the rest of a partial last time
        point, frames after an early close), so every declared plane has a page."""
        extents = self._extents()
        for i, im in enumerate(self.plan.images):
            shape = list(im.levels[0].shape[:-2])
            if self._first_axis is not None:
                shape[self._first_axis] = extents[i]
            for index in itertools.product(*(range(s) for s in shape)):
                if index not in self._queued[i]:
                    for level in range(self.n_levels):
                        self.skip_frame(i, index, level)

    def _shapes(self, extents: list[int]) -> list[list[int]]:
        return declared_shapes(self.plan, self._first_axis, extents)

    def _document(
        self,
        pages: PageMap,
        shapes: list[list[int]],
        state: StreamState,
        stage: str,
        records: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    ) -> TiffDocument:
        record = {
            "version": __version__,
            "state": stage,
            "files": list(self.layout.files),
            "uuids": list(self.uuids),
            "settings": self.settings.model_dump(mode="json"),
            **state.summary(),
            **self._resume_marks,
        }
        return assemble_ome(
            self.plan, self.layout, self.uuids, shapes, pages,
            records or [[] for _ in self.plan.images], state.started, record,
        )  # fmt: skip

    def _refresh(self, lengths: list[int]) -> None:
        """Writer thread, between pages: describe the pages written so far."""
        writers = [w for w in self._writers if w is not None]
        state = self._state
        files = range(self._pages.n_files)
        if (
            state is None
            or not all(self._pages.pages(f) for f in files)
            or len(writers) < len(self._writers)
        ):
            return  # a file without a first page has no description to replace
        size = sum(w.filehandle.tell() for w in writers)
        if size - self._described_bytes < REFRESH_GROWTH * self._xml_bytes:
            return
        began = time.monotonic()
        if began - self._refreshed_at < _REFRESH_COST_RATIO * self._refresh_cost:
            return
        self._describe(state, lengths, durable=False)
        self._refreshed_at = time.monotonic()
        self._refresh_cost = self._refreshed_at - began

    def describe_resumed(self) -> None:
        """Before a resumed stream changes a chain: describe the pages kept, as a
        stream still running, in every file that has pages (a final document left
        there would tell :func:`~omestream.tiff.recover` there is nothing to recover,
        and would declare fill pages about to be cut off)."""
        assert self._state is not None, "start() first"
        self._describe(self._state, [len(r) for r in self._state.frame_metadata], durable=True)

    def _describe(self, state: StreamState, lengths: list[int], durable: bool) -> None:
        """Write a "streaming" document for the pages written so far into every file
        that has a first page; new pages go after it."""
        extents = [max(1, self._pages.extent(i)) for i in range(len(self.plan.images))]
        records = [r[:n] for r, n in zip(state.frame_metadata, lengths, strict=True)]
        doc = self._document(self._pages, self._shapes(extents), state, "streaming", records)
        del records
        total = 0
        for f, (path, urn) in enumerate(zip(self.layout.paths, self.uuids, strict=True)):
            writer = self._writers[f]
            if not self._pages.pages(f):
                continue
            if writer is not None:
                writer.filehandle.flush()
            total += replace_description(path, doc.pieces(urn), durable=durable)
            if writer is not None:
                writer.filehandle.seek(0, os.SEEK_END)  # the next page goes after it
        self._xml_bytes = total
        self._described_bytes = sum(w.filehandle.tell() for w in self._writers if w is not None)

    def _write_final(self) -> None:
        state = (self._state or StreamState(n_images=len(self.plan.images))).snapshot()
        # Only reached when every page is written and durable: the stream closed cleanly
        # (the same meaning as the OME-Zarr record's flag).
        state.complete = True
        doc = self._document(
            self._pages, self._shapes(self._extents()), state, "closed", state.frame_metadata
        )
        del state
        for path, urn in zip(self.layout.paths, self.uuids, strict=True):
            replace_description(path, doc.pieces(urn), durable=self.options.fsync)
        self._final = True
        self._journal.finish()  # every record is in the final document


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_tiff(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
    except OSError:
        return False


def _check_location(settings: AcquisitionSettings, layout: TiffLayout) -> None:
    """Refuse to clobber: an existing output needs overwrite=True and must be OME-TIFF."""
    out = settings.output_path
    if layout.in_folder:
        if os.path.isfile(out):
            raise StoreExistsError(
                f"{out!r} exists and is a file; this OME-TIFF layout writes a folder of files"
            )
        if not os.path.isdir(out):
            return
        listing = sorted(os.listdir(out))
        if not listing:
            return
        if not settings.overwrite:
            raise StoreExistsError(
                f"{out!r} already exists; pass overwrite=True to replace it, or choose "
                "another root_path"
            )
        others = [
            n for n in listing
            if not (n.lower().endswith(TIFF_SUFFIXES) and _is_tiff(os.path.join(out, n)))
        ]  # fmt: skip
        if others:
            raise StoreFormatError(
                f"{out!r} holds files that are not TIFF ({', '.join(others[:3])}); omestream "
                "will not delete them even with overwrite=True. Choose another root_path"
            )
        return
    if os.path.isdir(out):
        raise StoreExistsError(f"{out!r} exists and is a folder; OME-TIFF output here is a file")
    if not os.path.exists(out):
        return
    if not settings.overwrite:
        raise StoreExistsError(
            f"{out!r} already exists; pass overwrite=True to replace it, or choose "
            "another root_path"
        )
    if not _is_tiff(out):
        raise StoreFormatError(
            f"{out!r} exists and is not a TIFF file; omestream will not replace it even with "
            "overwrite=True. Choose another root_path"
        )
