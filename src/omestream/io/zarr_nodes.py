"""Zarr groups and arrays on a KVStore: create, read and update their documents.

Array metadata is produced by zarr-python (so it is what every Zarr reader expects);
group documents and later shape changes are small JSON rewrites done here, each an
atomic replace.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

from omestream.backends.codecs import CodecChoice
from omestream.errors import StoreFormatError
from omestream.io.kv import KVStore, join_key
from omestream.metadata.records import FrameRecords
from omestream.plan import ArrayPlan

__all__ = [
    "array_meta_key",
    "create_array",
    "group_meta_key",
    "load_json",
    "read_array_meta",
    "read_group_attrs",
    "set_array_shape",
    "write_group",
]


def group_meta_key(path: str, zarr_format: int) -> str:
    return join_key(path, "zarr.json" if zarr_format == 3 else ".zattrs")


def array_meta_key(path: str, zarr_format: int) -> str:
    return join_key(path, "zarr.json" if zarr_format == 3 else ".zarray")


def _dump_parts(doc: dict[str, Any]) -> Iterator[bytes]:
    """``doc`` as indented JSON, in pieces. Frame metadata (:class:`FrameRecords`) goes
    in as the JSON text it is kept as, one record per line, without being decoded
    first and without the whole list ever being one string (a long time-lapse's
    records are most of its document)."""
    arrays: dict[str, FrameRecords] = {}
    tag = secrets.token_hex(8)

    def default(o: Any) -> Any:
        if isinstance(o, FrameRecords):
            token = f"\x00{tag}:{len(arrays)}\x00"
            arrays[json.dumps(token)] = o
            return token
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    text = json.dumps(doc, indent=2, allow_nan=False, default=default)
    places = sorted((text.index(token), token, records) for token, records in arrays.items())
    done = 0
    for at, token, records in places:
        before = text[text.rfind("\n", 0, at) + 1 : at]  # the line up to the array
        indent = before[: len(before) - len(before.lstrip(" "))]
        yield text[done:at].encode()
        yield from records.json_parts(indent)
        done = at + len(token)
    yield text[done:].encode()


def _dump(doc: dict[str, Any]) -> bytes:
    """:func:`_dump_parts` as one document."""
    return b"".join(_dump_parts(doc))


def load_json(kv: KVStore, key: str, *, lift_records: bool = False) -> dict[str, Any] | None:
    """The JSON object stored at ``key``; None when the key is absent.

    With ``lift_records``, frame metadata written one record per line (as
    :func:`_dump_parts` writes it) is read as :class:`FrameRecords`, texts that are
    checked but never all decoded at once: a long time-lapse's attributes then cost
    what their texts cost, not a dict per frame.
    """
    raw = kv.get(key)
    if raw is None:
        return None
    lifted: dict[str, FrameRecords] = {}
    try:
        if lift_records:
            raw, lifted = _lift_records(raw)
        doc = json.loads(raw)
    except ValueError as exc:
        raise StoreFormatError(f"{kv.url}/{key} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StoreFormatError(
            f"{kv.url}/{key} must hold a JSON object, found {type(doc).__name__}"
        )
    return _put_back(doc, lifted) if lifted else doc


_RECORDS_START = re.compile(rb'\n( *)"frame_metadata": \[\n')
_CHECK_BYTES = 1 << 20
#: a line of a one-record-per-line array: indent, the record, its comma
_RECORD_LINE = re.compile(rb"^ *(\{.*\}),?$", re.MULTILINE)


def _lift_records(raw: bytes) -> tuple[bytes, dict[str, FrameRecords]]:
    """``raw`` with each one-record-per-line ``frame_metadata`` array replaced by a
    placeholder string, and the records of each placeholder. Arrays laid out any
    other way stay in place for the JSON parser; a malformed record raises
    ``ValueError`` as the parser would."""
    lifted: dict[str, FrameRecords] = {}
    out: list[bytes] = []
    done = 0
    tag = secrets.token_hex(8)
    for m in _RECORDS_START.finditer(raw):
        if m.start() < done:
            continue
        first = m.end()
        end = raw.find(b"\n" + m.group(1) + b"]", first)  # the array's closing line
        if end < 0:
            continue
        records = _records_of(raw, first, end)
        if records is None:
            continue
        token = f"\x00{tag}:{len(lifted)}\x00"
        lifted[token] = records
        out += [raw[done : m.end() - 2], json.dumps(token).encode()]  # keeps '"...": '
        done = end + 1 + len(m.group(1)) + 1  # after the ']'
    if not lifted:
        return raw, lifted
    out.append(raw[done:])
    return b"".join(out), lifted


def _records_of(raw: bytes, first: int, end: int) -> FrameRecords | None:
    """The records on lines ``raw[first:end]``, one JSON object per line, checked a
    megabyte at a time; None when the lines are not laid out that way."""
    records = FrameRecords()
    at = first
    while at < end:
        limit = at + _CHECK_BYTES
        stop = end if limit >= end else raw.rfind(b"\n", at, limit)
        if stop <= at:  # a line longer than a piece: up to its end
            stop = raw.find(b"\n", limit, end) if limit < end else -1
            stop = end if stop < 0 else stop
        piece = raw[at:stop]
        # one regex pass in C instead of a few per line: the line count tells whether
        # every line is a record
        lines = _RECORD_LINE.findall(piece)
        if len(lines) != piece.count(b"\n") + 1:
            return None
        parsed = json.loads(b"[" + b",".join(lines) + b"]")  # ValueError: not JSON
        if len(parsed) != len(lines) or not set(map(type, parsed)) <= {dict}:
            return None
        records.extend_lines(lines)
        at = stop + 1
    return records


def _put_back(node: Any, lifted: dict[str, FrameRecords]) -> Any:
    if isinstance(node, dict):
        return {k: _put_back(v, lifted) for k, v in node.items()}
    if isinstance(node, list):
        return [_put_back(v, lifted) for v in node]
    if isinstance(node, str) and node in lifted:
        return lifted[node]
    return node


def write_group(
    kv: KVStore, path: str, attrs: dict[str, Any], zarr_format: int, durable: bool = True
) -> None:
    if zarr_format == 3:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        kv.set_stream(join_key(path, "zarr.json"), _dump_parts(doc), durable=durable)
    else:
        if not kv.exists(join_key(path, ".zgroup")):
            kv.set(join_key(path, ".zgroup"), _dump({"zarr_format": 2}), durable=durable)
        kv.set_stream(join_key(path, ".zattrs"), _dump_parts(attrs), durable=durable)


def read_group_attrs(
    kv: KVStore, path: str, zarr_format: int, *, lift_records: bool = False
) -> dict[str, Any] | None:
    """A group's attributes (None: no group there); ``lift_records`` as in :func:`load_json`."""
    if zarr_format == 3:
        doc = load_json(kv, join_key(path, "zarr.json"), lift_records=lift_records)
        if doc is None:
            return None
        if doc.get("node_type") != "group":
            raise StoreFormatError(
                f"{kv.url}/{path or '.'} is a Zarr {doc.get('node_type')}, not a group"
            )
        attrs = doc.get("attributes", {})
        return attrs if isinstance(attrs, dict) else {}
    if not kv.exists(join_key(path, ".zgroup")):
        return None
    return load_json(kv, join_key(path, ".zattrs"), lift_records=lift_records) or {}


