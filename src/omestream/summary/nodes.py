"""The raw Zarr hierarchy of a store: groups, arrays and their JSON documents.

Read straight from the key/value store, without zarr-python's validation, so that
stores written by other tools (or broken ones, for ``validate``) can still be
walked and described. Nothing here interprets NGFF metadata.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from omestream.errors import StoreFormatError
from omestream.io.kv import KVStore, join_key, open_kv
from omestream.io.zarr_nodes import load_json

__all__ = ["ArrayMeta", "Node", "disk_usage", "read_tree"]

# Folders that never hold child nodes. Not "c": only arrays have chunk folders of that
# name, and only groups are listed here, where "c" may name a field of view.
_SKIP = {"__pycache__"}


@dataclass(frozen=True)
class ArrayMeta:
    """What an array document says, for Zarr v2 and v3 alike."""

    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]  # inner (read) chunks
    shards: tuple[int, ...] | None  # v3 sharding: elements per shard
    codecs: tuple[str, ...]  # human descriptions, in order
    fill_value: Any
    dimension_names: tuple[str | None, ...] | None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    """One group or array. ``path`` is relative to the root ("" is the root)."""

    path: str
    kind: Literal["group", "array"]
    zarr_format: int
    attrs: dict[str, Any]
    doc: dict[str, Any]  # the array document (.zarray / zarr.json); {} for groups
    children: list[Node] = field(default_factory=list)
    meta_error: str | None = None  # the array document could not be understood

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] if self.path else "/"

    @property
    def meta(self) -> ArrayMeta:
        if self.kind != "array":
            raise StoreFormatError(f"{self.path or '.'} is a group, not an array")
        return array_meta(self.doc, self.zarr_format, self.path)

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)

    def find(self, path: str) -> Node | None:
        """The node at ``path`` relative to this one, or None."""
        node: Node | None = self
        for part in (p for p in path.split("/") if p):
            node = node.child(part) if node is not None else None
        return node

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()


def _read_node(kv: KVStore, path: str) -> Node | None:
    # frame metadata stays text: a long time-lapse's records are most of its document
    v3 = load_json(kv, join_key(path, "zarr.json"), lift_records=True)
    if v3 is not None:
        kind = v3.get("node_type")
        if kind not in ("group", "array"):
            raise StoreFormatError(
                f"{join_key(path, 'zarr.json')}: node_type must be 'group' or 'array', found {kind!r}"
            )
        attrs = v3.get("attributes") or {}
        return Node(
            path, kind, 3, attrs if isinstance(attrs, dict) else {}, v3 if kind == "array" else {}
        )
    zarray = load_json(kv, join_key(path, ".zarray"))
    if zarray is not None:
        return Node(
            path,
            "array",
            2,
            load_json(kv, join_key(path, ".zattrs"), lift_records=True) or {},
            zarray,
        )
    if kv.get(join_key(path, ".zgroup")) is not None:
        return Node(
            path, "group", 2, load_json(kv, join_key(path, ".zattrs"), lift_records=True) or {}, {}
        )
    return None


def _children(kv: KVStore, node: Node) -> None:
    for name in kv.list_dir(node.path):
        if name.startswith(".") or name in _SKIP or name in ("zarr.json",):
            continue
        child = _read_node(kv, join_key(node.path, name))
        if child is None:
            continue
        try:
            if child.kind == "array":
                array_meta(child.doc, child.zarr_format, child.path)
        except StoreFormatError as exc:
            child.meta_error = str(exc)
        node.children.append(child)
        if child.kind == "group":
            _children(kv, child)


def read_tree(
    location: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> Node:
    """The root node of the Zarr hierarchy at ``location`` with every group and array below
    (``storage_options`` for fsspec URLs)."""
    loc = os.fspath(location)
    if "://" not in loc and not os.path.exists(loc):
        raise FileNotFoundError(f"{loc}: no such file or directory")
    kv = open_kv(loc, storage_options)
    root = _read_node(kv, "")
    if root is None:
        raise StoreFormatError(
            f"{loc}: not a Zarr store (no zarr.json, .zgroup or .zarray at its root)"
        )
    if root.kind == "group":
        _children(kv, root)
    return root


def disk_usage(location: str) -> int | None:
    """Bytes of all files below a local path; None for remote locations."""
    if "://" in location:
        return None
    if os.path.isfile(location):
        return os.path.getsize(location)
    total = 0
    for dirpath, _dirs, files in os.walk(location):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, f))
    return total


# -- array documents ----------------------------------------------------------------


def _ints(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise StoreFormatError(f"{where}: {what} must be a list of integers, found {value!r}")
    return tuple(value)


def _codec_v3(c: Any) -> str:
    if not isinstance(c, dict):
        return str(c)
    name = c.get("name", "?")
    cfg = c.get("configuration") or {}
    if name == "blosc":
        return f"blosc({cfg.get('cname')}, clevel={cfg.get('clevel')}, {cfg.get('shuffle')})"
    if name in ("zstd", "gzip") and "level" in cfg:
        return f"{name}(level={cfg['level']})"
    if name == "bytes" and cfg.get("endian"):
        return f"bytes({cfg['endian']})"
    if name == "transpose":
        return f"transpose({cfg.get('order')})"
    return str(name)


def _codec_v2(c: Any) -> str:
    if not isinstance(c, dict):
        return str(c)
    cid = c.get("id", "?")
    if cid == "blosc":
        raw = c.get("shuffle")
        names = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle", -1: "auto"}
        shuffle = names.get(raw, raw) if isinstance(raw, int) else raw
        return f"blosc({c.get('cname')}, clevel={c.get('clevel')}, {shuffle})"
    if "level" in c:
        return f"{cid}(level={c['level']})"
    return str(cid)


def _dtype_name(value: Any, where: str) -> str:
    if isinstance(value, dict):  # v3 extension data types
        value = value.get("name")
    try:
        return np.dtype(value).name
    except TypeError:
        raise StoreFormatError(f"{where}: data type {value!r} is not understood") from None


def array_meta(doc: dict[str, Any], zarr_format: int, path: str) -> ArrayMeta:
    where = path or "."
    shape = _ints(doc.get("shape"), "shape", where)
    if zarr_format == 3:
        dtype = _dtype_name(doc.get("data_type"), where)
        grid = doc.get("chunk_grid") or {}
        chunks = _ints((grid.get("configuration") or {}).get("chunk_shape"), "chunk_shape", where)
        codecs = doc.get("codecs") or []
        shards = None
        if codecs and isinstance(codecs[0], dict) and codecs[0].get("name") == "sharding_indexed":
            cfg = codecs[0].get("configuration") or {}
            shards = chunks
            chunks = _ints(cfg.get("chunk_shape"), "sharding chunk_shape", where)
            codecs = cfg.get("codecs") or []
        names = tuple(_codec_v3(c) for c in codecs)
        dim_names = doc.get("dimension_names")
        dims = tuple(dim_names) if isinstance(dim_names, list) else None
    else:
        dtype = _dtype_name(doc.get("dtype"), where)
        chunks = _ints(doc.get("chunks"), "chunks", where)
        shards = None
        parts = [*(doc.get("filters") or [])]
        if doc.get("compressor"):
            parts.append(doc["compressor"])
        names = tuple(_codec_v2(c) for c in parts)
        dims = None
    if len(chunks) != len(shape):
        raise StoreFormatError(
            f"{where}: chunk shape {list(chunks)} has {len(chunks)} entries for a "
            f"{len(shape)}-dimensional array"
        )
    return ArrayMeta(shape, dtype, chunks, shards, names, doc.get("fill_value"), dims)
