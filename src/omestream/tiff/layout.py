"""Which files an OME-TIFF acquisition writes and which page holds which plane. Pure."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from omestream.plan import FrameRouter, StoragePlan
from omestream.settings import AcquisitionSettings
from omestream.tiff.pagemap import PageMap, PlaneKeys

__all__ = [
    "TIFF_SUFFIXES",
    "TiffLayout",
    "arrival_pages",
    "declared_shapes",
    "first_outer_axis",
    "tiff_layout",
]

TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TiffLayout:
    folder: str  # absolute folder holding the files
    files: tuple[str, ...]  # file names inside ``folder``
    image_file: tuple[int, ...]  # image number -> file number
    in_folder: bool = False  # the output is ``folder`` (one file per image), not a file

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(os.path.join(self.folder, f) for f in self.files)

    @property
    def multi_file(self) -> bool:
        return len(self.files) > 1


def _suffix(root: str) -> str:
    lower = root.lower()
    return next((s for s in TIFF_SUFFIXES[:3] if lower.endswith(s)), ".ome.tiff")


def tiff_layout(settings: AcquisitionSettings, plan: StoragePlan) -> TiffLayout:
    """One file (:attr:`AcquisitionSettings.single_tiff_file`: one image, or asked for);
    else one file per image in the ``output_path`` folder, named after the position
    (on a plate: ``<row><column>_<field>``; without positions: after the folder)."""
    out = os.path.abspath(settings.output_path)
    n = len(plan.images)
    if settings.single_tiff_file:
        return TiffLayout(os.path.dirname(out), (os.path.basename(out),), (0,) * n)
    suffix = settings.format.suffix or _suffix(settings.root_path.rstrip("/"))  # type: ignore[union-attr]
    names: list[str] = []
    for i, im in enumerate(plan.images):
        p = im.position
        if p is None:
            base = os.path.basename(out)
        elif p.well is None:
            base = im.name
        else:
            base = f"{p.plate_row}{p.plate_column}_{p.name}"
        base = _UNSAFE.sub("_", base).strip("._") or f"image{i}"
        name = base + suffix
        if name.lower() in (x.lower() for x in names):  # unsafe characters collided
            name = f"{base}_{i}{suffix}"
        names.append(name)
    return TiffLayout(out, tuple(names), tuple(range(n)), in_folder=True)


def arrival_pages(
    router: FrameRouter,
    layout: TiffLayout,
    keys: Sequence[PlaneKeys],
    n_frames: int | None,
    available: Sequence[int] | None = None,
) -> tuple[PageMap, int]:
    """Replay the acquisition: which (image, storage index) each page of each file got.

    Frames (appended or skipped) are written one page each, in arrival order, to the
    file of their image. Replays ``n_frames`` frames, or, with ``available`` (pages
    present per file, e.g. after a crash), until a frame's file has no page left.
    Returns the pages (``keys``: per image, see :func:`~omestream.tiff.pagemap.plane_keys`)
    and the number of frames replayed.
    """
    pages = PageMap(keys, len(layout.files))
    limit = n_frames if n_frames is not None else sum(available or ())
    if router.total is not None:
        limit = min(limit, router.total)
    n = 0
    while n < limit:
        route = router.route(n)
        f = layout.image_file[route.image]
        if available is not None and pages.pages(f) >= available[f]:
            break
        pages.add(f, route.image, route.index)
        n += 1
    return pages, n


def first_outer_axis(settings: AcquisitionSettings) -> int | None:
    """The storage axis of the first acquisition dimension (None for a lone 2-D frame):
    the one whose extent is known only when data stops coming."""
    first = settings.array_dimensions[0]
    if len(settings.array_dimensions) == 2:
        return None
    return settings.storage_dimension_names.index(first.name)


def declared_shapes(
    plan: StoragePlan, first_axis: int | None, extents: Sequence[int]
) -> list[list[int]]:
    """Per image, its level-0 shape with ``extents[i]`` steps along the first
    acquisition dimension (``first_axis``, see :func:`first_outer_axis`)."""
    out = []
    for im, extent in zip(plan.images, extents, strict=True):
        shape = list(im.levels[0].shape)
        if first_axis is not None:
            shape[first_axis] = extent
        out.append(shape)
    return out
