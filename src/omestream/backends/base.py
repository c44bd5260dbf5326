"""The one small interface every storage engine implements.

An engine writes pixels into arrays that the plan describes. It never writes
NGFF/OME metadata: the stream does that through ``omestream.metadata``. It sees
storage indices only (the FrameRouter did the reordering).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from omestream.io.kv import KVStore
from omestream.plan import StoragePlan
from omestream.settings import AcquisitionSettings, WriterOptions

__all__ = ["ArrayBackend"]


class ArrayBackend(ABC):
    """Writes frames and regions into the arrays of a StoragePlan."""

    name: ClassVar[str]
    #: whether :meth:`write_region` is implemented (rewrites, pyramids after the fact)
    supports_regions: ClassVar[bool] = True
    #: whether chunks may be written past an array's current shape, so the stream can
    #: grow an unbounded axis from a background thread instead of inside ``append``
    writes_past_shape: ClassVar[bool] = False
    #: whether every Zarr v3 array comes out sharded: a level the plan leaves unsharded
    #: gets shards of one chunk (the same pixels, plus an index per chunk)
    always_shards: ClassVar[bool] = False

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        self.plan = plan
        self.kv = kv
        self.options = options

    @classmethod
    def check(cls, settings: AcquisitionSettings) -> str | None:
        """Why this engine cannot write ``settings``, or None when it can."""
        return None

    @abstractmethod
    def create_arrays(self) -> None:
        """Create every level array of every image (array metadata only)."""

    def open_arrays(self) -> None:
        """Attach to arrays that already exist (resume, edits). Default: nothing to do."""
        return None  # engines without per-array handles have nothing to attach

    @abstractmethod
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        """Store one 2-D frame at ``index`` (storage order, outer axes) of an image level.

        The caller may reuse ``frame`` as soon as this returns.
        """

    def skip_frame(self, image: int, index: tuple[int, ...], level: int = 0) -> None:
        """Record that no data comes for this frame (it reads as the fill value)."""
        shape = self.plan.images[image].levels[level].shape[-2:]
        self.write_frame(
            image, index, np.full(shape, self.plan.fill_value, self.plan.dtype), level
        )

    def write_region(
        self, image: int, level: int, selection: tuple[slice, ...], data: np.ndarray
    ) -> None:
        """Write an n-D block (rewrites, pyramid levels built after the fact)."""
        raise NotImplementedError(f"engine {self.name!r} cannot write regions")

    @abstractmethod
    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        """Change the shape of one array (grow an unbounded axis, trim on close)."""

    def flush(self) -> None:
        """Make everything written so far reach storage (partial blocks included)."""
        return None  # engines that write through on every call have nothing buffered

    @abstractmethod
    def close(self) -> None:
        """Write what is pending, wait for it, make it durable; raise any worker error."""

    def abort(self) -> None:
        """Stop without waiting longer than needed; used when the stream fails."""
        self.close()
