"""What a stream has done so far, handed to metadata writers."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from omestream.metadata.records import FrameRecords

__all__ = ["StreamState"]


@dataclass
class StreamState:
    n_images: int
    started: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    )
    frames: int = 0  # frames appended or skipped, in acquisition order
    skipped: list[int] = field(default_factory=list)
    complete: bool = False
    # per image: extent of the unbounded storage axis that holds data (None: bounded)
    extents: list[int] = field(default_factory=list)
    # per image: per-frame metadata records, in arrival order (lists of dicts are
    # converted: records are kept as JSON text, see omestream.metadata.records)
    frame_metadata: list[FrameRecords] = field(default_factory=list)
    dirty_metadata: bool = False
    # per image: channel -> display window measured from sampled frames (see
    # omestream.metadata.display); written into omero with the image's metadata
    windows: list[dict[int, tuple[float, float]]] = field(default_factory=list)
    # when ``omestream repair`` last made the dataset of an interrupted stream readable
    repaired: _dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.extents:
            self.extents = [0] * self.n_images
        if not self.frame_metadata:
            self.frame_metadata = [FrameRecords() for _ in range(self.n_images)]
        self.frame_metadata = [
            r if isinstance(r, FrameRecords) else FrameRecords(r) for r in self.frame_metadata
        ]
        if not self.windows:
            self.windows = [{} for _ in range(self.n_images)]

    def snapshot(self) -> StreamState:
        """A copy that later appends do not change (records themselves are never edited)."""
        return StreamState(
            n_images=self.n_images,
            started=self.started,
            frames=self.frames,
            skipped=list(self.skipped),
            complete=self.complete,
            extents=list(self.extents),
            frame_metadata=[r.copy() for r in self.frame_metadata],
            dirty_metadata=self.dirty_metadata,
            windows=[dict(w) for w in self.windows],
            repaired=self.repaired,
        )

    def settle(self, written: StreamState) -> None:
        """After ``written`` (a snapshot) was refreshed on disk: clear the dirty flag,
        unless records arrived since."""
        if [len(r) for r in written.frame_metadata] == [len(r) for r in self.frame_metadata]:
            self.dirty_metadata = written.dirty_metadata

    def summary(self) -> dict[str, Any]:
        out = {
            "frames": self.frames,
            "skipped": list(self.skipped),
            "complete": self.complete,
            "started": self.started.isoformat(),
        }
        if self.repaired is not None:
            out["repaired"] = self.repaired.isoformat()
        return out
