"""Per-frame metadata records of one image, kept as compact JSON text.

A long time-lapse gathers hundreds of thousands of records, and a stream keeps every
one until close (they end up in the image's attributes). As Python dicts a record of
a few numbers costs ~0.45 KB (~1.7 KB of the process's memory once made); as its
compact JSON text ~130 bytes: a stream of 200 000 frames with metadata grew by ~340 MB
with dicts and by ~60 MB with text (the records, and the copies a metadata refresh
makes). Records are encoded once, on
``append``, which also proves they are JSON; they are decoded only when read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

__all__ = ["FrameRecords", "encode_record"]


def _default(o: Any) -> Any:
    if hasattr(o, "isoformat"):  # dates and times
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def encode_record(record: Mapping[str, Any]) -> str:
    """``record`` as compact JSON text; dates become ISO text. Raises ``TypeError``
    or ``ValueError`` for what JSON cannot hold (NaN and infinities included)."""
    return json.dumps(record, default=_default, allow_nan=False, separators=(",", ":"))


class FrameRecords(Sequence[dict[str, Any]]):
    """An append-only list of records (JSON objects), stored as their JSON text.

    Reads (indexing, iteration) decode on the fly and return new dicts; a slice is a
    ``FrameRecords`` sharing the texts. ``json_array`` gives the whole list as JSON
    text without decoding anything.
    """

    __slots__ = ("_texts",)

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        if isinstance(records, FrameRecords):
            self._texts: list[str] = list(records._texts)
        else:
            self._texts = [encode_record(r) for r in records]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> FrameRecords:
        """Records from texts made by :func:`encode_record` (not checked again)."""
        out = cls()
        out._texts = list(texts)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        self._texts.append(encode_record(record))

    def append_text(self, text: str) -> None:
        """Append a record already encoded by :func:`encode_record`."""
        self._texts.append(text)

    def texts(self, start: int = 0) -> list[str]:
        """The encoded records from ``start`` on."""
        return self._texts[start:]

    def copy(self) -> FrameRecords:
        return FrameRecords.from_texts(self._texts)

    def json_array(self, indent: str | None = None) -> str:
        """The records as a JSON array: one line, or with ``indent`` (the indentation
        of the line the array starts on) one record per line, indented one step more."""
        if indent is None or not self._texts:
            return "[" + ",".join(self._texts) + "]"
        inner = indent + "  "
        return "[\n" + inner + (",\n" + inner).join(self._texts) + "\n" + indent + "]"

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> FrameRecords: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | FrameRecords:
        if isinstance(i, slice):
            return FrameRecords.from_texts(self._texts[i])
        return json.loads(self._texts[i])  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(t) for t in self._texts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameRecords):
            return self._texts == other._texts
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"FrameRecords({len(self)} records)"
