"""Per-frame metadata records of one image, kept as compact JSON text.

A long time-lapse gathers hundreds of thousands of records, and a stream keeps every
one until close (they end up in the image's attributes). As Python dicts a record of
a few numbers costs ~0.45 KB (~1.7 KB of the process's memory once made); as its
compact JSON text ~130 bytes. Records are encoded once, on ``append``, which also
proves they are JSON; they are decoded only when read.

Even as text, memory would grow with the acquisition. So the texts are kept back to
back in one buffer, with 8 bytes of offset per record, and once the buffer holds
:data:`SPILL_BYTES` it moves to a file without a name (next to the data when the
stream says where, see :meth:`FrameRecords.spill_to`): a stream's records then cost
~8 bytes of memory each, and writing them out (:meth:`FrameRecords.json_parts`) reads
the file in pieces instead of building the whole array as one string.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import operator
import os
import tempfile
import threading
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

__all__ = ["SPILL_BYTES", "FrameRecords", "encode_record"]

#: texts kept in memory before they move to the spill file
SPILL_BYTES = 4 << 20
#: how much of the texts one piece of :meth:`FrameRecords.json_parts` covers
_PIECE_BYTES = 1 << 20


def _default(o: Any) -> Any:
    if hasattr(o, "isoformat"):  # dates and times
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def encode_record(record: Mapping[str, Any]) -> str:
    """``record`` as compact JSON text; dates become ISO text. Raises ``TypeError``
    or ``ValueError`` for what JSON cannot hold (NaN and infinities included)."""
    return json.dumps(record, default=_default, allow_nan=False, separators=(",", ":"))


class _Texts:
    """Append-only texts, back to back: a tail in memory, the rest in a spill file.

    Each text is stored followed by a newline (compact JSON has none of its own), so
    any range of records reads as one block of lines. Appends and reads may come from
    different threads (the stream appends while its metadata refresh reads).
    """

    __slots__ = ("__weakref__", "_close", "_fd", "_lock", "ends", "spill_dir", "spilled", "tail")

    def __init__(self) -> None:
        self.ends = array("Q")  # end offset (after the newline) of each record
        self.tail = bytearray()  # bytes from ``spilled`` on
        self.spilled = 0  # bytes in the spill file
        self.spill_dir: str | None = None
        self._fd: int | None = None
        self._close: weakref.finalize | None = None
        self._lock = threading.Lock()

    def append(self, data: bytes) -> None:
        with self._lock:
            self.tail += data
            self.ends.append(self.spilled + len(self.tail))
            if len(self.tail) >= SPILL_BYTES:
                self._spill()

    def extend(self, lines: list[bytes]) -> None:
        """Append texts given without their newline (each one line)."""
        with self._lock:
            # end of text i: start + its length and those before + i + 1 newlines,
            # summed in C (this runs once per record of a million-frame dataset)
            lengths = itertools.accumulate(map(len, lines), initial=self.spilled + len(self.tail))
            ends = map(operator.add, itertools.islice(lengths, 1, None), itertools.count(1))
            self.tail += b"\n".join(lines) + b"\n" if lines else b""
            self.ends.extend(ends)
            if len(self.tail) >= SPILL_BYTES:
                self._spill()

    def _spill(self) -> None:
        if self._fd is None:
            self._fd = _open_spill(self.spill_dir)
            if self._fd is None:
                return  # nowhere to spill: the texts stay in memory
            self._close = weakref.finalize(self, os.close, self._fd)
        view = memoryview(self.tail)
        at = self.spilled
        try:
            while view:
                n = os.pwrite(self._fd, view, at)
                view, at = view[n:], at + n
        except OSError:
            return  # a full disk: keep them in memory rather than lose them
        finally:
            view.release()
        self.spilled = at
        self.tail = bytearray()

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of the concatenation."""
        with self._lock:
            head = b""
            if start < self.spilled:
                assert self._fd is not None
                end = min(stop, self.spilled)
                head = _pread_all(self._fd, end - start, start)
                start = end
            if start >= stop:
                return head
            return head + bytes(self.tail[start - self.spilled : stop - self.spilled])


def _open_spill(directory: str | None) -> int | None:
    """A read-write file without a name in ``directory`` (else the system's temporary
    folder); None when neither takes one."""
    for where in (directory, None) if directory is not None else (None,):
        with (
            contextlib.suppress(OSError),
            tempfile.TemporaryFile(dir=where, prefix=".omestream-records-") as fh,
        ):
            return os.dup(fh.fileno())  # the file lives as long as this descriptor
    return None


def _decode(line: bytes) -> Any:
    # decoding first spares json.loads its guess of the bytes' encoding (a third of its
    # time on short records)
    return json.loads(line.decode())


def _lines(piece: bytes) -> list[bytes]:
    """The records of a piece of stored lines. Only the newline the store puts after
    each record ends one: a record may hold a CR, or U+2028 in a string."""
    return piece[:-1].split(b"\n") if piece else []


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        got = os.pread(fd, n, offset)
        if not got:
            raise OSError(f"the frame-metadata spill file ended {n} bytes early")
        parts.append(got)
        n -= len(got)
        offset += len(got)
    return b"".join(parts)


