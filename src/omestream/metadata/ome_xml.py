"""OME-XML (OME data model) built with ome-types from a StoragePlan. Pure functions."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import re
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from ome_types import OME
from ome_types import model as m

from omestream.plan import ImagePlan, StoragePlan
from omestream.settings.units import ome_xml_unit

__all__ = [
    "PLANE_KEYS",
    "FramePlanes",
    "PlaneValues",
    "build_ome",
    "frame_planes",
    "ome_dimension_map",
    "ome_dimension_order",
    "plane_index",
    "plane_records",
    "planes_in_xml",
    "render_pieces",
    "render_xml",
    "stage_label",
    "tiff_data_blocks",
    "tiff_data_text",
]

_PIXEL_TYPES = {
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "int8": "int8",
    "int16": "int16", "int32": "int32", "float32": "float", "float64": "double",
}  # fmt: skip


def render_xml(
    ome: OME,
    frames: Sequence[FramePlanes | None] = (),
    tiff_data: Sequence[Sequence[str] | None] = (),
) -> str:
    """``ome`` as OME-XML, attributes equal to the schema's defaults left out; with
    ``frames`` (per image, see :func:`frame_planes`), their planes put in each image's
    Pixels and their MapAnnotations in the StructuredAnnotations; with ``tiff_data``
    (per image, see :func:`tiff_data_text`), its TiffData elements put in each Pixels.

    ome-types' default (leave out what was never set) first walks the whole model to
    find which sequences were filled, and that walk cost as much as the rendering
    itself. Leaving out defaults instead is 2-2.5x faster and reads back as the same
    model. The frames' elements are spliced in as text where a stand-in element was
    rendered; the model is left as it was.
    """
    return "".join(render_pieces(ome, frames, tiff_data))


def render_pieces(
    ome: OME,
    frames: Sequence[FramePlanes | None] = (),
    tiff_data: Sequence[Sequence[str] | None] = (),
) -> list[str]:
    """:func:`render_xml`'s text as pieces that add up to it: the elements made as text
    are not copied into one string (a document with a plane per frame of a long
    time-lapse is tens of megabytes), so it can be written piece by piece."""
    images = [(i, f) for i, f in enumerate(frames) if f is not None and f.planes]
    blocks = [(i, t) for i, t in enumerate(tiff_data) if t]
    notes = [n for f in frames if f is not None for n in f.notes]
    kept = [(ome.images[i].pixels, ome.images[i].pixels.planes) for i, _ in images]
    kept_blocks = [
        (ome.images[i].pixels, ome.images[i].pixels.tiff_data_blocks) for i, _ in blocks
    ]
    annotations = ome.structured_annotations
    try:
        for i, _ in images:
            stand_in = m.AnnotationRef(id=f"Annotation:omestream.planes.{i}")
            ome.images[i].pixels.planes = [
                m.Plane(the_z=0, the_c=0, the_t=0, annotation_refs=[stand_in])
            ]
        for i, _ in blocks:
            ome.images[i].pixels.tiff_data_blocks = [
                m.TiffData(ifd=1, uuid=m.TiffData.UUID(value=_blocks_marker(i)))
            ]
        if notes:
            sa = annotations.model_copy() if annotations else m.StructuredAnnotations()
            stand_in_note = m.MapAnnotation(id=_NOTES_ID, value=m.Map(ms=[]))
            sa.map_annotations = [*sa.map_annotations, stand_in_note]
            ome.structured_annotations = sa
        text = ome.to_xml(exclude_unset=False, exclude_defaults=True)
    finally:
        for px, planes in kept:
            px.planes = planes
        for px, tds in kept_blocks:
            px.tiff_data_blocks = tds
        ome.structured_annotations = annotations
    splices: list[tuple[str, str, Sequence[str]]] = [
        (f'ID="Annotation:omestream.planes.{i}"', "Plane", f.planes) for i, f in images
    ]
    splices += [(f">{_blocks_marker(i)}<", "TiffData", t) for i, t in blocks]
    if notes:
        splices.append((f'ID="{_NOTES_ID}"', "MapAnnotation", notes))
    return _pieces(text, splices)


_NOTES_ID = "Annotation:omestream.notes"


def _blocks_marker(i: int) -> str:
    return f"urn:uuid:0e5e0e5e-0000-4000-8000-{i:012x}"


def _pieces(text: str, splices: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    """``text`` as pieces, each ``tag`` element holding a splice's marker (or whose child
    does) replaced by the splice's lines (or chunks of lines, see :func:`_Lines`), each
    on a line of the element's indentation."""
    spans = []
    for marker, tag, lines in splices:
        start = text.rfind(f"<{tag} ", 0, text.index(marker))
        gt = text.index(">", start)  # the end of its opening tag
        end = gt + 1 if text[gt - 1] == "/" else text.index(f"</{tag}>", gt) + len(tag) + 3
        indent = text[text.rfind("\n", 0, start) + 1 : start]
        spans.append((start, end, indent, lines))
    spans.sort(key=lambda span: span[0])
    out: list[str] = []
    done = 0
    for start, end, indent, lines in spans:
        out.append(text[done:start])
        sep = "\n" + indent
        for k, line in enumerate(lines):
            if k:
                out.append(sep)
            out.append(line)
        done = end
    out.append(text[done:])
    return out


