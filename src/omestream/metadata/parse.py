"""Parse NGFF 0.4/0.5 group attributes into typed, frozen structures. Pure functions.

The entry points are :func:`parse_group` (one group's attributes ->
:class:`ParsedImage` | :class:`ParsedPlate` | :class:`ParsedWell` |
:class:`ParsedBioformats2raw` | :class:`ParsedSeries` | :class:`ParsedLabels`),
:func:`parse_image_label` (a label image's ``image-label`` object),
:func:`detect_version` and :func:`ngff_content` (the version-neutral content: the
``"ome"`` object in 0.5, the top level in 0.4). Malformed input raises
:class:`StoreFormatError` naming the group, the attribute
(``ome.plate.wells[3].rowIndex``), what was expected and what was found; never a bare
``KeyError``/``TypeError``.

Every parsed object keeps ``raw``, the content it was read from, so callers that
rewrite a document can keep keys written by other tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omestream.errors import StoreFormatError

__all__ = [
    "SUPPORTED_VERSIONS",
    "Axis",
    "ImageLabel",
    "LabelColor",
    "Multiscale",
    "OmeroChannel",
    "ParsedBioformats2raw",
    "ParsedImage",
    "ParsedLabels",
    "ParsedNode",
    "ParsedPlate",
    "ParsedSeries",
    "ParsedWell",
    "PlateWell",
    "ScaleLevel",
    "detect_version",
    "has_ngff",
    "ngff_content",
    "parse_group",
    "parse_image_label",
]

SUPPORTED_VERSIONS = ("0.4", "0.5")
_NGFF_KEYS = (
    "multiscales",
    "omero",
    "image-label",
    "plate",
    "well",
    "labels",
    "bioformats2raw.layout",
    "series",
)
# keys that only describe an image: a group with one of them needs 'multiscales' too
_IMAGE_ONLY_KEYS = ("omero", "image-label")
_TYPE_ORDER = {"time": 0, "channel": 1, "space": 3}  # any other (custom) type sorts as 2


@dataclass(frozen=True)
class Axis:
    name: str
    type: str | None = None
    unit: str | None = None


@dataclass(frozen=True)
class ScaleLevel:
    """One entry of ``multiscales[i].datasets``."""

    path: str
    scale: tuple[float, ...]
    translation: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Multiscale:
    axes: tuple[Axis, ...]
    datasets: tuple[ScaleLevel, ...]
    name: str | None = None
    type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def axis_index(self, name: str) -> int:
        """Position of axis ``name``; StoreFormatError-free lookup is ``name in axis_names``."""
        return self.axis_names.index(name)


@dataclass(frozen=True)
class OmeroChannel:
    label: str | None
    color: str | None
    window: dict[str, float] | None = None
    active: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class LabelColor:
    """One entry of ``image-label.colors``: a label value and its display colour."""

    value: int
    rgba: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class ImageLabel:
    """The ``image-label`` object of a label image (every key is optional)."""

    colors: tuple[LabelColor, ...] = ()
    property_values: tuple[int, ...] = ()  # the label-value of each properties entry
    source_image: str | None = None  # relative path to the labelled image
    version: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedImage:
    path: str
    version: str
    multiscales: tuple[Multiscale, ...]
    channels: tuple[OmeroChannel, ...] | None = None  # None: no omero block
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    image_label: ImageLabel | None = None  # set for a label image

    @property
    def is_label(self) -> bool:
        return self.image_label is not None

    @property
    def multiscale(self) -> Multiscale:
        """The first (by spec, the default) multiscale."""
        return self.multiscales[0]


@dataclass(frozen=True)
class PlateWell:
    path: str
    row: str
    column: str
    row_index: int
    column_index: int


@dataclass(frozen=True)
class ParsedPlate:
    path: str
    version: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    wells: tuple[PlateWell, ...]
    name: str | None = None
    field_count: int | None = None
    acquisitions: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedWell:
    path: str
    version: str
    images: tuple[str, ...]  # field-of-view paths, in document order
    acquisitions: tuple[int | None, ...] = ()  # per image, when given
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedBioformats2raw:
    """A bioformats2raw root; the series list lives in its ``OME`` group (ParsedSeries)."""

    path: str
    version: str
    layout: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedSeries:
    """The ``OME`` group of a bioformats2raw root: the image paths, in order."""

    path: str
    version: str
    series: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedLabels:
    """The ``labels`` group inside an image: the paths of its label images, in order."""

    path: str
    version: str
    labels: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


ParsedNode = (
    ParsedImage | ParsedPlate | ParsedWell | ParsedBioformats2raw | ParsedSeries | ParsedLabels
)


# -- helpers -------------------------------------------------------------------


class _Where:
    """Builds 'group: attribute problem' messages."""

    def __init__(self, path: str, prefix: str) -> None:
        self.path = path or "."
        self.prefix = prefix

    def fail(self, key: str, problem: str) -> StoreFormatError:
        loc = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)
        return StoreFormatError(f"{self.path}: attribute '{loc}' {problem}")


def _found(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _obj(w: _Where, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise w.fail(key, f"must be a JSON object, found {_found(value)}")
    return value


def _list(w: _Where, key: str, value: Any, non_empty: bool = True) -> list[Any]:
    if not isinstance(value, list):
        raise w.fail(key, f"must be a list, found {_found(value)}")
    if non_empty and not value:
        raise w.fail(key, "must not be empty")
    return value


def _str(w: _Where, key: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise w.fail(key, f"must be a non-empty string, found {_found(value)}")
    return value


def _int(w: _Where, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise w.fail(key, f"must be an integer >= {minimum}, found {_found(value)}")
    return value


def _numbers(w: _Where, key: str, value: Any, n: int) -> tuple[float, ...]:
    vals = _list(w, key, value)
    if len(vals) != n:
        raise w.fail(key, f"must hold {n} numbers (one per axis), found {len(vals)}")
    for i, v in enumerate(vals):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise w.fail(f"{key}[{i}]", f"must be a number, found {_found(v)}")
    return tuple(float(v) for v in vals)


# -- version -------------------------------------------------------------------


def has_ngff(attrs: dict[str, Any]) -> bool:
    """Whether ``attrs`` carries any NGFF content (0.4 top-level keys or a 0.5 ``ome``)."""
    if not isinstance(attrs, dict):
        return False
    if isinstance(attrs.get("ome"), dict):
        return True
    return any(k in attrs for k in _NGFF_KEYS)


def detect_version(attrs: dict[str, Any], path: str = "") -> str | None:
    """``"0.5"``, ``"0.4"`` or None (no NGFF content); other versions raise StoreFormatError.

    0.5 is an ``ome`` object with ``"version": "0.5"``. 0.4 keeps its keys at the top
    level with ``version`` inside multiscales/plate/well; a 0.4-style group that
    names no version (e.g. a bioformats2raw root) is taken as 0.4.
    """
    w = _Where(path, "")
    if not isinstance(attrs, dict):
        raise w.fail("", f"group attributes must be a JSON object, found {_found(attrs)}")
    if "ome" in attrs:
        ome = _obj(w, "ome", attrs["ome"])
        version = ome.get("version")
        if version not in SUPPORTED_VERSIONS or version == "0.4":
            raise w.fail(
                "ome.version",
                f"must be '0.5' (NGFF 0.5 keeps metadata under 'ome'), found {_found(version)}",
            )
        return "0.5"
    if not has_ngff(attrs):
        return None
    found: set[str] = set()
    for key in ("multiscales", "plate", "well"):
        value = attrs.get(key)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict) and "version" in item:
                v = item["version"]
                if v not in SUPPORTED_VERSIONS:
                    where = f"{key}[{i}].version" if isinstance(value, list) else f"{key}.version"
                    raise w.fail(
                        where,
                        f"names NGFF version {_found(v)}; supported: {SUPPORTED_VERSIONS}",
                    )
                found.add(v)
    if "0.5" in found:
        raise w.fail(
            "", "says version 0.5 but keeps its metadata at the top level, not under 'ome'"
        )
    return "0.4"


def ngff_content(attrs: dict[str, Any], path: str = "") -> tuple[str | None, dict[str, Any]]:
    """``(version, content)``: the 0.5 ``ome`` object, or the 0.4 top level's NGFF keys."""
    version = detect_version(attrs, path)
    if version is None:
        return None, {}
    if version == "0.5":
        return version, {k: v for k, v in attrs["ome"].items() if k != "version"}
    return version, {k: attrs[k] for k in _NGFF_KEYS if k in attrs}