def create_array(
    kv: KVStore,
    path: str,
    level: ArrayPlan,
    dtype: str,
    codec: CodecChoice,
    zarr_format: int,
    dimension_names: tuple[str, ...],
    fill_value: int | float = 0,
) -> None:
    """Create (or replace) one array: the documents zarr-python makes for it, written
    by ``kv`` after whatever was at ``path`` is removed."""
    docs = _array_documents(
        level.shape, level.chunks, level.shards, dtype, codec, zarr_format,
        dimension_names, fill_value,
    )  # fmt: skip
    kv.delete_prefix(path)
    for name, data in docs:
        # not synced, as zarr-python does not: a stream syncs everything at close
        kv.set(join_key(path, name), data, durable=False)


@functools.lru_cache(maxsize=64)
def _array_documents(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    dtype: str,
    codec: CodecChoice,
    zarr_format: int,
    dimension_names: tuple[str, ...],
    fill_value: int | float,
) -> tuple[tuple[str, bytes], ...]:
    """The documents (name in the array's folder, bytes) zarr-python writes for such an
    array, made once in memory. Through a store, each array cost ~6 ms of zarr-python's
    event loop round trips: 2.3 s before a 384-well plate could start."""
    import zarr
    from zarr.storage import MemoryStore

    kwargs: dict[str, Any] = {
        "shape": shape,
        "chunks": chunks,
        "dtype": dtype,
        "fill_value": fill_value,
        "zarr_format": zarr_format,
    }
    if zarr_format == 3:
        kwargs["shards"] = shards
        kwargs["compressors"] = codec.zarr_v3(dtype)
        kwargs["dimension_names"] = list(dimension_names)
        kwargs["chunk_key_encoding"] = {"name": "default", "separator": "/"}
    else:
        kwargs["compressors"] = codec.zarr_v2(dtype)
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    made: dict[str, Any] = {}
    zarr.create_array(store=MemoryStore(made), name="a", **kwargs)
    return tuple((key[2:], made[key].to_bytes()) for key in sorted(made) if key.startswith("a/"))


def read_array_meta(kv: KVStore, path: str, zarr_format: int) -> dict[str, Any]:
    doc = load_json(kv, array_meta_key(path, zarr_format))
    if doc is None:
        raise StoreFormatError(f"no Zarr v{zarr_format} array at {kv.url}/{path}")
    return doc


def set_array_shape(
    kv: KVStore, path: str, shape: tuple[int, ...], zarr_format: int, durable: bool = True
) -> None:
    """Rewrite only the array's shape (atomically); chunks already written stay."""
    doc = read_array_meta(kv, path, zarr_format)
    doc["shape"] = list(shape)
    kv.set(array_meta_key(path, zarr_format), _dump(doc), durable=durable)