@functools.cache
def _indents() -> dict[str, str]:
    """The indentation ome-types renders Plane, TiffData (and its UUID) and
    MapAnnotation lines with: lines made as text are joined with the same."""
    px = m.Pixels(
        dimension_order=m.Pixels_DimensionOrder("XYZCT"),
        type=m.PixelType("uint8"),
        size_x=1, size_y=1, size_z=1, size_c=1, size_t=1,
        tiff_data_blocks=[m.TiffData(uuid=m.TiffData.UUID(value=_blocks_marker(0)))],
        planes=[m.Plane(the_z=0, the_c=0, the_t=0)],
    )  # fmt: skip
    sample = OME(
        images=[m.Image(pixels=px)],
        structured_annotations=m.StructuredAnnotations(
            map_annotations=[m.MapAnnotation(value=m.Map(ms=[]))]
        ),
    )
    text = sample.to_xml(exclude_unset=False, exclude_defaults=True)

    def indent(tag: str) -> str:
        start = text.index(f"<{tag}")
        return text[text.rfind("\n", 0, start) + 1 : start]

    return {tag: indent(tag) for tag in ("Plane", "TiffData", "UUID", "MapAnnotation")}


def ome_dimension_map(image: ImagePlan) -> dict[str, str]:
    """Storage axis name -> OME letter (T, C, Z, Y, X) for the outer axes and the frame."""
    names = image.axis_names
    out = {names[-2]: "Y", names[-1]: "X"}
    free = ["T", "C", "Z"]
    by_type = {"time": "T", "channel": "C", "space": "Z"}
    pending = []
    for a in image.axes[:-2]:
        letter = by_type.get(a.type)
        if letter in free:
            out[a.name] = letter
            free.remove(letter)
        else:
            pending.append(a.name)
    for name in pending:  # custom axes take whichever OME letter is left
        out[name] = free.pop(0)
    return out


def ome_dimension_order(image: ImagePlan) -> str:
    """OME DimensionOrder (fastest first) for planes stored in the image's axis order."""
    letters = ome_dimension_map(image)
    outer = [letters[a.name] for a in reversed(image.axes[:-2])]
    rest = [x for x in "ZCT" if x not in outer]
    return "XY" + "".join(outer + rest)


