"""Make an OME-TIFF acquisition that was cut short (killed writer) describe its data.

A killed writer leaves every page it finished linked in the file, with the OME-XML
written when the stream started. :func:`recover`:

1. reads omestream's record (settings, files) from the OME-XML of the file(s);
2. counts the complete pages of each file and cuts a dangling last IFD link;
3. replays the acquisition order to know which plane each page holds;
4. keeps, per image, the steps of the first acquisition dimension that began and
   writes fill pages for the rest of the last, partial step;
5. writes the final OME-XML to every file (crash-safely, see :mod:`omestream.tiff.ifd`),
   with the per-frame metadata of the last document and the stream's journal
   (:mod:`omestream.tiff.journal`), which it then deletes.

Running it again on a recovered or properly closed dataset changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
import uuid as _uuid
from dataclasses import dataclass

import tifffile

from omestream import __version__
from omestream.errors import StoreFormatError
from omestream.plan import FrameRouter, plan_storage
from omestream.settings import AcquisitionSettings
from omestream.tiff.ifd import complete_pages, read_description, replace_description
from omestream.tiff.journal import drop_journal, read_tiff_journal
from omestream.tiff.layout import (
    TIFF_SUFFIXES,
    TiffLayout,
    declared_shapes,
    first_outer_axis,
    tiff_layout,
)
from omestream.tiff.pagemap import PageMap, PlaneKeys, plane_keys
from omestream.tiff.pages import PageFormat
from omestream.tiff.xml import (
    assemble_ome,
    read_record,
    resume_marks,
    saved_records,
    strip_planes,
)

__all__ = ["RecoveryReport", "recover"]

_PLANE = re.compile(r"<(?:\w+:)?Plane\b")


@dataclass(frozen=True)
class RecoveryReport:
    path: str
    files: tuple[str, ...]
    frames: int  # frames (appended or skipped) found on disk
    padded: int  # fill planes written to complete the last step
    already_final: bool  # the dataset was closed (or recovered) before: nothing done
    frames_expected: int | None = None  # the acquisition's frames; None: unbounded
    time_points_complete: int = 0  # leading steps of the first dimension all present
    metadata_records: int = 0  # frames whose metadata the OME-XML keeps (as Plane elements)
    settings: AcquisitionSettings | None = None  # the acquisition's settings, as recorded
    interrupted: bool = True  # its stream never closed it (recovered before or now)


def find_files(path: str) -> tuple[str, list[str], dict, str]:
    """(folder, file names, record, xml) from a file or a folder of OME-TIFF files."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        candidates = sorted(n for n in os.listdir(path) if n.lower().endswith(TIFF_SUFFIXES))
        folder = path
    else:
        folder, name = os.path.split(path)
        candidates = [name]
    for name in candidates:
        xml = read_description(os.path.join(folder, name))
        if not xml:
            continue
        try:
            _, record = read_record(strip_planes(xml))
        except StoreFormatError:  # a description that is not OME-XML: not ours
            continue
        if record.get("settings"):
            return folder, list(record.get("files") or [name]), record, xml
    raise StoreFormatError(
        f"{path!r}: no OME-TIFF written by omestream found (no readable first page with "
        "omestream's record in its OME-XML); nothing can be recovered"
    )