class FrameRecords(Sequence[dict[str, Any]]):
    """An append-only list of records (JSON objects), stored as their JSON text.

    Reads (indexing, iteration) decode on the fly and return new dicts. A slice or a
    :meth:`copy` is a view of the same texts, fixed at its length: later appends to
    the list it came from do not show in it, and appending to the view first gives it
    texts of its own. ``json_array`` and ``json_parts`` give the list as JSON text
    without decoding anything.
    """

    __slots__ = ("_own", "_start", "_stop", "_texts")
    _texts: _Texts
    _start: int
    _stop: int | None  # None: up to the end, which appends move
    _own: bool  # appends go to these texts (a view gets texts of its own first)

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        if isinstance(records, FrameRecords):
            self._texts, self._start = records._texts, records._start
            self._stop = records._start + len(records)
            self._own = False
            return
        self._texts = _Texts()
        self._start = 0
        self._stop = None
        self._own = True
        for r in records:
            self.append(r)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> FrameRecords:
        """Records from texts made by :func:`encode_record` (not checked again)."""
        out = cls()
        for t in texts:
            out.append_text(t)
        return out

    def extend_lines(self, lines: list[bytes]) -> None:
        """Append records given as encoded lines (compact JSON objects, checked by the
        caller), in one step."""
        self._make_own()
        self._texts.extend(lines)

    def extend_records(self, other: FrameRecords) -> None:
        """Append another list's records, their texts as they are, a piece at a time."""
        for piece in list(other._pieces()) if other._texts is self._texts else other._pieces():
            self.extend_lines(_lines(piece))

    def spill_to(self, directory: str | None) -> None:
        """Where the texts go once they outgrow memory (a folder on the stream's disk);
        None: the system's temporary folder."""
        self._texts.spill_dir = directory

    def append(self, record: Mapping[str, Any]) -> None:
        self.append_text(encode_record(record))

    def append_text(self, text: str) -> None:
        """Append a record already encoded by :func:`encode_record`."""
        if "\n" in text:  # compact JSON has none; the store separates records by it
            text = json.dumps(json.loads(text), separators=(",", ":"))
        self._make_own()
        self._texts.append(text.encode() + b"\n")

    def _make_own(self) -> None:
        """Before a view is appended to: texts of its own (what it shows stays)."""
        if self._own:
            return
        mine = _Texts()
        mine.spill_dir = self._texts.spill_dir
        for piece in self._pieces():
            mine.extend(_lines(piece))
        self._texts, self._start, self._stop, self._own = mine, 0, None, True

    def _bounds(self) -> tuple[int, int]:
        stop = len(self._texts.ends) if self._stop is None else self._stop
        return self._start, stop

    def _span(self, i: int, j: int) -> bytes:
        """The stored lines of records ``i:j`` (absolute record numbers)."""
        if i >= j:
            return b""
        ends = self._texts.ends
        return self._texts.read(ends[i - 1] if i else 0, ends[j - 1])

    def _pieces(self, first: int = 0) -> Iterator[bytes]:
        """The stored lines of records from ``first`` (relative) on, ~1 MB at a time."""
        i, stop = self._bounds()
        i += first
        ends = self._texts.ends
        while i < stop:
            base = ends[i - 1] if i else 0
            # whole records, at least one, up to a piece's size
            j = max(i + 1, bisect.bisect_right(ends, base + _PIECE_BYTES, i, stop))
            yield self._span(i, j)
            i = j

    def texts(self, start: int = 0) -> list[str]:
        """The encoded records from ``start`` on."""
        return [t.decode() for p in self._pieces(start) for t in _lines(p)]

    def subset(self, flags: Iterable[bool]) -> FrameRecords:
        """The records whose flag (one per record, in order) is true; nothing decoded."""
        out = FrameRecords()
        out.spill_to(self._texts.spill_dir)
        it = iter(flags)
        for piece in self._pieces():
            out._texts.extend([line for line in _lines(piece) if next(it)])
        return out

    def select(self, keep: Callable[[Any], bool]) -> FrameRecords:
        """The records ``keep`` accepts, kept as their texts (decoded one at a time)."""
        out = FrameRecords()
        out.spill_to(self._texts.spill_dir)
        for piece in self._pieces():
            out._texts.extend([line for line in _lines(piece) if keep(_decode(line))])
        return out

    def copy(self) -> FrameRecords:
        """A view of the records so far (cheap: nothing is copied)."""
        return FrameRecords(self)

    def json_parts(self, indent: str | None = None) -> Iterator[bytes]:
        """The records as a JSON array, in pieces of about a megabyte: one line, or
        with ``indent`` (the indentation of the line the array starts on) one record
        per line, indented one step more."""
        if indent is None or not len(self):
            sep, open_, close = b",", b"[", b"]"
        else:
            inner = indent + "  "
            sep = (",\n" + inner).encode()
            open_, close = ("[\n" + inner).encode(), ("\n" + indent + "]").encode()
        yield open_
        for n, piece in enumerate(self._pieces()):
            yield (sep if n else b"") + piece[:-1].replace(b"\n", sep)
        yield close

    def json_array(self, indent: str | None = None) -> str:
        """:meth:`json_parts` as one string."""
        return b"".join(self.json_parts(indent)).decode()

    def __len__(self) -> int:
        start, stop = self._bounds()
        return stop - start

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> FrameRecords: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | FrameRecords:
        start, stop = self._bounds()
        if isinstance(i, slice):
            a, b, step = i.indices(stop - start)
            if step != 1:
                texts = self.texts()
                return FrameRecords.from_texts(texts[a:b:step])
            view = FrameRecords(self)
            view._start, view._stop = start + a, start + max(a, b)
            return view
        n = stop - start
        if not -n <= i < n:
            raise IndexError("record index out of range")
        at = start + (i % n)
        return json.loads(self._span(at, at + 1))  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for piece in self._pieces():
            for line in _lines(piece):
                yield _decode(line)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameRecords):
            return self.texts() == other.texts()
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrameRecords.from_texts, (self.texts(),))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"FrameRecords({len(self)} records)"