def _pixels(image: ImagePlan, shape: Sequence[int], dtype: str, index: int) -> m.Pixels:
    letters = ome_dimension_map(image)
    sizes = {"T": 1, "C": 1, "Z": 1}
    kw: dict[str, Any] = {}
    for a, n in zip(image.axes, shape, strict=True):
        letter = letters[a.name]
        if letter in sizes:
            sizes[letter] = max(int(n), 1)
        unit = ome_xml_unit(a.unit)
        if letter in "XYZ" and a.scale and unit:
            kw[f"physical_size_{letter.lower()}"] = a.scale
            kw[f"physical_size_{letter.lower()}_unit"] = unit
        if letter == "T" and unit and (a.scale_given or a.scale != 1.0):
            kw["time_increment"] = a.scale
            kw["time_increment_unit"] = unit
    channels = []
    for c in range(sizes["C"]):
        ch = image.channels[c] if image.channels and c < len(image.channels) else None
        ckw: dict[str, Any] = {"id": f"Channel:{index}:{c}", "samples_per_pixel": 1}
        if ch is not None:
            ckw["name"] = ch.name
            if ch.color:
                ckw["color"] = m.Color(f"#{ch.color}")
            if ch.excitation_wavelength:
                ckw["excitation_wavelength"] = ch.excitation_wavelength
            if ch.emission_wavelength:
                ckw["emission_wavelength"] = ch.emission_wavelength
            if ch.fluorophore:
                ckw["fluor"] = ch.fluorophore
        channels.append(m.Channel(**ckw))
    return m.Pixels(
        id=f"Pixels:{index}",
        dimension_order=m.Pixels_DimensionOrder(ome_dimension_order(image)),
        type=m.PixelType(_PIXEL_TYPES[dtype]),
        size_x=int(shape[-1]),
        size_y=int(shape[-2]),
        size_z=sizes["Z"],
        size_c=sizes["C"],
        size_t=sizes["T"],
        channels=channels,
        big_endian=False,
        **kw,
    )


def build_ome(
    plan: StoragePlan,
    shapes: Sequence[Sequence[int]] | None = None,
    acquisition_date: _dt.datetime | None = None,
    metadata_only: bool = True,
) -> OME:
    """One OME Image per plan image (plus Plate/Well/WellSample for plates).

    ``shapes`` overrides the planned level-0 shape per image (e.g. the frames actually
    written to an unbounded acquisition).
    """
    date = acquisition_date or _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    images = []
    for i, im in enumerate(plan.images):
        shape = shapes[i] if shapes is not None else im.levels[0].shape
        pixels = _pixels(im, shape, plan.dtype, i)
        if metadata_only:
            pixels.metadata_only = m.MetadataOnly()
        images.append(m.Image(id=f"Image:{i}", name=im.name, acquisition_date=date, pixels=pixels))
    ome = OME(images=images, creator="omestream")
    if plan.layout == "plate" and plan.plate is not None:
        rows = list(plan.plate.row_names)
        cols = list(plan.plate.column_names)
        index_of = {im.path: i for i, im in enumerate(plan.images)}
        wells = []
        sample = 0
        for w, (r, c, fields) in enumerate(plan.wells):
            samples: list[m.WellSample] = []
            for f in fields:
                img = index_of[f"{r}/{c}/{f}"]
                samples.append(
                    m.WellSample(
                        id=f"WellSample:0:{w}:{len(samples)}",
                        index=sample,
                        image_ref=m.ImageRef(id=f"Image:{img}"),
                    )
                )
                sample += 1
            wells.append(
                m.Well(
                    id=f"Well:0:{w}", row=rows.index(r), column=cols.index(c), well_samples=samples
                )
            )
        ome.plates = [
            m.Plate(
                id="Plate:0",
                name=plan.plate.name or "Plate",
                rows=len(rows),
                columns=len(cols),
                wells=wells,
            )
        ]
    return ome


# Per-frame metadata keys that become Plane attributes: key -> (attribute, unit).
# Times without a suffix are seconds and stage positions micrometers (OME's defaults
# are s and the reference frame, so the unit is always written).
PLANE_KEYS: dict[str, tuple[str, str]] = {
    "delta_t": ("delta_t", "s"),
    "delta_t_ms": ("delta_t", "ms"),
    "exposure_time": ("exposure_time", "s"),
    "exposure_time_ms": ("exposure_time", "ms"),
    "exposure_ms": ("exposure_time", "ms"),
    "position_x": ("position_x", "µm"),
    "position_y": ("position_y", "µm"),
    "position_z": ("position_z", "µm"),
}


