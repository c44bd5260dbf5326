"""Create a dataset's structure and metadata on the client, before any task runs.

Everything here reuses the streaming path: ``plan_storage`` for the hierarchy, the
Zarr engines' ``create_arrays`` for array metadata and ``ZarrMetadataSink`` for the
NGFF groups, the OME-XML and omestream's root record. Tasks then only write chunk
bytes into arrays that already exist, so they never race on metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import SettingsError
from omestream.io.kv import KVStore, open_kv
from omestream.io.locks import check_no_stream
from omestream.plan import StoragePlan, plan_storage
from omestream.settings import AcquisitionSettings
from omestream.stream.state import StreamState
from omestream.stream.stream import _prepare_location
from omestream.stream.zarr_sink import ZarrMetadataSink

__all__ = ["NewDataset", "bounded", "create_dataset"]


class _ArrayCreator(ZarrArrayBackend):
    """The shared Zarr array creation, without a frame writer (tasks write regions)."""

    name = "dask"

    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        raise NotImplementedError("Dask tasks write whole regions, not frames")

    def close(self) -> None:
        pass


@dataclass
class NewDataset:
    """A dataset created by the client; ``finish`` records the outcome in its metadata."""

    settings: AcquisitionSettings
    plan: StoragePlan
    kv: KVStore
    storage_options: dict[str, Any] | None
    sink: ZarrMetadataSink
    state: StreamState = field(repr=False)

    def finish(self, complete: bool) -> None:
        """Record in the root metadata whether every task succeeded."""
        self.state.frames = (self.settings.total_frames or 0) if complete else 0
        self.state.complete = complete
        self.sink.update(self.state, final=True)


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
    check_no_stream(kv, "write it with Dask")  # never replace a dataset being streamed
    _prepare_location(settings, kv)
    _ArrayCreator(plan, kv, settings.writer).create_arrays()
    sink = ZarrMetadataSink(kv, plan, settings)
    state = StreamState(n_images=len(plan.images))
    sink.start(state)
    return NewDataset(settings, plan, kv, storage_options, sink, state)
