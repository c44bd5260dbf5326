"""What every Zarr engine shares: array paths, creation and resizing."""

from __future__ import annotations

from typing import ClassVar

from omestream.backends.base import ArrayBackend
from omestream.backends.codecs import CodecChoice, codec_choice
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore
from omestream.plan import StoragePlan
from omestream.settings import WriterOptions

__all__ = ["ZarrArrayBackend", "array_path"]


def array_path(plan: StoragePlan, image: int, level: int) -> str:
    im = plan.images[image]
    return "/".join(p for p in (im.path, im.levels[level].path) if p)


class ZarrArrayBackend(ArrayBackend):
    """Array creation with zarr-python metadata and atomic shape updates."""

    #: whether close() makes every file durable (syncfs). Such engines skip the fsync
    #: when an unbounded axis grows ahead of the data: a fsync while the disk is busy
    #: with frames cost ~0.1 s each, and a growth lost to a power cut only hides
    #: frames that ``omestream repair`` finds again. Trims stay durable.
    close_syncs_all: ClassVar[bool] = False

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        super().__init__(plan, kv, options)
        self.codec: CodecChoice = codec_choice(plan.compression, options)
        # current shape of each (image, level) array as written in its metadata
        self.shapes: dict[tuple[int, int], tuple[int, ...]] = {
            (i, lv): level.shape
            for i, im in enumerate(plan.images)
            for lv, level in enumerate(im.levels)
        }
        #: whether a write unit never written reads as the fill value because nothing
        #: was ever stored there: true for arrays this engine created (a new dataset),
        #: false for reopened ones, where an old unit may hold frames a killed stream
        #: wrote but never recorded. Units of skipped frames only are then not written.
        self.absent_is_fill = False

    def path(self, image: int, level: int) -> str:
        return array_path(self.plan, image, level)

    def create_arrays(self) -> None:
        self.absent_is_fill = True
        for i, im in enumerate(self.plan.images):
            for lv, level in enumerate(im.levels):
                zarr_nodes.create_array(
                    self.kv,
                    self.path(i, lv),
                    level,
                    self.plan.dtype,
                    self.codec,
                    self.plan.zarr_format,
                    im.axis_names,
                    self.plan.fill_value,
                )

    def open_arrays(self) -> None:
        self.absent_is_fill = False
        for i, lv in self.shapes:
            meta = zarr_nodes.read_array_meta(self.kv, self.path(i, lv), self.plan.zarr_format)
            self.shapes[(i, lv)] = tuple(meta["shape"])

    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        old = self.shapes.get((image, level))
        if old == tuple(shape):
            return
        growing = old is not None and all(n >= o for n, o in zip(shape, old, strict=True))
        zarr_nodes.set_array_shape(
            self.kv, self.path(image, level), tuple(shape), self.plan.zarr_format,
            durable=self.options.fsync and not (growing and self.close_syncs_all),
        )  # fmt: skip
        self.shapes[(image, level)] = tuple(shape)
