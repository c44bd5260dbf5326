"""NGFF (OME-Zarr) metadata documents, built from a StoragePlan. Pure functions.

Content is built once, version-neutral; :func:`versioned` applies the few places
where 0.4 and 0.5 differ:

* 0.5 puts everything under one ``"ome"`` key with ``"version": "0.5"``;
* 0.4 puts ``multiscales``/``omero``/``plate``/``well`` at the top level and writes
  ``"version": "0.4"`` inside each multiscale, the plate and the well.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from omestream.plan import ArrayPlan, ImagePlan, StoragePlan
from omestream.settings import Channel, Plate

__all__ = [
    "BIOFORMATS2RAW_LAYOUT",
    "axes_doc",
    "bioformats2raw_root",
    "channel_window",
    "image_content",
    "multiscale_doc",
    "omero_doc",
    "plate_doc",
    "series_content",
    "versioned",
    "well_doc",
]

BIOFORMATS2RAW_LAYOUT = 3
_VERSIONED_KEYS = ("plate", "well", "image-label")  # objects that carry "version" in 0.4


def axes_doc(image: ImagePlan) -> list[dict[str, Any]]:
    out = []
    for a in image.axes:
        entry: dict[str, Any] = {"name": a.name, "type": a.type}
        if a.unit and a.type in ("space", "time"):
            entry["unit"] = a.unit
        out.append(entry)
    return out


def _transforms(level: ArrayPlan) -> list[dict[str, Any]]:
    tf: list[dict[str, Any]] = [{"type": "scale", "scale": list(level.scale)}]
    if any(level.translation):
        tf.append({"type": "translation", "translation": list(level.translation)})
    return tf


def multiscale_doc(image: ImagePlan, levels: Sequence[ArrayPlan] | None = None) -> dict[str, Any]:
    levels = image.levels if levels is None else levels
    doc: dict[str, Any] = {
        "name": image.name,
        "axes": axes_doc(image),
        "datasets": [
            {"path": lv.path, "coordinateTransformations": _transforms(lv)} for lv in levels
        ],
    }
    if len(levels) > 1 and image.downscale_method:
        doc["type"] = image.downscale_method
        doc["metadata"] = {"method": f"omestream.pyramid.{image.downscale_method}"}
    return doc


def channel_window(dtype: str) -> dict[str, float]:
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = 0.0, 1.0
    return {"min": lo, "max": hi, "start": lo, "end": hi}


def omero_doc(channels: Iterable[Channel], dtype: str, name: str | None = None) -> dict[str, Any]:
    """The ``omero`` block: each channel's label and colour, and its display as
    ``Channel.display`` gives it (else the dtype's range, active, not inverted)."""
    doc: dict[str, Any] = {
        "channels": [
            {
                "label": ch.name,
                "color": ch.color or "FFFFFF",
                "window": _display_window(ch, dtype),
                "active": ch.display.active if ch.display is not None else True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": ch.display.inverted if ch.display is not None else False,
            }
            for ch in channels
        ],
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0},
    }
    if name:
        doc["name"] = name
    return doc


def _display_window(ch: Channel, dtype: str) -> dict[str, float]:
    window = channel_window(dtype)
    display = ch.display
    if display is not None and display.limits is not None:
        lo, hi = display.limits
        window.update(min=lo, max=hi, start=lo, end=hi)
    if display is not None and display.window is not None:
        window.update(start=display.window[0], end=display.window[1])
    return window


def image_content(
    image: ImagePlan, dtype: str, levels: Sequence[ArrayPlan] | None = None
) -> dict[str, Any]:
    """The NGFF content of an image group (multiscales and, with channels, omero)."""
    content: dict[str, Any] = {"multiscales": [multiscale_doc(image, levels)]}
    if image.channels:
        content["omero"] = omero_doc(image.channels, dtype, image.name)
    return content


def plate_doc(
    plate: Plate, wells: Sequence[tuple[str, str, Sequence[str]]], name: str | None = None
) -> dict[str, Any]:
    """Plate metadata; ``rowIndex``/``columnIndex`` point into the full row/column lists."""
    rows = list(plate.row_names)
    cols = list(plate.column_names)
    doc: dict[str, Any] = {
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": c} for c in cols],
        "wells": [
            {"path": f"{r}/{c}", "rowIndex": rows.index(r), "columnIndex": cols.index(c)}
            for r, c, _ in sorted(wells, key=lambda w: (rows.index(w[0]), cols.index(w[1])))
        ],
        "field_count": max((len(f) for _, _, f in wells), default=0),
    }
    plate_name = name or plate.name
    if plate_name:
        doc["name"] = plate_name
    return doc


def well_doc(fields: Sequence[str]) -> dict[str, Any]:
    return {"images": [{"path": f} for f in fields]}


def bioformats2raw_root() -> dict[str, Any]:
    return {"bioformats2raw.layout": BIOFORMATS2RAW_LAYOUT}


def series_content(paths: Sequence[str]) -> dict[str, Any]:
    return {"series": list(paths)}


def versioned(content: dict[str, Any], version: str) -> dict[str, Any]:
    """Wrap version-neutral ``content`` as the attributes of an NGFF ``version`` group."""
    if version == "0.5":
        return {"ome": {"version": "0.5", **content}}
    if version != "0.4":
        raise ValueError(f"NGFF version {version!r} is not supported")
    out = dict(content)
    if "multiscales" in out:
        out["multiscales"] = [{"version": "0.4", **m} for m in out["multiscales"]]
    for key in _VERSIONED_KEYS:
        if key in out:
            out[key] = {"version": "0.4", **out[key]}
    return out


def plan_documents(plan: StoragePlan) -> dict[str, dict[str, Any]]:
    """Every group's NGFF attributes, keyed by group path ("" is the root)."""
    v = plan.ngff_version
    docs: dict[str, dict[str, Any]] = {}
    if plan.layout == "plate":
        assert plan.plate is not None
        docs[""] = versioned({"plate": plate_doc(plan.plate, plan.wells)}, v)
        for r, c, fields in plan.wells:
            docs[r] = versioned({}, v) if v == "0.5" else {}
            docs[f"{r}/{c}"] = versioned({"well": well_doc(fields)}, v)
    elif plan.layout == "bioformats2raw":
        docs[""] = versioned(bioformats2raw_root(), v)
        docs["OME"] = versioned(series_content([im.path for im in plan.images]), v)
    for im in plan.images:
        docs[im.path] = versioned(image_content(im, plan.dtype), v)
    return docs
