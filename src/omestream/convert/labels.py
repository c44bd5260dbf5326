"""Label images (NGFF ``labels``) carried from an OME-Zarr source into its conversion.

A segmentation stored beside an image is part of the dataset: converting 0.4 to 0.5
must not drop it. Each label image is copied (pixels, axes, transforms and its
``image-label`` object, in the output's NGFF version and Zarr format): every level when
the image's levels are copied too, else level 0, its lower levels then built with the
image's (by mode, see :func:`omestream.build_pyramid`). Either way both have as many
levels as NGFF requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omestream.backends.codecs import CodecChoice
from omestream.convert.arrays import axis_names, copy_array, group_content, source_array
from omestream.errors import StoreFormatError
from omestream.io.kv import KVStore, join_key, open_kv
from omestream.io.zarr_nodes import write_group
from omestream.metadata.ngff import versioned
from omestream.pyramid.build import label_images, level_units

__all__ = ["LabelSet", "copy_labels", "find_labels"]

_FIX = "fix or remove the label image (and its entry in labels/), then convert again"


@dataclass(frozen=True)
class LabelSet:
    """The label images listed under one source image."""

    image: str  # the image's group path in the source ("" for a root image)
    names: tuple[str, ...]  # as its labels group lists them
    levels: tuple[int, ...]  # how many levels each has


def find_labels(location: str, images: Sequence[str]) -> list[LabelSet]:
    """The label images of each of ``images`` (group paths in the store at ``location``),
    for the images that have any. Each is checked here, before anything is written: a
    labels list, label metadata or array that cannot be copied is refused."""
    kv = open_kv(location)
    store = kv.zarr_store(read_only=True)
    out = []
    for image in images:
        prefix = join_key(image, "labels") + "/"
        names = tuple(p[len(prefix) :] for p in label_images(kv, image))
        levels = []
        for name in names:
            path = join_key(image, "labels", name)
            content = _label_content(kv, path)
            datasets = content["multiscales"][0]["datasets"]
            for ds in datasets:
                _label_array(store, path, ds, content)
            levels.append(len(datasets))
        if names:
            out.append(LabelSet(image, names, tuple(levels)))
    return out


def copy_labels(
    location: str,
    output: str,
    pairs: Sequence[tuple[LabelSet, str]],
    *,
    zarr_format: int,
    ngff_version: str,
    codec: CodecChoice,
    all_levels: bool,
) -> int:
    """Copy each :class:`LabelSet` of the source at ``location`` under its output image
    (the group path paired with it) in ``output``: every level, or (``all_levels``
    false) level 0 only. Returns how many label images were copied. Label images are
    written before the ``labels`` group that lists them, so a reader never finds a
    listed label that is not complete."""
    src_kv, out_kv = open_kv(location), open_kv(output)
    src_store = src_kv.zarr_store(read_only=True)
    copied = 0
    for labels, out_image in pairs:
        for name in labels.names:
            src_path = join_key(labels.image, "labels", name)
            out_path = join_key(out_image, "labels", name)
            content = _label_content(src_kv, src_path)
            ms = content["multiscales"][0]
            if not all_levels:  # the rest is rebuilt, with what says how it was made
                ms = {k: v for k, v in ms.items() if k not in ("type", "metadata")}
                ms["datasets"] = ms["datasets"][:1]
                content["multiscales"] = [ms]
            names = axis_names(ms)
            for ds in ms["datasets"]:
                src, dtype = _label_array(src_store, src_path, ds, content)
                units = level_units(tuple(src.chunks), None, tuple(src.shape))
                path = join_key(out_path, str(ds["path"]))
                copy_array(src, dtype, out_kv, path, units, codec, zarr_format, names)
            _write(out_kv, out_path, content, ngff_version, zarr_format)
            copied += 1
        listing = {"labels": list(labels.names)}
        _write(out_kv, join_key(out_image, "labels"), listing, ngff_version, zarr_format)
    return copied


def _write(
    kv: KVStore, path: str, content: dict[str, Any], version: str, zarr_format: int
) -> None:
    write_group(kv, path, versioned(content, version), zarr_format)


def _label_content(kv: KVStore, path: str) -> dict[str, Any]:
    """The label's NGFF content, version-neutral (the output's version is added)."""
    content = group_content(kv, path, "listed as a label image")
    multiscales = content.get("multiscales")
    if (
        not multiscales
        or not isinstance(multiscales[0], dict)
        or not multiscales[0].get("datasets")
    ):
        raise StoreFormatError(f"{kv.url}/{path}: a label image without multiscales; {_FIX}")
    ms = {k: v for k, v in multiscales[0].items() if k != "version"}
    out: dict[str, Any] = {"multiscales": [ms]}
    label = content.get("image-label")
    if isinstance(label, dict):
        out["image-label"] = {k: v for k, v in label.items() if k != "version"}
    return out


def _label_array(
    store: Any, path: str, ds: dict[str, Any], content: dict[str, Any]
) -> tuple[Any, Any]:
    src, dtype = source_array(store, join_key(path, str(ds.get("path", ""))), _FIX)
    if dtype.kind not in "iu":
        raise StoreFormatError(
            f"{join_key(path, str(ds.get('path')))}: label pixels must be integers, found "
            f"{dtype}; {_FIX}"
        )
    n = len(axis_names(content["multiscales"][0]))
    if n != src.ndim:
        raise StoreFormatError(
            f"{path}: multiscales names {n} axes, its array {ds.get('path')!r} has "
            f"{src.ndim} dimensions; {_FIX}"
        )
    return src, dtype
