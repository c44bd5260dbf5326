"""Label images (NGFF ``labels``) carried from an OME-Zarr source into its conversion.

A segmentation stored beside an image is part of the dataset: converting 0.4 to 0.5
must not drop it. Each label image is copied at level 0 (pixels, axes, transforms and
its ``image-label`` object, in the output's NGFF version and Zarr format); its lower
levels are built afterwards together with the image's (by mode, see
:func:`omestream.build_pyramid`), so both have as many levels as NGFF requires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omestream.backends.codecs import CodecChoice
from omestream.errors import StoreFormatError
from omestream.io.kv import open_kv
from omestream.io.zarr_nodes import create_array, write_group
from omestream.metadata.ngff import versioned
from omestream.metadata.parse import ngff_content
from omestream.plan.storage import ArrayPlan
from omestream.pyramid.build import label_images, unit_blocks

__all__ = ["LabelSet", "copy_labels", "find_labels"]


@dataclass(frozen=True)
class LabelSet:
    """The label images listed under one source image."""

    image: str  # the image's group path in the source ("" for a root image)
    names: tuple[str, ...]  # as its labels group lists them


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def find_labels(location: str, images: Sequence[str]) -> list[LabelSet]:
    """The label images of each of ``images`` (group paths in the store at ``location``),
    for the images that have any. Each is checked here, before anything is written: a
    labels list, label metadata or level 0 that cannot be copied is refused."""
    kv = open_kv(location)
    store = kv.zarr_store(read_only=True)
    out = []
    for image in images:
        prefix = _join(image, "labels") + "/"
        names = tuple(p[len(prefix) :] for p in label_images(kv, image))
        for name in names:
            path = _join(image, "labels", name)
            _level0(store, path, _label_content(kv, path))
        if names:
            out.append(LabelSet(image, names))
    return out


def copy_labels(
    location: str,
    output: str,
    pairs: Sequence[tuple[LabelSet, str]],
    *,
    zarr_format: int,
    ngff_version: str,
    codec: CodecChoice,
) -> int:
    """Copy each :class:`LabelSet` of the source at ``location`` under its output image
    (the group path paired with it) in ``output``; returns how many label images were
    copied. Label images are written before the ``labels`` group that lists them, so a
    reader never finds a listed label that is not complete."""
    src_kv, out_kv = open_kv(location), open_kv(output)
    src_store = src_kv.zarr_store(read_only=True)
    out_store = out_kv.zarr_store()
    copied = 0
    for labels, out_image in pairs:
        for name in labels.names:
            src_path = _join(labels.image, "labels", name)
            out_path = _join(out_image, "labels", name)
            content = _label_content(src_kv, src_path)
            _copy_level0(
                src_store, src_path, content, out_kv, out_store, out_path, zarr_format, codec
            )
            _write_attrs(out_kv, out_path, content, ngff_version, zarr_format)
            copied += 1
        listing = {"labels": list(labels.names)}
        _write_attrs(out_kv, _join(out_image, "labels"), listing, ngff_version, zarr_format)
    return copied


def _write_attrs(
    kv: Any, path: str, content: dict[str, Any], version: str, zarr_format: int
) -> None:
    write_group(kv, path, versioned(content, version), zarr_format)


def _attrs(kv: Any, path: str) -> dict[str, Any]:
    for key in ("zarr.json", ".zattrs"):
        raw = kv.get(_join(path, key))
        if raw is not None:
            doc = json.loads(raw)
            return dict(doc.get("attributes", {}) if key == "zarr.json" else doc)
    raise StoreFormatError(f"{kv.url}/{path}: listed as a label image, but no Zarr group is there")


def _label_content(kv: Any, path: str) -> dict[str, Any]:
    """The label's NGFF content, version-neutral, cut to level 0: its lower levels
    (and the ``type``/``metadata`` that describe how they were made) are rebuilt."""
    version, content = ngff_content(_attrs(kv, path), f"{kv.url}/{path}")
    multiscales = content.get("multiscales")
    if version is None or not multiscales or not multiscales[0].get("datasets"):
        raise StoreFormatError(
            f"{kv.url}/{path}: listed as a label image, but it has no multiscales; fix or "
            "remove it (and its entry in labels/), then convert again"
        )
    ms = {k: v for k, v in multiscales[0].items() if k not in ("version", "type", "metadata")}
    ms["datasets"] = [multiscales[0]["datasets"][0]]
    out: dict[str, Any] = {"multiscales": [ms]}
    label = content.get("image-label")
    if isinstance(label, dict):
        out["image-label"] = {k: v for k, v in label.items() if k != "version"}
    return out


def _level0(
    src_store: Any, src_path: str, content: dict[str, Any]
) -> tuple[Any, np.dtype, tuple[str, ...]]:
    """The label's level-0 array, the dtype it is written with and its axis names."""
    import zarr

    ms = content["multiscales"][0]
    level0 = str(ms["datasets"][0]["path"])
    fix = "fix or remove the label image (and its entry in labels/), then convert again"
    try:
        src = zarr.open_array(src_store, path=_join(src_path, level0), mode="r")
    except Exception as exc:
        raise StoreFormatError(
            f"{src_path}/{level0}: the label's level 0 is not a readable Zarr array ({exc}); {fix}"
        ) from None
    dtype = np.dtype(src.dtype)
    if dtype.kind not in "iu":
        raise StoreFormatError(
            f"{src_path}/{level0}: label pixels must be integers, found {dtype}; {fix}"
        )
    names = tuple(a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes") or ())
    if len(names) != src.ndim:
        raise StoreFormatError(
            f"{src_path}: multiscales names {len(names)} axes, its level 0 has {src.ndim} "
            f"dimensions; {fix}"
        )
    return src, dtype.newbyteorder("="), names  # big-endian Zarr v2 labels become native


def _copy_level0(
    src_store: Any,
    src_path: str,
    content: dict[str, Any],
    out_kv: Any,
    out_store: Any,
    out_path: str,
    zarr_format: int,
    codec: CodecChoice,
) -> None:
    """The label's level-0 pixels, chunked as in the source, encoded as the output's."""
    import zarr

    src, dtype, names = _level0(src_store, src_path, content)
    plan = ArrayPlan(
        path=str(content["multiscales"][0]["datasets"][0]["path"]),
        shape=tuple(src.shape),
        chunks=tuple(min(c, max(s, 1)) for c, s in zip(src.chunks, src.shape, strict=True)),
        shards=None,
        scale=(1.0,) * src.ndim,
        translation=(0.0,) * src.ndim,
    )
    path = _join(out_path, plan.path)
    fill = int(src.fill_value or 0)
    create_array(out_kv, path, plan, dtype.str, codec, zarr_format, names, fill)
    dst = zarr.open_array(out_store, path=path, mode="r+")
    for block in unit_blocks(plan.shape, plan.chunks, dtype.itemsize):
        sel = tuple(slice(r.start, r.stop) for r in block)
        dst[sel] = np.asarray(src[sel], dtype=dtype)
