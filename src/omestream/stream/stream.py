"""OMEStream and create_stream: settings -> plan -> documents -> engine, frame by frame."""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import math
import os
import shutil
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from omestream.backends.base import ArrayBackend
from omestream.backends.registry import load_engine
from omestream.errors import (
    ConcurrentModificationError,
    FrameCountError,
    FrameDtypeError,
    FrameError,
    FrameShapeError,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
    StreamClosedError,
    WriteError,
)
from omestream.io.kv import KVStore, LocalKV, open_kv
from omestream.io.locks import hold_stream
from omestream.metadata.display import frame_window, merge_windows, samples_frame
from omestream.metadata.records import encode_record
from omestream.plan import FrameRouter, StoragePlan, plan_storage
from omestream.plan.growth import grown_extent
from omestream.pyramid import StreamPyramid
from omestream.settings import AcquisitionSettings
from omestream.stream.autoflush import AutoFlush
from omestream.stream.state import StreamState
from omestream.stream.zarr_sink import ZarrMetadataSink

__all__ = ["MetadataSink", "OMEStream", "create_stream"]


class MetadataSink(Protocol):
    def start(self, state: StreamState) -> None: ...

    def update(self, state: StreamState, final: bool) -> None: ...


def _json_safe(value: Any) -> tuple[Any, list[str]]:
    """``value`` with numpy scalars and arrays made numbers and lists, and the keys
    whose NaN or infinite numbers became null: JSON cannot hold them, and a sensor that
    reads NaN should not cost the frame. :func:`_encoded` checks the rest."""
    nulled: list[str] = []

    def walk(v: Any, key: str) -> Any:
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            nulled.append(key)
            return None
        if isinstance(v, dict):
            return {k: walk(x, f"{key}.{k}" if key else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x, f"{key}[{i}]") for i, x in enumerate(v)]
        return v

    return walk(value, ""), nulled


def _encoded(record: dict[str, Any], where: str) -> str:
    """``record`` as the JSON text the stream keeps (dates become ISO text)."""
    try:
        return encode_record(record)
    except (TypeError, ValueError) as exc:
        raise FrameError(
            f"{where}: metadata must be JSON-serialisable (numbers, strings, lists, dicts): "
            f"{exc}; the frame was not written"
        ) from None


