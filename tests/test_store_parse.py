"""metadata.parse: NGFF 0.4/0.5 group attributes -> typed structures, or a precise error."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omestream.errors import StoreFormatError
from omestream.metadata.parse import (
    ParsedBioformats2raw,
    ParsedImage,
    ParsedPlate,
    ParsedSeries,
    ParsedWell,
    detect_version,
    ngff_content,
    parse_group,
)

AXES = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]
IMAGE = {
    "multiscales": [
        {
            "name": "img",
            "axes": AXES,
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.5, 0.5]}]},
                {"path": "1", "coordinateTransformations": [
                    {"type": "scale", "scale": [1, 1, 1.0, 1.0]},
                    {"type": "translation", "translation": [0, 0, 0.25, 0.25]},
                ]},
            ],
        }
    ],
    "omero": {"channels": [{"label": "DAPI", "color": "0000FF", "window": {"start": 0, "end": 100}}]},
}  # fmt: skip
PLATE = {
    "plate": {
        "rows": [{"name": "A"}, {"name": "B"}],
        "columns": [{"name": "1"}, {"name": "2"}],
        "wells": [{"path": "B/2", "rowIndex": 1, "columnIndex": 1}],
        "field_count": 1,
    }
}
WELL = {"well": {"images": [{"path": "0"}, {"path": "1", "acquisition": 2}]}}


def v05(content: dict[str, Any]) -> dict[str, Any]:
    return {"ome": {"version": "0.5", **copy.deepcopy(content)}}


def v04(content: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(content)
    for m in out.get("multiscales", []):
        m["version"] = "0.4"
    for k in ("plate", "well"):
        if k in out:
            out[k]["version"] = "0.4"
    return out


@pytest.mark.parametrize("wrap", [v04, v05], ids=["0.4", "0.5"])
def test_parses_every_kind(wrap: Any) -> None:
    img = parse_group(wrap(IMAGE), "x.zarr")
    assert isinstance(img, ParsedImage)
    assert img.multiscale.axis_names == ("t", "c", "y", "x")
    assert img.multiscale.datasets[1].translation == (0, 0, 0.25, 0.25)
    assert img.channels is not None and img.channels[0].label == "DAPI"
    plate = parse_group(wrap(PLATE), "p.zarr")
    assert isinstance(plate, ParsedPlate)
    assert (
        plate.rows == ("A", "B") and plate.wells[0].row == "B" and plate.wells[0].column_index == 1
    )
    well = parse_group(wrap(WELL), "p.zarr/B/2")
    assert (
        isinstance(well, ParsedWell)
        and well.images == ("0", "1")
        and well.acquisitions == (None, 2)
    )
    version = "0.5" if wrap is v05 else "0.4"
    assert detect_version(wrap(IMAGE)) == version
    assert ngff_content(wrap(IMAGE))[1]["multiscales"][0]["name"] == "img"
    b2r = {"bioformats2raw.layout": 3}
    root = parse_group(v05(b2r) if wrap is v05 else b2r, "r.zarr")
    assert isinstance(root, ParsedBioformats2raw) and root.layout == 3
    series = parse_group(wrap({"series": ["0", "1"]}), "r.zarr/OME")
    assert isinstance(series, ParsedSeries) and series.series == ("0", "1")


@pytest.mark.parametrize(
    ("attrs", "where"),
    [
        ({"foo": 1}, "no OME-Zarr"),
        ({"ome": {"version": "0.4"}}, "'ome.version'"),
        ({"multiscales": [{"version": "0.3", "axes": AXES}]}, r"multiscales\[0\]\.version"),
        (
            v05({"multiscales": [{"axes": AXES[:1], "datasets": []}]}),
            r"ome\.multiscales\[0\]\.axes",
        ),
        (
            v05(
                {
                    "multiscales": [
                        {"axes": [*AXES, {"name": "y", "type": "space"}], "datasets": []}
                    ]
                }
            ),
            "unique",
        ),
        (v05({"multiscales": [{"axes": AXES[::-1], "datasets": [{"path": "0"}]}]}), "ordered"),
        (
            v05({"multiscales": [{"axes": AXES, "datasets": [{"path": "0"}]}]}),
            r"datasets\[0\]' has no 'coordinateTransformations",
        ),
        (
            v05(
                {
                    "multiscales": [
                        {
                            "axes": AXES,
                            "datasets": [
                                {
                                    "path": "0",
                                    "coordinateTransformations": [
                                        {"type": "scale", "scale": [1, 1]}
                                    ],
                                }
                            ],
                        }
                    ]
                }
            ),
            r"scale' must hold 4 numbers",
        ),
        (
            v05(
                {
                    "plate": {
                        **PLATE["plate"],
                        "wells": [{"path": "B/2", "rowIndex": 0, "columnIndex": 1}],
                    }
                }
            ),
            r"ome\.plate\.wells\[0\]\.rowIndex",
        ),
        (
            v05(
                {
                    "plate": {
                        **PLATE["plate"],
                        "wells": [{"path": "C/2", "rowIndex": 0, "columnIndex": 1}],
                    }
                }
            ),
            "names row 'C'",
        ),
        (v05({"plate": {**PLATE["plate"], "wells": [{"path": "B2"}]}}), r"row>/<column"),
        (v05({"plate": {**PLATE["plate"], "rows": "A"}}), r"ome\.plate\.rows' must be a list"),
        (v05({"well": {"images": [{"path": "../x"}]}}), r"well\.images\[0\]\.path"),
        (v05({"omero": {"channels": []}}), "'omero' needs 'multiscales'"),
        ({"bioformats2raw.layout": 2}, "must be 3"),
    ],
)
def test_errors_say_where_and_what(attrs: dict[str, Any], where: str) -> None:
    with pytest.raises(StoreFormatError, match=where) as info:
        parse_group(attrs, "/data/x.zarr")
    assert "/data/x.zarr" in str(info.value)


def _mutations() -> st.SearchStrategy[Any]:
    junk = st.one_of(
        st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=False), st.text(max_size=3),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )  # fmt: skip
    return junk


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([v04(IMAGE), v05(IMAGE), v04(PLATE), v05(PLATE), v04(WELL), v05(WELL)]),
    pick=st.integers(0, 10_000),
    value=_mutations(),
    delete=st.booleans(),
)
def test_malformed_input_only_raises_store_format_error(
    base: dict[str, Any], pick: int, value: Any, delete: bool
) -> None:
    doc = copy.deepcopy(base)
    paths = [p for p in _paths(doc) if p]
    path = paths[pick % len(paths)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with contextlib.suppress(StoreFormatError):  # any other exception type fails the test
        parse_group(doc, "fuzz.zarr")
