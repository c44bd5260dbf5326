"""Paths of datasets: what to say when one is not there, and where one lives."""

from __future__ import annotations

import os

from omestream.io.kv import FsspecKV, KVStore, LocalKV, open_kv

__all__ = ["location", "missing", "overlaps", "path_location"]

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


def location(kv: KVStore) -> tuple[str, str]:
    """(scheme, path) of a store's root; local paths resolved (symbolic links, ``..``)."""
    if isinstance(kv, LocalKV):
        return "file", os.path.realpath(kv.root)
    if isinstance(kv, FsspecKV):
        protocol = kv.fs.protocol
        scheme = protocol[0] if isinstance(protocol, tuple | list) else str(protocol)
        return scheme, kv.root.rstrip("/")
    return "", kv.url.rstrip("/")


def path_location(path: str | os.PathLike[str]) -> tuple[str, str]:
    """:func:`location` of a local path or URL (a file as well as a store's folder)."""
    return location(open_kv(path))


def overlaps(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two locations (see :func:`location`) are the same or one holds the other."""
    if a[0] != b[0]:
        return False
    sep = os.sep if a[0] == "file" else "/"
    x, y = a[1], b[1]
    return x == y or x.startswith(y.rstrip(sep) + sep) or y.startswith(x.rstrip(sep) + sep)
