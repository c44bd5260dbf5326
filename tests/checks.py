"""Independent checks of written datasets, with tools omestream did not write."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr


def validate_ome_zarr(path: str | Path) -> Any:
    """ome-zarr-models, yaozarrs (with structure checks) and the ome-zarr reader must all
    accept the store. Returns the ome-zarr-models group object."""
    import ome_zarr_models
    import yaozarrs

    path = str(path)
    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "bioformats2raw.layout" in ome:
            # open_ome_zarr does not try this layout; validate it with its own model,
            # and each series as an image.
            if "ome" in attrs:
                from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
            else:
                from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw
            model = BioFormats2Raw.from_zarr(group)
            series = zarr.open_group(path + "/OME", mode="r").attrs
            series = series.get("ome", series).get("series", [])
            assert series, f"{path}/OME lists no series"
            for s in series:
                ome_zarr_models.open_ome_zarr(zarr.open_group(f"{path}/{s}", mode="r"))
                # the ome-zarr reader does not walk bioformats2raw roots: read each series
                read_with_ome_zarr(f"{path}/{s}")
        else:
            model = ome_zarr_models.open_ome_zarr(group)
            read_with_ome_zarr(path)
    yaozarrs.validate_zarr_store(path)
    return model


def read_with_ome_zarr(path: str) -> list[Any]:
    """The reference reader finds at least one node and can load its pixels (its first
    plane, when it has one)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(path)
    assert location is not None, f"ome-zarr cannot parse {path}"
    nodes = list(Reader(location)())
    assert nodes, f"ome-zarr found no nodes in {path}"
    data = nodes[0].data
    assert data, f"ome-zarr found no image data in {path}"
    smallest = data[-1]
    if 0 not in smallest.shape:  # an unbounded axis may still be empty: no plane to read
        np.asarray(smallest[(0,) * (smallest.ndim - 2)])  # smallest level, first plane
    return nodes


def read_array(path: str | Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[...]