class OMEStream:
    """An open acquisition: ``append`` frames in acquisition order, then ``close``.

    Use it as a context manager so the dataset is finalised even when the
    acquisition loop raises.
    """

    def __init__(
        self,
        settings: AcquisitionSettings,
        plan: StoragePlan,
        kv: KVStore,
        backend: ArrayBackend,
        sink: MetadataSink,
        state: StreamState | None = None,
        *,
        release: Callable[[], None],
    ) -> None:
        self.settings = settings
        # releases the stream lock (see omestream.io.locks) once the stream is closed
        self._release = release
        self.plan = plan
        self._kv = kv
        if isinstance(kv, LocalKV):
            kv.retire_replaced()  # replaced files are removed at close (see there)
        self._backend = backend
        self._sink = sink
        self._router = FrameRouter(settings)
        self._state = state or StreamState(n_images=len(plan.images))
        if isinstance(kv, LocalKV):  # records past a few MB wait on the data's own disk
            for records in self._state.frame_metadata:
                records.spill_to(_spill_dir(kv))
        self._closed = False
        self._warned_non_finite = False
        self._frame_shape = settings.frame_shape
        self._dtype = np.dtype(settings.dtype)
        self._y, self._x = (d.name for d in settings.frame_dimensions)
        self._unbounded = plan.unbounded_axis
        self._unit_u = (
            plan.images[0].levels[0].write_unit[self._unbounded]
            if self._unbounded is not None
            else 1
        )
        self._alloc = 0  # allocated extent of the unbounded axis (same for every image)
        # Growth not yet in the arrays' metadata (engines that write past the shape), and
        # an error from writing it in the background, raised by the next append.
        self._pending_extent: int | None = None
        self._growth_error: BaseException | None = None
        self._last_sync = time.monotonic()
        # resume re-appends frames already on disk: a partial shard pushed meanwhile
        # would overwrite the ones not yet re-appended with fill values
        self._replaying = False
        # Display windows (OME-Zarr omero; OME-XML has none): where each image's channel
        # index sits in a frame's storage index (None: not measured), and how many frames
        # each channel has had.
        zarr = settings.format is not None and settings.format.name == "ome-zarr"
        self._channel_axis = [
            im.channel_axis() if zarr and im.channels else None for im in plan.images
        ]
        self._channel_frames: dict[tuple[int, int], int] = {}
        self._pyramid = (
            StreamPyramid(plan, settings.pyramid.method)
            if settings.pyramid is not None and len(plan.images[0].levels) > 1
            else None
        )
        # Safety net: a stream dropped without close() still writes what it holds.
        self._finalizer = weakref.finalize(
            self, OMEStream._finalize_quietly, backend, kv, self._release
        )
        # append and the idle-time refresh (AutoFlush) never run at the same time
        self._lock = threading.RLock()
        self._sink_lock = threading.Lock()  # one metadata writer at a time; taken first
        self._autoflush = AutoFlush(self, settings.writer.metadata_interval_s)
        # At interpreter exit a stream still open is flushed while thread pools still
        # take work, then closed like close() once every other thread has ended (the
        # finalizer alone would leave shapes untrimmed and the record incomplete).
        ref = weakref.ref(self)
        self._exit_hooks = (
            functools.partial(_flush_at_exit, ref),
            functools.partial(_close_at_exit, ref),
        )
        _at_thread_exit(self._exit_hooks[0])
        self._user: threading.Thread | None = None  # the thread that appended last
        atexit.register(self._exit_hooks[1])

    # -- public API ---------------------------------------------------------------------
    @property
    def output_path(self) -> str:
        return self.settings.output_path

    @property
    def frames_written(self) -> int:
        """Frames appended or skipped so far."""
        return self._state.frames

    @property
    def closed(self) -> bool:
        return self._closed

    def append(
        self,
        frame: np.ndarray,
        metadata: dict[str, Any] | None = None,
        *,
        frame_metadata: dict[str, Any] | None = None,
    ) -> None:
        """Write the next frame. The caller may reuse ``frame`` as soon as this returns."""
        self._check_open()
        n = self._state.frames
        if metadata is not None and frame_metadata is not None:
            raise TypeError("pass metadata= or frame_metadata=, not both")
        meta = metadata if metadata is not None else frame_metadata
        frame = self._check_frame(frame, n)
        route = self._router.route(n)
        record: str | None = None
        if meta is not None:
            if not isinstance(meta, dict):
                raise FrameError(f"frame {n}: metadata must be a dict, got {type(meta).__name__}")
            taken = sorted(k for k in ("frame", "index") if k in meta)
            if taken:
                raise FrameError(
                    f"frame {n}: metadata keys {taken} are omestream's own (the frame's number "
                    "and acquisition index, stored with every record); rename yours, e.g. "
                    "'camera_frame'; nothing was written"
                )
            plain, nulled = _json_safe(meta)
            if nulled and not self._warned_non_finite:
                self._warned_non_finite = True
                warnings.warn(
                    f"frame {n}: metadata {', '.join(nulled)} is not a finite number; stored "
                    "as null (JSON has no NaN or infinity). Warned once per stream.",
                    UserWarning,
                    stacklevel=2,
                )
            record = _encoded({"frame": n, "index": route.acquisition, **plain}, f"frame {n}")
        with self._lock:
            self._user = threading.current_thread()
            self._raise_deferred_error()
            self._grow(route.index)
            self._backend.write_frame(route.image, route.index, frame)
            self._observe(route.image, route.index, frame)
            if self._pyramid is not None:
                self._write_levels(
                    route.image, self._pyramid.feed(route.index, frame, route.image)
                )
            self._advance(route.image, route.index, record)

    def _observe(self, image: int, index: tuple[int, ...], frame: np.ndarray) -> None:
        """Look at some of a channel's frames for its display window (see
        :mod:`omestream.metadata.display`)."""
        axis = self._channel_axis[image]
        if axis is None:
            return
        c = index[axis]
        seen = self._channel_frames.get((image, c), 0)
        self._channel_frames[(image, c)] = seen + 1
        if samples_frame(seen):
            windows = self._state.windows[image]
            merged = merge_windows(windows.get(c), frame_window(frame))
            if merged is not None:
                windows[c] = merged

    def skip(self, frames: int = 1) -> None:
        """Declare that ``frames`` frames will not come; they read as the fill value.

        In a new OME-Zarr dataset, chunks and shards that only skipped frames fall in are
        not written at all (the stream records the skips for ``repair`` and resuming)."""
        self._check_open()
        if isinstance(frames, bool) or not isinstance(frames, int | np.integer) or frames < 1:
            raise ValueError(f"frames must be a positive whole number, got {frames!r}")
        frames = int(frames)
        n = self._state.frames
        total = self._router.total
        if total is not None and n + frames > total:
            raise FrameCountError(
                f"skip(frames={frames}) after frame {n - 1} goes beyond the acquisition: it "
                f"holds {total} frames, {total - n} remain; nothing was skipped"
            )
        with self._lock:
            self._user = threading.current_thread()
            self._raise_deferred_error()
            for k in range(frames):
                route = self._router.route(n + k)
                self._grow(route.index)
                self._backend.skip_frame(route.image, route.index, 0)
                if self._pyramid is not None:  # lower levels see the skipped frame as fill
                    self._write_levels(
                        route.image, self._pyramid.feed(route.index, None, route.image)
                    )
                self._state.skipped.append(n + k)
                self._advance(route.image, route.index, None)

    def flush(self) -> None:
        """Push everything appended so far to storage and refresh the metadata."""
        self._check_open()
        with self._sink_lock, self._lock:
            self._apply_growth()
            self._raise_deferred_error()
            # wait for the writes, so the record written next never claims missing frames
            if "wait" in inspect.signature(self._backend.flush).parameters:
                self._backend.flush(wait=True)  # type: ignore[call-arg]
            else:
                self._backend.flush()
            self._sink.update(self._state, final=False)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        """Write what is pending, trim unbounded axes, write the final metadata.

        Returns when the data is durable (unless ``writer.fsync=False``); raises any error
        that happened in a writer thread. Calling it again does nothing.
        """
        if self._closed:
            return
        self._autoflush.stop()  # waits for a refresh in progress
        atexit.unregister(self._exit_hooks[1])
        self._closed = True
        self._finalizer.detach()
        if self._lease_lost():  # the dataset is another writer's now: leave it alone
            self._backend.abort()
            self._release()
            raise self._lost_error()
        error: BaseException | None = None
        if self._pyramid is not None:  # groups (e.g. of z planes) left incomplete
            try:
                for image, level, index, lower in self._pyramid.finish():
                    self._write_levels(image, [(level, index, lower)])
            except BaseException as exc:
                error = exc
        try:
            self._backend.close()
        except BaseException as exc:
            error = exc
        try:
            self._trim()
            self._state.complete = error is None
            self._sink.update(self._state, final=True)
        except BaseException as exc:
            error = error or exc
        if isinstance(self._kv, LocalKV):
            self._kv.stop_retiring()
        self._release()
        if error is not None:
            raise error

    def __enter__(self) -> OMEStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<OMEStream {self.output_path!r} {state}, {self._state.frames} frames>"

    # -- internals ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError(f"the stream to {self.output_path!r} is closed")

    def _check_frame(self, frame: Any, n: int) -> np.ndarray:
        if isinstance(frame, np.ma.MaskedArray):
            raise FrameError(
                f"frame {n} is a masked array: its mask cannot be stored; pass "
                "frame.filled(value) (or frame.data) to store its pixels; nothing was written"
            )
        if type(frame) is not np.ndarray:
            # subclasses (np.matrix...) reshape and multiply differently in the engines
            frame = np.asarray(frame)
        if frame.shape != self._frame_shape:
            raise FrameShapeError(
                f"frame {n} has shape {frame.shape}; this stream expects {self._frame_shape} "
                f"(dims {self._y}, {self._x}); nothing was written"
            )
        if frame.dtype != self._dtype and frame.dtype.newbyteorder("=") == self._dtype:
            frame = frame.astype(self._dtype)  # the same values in the other byte order
        if frame.dtype != self._dtype:
            raise FrameDtypeError(
                f"frame {n} has dtype {frame.dtype}; this stream expects {self._dtype} "
                "(omestream does not cast: convert with frame.astype(...) if that is intended); "
                "nothing was written"
            )
        return frame

    def _write_levels(self, image: int, frames: Any) -> None:
        for level, index, lower in frames:
            if lower is None:
                self._backend.skip_frame(image, index, level)
            else:
                self._backend.write_frame(image, index, lower, level)

    def _grow(self, index: tuple[int, ...]) -> None:
        """Pre-size the unbounded axis ahead of the write position, in batches."""
        u = self._unbounded
        if u is None or index[u] < self._alloc:
            return
        target = grown_extent(self._alloc, index[u] + 1, self._unit_u)
        self._alloc = target
        if self._backend.writes_past_shape:
            # Renaming a metadata file over the old one waits for the file system's
            # journal, up to ~1 s while frames stream to disk: the AutoFlush thread
            # writes the new shape, append goes on.
            self._pending_extent = target
            self._autoflush.request_growth()
        else:
            self._resize_all(target)

    def _apply_growth(self) -> None:
        """Write a pending growth of the unbounded axis (caller holds ``_sink_lock``)."""
        with self._lock:
            extent, self._pending_extent = self._pending_extent, None
        if extent is None or self._closed or self._lease_lost():
            return
        try:
            self._resize_all(extent)
        except Exception as exc:
            with self._lock:
                self._growth_error = self._growth_error or exc

    def _raise_deferred_error(self) -> None:
        """Raise what went wrong away from the caller's thread: a failed growth of the
        unbounded axis, or the dataset taken over by another writer."""
        if self._growth_error is None and self._lease_lost():
            self._growth_error = self._lost_error()
        if self._growth_error is not None:
            raise self._growth_error

    def _lease_lost(self) -> bool:
        """Whether another writer took this stream's dataset over (object stores: its
        lease ran out while it could not be renewed; see omestream.io.object_locks)."""
        lost = getattr(self._release, "lost", None)
        return bool(lost is not None and lost())

    def _lost_error(self) -> ConcurrentModificationError:
        return ConcurrentModificationError(
            f"{self.output_path}: this stream lost its lease on the dataset to another "
            "writer (it could not renew it in time); it writes nothing more, its metadata "
            "included. Frames written before stay; check the dataset before going on"
        )

    def _resize_all(self, extent: int | list[int]) -> None:
        u = self._unbounded
        assert u is not None
        for i, im in enumerate(self.plan.images):
            e = extent[i] if isinstance(extent, list) else extent
            for lv, level in enumerate(im.levels):
                shape = list(level.shape)
                shape[u] = e
                self._backend.resize(i, lv, tuple(shape))

    def _advance(self, image: int, index: tuple[int, ...], record: str | None) -> None:
        st = self._state
        st.frames += 1
        if self._unbounded is not None:
            st.extents[image] = max(st.extents[image], index[self._unbounded] + 1)
        if record is not None:
            st.frame_metadata[image].append_text(record)
            st.dirty_metadata = True
        now = time.monotonic()
        if self._replaying:
            return
        if now - self._last_sync >= self.settings.writer.metadata_interval_s:
            self._last_sync = now
            self._backend.flush()
            self._autoflush.request()  # the metadata is rewritten on that thread

    def _trim(self) -> None:
        if self._unbounded is not None:
            self._resize_all(list(self._state.extents))

    @staticmethod
    def _finalize_quietly(backend: ArrayBackend, kv: KVStore, release: Callable[[], None]) -> None:
        # nothing to report to at garbage collection
        with contextlib.suppress(Exception):
            backend.close()
        if isinstance(kv, LocalKV):
            kv.stop_retiring()
        with contextlib.suppress(Exception):
            release()