# -- parsers -------------------------------------------------------------------


def _axes(w: _Where, key: str, value: Any) -> tuple[Axis, ...]:
    items = _list(w, key, value)
    if not 2 <= len(items) <= 5:
        raise w.fail(key, f"must hold 2 to 5 axes, found {len(items)}")
    axes: list[Axis] = []
    for i, item in enumerate(items):
        k = f"{key}[{i}]"
        if isinstance(item, str):  # tolerated: bare names as in NGFF <= 0.3 writers
            axes.append(Axis(item, "space" if item in "zyx" else None))
            continue
        a = _obj(w, k, item)
        name = _str(w, f"{k}.name", a.get("name"))
        typ = _str(w, f"{k}.type", a.get("type"), optional=True)
        unit = _str(w, f"{k}.unit", a.get("unit"), optional=True)
        assert name is not None
        axes.append(Axis(name, typ, unit))
    names = [a.name for a in axes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise w.fail(key, f"must have unique names, found {dupes} more than once")
    types = [a.type for a in axes]
    n_space = types.count("space")
    if not 2 <= n_space <= 3:
        raise w.fail(key, f"must hold 2 or 3 axes of type 'space', found {n_space} in {names}")
    for t in ("time", "channel"):
        if types.count(t) > 1:
            raise w.fail(key, f"may hold at most one axis of type {t!r}, found {types.count(t)}")
    order = [_TYPE_ORDER.get(t or "", 2) for t in types]
    if order != sorted(order):
        raise w.fail(key, f"must be ordered time, channel/custom, then space axes; found {names}")
    return tuple(axes)


def _transforms(
    w: _Where, key: str, value: Any, ndim: int
) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
    items = _list(w, key, value)
    scale: tuple[float, ...] | None = None
    translation: tuple[float, ...] | None = None
    for i, item in enumerate(items):
        k = f"{key}[{i}]"
        t = _obj(w, k, item)
        typ = t.get("type")
        if typ == "scale":
            if scale is not None or i != 0:
                raise w.fail(k, "must be the only 'scale' transform and come first")
            scale = _numbers(w, f"{k}.scale", t.get("scale"), ndim)
        elif typ == "translation":
            if scale is None or translation is not None:
                raise w.fail(k, "must follow the 'scale' transform and appear at most once")
            translation = _numbers(w, f"{k}.translation", t.get("translation"), ndim)
        elif typ == "identity":
            raise w.fail(k, "must be 'scale' (and optionally 'translation'), found 'identity'")
        else:
            raise w.fail(f"{k}.type", f"must be 'scale' or 'translation', found {_found(typ)}")
    if scale is None:
        raise w.fail(key, "must start with a 'scale' transform")
    return scale, translation


def _multiscale(w: _Where, key: str, value: Any) -> Multiscale:
    m = _obj(w, key, value)
    if "axes" not in m:
        raise w.fail(key, "has no 'axes' (required since NGFF 0.4)")
    axes = _axes(w, f"{key}.axes", m["axes"])
    if "datasets" not in m:
        raise w.fail(key, "has no 'datasets'")
    levels: list[ScaleLevel] = []
    paths: set[str] = set()
    for i, item in enumerate(_list(w, f"{key}.datasets", m["datasets"])):
        k = f"{key}.datasets[{i}]"
        d = _obj(w, k, item)
        p = _str(w, f"{k}.path", d.get("path"))
        assert p is not None
        if p in paths:
            raise w.fail(f"{k}.path", f"repeats the dataset path {p!r}")
        paths.add(p)
        if "coordinateTransformations" not in d:
            raise w.fail(k, "has no 'coordinateTransformations' (required since NGFF 0.4)")
        scale, translation = _transforms(
            w, f"{k}.coordinateTransformations", d["coordinateTransformations"], len(axes)
        )
        levels.append(ScaleLevel(p, scale, translation))
    if "coordinateTransformations" in m:
        _transforms(
            w, f"{key}.coordinateTransformations", m["coordinateTransformations"], len(axes)
        )
    return Multiscale(
        axes=axes,
        datasets=tuple(levels),
        name=_str(w, f"{key}.name", m.get("name"), optional=True),
        type=_str(w, f"{key}.type", m.get("type"), optional=True),
        raw=m,
    )


def _omero(w: _Where, key: str, value: Any) -> tuple[OmeroChannel, ...]:
    o = _obj(w, key, value)
    out: list[OmeroChannel] = []
    for i, item in enumerate(_list(w, f"{key}.channels", o.get("channels"), non_empty=False)):
        k = f"{key}.channels[{i}]"
        ch = _obj(w, k, item)
        window = ch.get("window")
        win: dict[str, float] | None = None
        if window is not None:
            wd = _obj(w, f"{k}.window", window)
            for wk, wv in wd.items():
                if isinstance(wv, bool) or not isinstance(wv, int | float):
                    raise w.fail(f"{k}.window.{wk}", f"must be a number, found {_found(wv)}")
            win = {wk: float(wv) for wk, wv in wd.items()}
        active = ch.get("active")
        if active is not None and not isinstance(active, bool):
            raise w.fail(f"{k}.active", f"must be true or false, found {_found(active)}")
        label = ch.get("label")
        if label is not None and not isinstance(label, str):
            raise w.fail(f"{k}.label", f"must be a string, found {_found(label)}")
        color = ch.get("color")
        if color is not None and not isinstance(color, str):
            raise w.fail(f"{k}.color", f"must be a hex colour string, found {_found(color)}")
        out.append(OmeroChannel(label, color, win, active, raw=ch))
    return tuple(out)


def _names(w: _Where, key: str, value: Any) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(_list(w, key, value)):
        n = _str(w, f"{key}[{i}].name", _obj(w, f"{key}[{i}]", item).get("name"))
        assert n is not None
        if n in names:
            raise w.fail(f"{key}[{i}].name", f"repeats {n!r}")
        names.append(n)
    return tuple(names)


def _plate(w: _Where, path: str, version: str, value: Any) -> ParsedPlate:
    p = _obj(w, "plate", value)
    rows = _names(w, "plate.rows", p.get("rows"))
    cols = _names(w, "plate.columns", p.get("columns"))
    wells: list[PlateWell] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(w, "plate.wells", p.get("wells"), non_empty=False)):
        k = f"plate.wells[{i}]"
        wd = _obj(w, k, item)
        wp = _str(w, f"{k}.path", wd.get("path"))
        assert wp is not None
        parts = wp.split("/")
        if len(parts) != 2 or not all(parts):
            raise w.fail(f"{k}.path", f"must be '<row>/<column>', found {wp!r}")
        if wp in seen:
            raise w.fail(f"{k}.path", f"repeats the well {wp!r}")
        seen.add(wp)
        r, c = parts
        if r not in rows:
            raise w.fail(f"{k}.path", f"names row {r!r}, which is not in plate.rows {list(rows)}")
        if c not in cols:
            raise w.fail(
                f"{k}.path", f"names column {c!r}, which is not in plate.columns {list(cols)}"
            )
        ri = wd.get(
            "rowIndex", rows.index(r) if version == "0.4" and "rowIndex" not in wd else None
        )
        ci = wd.get(
            "columnIndex", cols.index(c) if version == "0.4" and "columnIndex" not in wd else None
        )
        if ri is None or ci is None:
            raise w.fail(k, "must give 'rowIndex' and 'columnIndex'")
        ri = _int(w, f"{k}.rowIndex", ri)
        ci = _int(w, f"{k}.columnIndex", ci)
        if ri >= len(rows) or rows[ri] != r:
            raise w.fail(
                f"{k}.rowIndex", f"must point at row {r!r} (index {rows.index(r)}), found {ri}"
            )
        if ci >= len(cols) or cols[ci] != c:
            raise w.fail(
                f"{k}.columnIndex",
                f"must point at column {c!r} (index {cols.index(c)}), found {ci}",
            )
        wells.append(PlateWell(wp, r, c, ri, ci))
    fc = p.get("field_count")
    acq = p.get("acquisitions")
    acquisitions: tuple[dict[str, Any], ...] = ()
    if acq is not None:
        acquisitions = tuple(
            _obj(w, f"plate.acquisitions[{i}]", a)
            for i, a in enumerate(_list(w, "plate.acquisitions", acq, False))
        )
    return ParsedPlate(
        path=path,
        version=version,
        rows=rows,
        columns=cols,
        wells=tuple(wells),
        name=_str(w, "plate.name", p.get("name"), optional=True),
        field_count=None if fc is None else _int(w, "plate.field_count", fc, minimum=1),
        acquisitions=acquisitions,
        raw=p,
    )


