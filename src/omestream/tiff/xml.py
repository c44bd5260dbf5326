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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ome_types import OME, from_xml
from ome_types import model as m

from omestream.errors import StoreFormatError
from omestream.metadata.ome_xml import (
    FramePlanes,
    build_ome,
    frame_planes,
    render_pieces,
    stage_label,
    tiff_data_text,
)
from omestream.plan import StoragePlan
from omestream.tiff.layout import TiffLayout
from omestream.tiff.pagemap import PageMap

__all__ = [
    "RECORD_NAMESPACE",
    "TiffDocument",
    "assemble_ome",
    "file_xmls",
    "read_record",
    "record_in",
    "strip_planes",
]

RECORD_NAMESPACE = "omestream.record"
_RECORD_ID = "Annotation:omestream"

# What a summary or a record never reads, and the bulk of a long acquisition's OME-XML:
# a Plane per frame, and omestream's per-frame MapAnnotations that only Planes refer
# to. Parsed into ome-types objects they cost ~0.5 ms each (20 000 planes: 11.8 s for
# `info`).
_PLANES = re.compile(r"<Plane\b[^>]*?/>|<Plane\b[^>]*>.*?</Plane>", re.DOTALL)
_FRAME_NOTES = re.compile(
    r'<MapAnnotation\b[^>]*\bNamespace="omestream\.frame_metadata"[^>]*>.*?</MapAnnotation>',
    re.DOTALL,
)


def strip_planes(xml: str) -> str:
    """OME-XML without its Plane elements and omestream's per-frame annotations."""
    return _FRAME_NOTES.sub("", _PLANES.sub("", xml))


@dataclass
class TiffDocument:
    """The OME model of a dataset, per image the planes made from its frames' metadata
    (None: the model's own planes, kept from an earlier document) and its TiffData
    elements as text, and the document's text as pieces once rendered."""

    ome: OME
    frames: list[FramePlanes | None]
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
    old: OME | None = None,
) -> TiffDocument:
    """The document for ``pages`` (per file, (image, storage index) of each IFD).

    ``shapes`` are the level-0 shapes per image to declare; pages outside them are not
    referenced. ``records`` are per-image frame metadata records; with ``old`` (a
    document read back after a crash) its planes inside the new shapes are kept.
    """
    ome = build_ome(plan, shapes, acquisition_date=started, metadata_only=False)
    ome.uuid = uuids[0]
    files = list(zip(layout.files, uuids, strict=True)) if layout.multi_file else None
    notes: list[m.MapAnnotation] = []  # kept from ``old``
    frames: list[FramePlanes | None] = []
    tiff_data: list[list[str]] = []
    n_notes = 0
    for i, (im, ome_image) in enumerate(zip(plan.images, ome.images, strict=True)):
        px = ome_image.pixels
        tiff_data.append(tiff_data_text(im, shapes[i], pages.blocks(i, shapes[i]), files))
        planes = frame_planes(im, shapes[i], records[i], annotation_start=n_notes, joined=True)
        if old is not None and i < len(old.images) and not planes.n_planes:
            px.planes, kept = _kept_planes(old, i, px, n_notes)
            notes.extend(kept)
            n_notes += len(kept)
            frames.append(None)
        else:
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
    ome.structured_annotations = m.StructuredAnnotations(
        map_annotations=notes, comment_annotations=[comment]
    )
    return TiffDocument(ome, frames, tiff_data)


def _kept_planes(
    old: OME, i: int, px: m.Pixels, start: int
) -> tuple[list[m.Plane], list[m.MapAnnotation]]:
    by_id = {
        a.id: a
        for a in (old.structured_annotations.map_annotations if old.structured_annotations else [])
    }
    planes: list[m.Plane] = []
    notes: list[m.MapAnnotation] = []
    for p in old.images[i].pixels.planes:
        if p.the_z >= px.size_z or p.the_c >= px.size_c or p.the_t >= px.size_t:
            continue
        refs = []
        for ref in p.annotation_refs:
            ann = by_id.get(ref.id)
            if ann is not None:
                new_id = f"Annotation:{start + len(notes)}"
                notes.append(ann.model_copy(update={"id": new_id}))
                refs.append(m.AnnotationRef(id=new_id))
        planes.append(p.model_copy(update={"annotation_refs": refs}))
    return planes, notes


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
