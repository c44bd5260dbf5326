"""Paths of local datasets: what to say when one is not there."""

from __future__ import annotations

import os

__all__ = ["missing"]

_DATASET_SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif")


def missing(location: str) -> FileNotFoundError:
    """The error for a dataset path that does not exist, naming the dataset that sits
    next to it under a close name: a multi-position OME-TIFF acquisition is a folder
    (``run.ome.tiff`` -> ``run/``), and a root path given without its suffix gains one."""
    stem = location.rstrip("/")
    for suffix in _DATASET_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    near = [c for c in (stem, *(stem + s for s in _DATASET_SUFFIXES)) if c != location]
    found = next((c for c in near if c and os.path.exists(c)), None)
    hint = f"; did you mean {found}?" if found else ""
    return FileNotFoundError(f"{location} does not exist{hint}")
