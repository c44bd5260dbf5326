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
from dataclasses import dataclass, field
from typing import Any

from omestream.io.kv import KVStore, LocalKV, _write_error
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
    records: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    frames: int = 0
    skipped: list[int] = field(default_factory=list)
    bad_lines: int = 0
    found: bool = False


def read_journal(kv: KVStore, key: str) -> JournalContents:
    """Read a journal, skipping lines that are not whole JSON objects of the known kinds."""
    out = JournalContents()
    raw = kv.get(key)
    if raw is None:
        return out
    out.found = True
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if "record" in entry:
                image, record = int(entry["image"]), entry["record"]
                if not isinstance(record, dict) or not isinstance(record.get("frame"), int):
                    raise ValueError("record without a frame number")
                out.records.setdefault(image, []).append(record)
            else:
                st = entry["state"]
                out.frames = max(out.frames, int(st["frames"]))
                out.skipped.extend(int(s) for s in st["skipped"])
        except (ValueError, KeyError, TypeError, AttributeError):
            out.bad_lines += 1
    return out
