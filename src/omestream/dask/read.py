"""Lazy Dask arrays over every image and level of an OME-Zarr dataset."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from omestream.dask._deps import require_dask
from omestream.dask.layout import ArrayRef, open_array, read_dataset
from omestream.io.kv import open_kv

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["array_to_dask", "to_dask"]


def array_to_dask(ref: ArrayRef) -> da.Array:
    """One array as Dask, one block per write unit (shard, else chunk).

    Blocks follow the stored grid, so a task reads whole files and never shares one.
    """
    require_dask()
    import dask.array as da
    from dask.base import tokenize

    arr = open_array(ref, mode="r")
    unit = arr.shards or arr.chunks
    return da.from_zarr(arr, chunks=unit, name=f"omestream-read-{tokenize(ref, arr.shape)}")


def to_dask(
    location: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
) -> dict[str, list[da.Array]]:
    """Every image of the dataset at ``location`` (path or fsspec URL such as ``s3://``).

    Returns ``{image path: [level 0, level 1, ...]}``; the single image of an image
    dataset has the path ``""``. Nothing is read until the arrays are computed.
    """
    require_dask()
    kv = open_kv(location, storage_options)
    ds = read_dataset(kv)
    return {
        im.path: [
            array_to_dask(ArrayRef.make(kv, im.array_path(lv), storage_options))
            for lv in range(len(im.levels))
        ]
        for im in ds.images
    }
