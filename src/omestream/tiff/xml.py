"""The OME-XML of an OME-TIFF acquisition: images, planes, TiffData and a record.

Every file of a multi-file dataset carries the whole document (all images, each
plane's file by UUID), differing only in the root ``UUID``, so opening any file
finds the whole dataset. The document is made once, as pieces (the model's text and
the planes, notes and TiffData made as text in chunks), and written to each file
piece by piece (:meth:`TiffDocument.pieces`): a document with one Plane per frame is
held once, not once per file or copy. omestream's own record (settings, frames, state) is a
CommentAnnotation in namespace :data:`RECORD_NAMESPACE`; :func:`omestream.tiff.recover`
reads it back.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ome_types import OME, from_xml
from ome_types import model as m

from omestream.errors import StoreFormatError
from omestream.metadata.ome_text import strip_planes
from omestream.metadata.ome_xml import (
    FramePlanes,
    build_ome,
    frame_planes,
    plane_records,
    planes_in_xml,
    render_pieces,
    stage_label,
    tiff_data_text,
)
from omestream.metadata.records import FrameRecords
from omestream.plan import FrameRouter, StoragePlan
from omestream.tiff.layout import TiffLayout
from omestream.tiff.pagemap import PageMap

__all__ = [
    "RECORD_NAMESPACE",
    "TiffDocument",
    "assemble_ome",
    "file_xmls",
    "read_record",
    "record_in",
    "resume_marks",
    "saved_records",
    "strip_planes",
]

RECORD_NAMESPACE = "omestream.record"
_RECORD_ID = "Annotation:omestream"


@dataclass
class TiffDocument:
    """The OME model of a dataset, per image the planes made from its frames' metadata
    and its TiffData elements as text, and the document's text as pieces once rendered."""

    ome: OME
    frames: list[FramePlanes]
    tiff_data: list[list[str]] = field(default_factory=list)
    _pieces: list[str] | None = None
    _uuid: str = ""

    def pieces(self, uuid: str) -> list[str]:
        """The document as stored in the file with root UUID ``uuid``: pieces to write
        one after the other. Rendered once (the text of the elements made as text is
        shared, not copied); each file's UUID is put in the first piece."""
        if self._pieces is None:
            self._uuid = self.ome.uuid or uuid
            self.ome.uuid = self._uuid
            self._pieces = render_pieces(self.ome, self.frames, self.tiff_data)
        first = f'UUID="{self._uuid}"'
        head = self._pieces[0]
        at = head.index(first)  # the root's attribute: before any element that names files
        return [f'{head[:at]}UUID="{uuid}"{head[at + len(first) :]}', *self._pieces[1:]]


def assemble_ome(
    plan: StoragePlan,
    layout: TiffLayout,
    uuids: Sequence[str],
    shapes: Sequence[Sequence[int]],
    pages: PageMap,
    records: Sequence[Iterable[Mapping[str, Any]]],
    started: _dt.datetime,
    record: Mapping[str, Any],
) -> TiffDocument:
    """The document for ``pages`` (per file, (image, storage index) of each IFD).

    ``shapes`` are the level-0 shapes per image to declare; pages outside them are not
    referenced. ``records`` are per-image frame metadata records (those of a document
    read back: :func:`saved_records`).
    """
    ome = build_ome(plan, shapes, acquisition_date=started, metadata_only=False)
    ome.uuid = uuids[0]
    files = list(zip(layout.files, uuids, strict=True)) if layout.multi_file else None
    frames: list[FramePlanes] = []
    tiff_data: list[list[str]] = []
    n_notes = 0
    for i, (im, ome_image) in enumerate(zip(plan.images, ome.images, strict=True)):
        tiff_data.append(tiff_data_text(im, shapes[i], pages.blocks(i, shapes[i]), files))
        planes = frame_planes(im, shapes[i], records[i], annotation_start=n_notes, joined=True)
        frames.append(planes)
        n_notes += planes.n_notes
        label = stage_label(im)
        if label is not None:
            ome_image.stage_label = label
    comment = m.CommentAnnotation(
        id=_RECORD_ID,
        namespace=RECORD_NAMESPACE,
        value=json.dumps(record, separators=(",", ":")),
    )
    ome.structured_annotations = m.StructuredAnnotations(comment_annotations=[comment])
    return TiffDocument(ome, frames, tiff_data)


def saved_records(
    xml: str,
    plan: StoragePlan,
    router: FrameRouter,
    shapes: Sequence[Sequence[int]],
    frames: int,
    journal: Mapping[int, Iterable[Mapping[str, Any]]] | None = None,
) -> list[FrameRecords]:
    """Per image, the records of frames before ``frames`` that the document ``xml``
    keeps as planes within ``shapes`` (read as text: :func:`planes_in_xml`), and
    those of ``journal`` (per image, records a stream journalled since: they win)."""
    planes = planes_in_xml(xml)
    kept = [
        plane_records(im, shape, planes[i] if i < len(planes) else [])
        for i, (im, shape) in enumerate(zip(plan.images, shapes, strict=True))
    ]
    del planes
    out: list[dict[int, Mapping[str, Any]]] = [{} for _ in plan.images]
    for n in range(frames):
        route = router.route(n)
        user = kept[route.image].get(route.index)
        if user is not None:
            out[route.image][n] = {"frame": n, "index": route.acquisition, **user}
    for image, records in (journal or {}).items():
        if 0 <= image < len(out):
            out[image].update((r["frame"], r) for r in records if r["frame"] < frames)
    return [FrameRecords(r for _, r in sorted(by_frame.items())) for by_frame in out]


def resume_marks(record: Mapping[str, Any], n_files: int) -> list[tuple[int, int] | None]:
    """Per file, what a resumed stream recorded before cutting fill pages off: (pages
    kept, file size then), for :func:`~omestream.tiff.ifd.complete_pages`'s ``fresh``."""
    pages, sizes = record.get("resume_pages"), record.get("resume_sizes")
    if not (isinstance(pages, list) and isinstance(sizes, list)):
        return [None] * n_files
    if len(pages) != n_files or len(sizes) != n_files:
        return [None] * n_files
    return [(int(p), int(s)) for p, s in zip(pages, sizes, strict=True)]


def file_xmls(doc: TiffDocument, uuids: Sequence[str]) -> list[str]:
    """The document as stored in each file, as one string per file (for small
    documents; :meth:`TiffDocument.pieces` writes a large one without copies)."""
    return ["".join(doc.pieces(u)) for u in uuids]


def read_record(xml: str) -> tuple[OME, dict[str, Any]]:
    """Parse a file's OME-XML and omestream's record in it (empty when absent).

    Raises StoreFormatError when ``xml`` is not an OME document (a TIFF description
    may be anything: tifffile's JSON shape, ImageJ's key=value lines).
    """
    try:
        ome = from_xml(xml, validate=False)
    except (ValueError, SyntaxError) as exc:  # SyntaxError: the XML parsers' errors
        head = " ".join(xml[:60].split())
        reason = (str(exc).splitlines() or [""])[0][:120]
        raise StoreFormatError(
            f"the TIFF description, beginning {head!r}, is not readable OME-XML "
            f"({reason}); only OME-TIFF files carry an OME document"
        ) from None
    return ome, record_in(ome)


def record_in(ome: OME) -> dict[str, Any]:
    """omestream's record in a parsed OME document (empty when absent or unreadable)."""
    sa = ome.structured_annotations
    for c in sa.comment_annotations if sa is not None else []:
        if c.namespace == RECORD_NAMESPACE:
            try:
                return dict(json.loads(c.value))
            except (ValueError, TypeError):
                break
    return {}
