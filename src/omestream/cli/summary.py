"""A short human summary of an OME-Zarr dataset, read with zarr only."""

from __future__ import annotations

import os

import zarr
from rich.console import Console
from rich.table import Table


def _disk_bytes(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def print_summary(path: str, console: Console) -> None:
    root = zarr.open_group(path, mode="r")
    table = Table(title=f"{path}")
    for col in ("array", "shape", "chunks", "shards", "dtype"):
        table.add_column(col)
    n_bytes = 0
    for name, arr in root.arrays() if False else _walk(root):
        n_bytes += arr.nbytes
        table.add_row(name, str(arr.shape), str(arr.chunks), str(getattr(arr, "shards", None)), str(arr.dtype))
    console.print(table)
    disk = _disk_bytes(path)
    ratio = n_bytes / disk if disk else 0.0
    console.print(f"in memory {n_bytes / 1e6:.1f} MB, on disk {disk / 1e6:.1f} MB, ratio {ratio:.2f}:1")


def _walk(group: zarr.Group, prefix: str = ""):  # type: ignore[no-untyped-def]
    for name, member in sorted(group.members(), key=lambda kv: kv[0]):
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(member, zarr.Array):
            yield path, member
        else:
            yield from _walk(member, path)
