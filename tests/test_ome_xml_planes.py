"""Planes and MapAnnotations made from per-frame metadata, rendered as XML text into
the OME document (omestream.metadata.ome_xml), read back by ome-types."""

from __future__ import annotations

import json
from typing import Any

import ome_types
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from omestream import AcquisitionSettings, Dimension
from omestream.metadata.ome_xml import (
    PLANE_KEYS,
    build_ome,
    frame_planes,
    plane_records,
    planes_in_xml,
    render_xml,
)
from omestream.plan import plan_storage

SETTINGS = AcquisitionSettings(
    root_path="planes.ome.tiff",
    dimensions=[
        Dimension(name="t", count=3, type="time"),
        Dimension(name="c", count=2, type="channel"),
        Dimension(name="z", count=2, type="space"),
        Dimension(name="y", count=4),
        Dimension(name="x", count=4),
    ],
    dtype="uint8",
)
PLAN = plan_storage(SETTINGS)
SHAPE = list(PLAN.images[0].levels[0].shape)

_text = st.text(max_size=10)  # any code point: quotes, <, &, newlines, control characters
_value = (
    st.none()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | _text
    | st.lists(st.integers(0, 9), max_size=3)
)
_keys = st.sampled_from([*PLANE_KEYS, "note", "a&b", 'q"']) | _text.filter(
    lambda k: k not in ("frame", "index")
)
_user = st.dictionaries(_keys, _value, max_size=4)


def _records(user: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n, u in enumerate(user):
        t, rest = divmod(n, 4)
        c, z = divmod(rest, 2)
        out.append({"frame": n, "index": {"t": t, "c": c, "z": z}, **u})
    return out


def _xml_safe(s: str) -> str:
    return "".join(
        ch if ch in "\t\n\r" or (ch >= " " and ch not in "\ufffe\uffff") else "\ufffd" for ch in s
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_user, min_size=1, max_size=12))
def test_planes_read_back_as_recorded(user: list[dict[str, Any]]) -> None:
    records = _records(user)
    frames = frame_planes(PLAN.images[0], SHAPE, records)
    ome = build_ome(PLAN, [SHAPE])
    xml = render_xml(ome, [frames])
    back = ome_types.from_xml(xml, validate=True)
    planes = back.images[0].pixels.planes
    assert ome.images[0].pixels.planes == []  # the model is left as it was
    notes = {a.id: a for a in back.structured_annotations.map_annotations}
    by_zct = {(p.the_z, p.the_c, p.the_t): p for p in planes}
    assert len(by_zct) == len(planes) == len(records)
    assert [(p.the_t, p.the_c, p.the_z) for p in planes] == sorted(
        (p.the_t, p.the_c, p.the_z) for p in planes
    )
    for rec in records:
        i = rec["index"]
        plane = by_zct[(i["z"], i["c"], i["t"])]
        expected: dict[str, str] = {}
        attrs: dict[str, tuple[float, str]] = {}  # two keys for one attribute: the last
        for key, value in rec.items():
            attr = PLANE_KEYS.get(key)
            if key in ("frame", "index") or (attr is not None and value is None):
                continue
            if attr is not None and isinstance(value, int | float):
                attrs[attr[0]] = (float(value), attr[1])
            else:
                text = (
                    value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
                )
                expected[_xml_safe(key)] = _xml_safe(text)
        for name, (number, unit) in attrs.items():
            assert getattr(plane, name) == pytest.approx(number)
            assert getattr(plane, f"{name}_unit").value == unit
        refs = plane.annotation_refs
        assert len(refs) == (1 if expected else 0)
        if expected:
            assert {m.k: m.value for m in notes[refs[0].id].value.ms} == expected


def _document(records: list[dict[str, Any]]) -> ome_types.OME:
    frames = frame_planes(PLAN.images[0], SHAPE, records)
    return ome_types.from_xml(render_xml(build_ome(PLAN, [SHAPE]), [frames]), validate=True)


def _planes_and_notes(ome: ome_types.OME) -> list[tuple[Any, dict[str, str]]]:
    notes = {
        a.id: {m.k: m.value for m in a.value.ms}
        for a in ome.structured_annotations.map_annotations
    }
    return [
        (
            p.model_copy(update={"annotation_refs": []}),
            notes[p.annotation_refs[0].id] if p.annotation_refs else {},
        )
        for p in ome.images[0].pixels.planes
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(_user, min_size=1, max_size=12))
@example([{"delta_t": "1.5", "note": "2", "n": None}, {"exposure_ms": 3, "delta_t_ms": [1]}])
@example([{"exposure_time_ms": "", "exposure_ms": 0}])
def test_planes_read_back_into_records_write_the_same_document(
    user: list[dict[str, Any]],
) -> None:
    """A resumed OME-TIFF stream takes its earlier frames' metadata back from the
    document: written again, those records give the same planes and annotations."""
    records = _records(user)
    frames = frame_planes(PLAN.images[0], SHAPE, records)
    xml = render_xml(build_ome(PLAN, [SHAPE]), [frames])
    first = ome_types.from_xml(xml, validate=True)
    back = plane_records(PLAN.images[0], SHAPE, planes_in_xml(xml)[0])
    again = []
    for rec in records:
        i = rec["index"]
        index = (i["t"], i["c"], i["z"])
        if index in back:
            again.append({"frame": rec["frame"], "index": i, **back[index]})
    assert _planes_and_notes(_document(again)) == _planes_and_notes(first)


def test_no_frames_renders_the_model_alone() -> None:
    ome = build_ome(PLAN, [SHAPE])
    assert ome_types.from_xml(render_xml(ome)) == ome_types.from_xml(ome.to_xml())


def test_records_outside_the_shape_are_left_out() -> None:
    records = _records([{"delta_t": 1.0}] * 4)
    records.append({"frame": 99, "index": {"t": 7, "c": 0, "z": 0}, "delta_t": 2.0})
    records.append({"frame": 100, "index": {"t": 0}, "delta_t": 2.0})  # no c, z
    frames = frame_planes(PLAN.images[0], SHAPE, records)
    assert len(frames.planes) == 4


def test_summaries_parse_the_document_without_its_planes() -> None:
    """`omestream info` leaves out Plane elements (self-closing or not) and omestream's
    per-frame annotations before parsing; everything else is read as it is."""
    from types import SimpleNamespace

    from omestream.summary.tiff import ome_model

    records = _records([{"delta_t": 1.0, "note": "a"}, {"exposure_ms": 2.0}])
    ome = build_ome(PLAN, [SHAPE])
    pretty = ome.model_copy(deep=True)  # planes as ome-types writes them, over lines
    pretty.images[0].pixels.planes = [
        ome_types.model.Plane(
            the_z=0, the_c=0, the_t=0,
            annotation_refs=[ome_types.model.AnnotationRef(id="Annotation:9")],
        )
    ]  # fmt: skip
    for xml in (render_xml(ome, [frame_planes(PLAN.images[0], SHAPE, records)]), pretty.to_xml()):
        assert "<Plane" in xml
        parsed = ome_model(SimpleNamespace(ome_metadata=xml))
        assert parsed is not None
        assert parsed.images[0].pixels.planes == []
        assert parsed.images[0].pixels.size_t == 3
        assert [c.name for c in parsed.images[0].pixels.channels] == [
            c.name for c in ome.images[0].pixels.channels
        ]
        sa = parsed.structured_annotations
        assert sa is None or not sa.map_annotations