def recover(
    path: str | os.PathLike[str], durable: bool = True, dry_run: bool = False
) -> RecoveryReport:
    """Describe the planes of a killed OME-TIFF acquisition; see the module docstring.

    ``path`` is the ``.ome.tiff`` file, any file of a multi-file dataset, or its folder.
    ``dry_run`` reports what would be done (frames found, fill planes) and writes nothing.
    """
    folder, names, record, xml = find_files(os.fspath(path))
    settings = AcquisitionSettings.model_validate(record["settings"])
    if record.get("state") != "streaming":
        n = int(record.get("frames", 0))
        return RecoveryReport(
            os.fspath(path), tuple(names), n, 0, True, settings.total_frames,
            n // FrameRouter(settings).per_outer, len(_PLANE.findall(xml)), settings,
            interrupted=record.get("state") == "recovered",
        )  # fmt: skip
    plan = plan_storage(settings)
    router = FrameRouter(settings)
    n_images = len(plan.images)
    single = len(names) == 1
    layout = TiffLayout(
        folder, tuple(names), (0,) * n_images if single else tuple(range(n_images))
    )
    paths = layout.paths
    for p in paths:
        if not os.path.isfile(p):
            raise StoreFormatError(f"{p!r} is missing: the dataset lists it in its OME-XML")
    marks = resume_marks(record, len(paths))  # a resume cutting fill pages off was stopped
    present = [
        complete_pages(p, repair=not dry_run, fresh=m).pages
        for p, m in zip(paths, marks, strict=True)
    ]
    first_axis = first_outer_axis(settings)
    keys = plane_keys(plan, first_axis)
    pages, frames = arrival_pages_after_crash(router, layout, keys, present)

    shapes = declared_shapes(plan, first_axis, [max(pages.extent(i), 1) for i in range(n_images)])
    missing: list[list[tuple[int, ...]]] = []
    for i, shape in enumerate(shapes):
        mine = pages.present(i)
        missing.append(
            [ix for ix in itertools.product(*(range(s) for s in shape[:-2])) if ix not in mine]
        )
    fmt = PageFormat(
        plan.dtype, plan.compression, [(lv.shape[-2], lv.shape[-1]) for lv in plan.images[0].levels],
        settings.writer.compression_level,
    )  # fmt: skip
    padded = 0
    for f, p in enumerate(paths):
        todo = [(i, ix) for i in range(n_images) if layout.image_file[i] == f for ix in missing[i]]
        if not todo or dry_run:
            padded += len(todo)
            continue
        with tifffile.TiffWriter(
            p, bigtiff=True, append="force" if present[f] > 0 else False
        ) as tw:
            for i, ix in todo:
                for level in range(fmt.n_levels):
                    first = level == 0 and not pages.pages(f)
                    args = fmt.write_args(level, xml.encode("utf-8") if first else None)
                    tw.write(PageFormat.data(fmt.fill(level, plan.fill_value)), **args)
                pages.add(f, i, ix)
                padded += 1

    old, _ = read_record(strip_planes(xml))  # the planes are read as text
    root = folder if tiff_layout(settings, plan).in_folder else paths[0]
    journal = read_tiff_journal(root)  # records newer than the document's
    records = saved_records(xml, plan, router, shapes, frames, journal.records)
    started = parse_date(record.get("started"))
    new_record = {
        **record, "version": __version__, "state": "recovered", "frames": frames,
        "skipped": sorted({s for s in [*record.get("skipped", []), *journal.skipped] if s < frames}),
        "complete": False, "padded_planes": padded,
    }  # fmt: skip
    uuids = list(record.get("uuids") or file_uuids(old, layout))
    ome = assemble_ome(plan, layout, uuids, shapes, pages, records, started, new_record)
    if not dry_run:
        for p, u in zip(paths, uuids, strict=True):
            replace_description(p, ome.pieces(u), durable=durable)
        drop_journal(root)  # its records are in the document now
    kept = sum(len(r) for r in records)
    return RecoveryReport(
        os.fspath(path), tuple(names), frames, padded, False, settings.total_frames,
        frames // router.per_outer, kept, settings,
    )  # fmt: skip


def arrival_pages_after_crash(
    router: FrameRouter, layout: TiffLayout, keys: list[PlaneKeys], present: list[int]
) -> tuple[PageMap, int]:
    from omestream.tiff.layout import arrival_pages

    return arrival_pages(router, layout, keys, None, present)


def file_uuids(old: object, layout: TiffLayout) -> list[str]:
    """Keep the UUIDs the files were written with (TiffData refer to them by name)."""
    by_name: dict[str, str] = {}
    for image in getattr(old, "images", []):
        for td in image.pixels.tiff_data_blocks:
            if td.uuid is not None and td.uuid.file_name:
                by_name[td.uuid.file_name] = td.uuid.value
    return [by_name.get(n) or f"urn:uuid:{_uuid.uuid4()}" for n in layout.files]


def parse_date(value: object) -> _dt.datetime:
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)
