"""The images of an existing OME-Zarr dataset, read from its NGFF documents.

Understands the three layouts omestream writes (a single image, bioformats2raw with
one image per position, an HCS plate) on Zarr v2 and v3. Returns plain, picklable
descriptions that Dask tasks carry to the workers.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from omestream.errors import StoreFormatError
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore, open_kv
from omestream.metadata.parse import (
    Axis,
    ParsedBioformats2raw,
    ParsedImage,
    ParsedNode,
    ParsedPlate,
    ParsedSeries,
    ParsedWell,
    parse_group,
)

__all__ = ["ArrayRef", "Dataset", "ImageRef", "open_array", "read_dataset"]


@dataclass(frozen=True)
class ArrayRef:
    """Where one Zarr array lives; enough for a worker process to open it."""

    url: str
    path: str  # array path from the dataset root
    storage_options: tuple[tuple[str, str], ...] = ()  # JSON-encoded values, hashable

    @classmethod
    def make(cls, kv: KVStore, path: str, storage_options: dict[str, Any] | None) -> ArrayRef:
        opts = tuple(sorted((k, json.dumps(v)) for k, v in (storage_options or {}).items()))
        return cls(kv.url, path, opts)

    @property
    def options(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.storage_options}


@dataclass(frozen=True)
class ImageRef:
    path: str  # group path from the root ("" for a single image)
    name: str | None
    axes: tuple[Axis, ...]
    levels: tuple[str, ...]  # array paths relative to the image group
    scales: tuple[tuple[float, ...], ...]  # per level
    method: str | None  # downsampling method named in the multiscale, if any

    def array_path(self, level: int) -> str:
        return "/".join(p for p in (self.path, self.levels[level]) if p)

    def factors(self, level: int) -> tuple[int, ...]:
        """Integer downsampling factors from ``level - 1`` to ``level``, per axis."""
        prev, cur = self.scales[level - 1], self.scales[level]
        return tuple(max(1, round(c / p)) if p else 1 for p, c in zip(prev, cur, strict=True))


@dataclass(frozen=True)
class Dataset:
    url: str
    zarr_format: int
    layout: str  # image | bioformats2raw | plate
    images: tuple[ImageRef, ...]
    root_attrs: dict[str, Any]

    def image(self, path: str) -> ImageRef:
        for im in self.images:
            if im.path == path:
                return im
        raise StoreFormatError(
            f"{self.url} has no image at {path!r}; its images are {[i.path for i in self.images]}"
        )


def _zarr_format(kv: KVStore) -> int:
    if kv.exists("zarr.json"):
        return 3
    if kv.exists(".zgroup"):
        return 2
    raise StoreFormatError(f"{kv.url} is not a Zarr group (no zarr.json or .zgroup found)")


def _parse(kv: KVStore, path: str, zf: int) -> ParsedNode:
    attrs = zarr_nodes.read_group_attrs(kv, path, zf)
    if attrs is None:
        raise StoreFormatError(f"{kv.url}/{path}: expected an OME-Zarr group, found nothing")
    return parse_group(attrs, f"{kv.url}/{path}" if path else kv.url)


def _image(kv: KVStore, path: str, zf: int) -> ImageRef:
    node = _parse(kv, path, zf)
    if not isinstance(node, ParsedImage):
        raise StoreFormatError(
            f"{kv.url}/{path or '.'}: expected an image (multiscales), found {type(node).__name__}"
        )
    m = node.multiscales[0]
    return ImageRef(
        path=path,
        name=m.name,
        axes=m.axes,
        levels=tuple(d.path for d in m.datasets),
        scales=tuple(d.scale for d in m.datasets),
        method=m.type,
    )


def read_dataset(kv: KVStore) -> Dataset:
    """Every image of the dataset at ``kv``, in the order its metadata lists them."""
    zf = _zarr_format(kv)
    root = zarr_nodes.read_group_attrs(kv, "", zf) or {}
    node = _parse(kv, "", zf)
    images: list[ImageRef] = []
    if isinstance(node, ParsedPlate):
        layout = "plate"
        for well in node.wells:
            wnode = _parse(kv, well.path, zf)
            if not isinstance(wnode, ParsedWell):
                raise StoreFormatError(f"{kv.url}/{well.path}: expected well metadata")
            images += [_image(kv, f"{well.path}/{f}", zf) for f in wnode.images]
    elif isinstance(node, ParsedBioformats2raw):
        layout = "bioformats2raw"
        series: list[str] = []
        if zarr_nodes.read_group_attrs(kv, "OME", zf) is not None:
            snode = _parse(kv, "OME", zf)
            series = list(snode.series) if isinstance(snode, ParsedSeries) else []
        if not series:  # the layout also allows numbered groups without a series list
            while zarr_nodes.read_group_attrs(kv, str(len(series)), zf) is not None:
                series.append(str(len(series)))
        images = [_image(kv, s, zf) for s in series]
    elif isinstance(node, ParsedImage):
        layout = "image"
        images = [_image(kv, "", zf)]
    else:
        raise StoreFormatError(
            f"{kv.url} holds no OME-Zarr image, series or plate metadata at its root"
        )
    return Dataset(kv.url, zf, layout, tuple(images), root)


@functools.lru_cache(maxsize=64)
def _store(url: str, storage_options: tuple[tuple[str, str], ...], read_only: bool) -> Any:
    # one store (and fsspec client) per process and location, reused by every task
    opts = {k: json.loads(v) for k, v in storage_options}
    return open_kv(url, opts or None).zarr_store(read_only=read_only)


def open_array(ref: ArrayRef, mode: str = "r") -> Any:
    """The zarr-python array ``ref`` points to (``mode`` "r" or "r+")."""
    import zarr

    store = _store(ref.url, ref.storage_options, mode == "r")
    return zarr.open_array(store, path=ref.path, mode=mode)