def _at_thread_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit before threads are joined and thread pools stop.

    ``threading`` runs these hooks first (``concurrent.futures`` relies on the same one
    since Python 3.9); by ``atexit`` the engines' pools and zarr-python's asyncio
    executor refuse new work. Private API, hence the fallback.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
            register(hook)


def _flush_at_exit(ref: weakref.ref[OMEStream]) -> None:
    stream = ref()
    if stream is None or stream.closed:
        return
    if stream._user is threading.current_thread():
        _close_at_exit(ref)  # the exiting thread fed it: nothing else appends
        return
    # Another thread may still be appending (threads are joined after this hook):
    # flush now, close from atexit once it has ended.
    try:
        stream.flush()
    except Exception as exc:  # no caller is left to raise to
        warnings.warn(f"flushing {stream!r} at exit failed: {exc}", RuntimeWarning, stacklevel=1)


def _close_at_exit(ref: weakref.ref[OMEStream]) -> None:
    stream = ref()
    if stream is None or stream.closed:
        return
    warnings.warn(f"{stream!r} was never closed: closed at exit", ResourceWarning, stacklevel=1)
    try:
        stream.close()
    except Exception as exc:
        warnings.warn(f"closing {stream!r} at exit failed: {exc}", RuntimeWarning, stacklevel=1)