def _well(w: _Where, path: str, version: str, value: Any) -> ParsedWell:
    wd = _obj(w, "well", value)
    images: list[str] = []
    acqs: list[int | None] = []
    for i, item in enumerate(_list(w, "well.images", wd.get("images"), non_empty=False)):
        k = f"well.images[{i}]"
        im = _obj(w, k, item)
        ip = _str(w, f"{k}.path", im.get("path"))
        assert ip is not None
        if "/" in ip or ip in (".", ".."):
            raise w.fail(f"{k}.path", f"must be a single path segment, found {ip!r}")
        if ip in images:
            raise w.fail(f"{k}.path", f"repeats the field {ip!r}")
        images.append(ip)
        a = im.get("acquisition")
        acqs.append(None if a is None else _int(w, f"{k}.acquisition", a))
    return ParsedWell(path, version, tuple(images), tuple(acqs), raw=wd)


def _label_value(w: _Where, key: str, item: Any) -> int:
    v = _obj(w, key, item).get("label-value")
    if isinstance(v, bool) or not isinstance(v, int):
        raise w.fail(f"{key}.label-value", f"must be an integer, found {_found(v)}")
    return v


def _image_label(w: _Where, key: str, value: Any) -> ImageLabel:
    d = _obj(w, key, value)
    colors: list[LabelColor] = []
    if d.get("colors") is not None:
        for i, item in enumerate(_list(w, f"{key}.colors", d["colors"], non_empty=False)):
            k = f"{key}.colors[{i}]"
            v = _label_value(w, k, item)
            if any(c.value == v for c in colors):
                raise w.fail(f"{k}.label-value", f"repeats {v}; each label value has one colour")
            rgba = item.get("rgba")
            if rgba is not None:
                ok = (
                    isinstance(rgba, list)
                    and len(rgba) == 4
                    and all(
                        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                        for c in rgba
                    )
                )
                if not ok:
                    raise w.fail(
                        f"{k}.rgba", f"must be 4 integers from 0 to 255, found {_found(rgba)}"
                    )
            colors.append(
                LabelColor(v, None if rgba is None else (rgba[0], rgba[1], rgba[2], rgba[3]))
            )
    props: list[int] = []
    if d.get("properties") is not None:
        for i, item in enumerate(_list(w, f"{key}.properties", d["properties"], non_empty=False)):
            props.append(_label_value(w, f"{key}.properties[{i}]", item))
    source: str | None = None
    if d.get("source") is not None:
        src = _obj(w, f"{key}.source", d["source"])
        source = _str(w, f"{key}.source.image", src.get("image"), optional=True)
    version = d.get("version")
    if version is not None and not isinstance(version, str):
        raise w.fail(f"{key}.version", f"must be a string, found {_found(version)}")
    return ImageLabel(tuple(colors), tuple(props), source, version, raw=d)


