"""Arrays and group documents carried from an OME-Zarr source into its conversion:
what the frame stream does not write (lower resolution levels, label images)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from omestream.backends.codecs import CodecChoice
from omestream.errors import StoreFormatError
from omestream.io.kv import KVStore, join_key
from omestream.io.zarr_nodes import create_array
from omestream.metadata.parse import ngff_content
from omestream.plan.storage import ArrayPlan
from omestream.pyramid.build import unit_blocks

__all__ = ["axis_names", "copy_array", "group_content", "level_transforms", "source_array"]


def group_content(kv: KVStore, path: str, what: str) -> dict[str, Any]:
    """The version-neutral NGFF content of the group at ``path`` (``what`` it is meant
    to be, for the error when there is none)."""
    for key in ("zarr.json", ".zattrs"):
        raw = kv.get(join_key(path, key))
        if raw is None:
            continue
        doc = json.loads(raw)
        attrs = doc.get("attributes", {}) if key == "zarr.json" else doc
        version, content = ngff_content(attrs if isinstance(attrs, dict) else {}, path)
        if version is not None:
            return content
    raise StoreFormatError(f"{kv.url}/{path}: {what}, but no NGFF group is there")


def axis_names(ms: dict[str, Any]) -> tuple[str, ...]:
    """The axis names of a ``multiscales`` entry (0.4 and 0.5 objects, or bare names)."""
    return tuple(a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes") or ())


def source_array(store: Any, path: str, fix: str) -> tuple[Any, np.dtype]:
    """The source's array at ``path`` and the (native byte order) dtype it is copied as."""
    import zarr

    try:
        src = zarr.open_array(store, path=path, mode="r")
    except Exception as exc:
        raise StoreFormatError(f"{path}: not a readable Zarr array ({exc}); {fix}") from None
    return src, np.dtype(src.dtype).newbyteorder("=")  # big-endian Zarr v2 becomes native


def copy_array(
    src: Any,
    dtype: np.dtype,
    out_kv: KVStore,
    path: str,
    units: tuple[tuple[int, ...], tuple[int, ...] | None],
    codec: CodecChoice,
    zarr_format: int,
    names: tuple[str, ...],
) -> None:
    """``src`` written to ``path`` of the output with the output's codec, ``units`` its
    (chunks, shards), whole write units at a time (bounded memory)."""
    import zarr

    chunks, shards = units
    plan = ArrayPlan(
        path=path,
        shape=tuple(src.shape),
        chunks=chunks,
        shards=shards if zarr_format == 3 else None,
        scale=(1.0,) * src.ndim,
        translation=(0.0,) * src.ndim,
    )
    fill = np.asarray(src.fill_value).item() if src.fill_value is not None else 0
    create_array(out_kv, path, plan, dtype.str, codec, zarr_format, names, fill)
    dst = zarr.open_array(out_kv.zarr_store(), path=path, mode="r+")
    for block in unit_blocks(plan.shape, plan.write_unit, dtype.itemsize):
        sel = tuple(slice(r.start, r.stop) for r in block)
        dst[sel] = np.asarray(src[sel], dtype=dtype)


def _scale_translation(ds: dict[str, Any], ndim: int) -> tuple[list[float], list[float] | None]:
    scale, trans = [1.0] * ndim, None
    for tf in ds.get("coordinateTransformations") or ():
        if tf.get("type") == "scale" and isinstance(tf.get("scale"), list):
            scale = [float(v) for v in tf["scale"]]
        elif tf.get("type") == "translation" and isinstance(tf.get("translation"), list):
            trans = [float(v) for v in tf["translation"]]
    return scale, trans


def level_transforms(
    src0: dict[str, Any], src_k: dict[str, Any], out0: dict[str, Any], ndim: int
) -> list[dict[str, Any]]:
    """Level k's ``coordinateTransformations`` in the output: the source's step from its
    level 0 to level k (ratio of scales, shift of origins) applied to the output's level 0."""
    s0, t0 = _scale_translation(src0, ndim)
    sk, tk = _scale_translation(src_k, ndim)
    o0, ot = _scale_translation(out0, ndim)
    scale = [o * (b / a if a else 1.0) for o, a, b in zip(o0, s0, sk, strict=True)]
    out: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if tk is not None or ot is not None:
        zero = [0.0] * ndim
        shift = [b - a for a, b in zip(t0 or zero, tk or zero, strict=True)]
        trans = [o + d for o, d in zip(ot or zero, shift, strict=True)]
        out.append({"type": "translation", "translation": trans})
    return out
