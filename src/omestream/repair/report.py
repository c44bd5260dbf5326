"""What ``repair`` found in a dataset and what it changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omestream.settings import AcquisitionSettings

__all__ = ["RepairReport"]


@dataclass
class RepairReport:
    path: str
    format: str  # "ome-zarr" | "ome-tiff"
    interrupted: bool  # the writer never finished (no close())
    frames_expected: int | None  # None for an unbounded acquisition
    frames_present: int  # frames whose pixels are all on disk
    resume_at: int  # first frame (acquisition order) missing: where a resumed stream continues
    time_points_complete: int  # leading steps of the first dimension with every frame present
    extents: list[int] | None = None  # per image, extent of the unbounded axis after repair
    metadata_records: int = 0  # per-frame metadata records kept
    removed_files: list[str] = field(default_factory=list)  # leftover temporary files
    changes: list[str] = field(default_factory=list)  # what was (or, dry run, would be) changed
    dry_run: bool = False
    settings: AcquisitionSettings | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was found and deliberately left

    @property
    def complete(self) -> bool:
        return self.frames_expected is not None and self.resume_at >= self.frames_expected

    @property
    def last_complete_time_point(self) -> int | None:
        """Index of the last step of the first dimension that holds all its frames."""
        return self.time_points_complete - 1 if self.time_points_complete else None

    def summary(self) -> str:
        expected = "unbounded" if self.frames_expected is None else str(self.frames_expected)
        state = "interrupted" if self.interrupted else "closed normally"
        lines = [
            f"{self.path} ({self.format}): {state}",
            f"frames present: {self.frames_present} of {expected}",
            f"resume at frame: {self.resume_at}",
            "last complete time point: "
            + (
                "none"
                if self.last_complete_time_point is None
                else str(self.last_complete_time_point)
            ),
        ]
        if self.extents is not None:
            lines.append(f"unbounded axis extent per image: {self.extents}")
        lines.append(f"frame metadata records: {self.metadata_records}")
        if self.removed_files:
            verb = "would remove" if self.dry_run else "removed"
            lines.append(f"{verb} {len(self.removed_files)} leftover temporary file(s)")
        if self.notes:
            lines.append("left as it is:")
            lines.extend(f"  - {n}" for n in self.notes)
        if self.changes:
            lines.append("would change:" if self.dry_run else "changed:")
            lines.extend(f"  - {c}" for c in self.changes)
        elif not self.interrupted:
            lines.append("nothing to repair: the writer closed the dataset normally")
        else:
            lines.append("nothing to change: the metadata describes the data present")
        return "\n".join(lines)

    def resume(self, **storage_options: Any) -> Any:
        """Open a stream that continues the acquisition at :attr:`resume_at`."""
        from omestream.errors import OmeStreamError
        from omestream.stream import create_stream

        if self.settings is None:
            raise OmeStreamError(f"{self.path}: no acquisition settings recorded; cannot resume")
        if self.dry_run:
            raise OmeStreamError(f"{self.path}: run repair without dry_run before resuming")
        return create_stream(self.settings, resume=True, **storage_options)