def _outer_sizes(image: ImagePlan, shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(max(int(n), 1) for n in shape[:-2])


def plane_index(image: ImagePlan, shape: Sequence[int], index: Sequence[int]) -> int:
    """OME plane number of a storage index: its row-major position over the outer axes.

    :func:`ome_dimension_order` lists the outer storage axes fastest first, so planes
    numbered this way are exactly the planes in DimensionOrder.
    """
    sizes = _outer_sizes(image, shape)
    n = 0
    for i, s in zip(index, sizes, strict=True):
        n = n * s + int(i)
    return n


def _zct_steps(image: ImagePlan, shape: Sequence[int]) -> list[tuple[str, int]]:
    """(letter, size) of each outer axis of ``image`` at ``shape``, fastest first: the
    digits of an OME plane number."""
    letters = ome_dimension_map(image)
    return [
        (letters[a.name], s)
        for a, s in zip(
            reversed(image.axes[:-2]), reversed(_outer_sizes(image, shape)), strict=True
        )
    ]


def _zct_of(image: ImagePlan, shape: Sequence[int]) -> Callable[[int], dict[str, int]]:
    """TheZ/TheC/TheT of an OME plane number, for ``image`` at ``shape``."""
    steps = _zct_steps(image, shape)

    def zct(plane: int) -> dict[str, int]:
        out = {"Z": 0, "C": 0, "T": 0}
        rest = plane
        for letter, size in steps:
            rest, out[letter] = divmod(rest, size)
        return out

    return zct


def stage_label(image: ImagePlan) -> m.StageLabel | None:
    """The position's stage coordinates (micrometers), when it has any."""
    p = image.position
    if p is None or (p.x_coord is None and p.y_coord is None and p.z_coord is None):
        return None
    kw: dict[str, Any] = {"name": p.name}
    for axis, value in (("x", p.x_coord), ("y", p.y_coord), ("z", p.z_coord)):
        if value is not None:
            kw[axis] = value
            kw[f"{axis}_unit"] = "µm"
    return m.StageLabel(**kw)


def _annotation_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _xml_name(model: type[Any], attr: str) -> str:
    """The XML attribute an ome-types field is written as (``delta_t`` -> ``DeltaT``)."""
    return str(model.model_fields[attr].json_schema_extra["name"])


# Plane attribute names, from ome-types' own model: key -> (attribute, unit attribute)
_PLANE_ATTRS = {
    key: (_xml_name(m.Plane, attr), _xml_name(m.Plane, f"{attr}_unit"), unit)
    for key, (attr, unit) in PLANE_KEYS.items()
}
# Characters XML 1.0 cannot hold, even escaped (control characters but tab, LF, CR)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: str) -> str:
    # a CR as is would be read back as LF (XML's line-end normalisation)
    return escape(_NOT_XML.sub("\ufffd", value), {"\r": "&#13;"})


def _xml_attr(value: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", value))


@dataclass
class FramePlanes:
    """Plane elements of one image and the MapAnnotations they refer to, as XML text.

    A long acquisition has one plane per frame; as ome-types objects, built and
    rendered, they cost ~0.75 ms and several KB each, as text a few microseconds and
    the text's size. :func:`render_xml` puts them into the rendered document.
    ``planes`` and ``notes`` hold an element each, or (``joined``, see
    :func:`frame_planes`) chunks of elements already joined line by line.
    """

    planes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_planes: int = 0
    n_notes: int = 0


# elements per chunk of joined lines: ~0.2-1 MB of text
_CHUNK = 4096


class _Lines:
    """Lines of one kind of element, optionally with sort keys, for one splice.

    ``joined``: kept as chunks of :data:`_CHUNK` lines joined with the line break and
    indentation ``tag`` elements get, so that the document holds no object per line.
    With keys, lines are sorted by key (stably): while the keys come in order, chunks
    are joined as they fill; a key out of order turns the chunks back into lines, sorted
    once all came (their lines must hold no line break: Plane elements do not).
    """

    def __init__(self, tag: str, joined: bool, keyed: bool) -> None:
        self.sep = "\n" + _indents()[tag] if joined else None
        self.keys: array[int] | None = array("q") if keyed else None
        self.chunks: list[str] = []
        self.batch: list[str] = []
        self.ordered = True
        self.last = -1
        self.count = 0

    def add(self, line: str, key: int = 0) -> None:
        self.count += 1
        if self.keys is not None:
            self.keys.append(key)
            if key < self.last and self.ordered:
                self.ordered = False
                if self.sep is not None:
                    split = [x for c in self.chunks for x in c.split(self.sep)]
                    self.chunks, self.batch = [], split + self.batch
            self.last = key
        self.batch.append(line)
        if self.sep is not None and self.ordered and len(self.batch) >= _CHUNK:
            self.chunks.append(self.sep.join(self.batch))
            self.batch = []

    def finish(self) -> list[str]:
        lines, self.batch = self.batch, []
        if self.ordered:
            if self.sep is None:
                return lines
            if lines:
                self.chunks.append(self.sep.join(lines))
            return self.chunks
        assert self.keys is not None
        order = np.argsort(np.frombuffer(self.keys, dtype=np.int64), kind="stable")
        self.keys = None
        out: list[str] = []
        for at in range(0, len(order), _CHUNK):
            part = []
            for i in order[at : at + _CHUNK].tolist():
                part.append(lines[i])
                lines[i] = ""  # each line is freed once it is in a chunk
            if self.sep is None:
                out.extend(part)
            else:
                out.append(self.sep.join(part))
        return out


def frame_planes(
    image: ImagePlan,
    shape: Sequence[int],
    records: Iterable[Mapping[str, Any]],
    annotation_start: int = 0,
    namespace: str = "omestream.frame_metadata",
    joined: bool = False,
) -> FramePlanes:
    """Plane elements (and MapAnnotations for other keys) from per-frame records.

    A record is ``{"frame": n, "index": {dimension: i, ...}, **user_keys}``. Keys in
    :data:`PLANE_KEYS` become Plane attributes; every other user key is kept in a
    MapAnnotation referenced from the plane. Records outside ``shape`` are left out.
    Planes come in T, C, Z order. ``joined``: the elements come in chunks, joined as
    :func:`render_xml` puts them in the document (a few objects for any number of
    planes).
    """
    outer = image.axis_names[:-2]
    sizes = _outer_sizes(image, shape)
    zct_of = _zct_of(image, shape)
    letters = ome_dimension_map(image)
    by_letter = {"Z": 1, "C": 1}
    for name, n in zip(outer, sizes, strict=True):
        by_letter[letters[name]] = n
    size_c, size_z = by_letter["C"], by_letter["Z"]
    planes = _Lines("Plane", joined, keyed=True)
    notes = _Lines("MapAnnotation", joined, keyed=False)
    ns = _xml_attr(namespace)
    names: dict[str, str] = {}  # keys as attribute values: the same few in every record
    for rec in records:
        where = rec.get("index", {})
        try:
            index = tuple(int(where[name]) for name in outer)
        except (KeyError, TypeError, ValueError):
            continue
        if any(i >= s for i, s in zip(index, sizes, strict=True)):
            continue
        zct = zct_of(plane_index(image, shape, index))
        attrs = {"TheZ": str(zct["Z"]), "TheT": str(zct["T"]), "TheC": str(zct["C"])}
        extra: list[str] = []
        for key, value in rec.items():
            attr = _PLANE_ATTRS.get(key)
            # TheZ/C/T say where; a plane attribute without a value is left out, while
            # other keys keep their null (a NaN reading, say) as JSON does
            if key in ("index", "frame") or (attr is not None and value is None):
                continue
            if attr is not None and isinstance(value, int | float) and math.isfinite(value):
                attrs[attr[0]] = repr(float(value))  # two keys for one attribute: the last
                attrs[attr[1]] = attr[2]
            else:
                kind = type(value)
                if kind is int or (kind is float and math.isfinite(value)):
                    text = repr(value)  # as JSON writes it, nothing to escape
                else:
                    text = _xml_text(_annotation_value(value))
                quoted = names.get(key)
                if quoted is None:
                    quoted = names[key] = _xml_attr(str(key))
                extra.append(f"<M K={quoted}>{text}</M>")
        element = "<Plane " + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + "/>"
        if extra:
            ann_id = f"Annotation:{annotation_start + notes.count}"
            notes.add(
                f'<MapAnnotation ID="{ann_id}" Namespace={ns}>'
                f"<Value>{''.join(extra)}</Value></MapAnnotation>"
            )
            element = f'{element[:-2]}><AnnotationRef ID="{ann_id}"/></Plane>'
        planes.add(element, (zct["T"] * size_c + zct["C"]) * size_z + zct["Z"])
    n_planes, n_notes = planes.count, notes.count
    return FramePlanes(planes.finish(), notes.finish(), n_planes, n_notes)


def tiff_data_blocks(
    image: ImagePlan,
    shape: Sequence[int],
    blocks: Iterable[tuple[int, int, int, int]],
    files: Sequence[tuple[str, str]] | None = None,
) -> list[m.TiffData]:
    """TiffData elements mapping OME planes to IFDs.

    ``blocks`` are (first plane, file number, first IFD, planes) in plane order, each
    a run of planes stored in consecutive IFDs of one file (see
    :meth:`omestream.tiff.pagemap.PageMap.blocks`); ``files`` lists (file name,
    ``urn:uuid:...``) per file number for multi-file datasets (UUID elements), or None
    for a single file.
    """
    out: list[m.TiffData] = []
    zct_of = _zct_of(image, shape)
    for plane, f, ifd, count in blocks:
        zct = zct_of(plane)
        kw: dict[str, Any] = {
            "ifd": ifd, "first_z": zct["Z"], "first_c": zct["C"], "first_t": zct["T"],
            "plane_count": count,
        }  # fmt: skip
        if files is not None:
            name, uuid = files[f]
            kw["uuid"] = m.TiffData.UUID(value=uuid, file_name=name)
        out.append(m.TiffData(**kw))
    return out


def tiff_data_text(
    image: ImagePlan,
    shape: Sequence[int],
    blocks: Iterable[tuple[int, int, int, int]],
    files: Sequence[tuple[str, str]] | None = None,
) -> list[str]:
    """:func:`tiff_data_blocks` as text, in chunks for :func:`render_xml`: the same
    elements as ome-types writes them, without an object per element (planes stored
    out of order, or several positions sharing a file, have one element per plane)."""
    zct_of = _zct_of(image, shape)
    indents = _indents()
    lines = _Lines("TiffData", joined=True, keyed=False)
    close = f"\n{indents['TiffData']}</TiffData>"
    for plane, f, ifd, count in blocks:
        zct = zct_of(plane)
        attrs = "".join(
            f' {name}="{value}"'
            for name, value in (
                ("IFD", ifd), ("FirstZ", zct["Z"]), ("FirstT", zct["T"]), ("FirstC", zct["C"])
            )
            if value
        )  # fmt: skip
        element = f'<TiffData{attrs} PlaneCount="{count}"'
        if files is None:
            lines.add(element + "/>")
            continue
        name, uuid = files[f]
        named = f" FileName={_xml_attr_quoted(name)}" if name else ""
        lines.add(f"{element}>\n{indents['UUID']}<UUID{named}>{_xml_text(uuid)}</UUID>{close}")
    return lines.finish()


def _xml_attr_quoted(value: str) -> str:
    """An attribute value in double quotes, as ome-types writes it."""
    return '"' + escape(_NOT_XML.sub("\ufffd", value), {'"': "&quot;"}) + '"'


@dataclass(frozen=True)
class PlaneValues:
    """One Plane element read back: where it is, and the per-frame keys it holds."""

    z: int
    c: int
    t: int
    values: dict[str, Any]


# Plane attribute and unit (as XML text) -> the per-frame keys that write it, in order
_KEYS_OF: dict[tuple[str, str], list[str]] = {}
for _key, (_attr, _unit_attr, _unit) in _PLANE_ATTRS.items():
    _KEYS_OF.setdefault((_attr, _unit), []).append(_key)
_ATTRS = {attr: unit_attr for attr, unit_attr, _ in _PLANE_ATTRS.values()}


def planes_in_xml(xml: str) -> list[list[PlaneValues]]:
    """Per Image of an OME document, its Plane elements with the per-frame keys
    :func:`frame_planes` put in them (attributes, and the values of the MapAnnotation
    each refers to), read with ElementTree: ome-types objects cost ~0.5 ms a plane.

    Values in annotations come back as JSON where they are JSON as written here,
    text otherwise (so a string that looked like a number returns as the number;
    written again, either gives the same text).
    """
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    ns = root.tag[: root.tag.find("}") + 1]  # "{namespace}" (or "" without one)
    notes: dict[str, list[tuple[str, str]]] = {}
    for ann in root.iter(f"{ns}MapAnnotation"):
        items = [(el.get("K"), el.text or "") for el in ann.iter(f"{ns}M")]
        notes[ann.get("ID", "")] = [(k, v) for k, v in items if k is not None]
    out: list[list[PlaneValues]] = []
    for image in root.iter(f"{ns}Image"):
        planes = []
        for p in image.iter(f"{ns}Plane"):
            values: dict[str, Any] = {}
            for ref in p.iter(f"{ns}AnnotationRef"):
                for k, text in notes.get(ref.get("ID", ""), ()):
                    # a number under a Plane key would have been an attribute
                    values[k] = text if k in PLANE_KEYS else _annotation_read(text)
            for attr, unit_attr in _ATTRS.items():
                value = p.get(attr)
                keys = _KEYS_OF.get((attr, p.get(unit_attr, "")), [])
                # the first key the annotation does not hold (a text value under
                # another key for the same attribute, say exposure_ms)
                key = next((k for k in keys if k not in values), None)
                if value is not None and key is not None:
                    values[key] = float(value)
            at = {k: int(p.get(k, 0)) for k in ("TheZ", "TheC", "TheT")}
            planes.append(PlaneValues(at["TheZ"], at["TheC"], at["TheT"], values))
        out.append(planes)
    return out


def plane_records(
    image: ImagePlan, shape: Sequence[int], planes: Iterable[PlaneValues]
) -> dict[tuple[int, ...], dict[str, Any]]:
    """By storage index of ``image`` at ``shape``, the per-frame keys of ``planes``
    (the inverse of :func:`frame_planes`); planes outside ``shape`` are left out."""
    sizes = _outer_sizes(image, shape)
    steps = _zct_steps(image, shape)
    out: dict[tuple[int, ...], dict[str, Any]] = {}
    for p in planes:
        where = {"Z": p.z, "C": p.c, "T": p.t}
        n, stride = 0, 1
        for letter, size in steps:
            if where[letter] >= size:
                break  # outside the shape asked for
            n += where[letter] * stride
            stride *= size
        else:
            index = tuple(int(i) for i in np.unravel_index(n, sizes)) if sizes else ()
            out[index] = p.values
    return out


def _annotation_read(text: str) -> Any:
    """A value as :func:`_annotation_value` wrote it: JSON where it is JSON written that
    way (so writing it again gives the same text), else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if _annotation_value(value) == text else text
