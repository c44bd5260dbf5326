"""Resolution levels carried from an OME-Zarr source into its conversion.

The stream writes level 0; the source's lower levels are then copied as they are (the
same pixels, shapes and steps between levels, however the source made them: averaged,
smoothed, downsampled along z) rather than computed anew, and the image's
``multiscales`` lists them once they are all written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omestream.backends.codecs import CodecChoice
from omestream.convert.arrays import (
    axis_names,
    copy_array,
    group_content,
    level_transforms,
    source_array,
)
from omestream.errors import StoreFormatError
from omestream.io.kv import join_key, open_kv
from omestream.io.zarr_nodes import group_meta_key
from omestream.pyramid.build import level_paths, level_units, set_datasets

__all__ = ["OutputLevels", "check_levels", "copy_levels"]

_FIX = "convert with --pyramid-levels to compute the levels anew instead"


def _multiscale(kv: Any, image: str) -> dict[str, Any]:
    content = group_content(kv, image, "an image")
    ms = content.get("multiscales") or [{}]
    if not isinstance(ms[0], dict) or not ms[0].get("datasets"):
        raise StoreFormatError(f"{kv.url}/{image}: an image without multiscales datasets")
    return ms[0]


def check_levels(location: str, images: Sequence[str]) -> None:
    """Refuse, before anything is written, source levels that cannot be copied."""
    kv = open_kv(location)
    store = kv.zarr_store(read_only=True)
    for image in images:
        ms = _multiscale(kv, image)
        ndim = len(ms.get("axes") or ())
        for ds in ms["datasets"][1:]:
            src, _ = source_array(store, join_key(image, str(ds.get("path", ""))), _FIX)
            if src.ndim != ndim:
                raise StoreFormatError(
                    f"{kv.url}/{image}/{ds.get('path')}: {src.ndim} dimensions, the image "
                    f"has {ndim} axes; {_FIX}"
                )


def copy_levels(
    location: str,
    output: str,
    pairs: Sequence[tuple[str, str]],
    *,
    zarr_format: int,
    codec: CodecChoice,
) -> None:
    """For each (source image, output image) pair: the source's levels 1.. written beside
    the output's level 0 (chunked and sharded as it is, cut to each level's size), then
    the output's ``multiscales`` lists them, with the source's steps between levels and
    its ``type``/``metadata`` (how they were made)."""
    src_kv, out_kv = open_kv(location), open_kv(output)
    src_store = src_kv.zarr_store(read_only=True)
    for src_image, out_image in pairs:
        src_ms = _multiscale(src_kv, src_image)
        out = OutputLevels(out_kv, out_image, len(src_ms["datasets"]))
        for k, ds in enumerate(src_ms["datasets"][1:], start=1):
            src, dtype = source_array(src_store, join_key(src_image, str(ds["path"])), _FIX)
            tfs = level_transforms(src_ms["datasets"][0], ds, out.level0, len(out.names))
            out.copy(k, src, dtype, tfs, codec, zarr_format)
        made: dict[str, Any] = {k: src_ms[k] for k in ("type", "metadata") if k in src_ms}
        out.list_levels(zarr_format, made)


class OutputLevels:
    """The levels of one output image being copied in beside its level 0 (the stream
    wrote that): chunked and sharded as level 0 is, cut to each level's size."""

    def __init__(self, out_kv: Any, image: str, levels: int) -> None:
        import zarr

        ms = _multiscale(out_kv, image)
        self.kv, self.image = out_kv, image
        self.names = axis_names(ms)
        self.level0: dict[str, Any] = ms["datasets"][0]
        path0 = join_key(image, str(self.level0["path"]))
        self.array0 = zarr.open_array(out_kv.zarr_store(), path=path0, mode="r")
        self.paths = level_paths(str(self.level0["path"]), levels)
        self.datasets: list[dict[str, Any]] = [self.level0]

    def copy(
        self,
        k: int,
        src: Any,
        dtype: Any,
        transforms: list[dict[str, Any]],
        codec: CodecChoice,
        zarr_format: int,
    ) -> None:
        """Write level ``k`` from ``src`` (an array-like) and note its transforms."""
        chunk0, shard0 = tuple(self.array0.chunks), getattr(self.array0, "shards", None)
        units = level_units(chunk0, shard0, tuple(src.shape))
        path = join_key(self.image, self.paths[k])
        copy_array(src, dtype, self.kv, path, units, codec, zarr_format, self.names)
        self.datasets.append({"path": self.paths[k], "coordinateTransformations": transforms})

    def list_levels(self, zarr_format: int, made: dict[str, Any]) -> None:
        """The image's ``multiscales`` lists the levels, once they are all written."""
        key = group_meta_key(self.image, zarr_format)
        set_datasets(self.kv, key, zarr_format, self.datasets, made)