def _spill_dir(kv: LocalKV) -> str:
    """The folder that holds a local dataset (it exists; the dataset may not yet)."""
    return os.path.dirname(os.path.abspath(kv.path("")))


def _prepare_location(settings: AcquisitionSettings, kv: KVStore) -> None:
    """Refuse to clobber: an existing output needs overwrite=True and must look like ours.

    On a local disk the root folder is then made by one ``mkdir`` that fails if the
    folder exists, so of writers creating the same path at once exactly one goes on;
    the others get StoreExistsError before they write anything. ``overwrite=True``
    deletes the old dataset first: callers hold the dataset's stream lock
    (:func:`omestream.io.locks.hold_stream`) around that and for as long as they write,
    so a second overwriting writer is refused instead of deleting the first one's new
    dataset. On S3-compatible object stores that lock is a lease object, so the second
    guarantee holds there too; the first (an exclusive create) is a local disk's only.
    """
    out = kv.url
    if kv.is_local and os.path.isfile(out):
        raise StoreExistsError(f"{out!r} exists and is a file; OME-Zarr output must be a folder")
    if kv.root_exists():
        if not settings.overwrite:
            raise StoreExistsError(
                f"{out!r} already exists; pass overwrite=True to replace it, or use "
                "omestream.open_store(...) to change it"
            )
        listing = kv.list_dir("")
        is_zarr = any(n in listing for n in ("zarr.json", ".zgroup", ".zattrs", ".zarray"))
        if listing and not is_zarr:
            raise StoreFormatError(
                f"{out!r} exists and is not a Zarr store; omestream will not delete it "
                "even with overwrite=True. Choose another root_path or remove it yourself"
            )
        if kv.is_local:
            shutil.rmtree(out)
        else:
            kv.delete_prefix("")
    if kv.is_local:
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            os.mkdir(out)  # the exclusive step: it fails where another writer made it
        except FileExistsError:
            raise StoreExistsError(
                f"{out!r} was created by another writer at the same time; nothing was "
                "written. Write to another path, or wait for that writer and use "
                "omestream.open_store(...) to change its dataset"
            ) from None
        except OSError as exc:
            err = WriteError(exc.errno or 0, f"cannot create {out!r}: {exc.strerror or exc}")
            raise err from exc


