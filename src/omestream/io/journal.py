"""An append-only journal of per-frame metadata, for long acquisitions on local disks.

Frame metadata lives in the image groups' attributes, and a stream refreshes them on
its metadata cadence. Rewriting the whole list every second costs time that grows
with the acquisition (a 12-hour time-lapse holds hundreds of thousands of records).
So while streaming, new records are appended to this journal (cost: the new records
only), and the full attributes are rewritten only when the list has doubled since the
last rewrite, which bounds the total cost to about twice the final document. The
final ``close`` writes everything into the attributes and deletes the journal; after
a crash, ``omestream repair`` folds it back.

The file sits inside the level-0 array folder of the first image, where Zarr readers
never look (they list groups, not array folders), and never inside group folders.
Each line is one JSON object; a line cut short by a power failure is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from array import array
from dataclasses import dataclass, field
from typing import Any

from omestream.io.kv import KVStore, LocalKV, _write_error
from omestream.metadata.records import FrameRecords, encode_record
from omestream.plan import StoragePlan

__all__ = ["JOURNAL_NAME", "JournalContents", "MetadataJournal", "journal_key", "read_journal"]

JOURNAL_NAME = ".omestream-journal.jsonl"
#: below this many records the attributes are cheap to rewrite on every refresh
SMALL = 2000


def journal_key(plan: StoragePlan) -> str:
    im = plan.images[0]
    return "/".join(p for p in (im.path, im.levels[0].path, JOURNAL_NAME) if p)


class MetadataJournal:
    """Appends what a stream's state gained since the previous refresh."""

    def __init__(self, kv: LocalKV, key: str, n_images: int) -> None:
        self.kv = kv
        self.key = key
        self._sent = [0] * n_images
        self._skipped_sent = 0
        self._frames_sent = -1
        self._full_at = 0

    @classmethod
    def for_plan(cls, kv: KVStore, plan: StoragePlan) -> MetadataJournal | None:
        """A journal for local stores; object stores cannot append and keep full rewrites."""
        if not isinstance(kv, LocalKV):
            return None
        return cls(kv, journal_key(plan), len(plan.images))

    def skip_to(self, state: Any) -> None:
        """Take what ``state`` holds now as journalled (stored elsewhere already)."""
        self._sent = [len(r) for r in state.frame_metadata]
        self._skipped_sent = len(state.skipped)
        self._frames_sent = state.frames

    def absorb(self, state: Any) -> bool:
        """Journal what is new in ``state``; True when the full rewrite can be skipped."""
        lines: list[str] = []
        for i, records in enumerate(state.frame_metadata):
            lines.extend(f'{{"image":{i},"record":{t}}}' for t in records.texts(self._sent[i]))
            self._sent[i] = len(records)
        skipped = state.skipped[self._skipped_sent :]
        if skipped or state.frames != self._frames_sent:
            lines.append(json.dumps({"state": {"frames": state.frames, "skipped": skipped}}))
            self._skipped_sent = len(state.skipped)
            self._frames_sent = state.frames
        if lines:
            self._append(("\n".join(lines) + "\n").encode())
        total = sum(self._sent)
        if total <= SMALL or total >= 2 * self._full_at:
            self._full_at = total
            return False
        return True

    def _append(self, data: bytes) -> None:
        path = self.kv.path(self.key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(exc, path) from exc

    def finish(self) -> None:
        """Everything is in the attributes now: the journal is no longer needed."""
        with contextlib.suppress(OSError):
            os.unlink(self.kv.path(self.key))


@dataclass
class JournalContents:
    #: per image, the records in the order they were journalled (kept as text: a
    #: crashed long acquisition may journal hundreds of thousands)
    records: dict[int, FrameRecords] = field(default_factory=dict)
    #: per image, the frame number of each of those records
    frame_numbers: dict[int, array[int]] = field(default_factory=dict)
    frames: int = 0
    skipped: list[int] = field(default_factory=list)
    bad_lines: int = 0
    found: bool = False


# how MetadataJournal.absorb writes a record line: its record's compact text is kept as is
_RECORD_LINE = re.compile(rb'\{"image":(\d+),"record":(\{.*\})\}')
_BATCH = 4096  # record lines handed to FrameRecords at once


def read_journal(kv: KVStore, key: str, spill_dir: str | None = None) -> JournalContents:
    """Read a journal, skipping lines that are not whole JSON objects of the known kinds.

    Each line is parsed once as a check; records keep their text (spilled to
    ``spill_dir`` once large, see :class:`FrameRecords`).
    """
    out = JournalContents()
    raw = kv.get(key)
    if raw is None:
        return out
    out.found = True
    pending: dict[int, list[bytes]] = {}

    def hand_over(image: int) -> None:
        records = out.records.get(image)
        if records is None:
            records = out.records[image] = FrameRecords()
            records.spill_to(spill_dir)
        records.extend_lines(pending.pop(image))

    start = 0
    while start < len(raw):
        stop = raw.find(b"\n", start)
        stop = len(raw) if stop < 0 else stop
        line, start = raw[start:stop], stop + 1
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode())
            if "record" in entry:
                image, record = int(entry["image"]), entry["record"]
                if not isinstance(record, dict) or not isinstance(record.get("frame"), int):
                    raise ValueError("record without a frame number")
                m = _RECORD_LINE.fullmatch(line)
                if m is not None and len(entry) == 2 and int(m.group(1)) == image:
                    text = m.group(2)
                else:  # written some other way: stored as a stream would store it
                    text = encode_record(record).encode()
                # first the number: one past 64 bits raises here, before anything is kept
                out.frame_numbers.setdefault(image, array("q")).append(record["frame"])
                lines = pending.setdefault(image, [])
                lines.append(text)
                if len(lines) >= _BATCH:
                    hand_over(image)
            else:
                st = entry["state"]
                out.frames = max(out.frames, int(st["frames"]))
                out.skipped.extend(int(s) for s in st["skipped"])
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            out.bad_lines += 1
    for image in list(pending):
        hand_over(image)
    return out
