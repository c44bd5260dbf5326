"""Resume an OME-TIFF acquisition: ``create_stream(settings, resume=True)``.

A TIFF page holds one plane and is written once, so unlike OME-Zarr (see
:mod:`omestream.store.resume`) nothing is read back or replayed: the files keep the
pages of the frames already written and new pages are linked after them.

1. The record in the files' OME-XML gives the settings (they must match the given
   ones, as for OME-Zarr), the file names and their UUIDs.
2. Frames written: for a stream that never closed, the frames, in acquisition order,
   whose pages are complete in their files (a dangling last link is cut, as
   :func:`~omestream.tiff.recover` does); for one that was closed or recovered, the
   frames its record counts. Fill pages written after them for planes that never
   came (by ``close`` or ``recover``) are cut off the IFD chain (after step 4) and
   stay as dead bytes.
3. The per-frame metadata of those frames comes back from the Plane elements of the
   last document written and from the stream's journal (:mod:`omestream.tiff.journal`),
   which is deleted once the document of step 4 holds its records.
4. Before any page is cut off and before the first new page, every file that has
   pages is described as a stream still running over the pages it keeps, so an
   interruption at any later moment is recovered (or resumed) like the first.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Callable
from typing import Any

from omestream.backends.registry import load_engine
from omestream.backends.tiff import TiffBackend
from omestream.errors import SettingsError, StoreFormatError
from omestream.io.kv import open_kv
from omestream.io.locks import hold_stream
from omestream.plan import FrameRouter, StoragePlan, plan_storage
from omestream.settings import AcquisitionSettings
from omestream.store.resume import check_same_settings
from omestream.stream import OMEStream
from omestream.stream.state import StreamState
from omestream.tiff.ifd import complete_pages
from omestream.tiff.journal import drop_journal, read_tiff_journal
from omestream.tiff.layout import (
    TiffLayout,
    arrival_pages,
    declared_shapes,
    first_outer_axis,
    tiff_layout,
)
from omestream.tiff.pagemap import PageMap, plane_keys
from omestream.tiff.recover import file_uuids, find_files
from omestream.tiff.xml import read_record, resume_marks, saved_records, strip_planes

__all__ = ["resume_tiff"]


def resume_tiff(settings: AcquisitionSettings) -> OMEStream:
    """Reopen the OME-TIFF stream that wrote ``settings.output_path`` and continue
    after its last complete frame."""
    fmt = settings.format
    assert fmt is not None
    engine = load_engine(fmt.backend)
    reason = engine.check(settings)
    if reason:
        raise SettingsError(f"backend {fmt.backend!r} cannot write these settings: {reason}")
    plan = plan_storage(settings)
    release = hold_stream(settings.output_path)
    try:
        return _resume(settings, plan, release)
    except BaseException:
        release()
        raise


def _resume(
    settings: AcquisitionSettings, plan: StoragePlan, release: Callable[[], None]
) -> OMEStream:
    where = settings.output_path
    layout = tiff_layout(settings, plan)
    if not os.path.exists(where):
        raise StoreFormatError(f"{where}: nothing to resume; no OME-TIFF output here")
    try:
        folder, names, record, xml = find_files(where)
    except StoreFormatError as exc:
        raise StoreFormatError(
            f"{exc}. To start the acquisition again, pass overwrite=True without resume"
        ) from None
    if tuple(names) != tuple(layout.files):
        raise StoreFormatError(
            f"{where}: its record lists the files {names}, the settings make "
            f"{list(layout.files)}; nothing to resume here"
        )
    check_same_settings(settings, record["settings"], where)
    missing = [p for p in layout.paths if not os.path.isfile(p)]
    if missing:
        raise StoreFormatError(
            f"{missing[0]!r} is missing: the dataset lists it in its OME-XML; nothing to resume"
        )
    router = FrameRouter(settings)
    first = first_outer_axis(settings)
    keys = plane_keys(plan, first)
    pages, done = _frames_on_disk(router, layout, keys, record, where)
    old, _ = read_record(strip_planes(xml))  # the planes are read below, as text

    state = StreamState(n_images=len(plan.images), frames=done)
    with contextlib.suppress(TypeError, ValueError):
        state.started = _dt.datetime.fromisoformat(record["started"])
    journal = read_tiff_journal(where)  # records newer than the document's
    skipped = [*record.get("skipped", []), *journal.skipped]
    state.skipped = sorted({s for s in skipped if isinstance(s, int) and 0 <= s < done})
    if plan.unbounded_axis is not None:
        state.extents = [pages.extent(i) for i in range(len(plan.images))]
    extents = [max(pages.extent(i), 1) for i in range(len(plan.images))]
    shapes = declared_shapes(plan, first, extents)
    state.frame_metadata = saved_records(xml, plan, router, shapes, done, journal.records)
    del journal

    backend = TiffBackend(plan, open_kv(folder), settings.writer, settings)
    backend.adopt(list(record.get("uuids") or file_uuids(old, layout)), pages)
    backend.start(state)
    # Described first, cut after: a failure in between leaves a running stream's
    # document over pages that are all still there, which recover or resume handle.
    backend.describe_resumed()
    drop_journal(where)  # its records are in the document now; the stream starts anew
    for f, path in enumerate(layout.paths):
        if pages.pages(f):
            complete_pages(path, keep=pages.pages(f))
    backend.reopen()
    try:
        return OMEStream(settings, plan, backend.kv, backend, backend, state, release=release)
    except BaseException:
        backend.abort()
        raise


def _frames_on_disk(
    router: FrameRouter, layout: TiffLayout, keys: Any, record: dict[str, Any], where: str
) -> tuple[PageMap, int]:
    """The pages each file keeps and the frames they hold (only links to nothing cut)."""
    paths = layout.paths
    if record.get("state") == "streaming":  # killed: count what reached the disk
        # a link to nothing is cut now (as recover does): the document written next
        # goes at the end of the file, where such a link may point
        marks = resume_marks(record, len(paths))
        present = [complete_pages(p, fresh=m).pages for p, m in zip(paths, marks, strict=True)]
        # (replayed within what is present: every page counted is there)
        return arrival_pages(router, layout, keys, None, present)
    # closed or recovered: the frames the record counts, before any fill pages
    frames = record.get("frames")
    if not isinstance(frames, int) or frames < 0:
        raise StoreFormatError(f"{where}: its record has no frame count; nothing to resume")
    pages, done = arrival_pages(router, layout, keys, frames)
    if done < frames:
        raise StoreFormatError(
            f"{where}: its record counts {frames} frames, the settings hold {done}"
        )
    for f, path in enumerate(paths):
        need = pages.pages(f)
        if need and complete_pages(path, repair=False, keep=need).pages < need:
            raise StoreFormatError(
                f"{path!r} holds fewer complete pages than the {need} its record describes; "
                f"run `omestream repair {where}` first, then resume"
            )
    return pages, done
