"""What every opened dataset node shares: the storage, its format, mode and locks.

Group documents are read and rewritten here. A rewrite replaces only the NGFF content
it was asked to change and keeps every other attribute (other tools' keys survive);
each document is replaced atomically (write-temp-then-rename on local disks).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from omestream.errors import FrameDtypeError, ReadOnlyError, StoreFormatError
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore
from omestream.io.locks import check_no_stream
from omestream.metadata.parse import ParsedNode, parse_group
from omestream.store.lock import StoreLocks

__all__ = [
    "Mode",
    "StoreContext",
    "coerce_data",
    "natural_key",
]

Mode = Literal["r", "r+", "a"]


@dataclass
class StoreContext:
    kv: KVStore
    url: str
    version: str  # "0.4" | "0.5"
    zarr_format: int  # 2 | 3
    mode: Mode
    locks: StoreLocks
    _consolidated_checked: bool = field(default=False, repr=False)

    # -- access ------------------------------------------------------------------------
    def where(self, path: str) -> str:
        return f"{self.url}/{path}" if path else self.url

    def check_writable(self, action: str, destructive: bool = False) -> None:
        """mode 'r' changes nothing; mode 'a' adds and appends but never replaces or deletes."""
        if self.mode == "r":
            raise ReadOnlyError(
                f"{self.url} was opened read-only (mode='r'); cannot {action}. "
                "Open it with mode='r+' to change it"
            )
        if destructive and self.mode == "a":
            raise ReadOnlyError(
                f"{self.url} was opened with mode='a' (add and append only); cannot {action}. "
                "Open it with mode='r+' to replace or delete data"
            )
        check_no_stream(self.kv, action)

    def attrs(self, path: str) -> dict[str, Any]:
        attrs = zarr_nodes.read_group_attrs(self.kv, path, self.zarr_format)
        if attrs is None:
            raise StoreFormatError(
                f"{self.where(path)}: expected a Zarr v{self.zarr_format} group, found none"
            )
        return attrs

    def group_exists(self, path: str) -> bool:
        key = "zarr.json" if self.zarr_format == 3 else ".zgroup"
        return self.kv.exists(f"{path}/{key}" if path else key)

    def node_exists(self, path: str) -> bool:
        return bool(self.kv.list_dir(path)) if path else True

    def parse(self, path: str) -> tuple[dict[str, Any], ParsedNode]:
        attrs = self.attrs(path)
        return attrs, parse_group(attrs, self.where(path))

    # -- writing -----------------------------------------------------------------------
    def with_content(self, attrs: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        """``attrs`` with the NGFF keys in ``content`` replaced (None deletes a key)."""
        out = copy.deepcopy(attrs)
        target = out.setdefault("ome", {"version": "0.5"}) if self.version == "0.5" else out
        if self.version == "0.5":
            target["version"] = "0.5"
        for key, value in content.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        return out

    def write_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        self.check_writable("write metadata")
        self.changing()
        zarr_nodes.write_group(self.kv, path, attrs, self.zarr_format)

    def write_content(self, path: str, content: dict[str, Any]) -> None:
        """Re-read the group and replace only the given NGFF keys (call under the lock)."""
        attrs = zarr_nodes.read_group_attrs(self.kv, path, self.zarr_format) or {}
        self.write_attrs(path, self.with_content(attrs, content))

    def empty_group(self, path: str) -> None:
        """A plain group (plate rows); 0.5 marks it with its version like omestream does."""
        attrs = {"ome": {"version": "0.5"}} if self.version == "0.5" else {}
        self.write_attrs(path, attrs)

    def changing(self) -> None:
        """Called before anything that changes a metadata document (not before pixel
        writes, which leave it true): consolidated metadata would go stale, so it goes,
        once per opened dataset. Opening alone, or a refused call, keeps it."""
        if not self._consolidated_checked:
            with self.locks.metadata():
                self.drop_consolidated()
            self._consolidated_checked = True

    def drop_consolidated(self) -> None:
        """Consolidated metadata goes stale on the first change: remove it, under the lock."""
        if self.zarr_format == 2:
            if self.kv.exists(".zmetadata"):
                self.kv.delete(".zmetadata")
            return
        doc = zarr_nodes.load_json(self.kv, "zarr.json")
        if doc is not None and doc.get("consolidated_metadata") is not None:
            doc.pop("consolidated_metadata")
            self.kv.set("zarr.json", zarr_nodes._dump(doc))


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key: 'A' < 'B' < 'AA', '2' < '10', 'fov2' < 'fov10'."""
    parts = re.split(r"(\d+)", name)
    pieces = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)
    return (len(name) if name.isalpha() else 0, *pieces)


def _fits(arr: np.ndarray, info: np.iinfo) -> bool:
    return arr.size == 0 or (int(arr.min()) >= info.min and int(arr.max()) <= info.max)


def coerce_data(data: Any, dtype: np.dtype, cast: bool, where: str) -> np.ndarray:
    """``data`` as ``dtype``: lossless casts happen silently (integers whose values fit
    included), lossy ones only with ``cast``.

    With ``cast=True`` floats are rounded and every value clipped to the dtype's range,
    so nothing wraps around.
    """
    arr = np.asarray(data)
    if arr.dtype == dtype:
        return arr
    if np.can_cast(arr.dtype, dtype, "safe"):
        return arr.astype(dtype)
    if arr.dtype.kind in "iu" and dtype.kind in "iu" and _fits(arr, np.iinfo(dtype)):
        return arr.astype(dtype)  # e.g. Python ints or np.arange's int64: values fit
    if not cast:
        raise FrameDtypeError(
            f"{where}: data has dtype {arr.dtype} but the array stores {dtype}; converting "
            "could lose values, so nothing was written (pass cast=True to round and clip)"
        )
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        vals = np.rint(arr) if arr.dtype.kind in "fc" else arr
        if arr.dtype.kind == "c":
            vals = vals.real
        return np.clip(vals, info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        return arr.real.astype(dtype) if arr.dtype.kind == "c" else arr.astype(dtype)
    return arr.astype(dtype)
