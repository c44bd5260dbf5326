"""Repair an OME-Zarr dataset whose writer was killed before ``close()``.

What a killed stream leaves: arrays whose unbounded axis was pre-sized ahead of the
write position, a root record (``attrs["omestream"]``) with ``complete: false`` and
counts from its last metadata refresh, frame metadata in the attributes up to a
recent refresh plus newer records in the journal, and perhaps temporary files of
writes that never reached their rename. Repair finds which frames are really on
disk (from chunk files and shard indexes, not from the record), trims the arrays to
them, folds the journal into the attributes, removes temporary files and rewrites
the metadata the way a closed stream would, so the dataset can be read as it is or
resumed with ``create_stream(settings, resume=True)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from omestream.errors import ConcurrentModificationError, SettingsError, StoreFormatError
from omestream.io import zarr_nodes
from omestream.io.journal import journal_key, read_journal
from omestream.io.kv import KVStore, LocalKV, open_kv
from omestream.metadata.records import FrameRecords
from omestream.plan import FrameRouter, StoragePlan, plan_storage
from omestream.plan.growth import grown_extent
from omestream.repair.presence import frames_present, layout_from_meta
from omestream.repair.report import RepairReport
from omestream.settings import AcquisitionSettings
from omestream.stream.state import StreamState
from omestream.stream.zarr_sink import OMESTREAM_KEY, ZarrMetadataSink

__all__ = ["repair_zarr"]

#: a store written to more recently than this is probably still being written
DEFAULT_IDLE_S = 10.0


def _zarr_format(kv: KVStore, path: str) -> int:
    if kv.exists("zarr.json"):
        return 3
    if kv.exists(".zgroup") or kv.exists(".zattrs"):
        return 2
    raise StoreFormatError(f"{path} is not a Zarr group (no zarr.json or .zgroup at its root)")


def _record(kv: KVStore, path: str, fmt: int) -> tuple[dict[str, Any], AcquisitionSettings]:
    attrs = zarr_nodes.read_group_attrs(kv, "", fmt, lift_records=True)
    record = (attrs or {}).get(OMESTREAM_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise StoreFormatError(
            f"{path} has no omestream stream record (attributes['{OMESTREAM_KEY}']['settings']): "
            "it was not written by an omestream stream, so there is nothing to resume or trim"
        )
    try:
        settings = AcquisitionSettings(**record["settings"])
    except (SettingsError, TypeError) as exc:
        raise StoreFormatError(
            f"{path}: the recorded acquisition settings are invalid: {exc}"
        ) from None
    if settings.format is None or settings.format.name != "ome-zarr":
        raise StoreFormatError(
            f"{path}: the recorded settings describe {settings.format}, not OME-Zarr"
        )
    return record, settings


def _newest_change(kv: LocalKV) -> float:
    newest = 0.0
    for dirpath, _dirs, _files in os.walk(kv.root):
        try:
            newest = max(newest, os.stat(dirpath).st_mtime)
        except OSError:
            continue
    for key in ("zarr.json", ".zattrs"):
        if kv.exists(key):
            newest = max(newest, os.stat(kv.path(key)).st_mtime)
    return newest


def _saved_records(kv: KVStore, plan: StoragePlan, fmt: int, record: dict[str, Any]) -> list[Any]:
    """Per image, the frame metadata in the attributes: :class:`FrameRecords` when
    stored one record per line (texts, never all decoded), else the plain JSON value."""
    out: list[Any] = []
    for im in plan.images:
        if im.path == "":
            found = record.get("frame_metadata")
        else:
            attrs = zarr_nodes.read_group_attrs(kv, im.path, fmt, lift_records=True) or {}
            own = attrs.get(OMESTREAM_KEY)
            found = own.get("frame_metadata") if isinstance(own, dict) else None
        out.append(found if isinstance(found, FrameRecords | list) else [])
    return out


def _merge_records(
    saved: Any,
    journal: FrameRecords,
    journal_frames: Sequence[int],
    found: np.ndarray,
    spill_dir: str | None,
) -> tuple[FrameRecords, int]:
    """One image's records of the frames on disk (``found[frame]``), by frame number,
    a journal record replacing a saved one; and how many saved records there were.

    A stream saves its records in frame order and journals only later frames, so the
    texts are filtered as they are, the journal's after the saved ones: a million
    frames cost their texts, not a dict each. Any other order takes the general path.
    """
    total = len(found)
    jframes = np.asarray(journal_frames, dtype=np.int64)
    jkeep = (jframes >= 0) & (jframes < total)
    jkeep[jkeep] = found[jframes[jkeep]]
    replaced = np.zeros(total, dtype=bool)
    replaced[jframes[jkeep]] = True
    count = 0
    last = last_kept = -1
    ordered = True

    def keep(r: Any) -> bool:
        nonlocal count, last, last_kept, ordered
        if not isinstance(r, dict) or not isinstance(r.get("frame"), int):
            return False
        count += 1
        n = r["frame"]
        ordered = ordered and n > last
        last = max(last, n)
        if 0 <= n < total and found[n] and not replaced[n]:
            last_kept = n
            return True
        return False

    if isinstance(saved, FrameRecords):
        saved.spill_to(spill_dir)  # what select makes spills beside the data
        kept = saved.select(keep)
    else:
        kept = FrameRecords()
        kept.spill_to(spill_dir)
        for r in saved:
            if keep(r):
                kept.append(r)
    ours = jframes[jkeep]
    if ordered and (ours.size == 0 or (ours[0] > last_kept and bool(np.all(np.diff(ours) > 0)))):
        kept.extend_records(journal.subset(jkeep.tolist()))
        return kept, count
    # out of order or repeated frames: the last record of a frame wins, as in a dict
    by_frame: dict[int, dict[str, Any]] = {}
    for r in saved:
        if isinstance(r, dict) and isinstance(r.get("frame"), int):
            by_frame[r["frame"]] = r
    count = len(by_frame)
    by_frame.update((r["frame"], r) for r in journal)
    merged = FrameRecords()
    merged.spill_to(spill_dir)
    for n, r in sorted(by_frame.items()):
        if 0 <= n < total and found[n]:
            merged.append(r)
    return merged, count


def _started(record: dict[str, Any]) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(str(record["started"]))
    except (KeyError, ValueError):
        return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def repair_zarr(
    path: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    idle_s: float = DEFAULT_IDLE_S,
) -> RepairReport:
    kv = open_kv(path)
    if not kv.root_exists():
        raise FileNotFoundError(f"{path} does not exist")
    fmt = _zarr_format(kv, path)
    record, settings = _record(kv, path, fmt)
    interrupted = record.get("complete") is not True
    if isinstance(kv, LocalKV) and interrupted and not force and not dry_run:
        age = time.time() - _newest_change(kv)
        if age < idle_s:
            raise ConcurrentModificationError(
                f"{path} was written {age:.1f} s ago: is the acquisition still running? "
                f"Repair a dataset only after its writer stopped (wait {idle_s:.0f} s, or pass "
                "force=True / --force when you are sure)"
            )
    plan = plan_storage(settings)
    router = FrameRouter(settings)
    u = plan.unbounded_axis

    # -- what is on disk ----------------------------------------------------------------
    present: list[np.ndarray] = []
    unreadable: list[str] = []
    shapes: dict[tuple[int, int], tuple[int, ...]] = {}
    for i, im in enumerate(plan.images):
        for lv, level in enumerate(im.levels):
            apath = "/".join(p for p in (im.path, level.path) if p)
            meta = zarr_nodes.read_array_meta(kv, apath, fmt)
            layout = layout_from_meta(apath, meta)
            if len(layout.shape) != im.ndim:
                raise StoreFormatError(
                    f"array {apath} has {len(layout.shape)} axes; the recorded settings give {im.ndim}"
                )
            shapes[(i, lv)] = layout.shape
            if lv == 0:
                found_here, bad = frames_present(kv, layout)
                present.append(found_here)
                unreadable.extend(bad)
    # frame numbers of the frames on disk (work grows with the data, not the allocation)
    numbers = [router.frame_number(i, tuple(int(v) for v in idx))
               for i, p in enumerate(present) for idx in np.argwhere(p)]  # fmt: skip
    if settings.total_frames is not None:
        total = settings.total_frames
    else:
        total = max(numbers) + 1 if numbers else 0
    # Skipped frames the stream recorded count as found: a new dataset stores nothing
    # for write units of skipped frames only, as they read as the fill value anyway.
    spill_dir = os.path.dirname(os.path.abspath(kv.path(""))) if isinstance(kv, LocalKV) else None
    jkey = journal_key(plan)
    journal = read_journal(kv, jkey, spill_dir)
    recorded_skipped = record.get("skipped")
    old_skipped = recorded_skipped if isinstance(recorded_skipped, list) else []
    said_skipped = {int(s) for s in [*old_skipped, *journal.skipped] if isinstance(s, int)}
    found = np.zeros(total, dtype=bool)
    found[[n for n in numbers if n < total]] = True
    found[[s for s in said_skipped if 0 <= s < total]] = True
    missing = np.flatnonzero(~found)
    resume_at = int(missing[0]) if missing.size else total
    n_present = int(found.sum())
    extents: list[int] | None = None
    notes: list[str] = []
    if u is not None:
        extents = []
        for p in present:
            along = np.moveaxis(p, u, 0).reshape(p.shape[u], -1) if p.size else p.reshape(0, 1)
            hits = np.flatnonzero(along.any(axis=1))
            extents.append(int(hits[-1]) + 1 if hits.size else 0)
        extents, notes = _extents_to_keep(
            plan,
            router,
            shapes,
            extents,
            interrupted,
            bool(record.get("repaired")),
            record.get("frames"),
            resume_at,
        )

    # -- metadata: attributes + journal, kept for frames present ------------------------
    # a long acquisition's records wait on the data's own disk (spill_dir), not in memory
    kept: list[FrameRecords] = []
    recorded = 0
    for i, saved in enumerate(_saved_records(kv, plan, fmt, record)):
        records, n_saved = _merge_records(
            saved,
            journal.records.get(i, FrameRecords()),
            journal.frame_numbers.get(i, ()),
            found,
            spill_dir,
        )
        kept.append(records)
        recorded += n_saved
    # an interrupted stream's record ends where its frames stop being present
    skipped = sorted(s for s in said_skipped if 0 <= s < (resume_at if interrupted else total))
    complete = settings.total_frames is not None and resume_at >= settings.total_frames
    temp = sorted(kv.walk_tmp()) if isinstance(kv, LocalKV) else []

    # -- what must change ----------------------------------------------------------------
    if not interrupted:
        # a closed stream left the dataset whole: whatever differs from the data found
        # (shapes, metadata, even a damaged shard) came later, and is not repair's to undo
        notes.extend(f"shard {k} is unreadable; left as it is (the stream closed normally)"
                     for k in unreadable)  # fmt: skip
        unreadable = []
    changes: list[str] = [f"remove unreadable shard {k} (torn or corrupted; its frames count as missing)"
                          for k in unreadable]  # fmt: skip
    if u is not None:
        assert extents is not None
        for (i, lv), shape in shapes.items():
            if shape[u] != extents[i]:
                changes.append(
                    f"array {_apath(plan, i, lv)}: axis {plan.images[i].axis_names[u]!r} "
                    f"{shape[u]} -> {extents[i]} (trimmed to the frames present)"
                )
    if journal.found:
        n_journal = sum(len(r) for r in journal.records.values())
        changes.append(
            f"fold {n_journal} journal record(s) into the frame metadata and remove the journal"
            if n_journal
            else "remove the empty frame-metadata journal"
        )
    old_frames = record.get("frames")
    if interrupted and (old_frames != resume_at or record.get("complete") is not complete):
        changes.append(
            f"stream record: frames {old_frames} -> {resume_at}, complete -> {complete}"
        )
    if interrupted and sum(len(k) for k in kept) != recorded and not journal.found:
        changes.append(f"frame metadata: {recorded} -> {sum(len(k) for k in kept)} record(s)")
    if interrupted and not changes and not isinstance(record.get("repaired"), str):
        # nothing to mend, but the record must say it was checked: open_store and
        # convert refuse an interrupted dataset until then
        changes.append("stream record: marked repaired (the metadata describes the data present)")
    report = RepairReport(
        path=kv.url,
        format="ome-zarr",
        interrupted=interrupted,
        frames_expected=settings.total_frames,
        frames_present=n_present,
        resume_at=resume_at,
        time_points_complete=resume_at // router.per_outer,
        extents=extents,
        metadata_records=sum(len(k) for k in kept),
        removed_files=[os.path.relpath(t, kv.url) for t in temp],
        changes=changes,
        dry_run=dry_run,
        settings=_settings_at(settings, path),
        details={"journal_bad_lines": journal.bad_lines, "recorded_frames": old_frames},
        notes=notes,
    )
    if dry_run or (not changes and not temp):
        return report

    # -- write: data first (shapes), then the documents, like a closing stream ----------
    for t in temp:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(t)
    for k in unreadable:
        kv.delete(k)
    if not interrupted and not changes:
        return report
    if u is not None:
        assert extents is not None
        for (i, lv), shape in shapes.items():
            if shape[u] != extents[i]:
                new = list(shape)
                new[u] = extents[i]
                zarr_nodes.set_array_shape(kv, _apath(plan, i, lv), tuple(new), fmt)
    state = StreamState(
        n_images=len(plan.images),
        started=_started(record),
        frames=resume_at if interrupted else int(old_frames or resume_at),
        skipped=skipped,
        complete=complete if interrupted else bool(record.get("complete")),
        extents=list(extents) if extents is not None else [0] * len(plan.images),
        frame_metadata=kept,
        repaired=_dt.datetime.now(_dt.UTC).replace(microsecond=0) if interrupted else None,
    )
    sink = ZarrMetadataSink(kv, plan, settings)
    sink.update(state, final=True)
    if kv.exists(jkey):  # the sink of an older version may not know the journal
        kv.delete(jkey)
    return report


def _growth_ceiling(last: int, unit: int) -> int:
    """The largest extent a stream can have pre-allocated while writing index ``last`` of
    its unbounded axis.

    A stream grows only when a frame lands at or past its allocation ``a``, to
    :func:`~omestream.plan.growth.grown_extent` of ``a``; as ``a <= index`` and that
    is monotonic, the allocation never exceeds this bound (a resumed stream starts
    from the shape repair left, and grows the same way).
    """
    last = max(last, 0)
    return grown_extent(last, last + 1, unit)


def _extents_to_keep(
    plan: StoragePlan,
    router: FrameRouter,
    shapes: dict[tuple[int, int], tuple[int, ...]],
    found: list[int],
    interrupted: bool,
    repaired: bool,
    recorded: Any,
    resume_at: int,
) -> tuple[list[int], list[str]]:
    """Per image, the extent of the unbounded axis repair leaves, and notes on extents kept.

    The frames past the last one present are fill values whoever made room for them:
    the killed stream (pre-allocation) or a user (``open_store(...).append`` of fill
    values stores no chunk). Only the former may go. So:

    * a stream that closed normally trimmed its arrays itself, and a repair trimmed those
      of an interrupted one (its record says ``repaired``): every extent stays, as what
      lies past it was added afterwards (``open_store`` refuses to change an interrupted
      dataset until it is repaired);
    * an interrupted one: an image is trimmed to its frames present only while its extent
      is within what the stream itself can have allocated, judged from the furthest
      point the stream provably reached: its record's frame count, the frames present
      without a gap from frame 0 (a user's later appends start past the allocation), and
      one frame more, which it may have made room for before it was killed. A larger
      extent was grown by someone else afterwards and is kept whole (the fill frames in
      it cannot be told from the stream's own; keeping them loses nothing).
    """
    u = plan.unbounded_axis
    assert u is not None
    current = [shapes[(i, 0)][u] for i in range(len(plan.images))]
    if not interrupted or repaired:
        # closed, or repaired since the stream stopped (a resumed stream rewrites its
        # record without "repaired"): no pre-allocation is left to trim
        return current, []
    reached = [resume_at]
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        reached.append(recorded)
    last = max(router.route(n - 1).index[u] if n > 0 else -1 for n in reached) + 1
    ceiling = _growth_ceiling(last, plan.images[0].levels[0].write_unit[u])
    keep: list[int] = []
    notes: list[str] = []
    for i, (extent, shape) in enumerate(zip(found, current, strict=True)):
        if shape > ceiling and extent < shape:
            name = plan.images[i].axis_names[u]
            notes.append(
                f"array {_apath(plan, i, 0)}: axis {name!r} kept at {shape} (frames present "
                f"up to {extent}): the stream cannot have allocated more than {ceiling}, so "
                "the rest was added after it (e.g. appended fill values) and is kept"
            )
            extent = shape
        keep.append(extent)
    return keep, notes


def _apath(plan: StoragePlan, image: int, level: int) -> str:
    im = plan.images[image]
    return "/".join(p for p in (im.path, im.levels[level].path) if p)


def _settings_at(settings: AcquisitionSettings, path: str) -> AcquisitionSettings:
    """The recorded settings, pointing at where the dataset is now (it may have moved)."""
    if os.path.abspath(settings.output_path) == os.path.abspath(path) or "://" in path:
        return settings
    try:
        return settings.replace(root_path=path)
    except SettingsError:
        return settings