def _labels(w: _Where, path: str, version: str, content: dict[str, Any]) -> ParsedLabels:
    names: list[str] = []
    for i, item in enumerate(_list(w, "labels", content["labels"], non_empty=False)):
        name = _str(w, f"labels[{i}]", item)
        assert name is not None
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise w.fail(
                f"labels[{i}]", f"must be a relative path inside the labels group, found {name!r}"
            )
        if name in names:
            raise w.fail(f"labels[{i}]", f"repeats the label image {name!r}")
        names.append(name)
    return ParsedLabels(path, version, tuple(names), raw=content)


def parse_image_label(attrs: dict[str, Any], path: str = "") -> ImageLabel | None:
    """The ``image-label`` object of a label image's attributes, or None when it has none."""
    version, content = ngff_content(attrs, path)
    if "image-label" not in content:
        return None
    return _image_label(
        _Where(path, "ome" if version == "0.5" else ""), "image-label", content["image-label"]
    )


def parse_group(attrs: dict[str, Any], path: str = "") -> ParsedNode:
    """Parse one group's attributes (``.zattrs`` content, or ``zarr.json["attributes"]``).

    ``path`` is only used in messages (give the dataset URL plus the group path).
    Precedence when a group carries several things: plate, well, image,
    bioformats2raw root, series list (bioformats2raw HCS roots carry a plate too),
    labels group.
    Raises StoreFormatError when the group holds no NGFF metadata or malformed metadata.
    """
    version, content = ngff_content(attrs, path)
    prefix = "ome" if version == "0.5" else ""
    w = _Where(path, prefix)
    if version is None or not content:
        keys = sorted(attrs)[:8] if isinstance(attrs, dict) else []
        raise StoreFormatError(
            f"{path or '.'}: no OME-Zarr (NGFF) metadata; expected one of 'multiscales', 'plate', "
            f"'well', 'bioformats2raw.layout' (under 'ome' for NGFF 0.5), found keys {keys}"
        )
    if "plate" in content:
        return _plate(w, path, version, content["plate"])
    if "well" in content:
        return _well(w, path, version, content["well"])
    if "multiscales" in content:
        ms = tuple(
            _multiscale(w, f"multiscales[{i}]", m)
            for i, m in enumerate(_list(w, "multiscales", content["multiscales"]))
        )
        channels = _omero(w, "omero", content["omero"]) if "omero" in content else None
        label = (
            _image_label(w, "image-label", content["image-label"])
            if "image-label" in content
            else None
        )
        return ParsedImage(path, version, ms, channels, raw=content, image_label=label)
    if "bioformats2raw.layout" in content:
        layout = _int(w, "bioformats2raw.layout", content["bioformats2raw.layout"], minimum=1)
        if layout != 3:
            raise w.fail("bioformats2raw.layout", f"must be 3, found {layout}")
        return ParsedBioformats2raw(path, version, layout, raw=content)
    if "series" in content:
        series = []
        for i, s in enumerate(_list(w, "series", content["series"], non_empty=False)):
            sp = _str(w, f"series[{i}]", s)
            assert sp is not None
            series.append(sp)
        return ParsedSeries(path, version, tuple(series), raw=content)
    if "labels" in content:
        return _labels(w, path, version, content)
    image_only = [k for k in _IMAGE_ONLY_KEYS if k in content]
    if image_only:
        raise w.fail(
            "",
            f"holds only {sorted(content)}; {image_only[0]!r} needs 'multiscales' beside it "
            "(it describes an image)",
        )
    raise w.fail(
        "",
        f"holds only {sorted(content)}; expected one of 'multiscales', 'plate', 'well', "
        "'labels', 'bioformats2raw.layout' or 'series'",
    )
