"""What the record an omestream stream leaves in a dataset says about its acquisition.

Streams keep a record next to the metadata (the root group's ``omestream`` attribute
in OME-Zarr, a comment annotation in OME-TIFF): the settings, the frames appended or
skipped so far and whether the stream was closed. ``info`` turns it into "how far did
this acquisition get", the first question after an overnight run.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omestream.errors import StoreFormatError

__all__ = ["AcquisitionInfo", "acquisition_from_record", "changed_since", "refuse_unfinished"]


@dataclass(frozen=True)
class AcquisitionInfo:
    frames: int  # frames the stream appended or skipped, in acquisition order
    planned: int | None  # frames its settings describe; None: unbounded or unreadable
    skipped: int
    complete: bool  # closed by the stream itself (or, after a repair, every frame there)
    started: str | None = None  # ISO 8601
    state: str | None = None  # OME-TIFF: "streaming", "closed" or "recovered"
    repaired: str | None = None  # OME-Zarr: when ``omestream repair`` last mended it
    # unfinished only, from the dataset's stream lock: "streaming" (a stream holds it
    # now), "gone" (the stream that wrote it holds it no more); None: cannot tell
    writer: str | None = None

    @property
    def mended(self) -> bool:
        """Interrupted, then made readable by ``omestream repair``."""
        return not self.complete and (self.repaired is not None or self.state == "recovered")

    @property
    def closed_early(self) -> bool:
        return self.complete and self.planned is not None and self.frames < self.planned

    def early_close_warning(self) -> str | None:
        """What ``validate`` says of a stream closed before its last planned frame."""
        if not self.closed_early:
            return None
        return (
            f"its stream was closed after {self.frames} of {self.planned} planned frames: "
            "the frames after those were never acquired and read as the fill value"
        )


def acquisition_from_record(record: Any) -> AcquisitionInfo | None:
    """The acquisition a stream record describes, or None when there is no usable record
    (a dataset another tool wrote, or a record without a frame count)."""
    if not isinstance(record, Mapping):
        return None
    frames = record.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        return None
    skipped, started, state, repaired = (
        record.get(k) for k in ("skipped", "started", "state", "repaired")
    )
    return AcquisitionInfo(
        frames=frames,
        planned=_planned(record.get("settings")),
        skipped=len(skipped) if isinstance(skipped, list) else 0,
        complete=record.get("complete") is True,
        started=started if isinstance(started, str) else None,
        state=state if isinstance(state, str) else None,
        repaired=repaired if isinstance(repaired, str) else None,
    )


def refuse_unfinished(acq: AcquisitionInfo | None, path: str, then: str) -> None:
    """Refuse to read a dataset whose stream never closed it and that was not repaired
    since: its metadata may not describe the frames it holds (an unbounded axis stored
    grown past them, an OME-TIFF's OME-XML written whole only at close)."""
    if acq is None or acq.complete or acq.mended:
        return
    raise StoreFormatError(
        f"{path}: the stream that wrote it did not close it ({acq.frames} frames "
        "recorded): its metadata may not describe the frames it holds. If no "
        f"writer is still at work, run `omestream repair {path}` first, then {then}"
    )


def changed_since(record: Any, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Images (group path -> level-0 shape) whose shape differs from what the stream
    that closed them wrote: changed since, e.g. time points or channels appended or
    deleted with ``open_store``. One line per such image; none when the record is
    missing, unfinished or unreadable."""
    acq = acquisition_from_record(record)
    settings = _settings(record.get("settings")) if acq is not None else None
    if acq is None or not acq.complete or settings is None:
        return []
    from omestream.plan import plan_storage

    plan = plan_storage(settings)
    u = plan.unbounded_axis
    # an unbounded axis is trimmed at close to the time points the frames reached
    reached = -(-acq.frames // settings.frames_per_outer_step)
    out = []
    for im in plan.images:
        now = shapes.get(im.path)
        wrote = im.levels[0].shape
        if now is None or len(now) != len(wrote):
            continue
        moved = any(
            n > reached if a == u else n != w
            for a, (n, w) in enumerate(zip(now, wrote, strict=True))
        )
        if moved:
            was = tuple(reached if a == u else w for a, w in enumerate(wrote))
            out.append(
                f"image {im.path or '.'!r} is {now} ({''.join(im.axis_names)}); its stream "
                f"left it at most {was}: changed since the acquisition (the acquisition line "
                "describes the stream)"
            )
    return out


def _planned(settings: Any) -> int | None:
    parsed = _settings(settings)
    return parsed.total_frames if parsed is not None else None


def _settings(settings: Any) -> Any:
    """The record's AcquisitionSettings, or None."""
    if not isinstance(settings, Mapping):
        return None
    from omestream.settings import AcquisitionSettings

    # A record from another version may no longer validate: then it is unknown, which
    # is no reason to fail a description.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AcquisitionSettings(**settings)
    except Exception:
        return None
