"""Which frames of a Zarr array hold data: read from chunk files and shard indexes.

Nothing here trusts omestream's own record of the stream (a killed writer may have
recorded frames whose bytes never landed, or landed frames it never recorded): a
frame is present when every chunk holding it exists on disk. For sharded arrays
(Zarr v3 ``sharding_indexed``) each shard's index says which inner chunks were
written; an empty entry (both fields 2**64-1) means that chunk is absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omestream.errors import StoreFormatError
from omestream.io.kv import KVStore

__all__ = ["ArrayLayout", "frames_present", "layout_from_meta"]

_EMPTY = 2**64 - 1
_CRC_BYTES = 4


@dataclass(frozen=True)
class ArrayLayout:
    """What is needed to find the chunk files of one array."""

    path: str  # array path from the store root
    shape: tuple[int, ...]
    unit: tuple[int, ...]  # shape of one stored file (shard or chunk)
    inner: tuple[int, ...] | None  # inner chunk shape when sharded
    index_at_end: bool
    index_crc: bool
    prefix: str  # "c" for Zarr v3 default keys, "" for v2
    separator: str


def _fail(path: str, what: str) -> StoreFormatError:
    return StoreFormatError(f"array {path or '.'}: {what}")


def layout_from_meta(path: str, meta: dict[str, Any]) -> ArrayLayout:
    """Read chunk geometry from a v2 ``.zarray`` or v3 ``zarr.json`` document."""
    layout = _read_layout(path, meta)
    n = len(layout.shape)
    if (
        any(s < 0 for s in layout.shape)
        or len(layout.unit) != n
        or min(layout.unit, default=1) < 1
    ):
        raise _fail(
            path, f"shape {list(layout.shape)} and chunk shape {list(layout.unit)} do not fit"
        )
    inner = layout.inner
    if inner is not None and (
        len(inner) != n or min(inner, default=1) < 1
        or any(u % c for u, c in zip(layout.unit, inner, strict=True))
    ):  # fmt: skip
        raise _fail(path, f"inner chunks {list(inner)} do not divide shards {list(layout.unit)}")
    if layout.separator not in ("/", "."):
        raise _fail(path, f"chunk key separator {layout.separator!r} is neither '/' nor '.'")
    return layout


def _read_layout(path: str, meta: dict[str, Any]) -> ArrayLayout:
    try:
        shape = tuple(int(s) for s in meta["shape"])
        if meta.get("zarr_format") == 3:
            grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
            unit = tuple(int(c) for c in grid)
            enc = meta.get("chunk_key_encoding") or {"name": "default"}
            sep = (enc.get("configuration") or {}).get("separator", "/")
            prefix = "c" if enc.get("name", "default") == "default" else ""
            inner = None
            at_end, crc = True, False
            for codec in meta.get("codecs", []):
                if codec.get("name") == "sharding_indexed":
                    cfg = codec["configuration"]
                    inner = tuple(int(c) for c in cfg["chunk_shape"])
                    at_end = cfg.get("index_location", "end") == "end"
                    crc = any(c.get("name") == "crc32c" for c in cfg.get("index_codecs", []))
            return ArrayLayout(path, shape, unit, inner, at_end, crc, prefix, sep)
        unit = tuple(int(c) for c in meta["chunks"])
        sep = meta.get("dimension_separator") or "."
        return ArrayLayout(path, shape, unit, None, True, False, "", sep)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _fail(path, f"array metadata is malformed ({type(exc).__name__}: {exc})") from None


def _key(layout: ArrayLayout, grid: tuple[int, ...]) -> str:
    coords = layout.separator.join(str(g) for g in grid) if grid else "0"
    return "/".join(p for p in (layout.path, layout.prefix, coords) if p)


def _shard_index(layout: ArrayLayout, raw: bytes) -> np.ndarray | None:
    """Per inner chunk: True when written. None when the index cannot be read."""
    assert layout.inner is not None
    grid = tuple(u // c for u, c in zip(layout.unit, layout.inner, strict=True))
    n = math.prod(grid)
    size = n * 16 + (_CRC_BYTES if layout.index_crc else 0)
    if len(raw) < size:
        return None
    blob = raw[-size:] if layout.index_at_end else raw[:size]
    entries = np.frombuffer(blob[: n * 16], dtype="<u8").reshape(*grid, 2)
    if layout.index_crc:
        from numcodecs import CRC32C

        try:
            CRC32C().decode(blob)
        except (RuntimeError, ValueError):
            return None  # a torn or corrupted shard: treat its frames as absent
    return ~((entries[..., 0] == _EMPTY) & (entries[..., 1] == _EMPTY))


def frames_present(kv: KVStore, layout: ArrayLayout) -> tuple[np.ndarray, list[str]]:
    """Boolean array over the outer axes (all but y/x): True where a frame's data exists;
    and the keys of shards whose index is unreadable (torn or corrupted files).

    Chunks that span several frames along an outer axis mark all of them present
    (a file cannot say which of its frames were filled).
    """
    outer = len(layout.shape) - 2
    if outer < 0:
        raise _fail(layout.path, f"expected at least 2 axes, found shape {layout.shape}")
    present = np.ones(layout.shape[:outer], dtype=bool)
    unreadable: list[str] = []
    unit_o = layout.unit[:outer]
    tiles = tuple(
        math.ceil(s / u) for s, u in zip(layout.shape[outer:], layout.unit[outer:], strict=True)
    )
    grid_o = tuple(math.ceil(s / u) for s, u in zip(layout.shape[:outer], unit_o, strict=True))
    for block in np.ndindex(*grid_o):
        sel = tuple(slice(b * u, (b + 1) * u) for b, u in zip(block, unit_o, strict=True))
        here = np.ones(tuple(min(u, s - b * u) for b, u, s in
                             zip(block, unit_o, layout.shape[:outer], strict=True)), dtype=bool)  # fmt: skip
        for tile in np.ndindex(*tiles):
            key = _key(layout, (*block, *tile))
            raw = kv.get(key)
            if raw is None:
                here[...] = False
                break
            if layout.inner is None:
                continue
            written = _shard_index(layout, raw)
            if written is None:
                unreadable.append(key)
                here[...] = False
                break
            # an inner chunk covers inner[a] frames along each outer axis; a frame needs
            # every inner chunk of its y/x tile
            # asarray: with no outer axes all() gives a numpy scalar
            per_frame = np.asarray(written.reshape(*written.shape[:outer], -1).all(axis=-1))
            for a, c in enumerate(layout.inner[:outer]):
                per_frame = np.repeat(per_frame, c, axis=a)
            here &= per_frame[tuple(slice(0, n) for n in here.shape)]
        present[sel] = here
    return present, unreadable
