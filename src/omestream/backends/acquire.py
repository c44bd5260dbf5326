"""The acquire-zarr engine: acquire-zarr's C++ streaming writer fills the arrays.

acquire-zarr creates the arrays itself (one per image and level, at the plan's
paths, with the plan's chunks and shards; it shards every Zarr v3 array, so a level
the plan leaves unsharded gets shards of one chunk) and takes frames only in the order it
stores them, so the settings must store frames in acquisition order
(``ENGINES["acquire-zarr"].reorders_frames`` is False) and each write is checked
to be the next frame of its array.

Metadata stays omestream's: the engine writes plain arrays (no NGFF), and because
it rewrites the group documents above its arrays when it closes, those documents
are saved before and put back right after. The stream then writes its final
metadata as usual.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from omestream.backends.codecs import SHUFFLE_CODES
from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import SettingsError, StoreFormatError, WriteError
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import StoragePlan
from omestream.settings import AcquisitionSettings, WriterOptions
from omestream.settings.acquisition import ZARR_DTYPES

__all__ = ["AcquireZarrBackend"]

# acquire-zarr writes every Zarr pixel type omestream does.
_DTYPES = ZARR_DTYPES


class AcquireZarrBackend(ZarrArrayBackend):
    name = "acquire-zarr"
    supports_regions = False
    always_shards = True

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        super().__init__(plan, kv, options)
        self._stream: Any = None
        self._closed = False
        # frames each array has received, and the strides that turn an index into a count
        self._next: dict[tuple[int, int], int] = {}
        self._strides: dict[tuple[int, int], tuple[int, ...]] = {}
        for key, shape in self.shapes.items():
            outer = shape[:-2]
            self._next[key] = 0
            self._strides[key] = tuple(math.prod(outer[a + 1 :]) for a in range(len(outer)))

    @classmethod
    def check(cls, settings: AcquisitionSettings) -> str | None:
        root = settings.root_path
        if "://" in root and not root.startswith("file://"):
            return f"it writes to local folders only, not {root!r}"
        if settings.dtype not in _DTYPES:
            return f"it cannot store dtype {settings.dtype!r}"
        fmt = settings.format
        if fmt is not None and fmt.zarr_format != 3:
            return "it writes Zarr v3 only (OME-Zarr 0.5)"
        return None

    # -- arrays -------------------------------------------------------------------------
    def create_arrays(self) -> None:
        import acquire_zarr as az

        if not isinstance(self.kv, LocalKV):
            raise SettingsError(
                f"backend 'acquire-zarr' writes to local folders only, not {self.kv.url}"
            )
        arrays = [
            az.ArraySettings(
                output_key=self.path(i, lv),
                dimensions=self._dimensions(az, i, lv),
                data_type=np.dtype(self.plan.dtype),
                compression=self._compression(az),
            )
            for i, lv in self.shapes
        ]
        for i, lv in self.shapes:
            # acquire-zarr creates an array's folder only when it first writes to it;
            # omestream may keep files there before that (the frame-metadata journal)
            os.makedirs(self.kv.path(self.path(i, lv)), exist_ok=True)
        settings = az.StreamSettings(
            store_path=self.kv.root,
            arrays=arrays,
            overwrite=False,  # True would delete the groups omestream writes
            max_threads=self.options.threads or 0,
        )
        try:
            self._stream = az.ZarrStream(settings)
        except RuntimeError as exc:
            raise WriteError(0, f"acquire-zarr cannot create {self.kv.url}: {exc}") from exc

    def _dimensions(self, az: Any, image: int, level: int) -> list[Any]:
        im = self.plan.images[image]
        plan = im.levels[level]
        kinds = {
            "space": az.DimensionType.SPACE,
            "time": az.DimensionType.TIME,
            "channel": az.DimensionType.CHANNEL,
        }
        unit = plan.write_unit
        dims = []
        for a, axis in enumerate(im.axes):
            size = 0 if a == self.plan.unbounded_axis else plan.shape[a]
            dims.append(
                az.Dimension(
                    name=axis.name,
                    kind=kinds.get(axis.type, az.DimensionType.OTHER),
                    array_size_px=size,
                    chunk_size_px=plan.chunks[a],
                    shard_size_chunks=unit[a] // plan.chunks[a],
                )
            )
        return dims

    def _compression(self, az: Any) -> Any:
        codec = self.codec
        if codec.name is None:
            return None
        if codec.name == "zstd":
            return az.CompressionSettings(
                compressor=az.Compressor.ZSTD, codec=az.CompressionCodec.ZSTD, level=codec.level
            )
        names = {
            "blosc-zstd": az.CompressionCodec.BLOSC_ZSTD,
            "blosc-lz4": az.CompressionCodec.BLOSC_LZ4,
        }
        if codec.name not in names:
            raise SettingsError(f"backend 'acquire-zarr' cannot compress with {codec.name!r}")
        return az.CompressionSettings(
            compressor=az.Compressor.BLOSC1,
            codec=names[codec.name],
            level=codec.level,
            shuffle=SHUFFLE_CODES[codec.shuffle],
        )

    def open_arrays(self) -> None:
        raise SettingsError(
            "backend 'acquire-zarr' only writes new datasets; use backend 'omestream' to change "
            "an existing one"
        )

    # -- frames -------------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        key = (image, level)
        n = sum(i * s for i, s in zip(index, self._strides[key], strict=True))
        if n != self._next[key]:
            raise SettingsError(
                f"backend 'acquire-zarr' stores frames only in the order they arrive: image "
                f"{self.plan.images[image].path or '.'} level {level} expected its frame "
                f"{self._next[key]}, got index {index} (frame {n})"
            )
        try:
            # acquire-zarr copies the frame into its own buffers before returning
            self._stream.append(np.ascontiguousarray(frame), key=self.path(image, level))
        except RuntimeError as exc:
            raise WriteError(0, f"acquire-zarr failed writing to {self.kv.url}: {exc}") from exc
        self._next[key] = n + 1

    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        # While streaming, acquire-zarr owns the shape (it grows the unbounded axis
        # itself); afterwards the stream trims it like any other engine's.
        if self._closed:
            super().resize(image, level, shape)

    # -- lifecycle ----------------------------------------------------------------------
    def _group_paths(self) -> list[str]:
        paths = {""}
        for i, lv in self.shapes:
            parts = self.path(i, lv).split("/")
            paths.update("/".join(parts[:k]) for k in range(1, len(parts)))
        return sorted(paths)

    def close(self) -> None:
        if self._closed:
            return
        stream, self._stream = self._stream, None
        saved = {p: self.kv.get(zarr_nodes.group_meta_key(p, 3)) for p in self._group_paths()}
        try:
            if stream is not None:
                stream.close()
        except RuntimeError as exc:
            raise WriteError(0, f"acquire-zarr failed closing {self.kv.url}: {exc}") from exc
        finally:
            self._closed = True
            # acquire-zarr rewrites every group above its arrays with empty attributes
            for path, doc in saved.items():
                if doc is not None:
                    self.kv.set(
                        zarr_nodes.group_meta_key(path, 3), doc, durable=self.options.fsync
                    )
        self._settle_arrays()
        if self.options.fsync:
            from omestream.io.durability import syncfs

            syncfs(self.kv.root)  # type: ignore[attr-defined]

    def _settle_arrays(self) -> None:
        """Give every array the planned shape after acquire-zarr closed.

        acquire-zarr writes no array that received no frame, and trims a fixed-size
        array to the frames it received; omestream's datasets keep the planned shape
        (frames not written read as the fill value). The unbounded axis keeps what
        acquire-zarr wrote until the stream trims it.
        """
        for (i, lv), planned in list(self.shapes.items()):
            path = self.path(i, lv)
            try:
                shape = tuple(zarr_nodes.read_array_meta(self.kv, path, 3)["shape"])
            except StoreFormatError:
                im = self.plan.images[i]
                zarr_nodes.create_array(
                    self.kv, path, im.levels[lv], self.plan.dtype, self.codec, 3,
                    im.axis_names, self.plan.fill_value,
                )  # fmt: skip
                shape = planned
            if self.plan.unbounded_axis is None and shape != planned:
                zarr_nodes.set_array_shape(self.kv, path, planned, 3, durable=self.options.fsync)
                shape = planned
            self.shapes[(i, lv)] = shape

    def abort(self) -> None:
        self.close()