def create_stream(
    settings: AcquisitionSettings,
    *,
    store: KVStore | None = None,
    resume: bool = False,
    **storage_options: Any,
) -> OMEStream:
    """Create the dataset described by ``settings`` and return a stream to fill it.

    ``storage_options`` are passed to fsspec for URLs such as ``s3://bucket/x.ome.zarr``.
    ``store`` replaces the storage location derived from ``settings.output_path`` with a
    :class:`~omestream.io.KVStore` of your own (OME-Zarr only).
    ``resume=True`` continues the interrupted stream that wrote ``settings.output_path``
    from its first frame not yet written (see :mod:`omestream.store.resume` and, for
    OME-TIFF, :mod:`omestream.tiff.resume`).
    """
    if not isinstance(settings, AcquisitionSettings):
        raise SettingsError(
            f"create_stream needs AcquisitionSettings, got {type(settings).__name__}"
        )
    fmt = settings.format
    assert fmt is not None
    if resume and fmt.name == "ome-tiff":
        from omestream.tiff.resume import resume_tiff  # the tiff layer sits above this one

        return resume_tiff(settings)
    if resume:
        from omestream.store.resume import resume_stream  # the store layer sits above this one

        return resume_stream(settings, store=store, **storage_options)
    engine = load_engine(fmt.backend)
    reason = engine.check(settings)
    if reason:
        raise SettingsError(f"backend {fmt.backend!r} cannot write these settings: {reason}")
    plan = plan_storage(settings)
    if fmt.name == "ome-tiff":
        release = hold_stream(settings.output_path)  # before anything is replaced
        try:
            # checks its file or folder itself (nothing written yet) and is its own sink
            backend = engine.from_settings(settings, plan)  # type: ignore[attr-defined]
            return _start(settings, plan, backend.kv, backend, backend, release)  # type: ignore[arg-type]
        except BaseException:
            release()
            raise
    kv = store if store is not None else open_kv(settings.output_path, storage_options or None)
    release = hold_stream(kv)
    try:
        _prepare_location(settings, kv)
        backend = engine(plan, kv, settings.writer)
        sink = ZarrMetadataSink(kv, plan, settings)
        return _start(settings, plan, kv, backend, sink, release)
    except BaseException:
        release()
        raise


def _start(
    settings: AcquisitionSettings,
    plan: StoragePlan,
    kv: KVStore,
    backend: ArrayBackend,
    sink: MetadataSink,
    release: Callable[[], None],
) -> OMEStream:
    try:
        backend.create_arrays()
        stream = OMEStream(settings, plan, kv, backend, sink, release=release)
        sink.start(stream._state)
    except OSError as exc:
        backend.abort()
        reason = exc.strerror if isinstance(exc, WriteError) else str(exc)
        err = WriteError(exc.errno or 0, f"cannot create {settings.output_path!r}: {reason}")
        raise err from exc
    return stream
