"""Create a dataset's structure and metadata on the client, before any task runs.

Everything here reuses the streaming path: ``plan_storage`` for the hierarchy, the
Zarr engines' ``create_arrays`` for array metadata and ``ZarrMetadataSink`` for the
NGFF groups, the OME-XML and omestream's root record. Tasks then only write chunk
bytes into arrays that already exist, so they never race on metadata.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import ConcurrentModificationError, SettingsError
from omestream.io.kv import KVStore, LocalKV, open_kv
from omestream.io.locks import check_no_stream, hold_stream
from omestream.io.paths import location, overlaps
from omestream.plan import StoragePlan, plan_storage
from omestream.settings import AcquisitionSettings
from omestream.stream.state import StreamState
from omestream.stream.stream import _prepare_location
from omestream.stream.zarr_sink import ZarrMetadataSink

__all__ = ["NewDataset", "StreamHold", "bounded", "create_dataset", "location", "overlaps"]


class _ArrayCreator(ZarrArrayBackend):
    """The shared Zarr array creation, without a frame writer (tasks write regions)."""

    name = "dask"

    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        raise NotImplementedError("Dask tasks write whole regions, not frames")

    def close(self) -> None:
        pass


class StreamHold:
    """The dataset's stream lock (see :mod:`omestream.io.locks`) while Dask writes it.

    Held from before the dataset is created (or replaced) until its outcome is
    recorded, so that another writer, a stream or a Dask write with
    ``overwrite=True`` included, is refused instead of deleting or mixing into it, and
    ``open_store`` changes wait until the final metadata is written. Remote stores have
    no such lock.
    """

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        self._release: Callable[[], None] | None = None

    @property
    def held(self) -> bool:
        return self._release is not None

    def take(self, action: str) -> None:
        if self._release is not None:
            return
        try:
            self._release = hold_stream(self.kv)
        except ConcurrentModificationError:
            raise ConcurrentModificationError(
                f"{self.kv.url} is being written by another writer (an open stream, or a "
                f"Dask write not yet finished, in this or another process); cannot {action} "
                "until it is done; nothing was changed"
            ) from None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


@dataclass
class NewDataset:
    """A dataset created by the client; ``finish`` records the outcome in its metadata.

    It holds the dataset's stream lock (``lock``) until ``finish`` or until it is
    dropped; a rerun of its tasks takes it again (:meth:`hold`).
    """

    settings: AcquisitionSettings
    plan: StoragePlan
    kv: KVStore
    storage_options: dict[str, Any] | None
    sink: ZarrMetadataSink
    state: StreamState = field(repr=False)
    lock: StreamHold = field(repr=False)

    def __post_init__(self) -> None:
        weakref.finalize(self, self.lock.release)  # a plan dropped without running

    def hold(self) -> None:
        """Take the stream lock again (each ``finish`` lets go of it)."""
        self.lock.take("write it with Dask")

    def finish(self, complete: bool) -> None:
        """Record in the root metadata whether every task succeeded; let go of the lock."""
        try:
            self.state.frames = (self.settings.total_frames or 0) if complete else 0
            self.state.complete = complete
            self.sink.update(self.state, final=True)
        finally:
            self.lock.release()


def bounded(settings: AcquisitionSettings, extent: int) -> AcquisitionSettings:
    """``settings`` with an unbounded first dimension given ``extent`` (a Dask array's size)."""
    if not settings.is_unbounded:
        return settings
    dims = list(settings.dimensions)
    dims[0] = dims[0].replace(count=extent)  # type: ignore[union-attr]
    return settings.replace(dimensions=tuple(dims))


def create_dataset(
    settings: AcquisitionSettings, storage_options: dict[str, Any] | None = None
) -> NewDataset:
    """Create every group and array of ``settings`` and write the initial metadata."""
    fmt = settings.format
    assert fmt is not None
    if fmt.name != "ome-zarr":
        raise SettingsError(
            f"parallel writes need OME-Zarr; {settings.root_path!r} resolves to {fmt.name}. "
            "Use a .ome.zarr root_path or format='ome-zarr'"
        )
    if settings.is_unbounded:
        raise SettingsError(
            "parallel writes need every dimension's count; the first dimension is unbounded"
        )
    plan = plan_storage(settings)
    kv = open_kv(settings.output_path, storage_options or None)
    if isinstance(kv, LocalKV):  # a dataset inside one being streamed
        check_no_stream(os.path.dirname(kv.root), "write a dataset inside it with Dask")
    lock = StreamHold(kv)
    if settings.overwrite:
        # never replace a dataset being streamed or written by Dask: refused before
        # anything is deleted
        lock.take("write it with Dask")
        try:
            _prepare_location(settings, kv)
        except BaseException:
            lock.release()
            raise
    else:
        # The exclusive creation comes first: of two writers creating this path at
        # once, the second is told that it exists, whatever the first holds by then.
        _prepare_location(settings, kv)
        lock.take("write it with Dask")
    try:
        _ArrayCreator(plan, kv, settings.writer).create_arrays()
        sink = ZarrMetadataSink(kv, plan, settings)
        state = StreamState(n_images=len(plan.images))
        sink.start(state)
    except BaseException:
        lock.release()
        raise
    return NewDataset(settings, plan, kv, storage_options, sink, state, lock)
