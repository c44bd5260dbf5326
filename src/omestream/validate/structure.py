"""Structural checks of an OME-Zarr store, beyond what a JSON schema can say.

Each check compares documents with each other and with what is on disk: plate
indices against rows/columns, wells and fields listed against groups present,
axes and transforms against array dimensions, level shapes against the scale
factors between levels, channels against the channel axis, label images against
the image they label, and the images of a plate or series against each other.
Every problem found is reported (nothing stops at the first), each with the group
or array it is about.

The checks read raw attribute dictionaries so that a malformed document is a
problem to report, not a crash; the per-group document rules that
:func:`omestream.metadata.parse.parse_group` enforces are reported too, for groups
where these checks found nothing themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from omestream.errors import StoreFormatError
from omestream.io.kv import join_key
from omestream.metadata.parse import (
    ParsedLabels,
    has_ngff,
    ngff_content,
    parse_group,
    parse_image_label,
)
from omestream.stream.zarr_sink import OMESTREAM_KEY
from omestream.summary.acquisition import acquisition_from_record
from omestream.summary.nodes import Node

__all__ = ["Problem", "check_structure"]

_FLOAT_SPECIALS = {"NaN", "Infinity", "-Infinity"}
_LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")
# keys that make a group something other than a labels group (parse_group's precedence)
_NOT_LABELS = ("multiscales", "plate", "well", "bioformats2raw.layout", "series")


@dataclass(frozen=True)
class Problem:
    where: str  # group or array path in the store ("." is the root)
    message: str
    check: str = "structure"
    # "warning": allowed by the specification but likely to surprise readers; does not
    # make the store invalid
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        tag = "warning: " if self.severity == "warning" else ""
        return f"{self.where}: {tag}{self.message}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _ImageFacts:
    path: str
    axes: tuple[str, ...]
    dtype: str | None
    shape: tuple[int, ...] | None


class _Checker:
    def __init__(self, root: Node) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.images: dict[str, _ImageFacts] = {}

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where or ".", message))

    def warn(self, where: str, message: str) -> None:
        self.problems.append(Problem(where or ".", message, severity="warning"))

    # -- per group -----------------------------------------------------------------
    def run(self) -> list[Problem]:
        found_ngff = False
        for node in self.root.walk():
            if node.kind == "array" and node.meta_error:
                self.add(node.path, node.meta_error)
            if node.kind != "group" or not has_ngff(node.attrs):
                continue
            found_ngff = True
            before = len(self.problems)
            try:
                version, content = ngff_content(node.attrs, node.path)
            except StoreFormatError as exc:
                self.problems.append(Problem(node.path or ".", _strip_where(str(exc), node.path)))
                continue
            self._version(node, version)
            if not content:
                continue  # e.g. a plate's row group: {"ome": {"version": "0.5"}} only
            if "multiscales" in content:
                self._image(node, content, version)
            if "plate" in content:
                self._plate(node, _dict(content["plate"]))
            if "well" in content:
                self._well(node, _dict(content["well"]))
            if "bioformats2raw.layout" in content:
                self._series(node)
            if "labels" in content and not any(k in content for k in _NOT_LABELS):
                self._labels(node)
            if "image-label" in content and "multiscales" in content:
                try:
                    parse_image_label(node.attrs, node.path)
                except StoreFormatError as exc:
                    self.add(node.path, _strip_where(str(exc), node.path))
            if len(self.problems) == before:
                try:
                    parse_group(node.attrs, node.path)
                except StoreFormatError as exc:
                    self.add(node.path, _strip_where(str(exc), node.path))
        if not found_ngff:
            self.add(
                "",
                "no OME-Zarr (NGFF) metadata in any group: expected 'multiscales', 'plate', "
                "'well' or 'bioformats2raw.layout'",
            )
        self._acquisition()
        return self.problems

    def _acquisition(self) -> None:
        """A stream that never closed its dataset, or closed it early: valid, but not
        what it was meant to be."""
        acq = acquisition_from_record(self.root.attrs.get(OMESTREAM_KEY))
        early = acq.early_close_warning() if acq is not None else None
        if early:
            self.warn("", early)
        if acq is not None and not acq.complete and not acq.mended:
            self.warn(
                "",
                f"the stream that wrote it did not close it ({acq.frames} frames recorded): it "
                "is still being written, or was interrupted; its arrays may be sized past the "
                "frames written. Once no writer runs, `omestream repair` makes it readable "
                "and resumable",
            )

    def _version(self, node: Node, version: str | None) -> None:
        if version == "0.5" and node.zarr_format != 3:
            self.add(
                node.path, f"NGFF 0.5 needs Zarr v3, but this group is Zarr v{node.zarr_format}"
            )
        if version == "0.4" and node.zarr_format != 2:
            self.add(
                node.path, f"NGFF 0.4 needs Zarr v2, but this group is Zarr v{node.zarr_format}"
            )

    # -- images ----------------------------------------------------------------------
    def _image(self, node: Node, content: dict[str, Any], version: str | None) -> None:
        multiscales = _list(content.get("multiscales"))
        for i, ms in enumerate(multiscales):
            ms = _dict(ms)
            key = f"multiscales[{i}]"
            axes = [
                _dict(a).get("name") if isinstance(a, dict) else a for a in _list(ms.get("axes"))
            ]
            types = [_dict(a).get("type") for a in _list(ms.get("axes"))]
            prev: tuple[tuple[int, ...], tuple[float, ...] | None, str] | None = None
            dtypes: set[str] = set()
            shape0: tuple[int, ...] | None = None
            for j, ds in enumerate(_list(ms.get("datasets"))):
                ds = _dict(ds)
                dkey = f"{key}.datasets[{j}]"
                path = ds.get("path")
                if not isinstance(path, str):
                    self.add(node.path, f"{dkey}.path must be a string, found {path!r}")
                    continue
                where = join_key(node.path, path)
                arr = node.find(path)
                if arr is None or arr.kind != "array":
                    self.add(where, f"{dkey} names array {path!r}, but no array is there")
                    continue
                if arr.meta_error:
                    continue
                meta = arr.meta
                ndim = meta.ndim
                dtypes.add(meta.dtype)
                if axes and len(axes) != ndim:
                    self.add(
                        where,
                        f"array has {ndim} dimensions but {key}.axes names {len(axes)} "
                        f"axes {axes}",
                    )
                scale = self._transforms(where, dkey, ds.get("coordinateTransformations"), ndim)
                dims = meta.dimension_names
                if version == "0.5" and dims is not None and list(dims) != axes:
                    self.add(
                        where,
                        f"dimension_names {list(dims)} differ from the axis names {axes} in "
                        f"{key}.axes",
                    )
                self._fill_value(where, meta.fill_value, meta.dtype)
                if prev is not None:
                    self._level_shape(where, j, prev, meta.shape, scale)
                else:
                    shape0 = meta.shape
                prev = (meta.shape, scale, path)
            if len(dtypes) > 1:
                self.add(node.path, f"{key}: levels have different dtypes {sorted(dtypes)}")
            if i == 0:
                self.images[node.path] = _ImageFacts(
                    node.path, tuple(str(a) for a in axes), next(iter(dtypes), None), shape0
                )
                if "omero" in content and shape0 is not None:
                    self._omero(node, _dict(content["omero"]), types, shape0)

    def _transforms(
        self, where: str, key: str, transforms: Any, ndim: int
    ) -> tuple[float, ...] | None:
        scale: tuple[float, ...] | None = None
        for k, t in enumerate(_list(transforms)):
            t = _dict(t)
            kind = t.get("type")
            if kind not in ("scale", "translation"):
                continue
            values = t.get(kind)
            tkey = f"{key}.coordinateTransformations[{k}].{kind}"
            if not isinstance(values, list):
                self.add(where, f"{tkey} must be a list of numbers, found {values!r}")
                continue
            if len(values) != ndim:
                self.add(
                    where,
                    f"{tkey} has {len(values)} values but the array has {ndim} dimensions",
                )
            nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(nums) != len(values):
                self.add(where, f"{tkey} must hold numbers only, found {values}")
                continue
            if kind == "scale":
                bad = [v for v in nums if not v > 0 or not math.isfinite(v)]
                if bad:
                    self.add(where, f"{tkey} must be positive, found {values}")
                elif len(values) == ndim:
                    scale = tuple(float(v) for v in values)
        return scale

    def _fill_value(self, where: str, value: Any, dtype: str) -> None:
        if isinstance(value, bool) and dtype != "bool":
            self.add(where, f"fill_value {value!r} is not a number for dtype {dtype}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return
        elif isinstance(value, str) and dtype.startswith("float"):
            if value in _FLOAT_SPECIALS or value.startswith("0x"):
                return
            self.add(where, f"fill_value {value!r} is not a number for dtype {dtype}")
        elif dtype != "bool":
            self.add(where, f"fill_value must be a number for dtype {dtype}, found {value!r}")

    def _level_shape(
        self,
        where: str,
        j: int,
        prev: tuple[tuple[int, ...], tuple[float, ...] | None, str],
        shape: tuple[int, ...],
        scale: tuple[float, ...] | None,
    ) -> None:
        pshape, pscale, ppath = prev
        if len(pshape) != len(shape):
            self.add(
                where, f"level {j} has {len(shape)} dimensions, level {j - 1} has {len(pshape)}"
            )
            return
        expected: list[int] = []
        ok = True
        for a, (s_prev, s) in enumerate(zip(pshape, shape, strict=True)):
            f = scale[a] / pscale[a] if scale is not None and pscale is not None else None
            if f is None:
                expected.append(s_prev)
                ok &= s <= s_prev
                continue
            e = s_prev / f
            expected.append(math.ceil(e - 1e-9))
            # writers round down (ome-zarr-py) or up (omestream): both are consistent
            ok &= math.floor(e + 1e-6) <= s <= math.ceil(e - 1e-6) or abs(s - e) < 1e-6
        if not ok:
            factors = (
                [round(scale[a] / pscale[a], 6) for a in range(len(shape))]
                if scale is not None and pscale is not None
                else None
            )
            self.add(
                where,
                f"level {j} has shape {list(shape)}, but level {j - 1} ({ppath}) has shape "
                f"{list(pshape)} and the scale factors between them are {factors}: expected "
                f"{expected}",
            )

    def _omero(
        self, node: Node, omero: dict[str, Any], types: list[Any], shape: tuple[int, ...]
    ) -> None:
        channels = _list(omero.get("channels"))
        if "channel" in types:
            size = shape[types.index("channel")]
            if len(channels) != size:
                self.add(
                    node.path,
                    f"omero lists {len(channels)} channel(s) but the channel axis has size {size}",
                )
        elif len(channels) > 1:
            self.add(
                node.path,
                f"omero lists {len(channels)} channels but the image has no channel axis",
            )
        for i, ch in enumerate(channels):
            window = _dict(_dict(ch).get("window"))
            start, end = window.get("start"), window.get("end")
            numbers = all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)
            )
            if numbers and start > end:  # type: ignore[operator]
                self.add(
                    node.path,
                    f"omero.channels[{i}].window starts at {start}, above its end {end}: "
                    "viewers would show the channel empty",
                )

    # -- plates, wells, series ---------------------------------------------------------
    def _plate(self, node: Node, plate: dict[str, Any]) -> None:
        rows = [_dict(r).get("name") for r in _list(plate.get("rows"))]
        cols = [_dict(c).get("name") for c in _list(plate.get("columns"))]
        listed: set[str] = set()
        max_fields = 0
        fields: list[str] = []
        for i, w in enumerate(_list(plate.get("wells"))):
            w = _dict(w)
            key = f"plate.wells[{i}]"
            path = w.get("path")
            if not isinstance(path, str):
                self.add(node.path, f"{key}.path must be a string, found {path!r}")
                continue
            listed.add(path)
            parts = path.split("/")
            for what, idx_key, names, part in (
                ("row", "rowIndex", rows, parts[0] if parts else None),
                ("column", "columnIndex", cols, parts[1] if len(parts) > 1 else None),
            ):
                idx = w.get(idx_key)
                if idx is None:
                    continue  # 0.4 allowed omitting the indices; parse reports the rest
                if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(names):
                    self.add(
                        node.path,
                        f"{key}.{idx_key} is {idx!r}, outside the plate's {len(names)} "
                        f"{what}s (0..{len(names) - 1}) for well {path!r}",
                    )
                elif names[idx] != part:
                    self.add(
                        node.path,
                        f"{key}.{idx_key} is {idx}, which is {what} {names[idx]!r}, but the "
                        f"well path {path!r} names {what} {part!r}",
                    )
            well = node.find(path)
            if well is None or well.kind != "group":
                self.add(join_key(node.path, path), f"well listed in {key} is not on disk")
                continue
            wc = _ngff(well)
            if "well" not in wc:
                self.add(join_key(node.path, path), f"well listed in {key} has no 'well' metadata")
                continue
            images = [_dict(im).get("path") for im in _list(_dict(wc["well"]).get("images"))]
            max_fields = max(max_fields, len(images))
            fields += [join_key(node.path, path, str(p)) for p in images]
        for row in node.children:
            for well in row.children if row.kind == "group" else []:
                rel = f"{row.name}/{well.name}"
                if well.kind == "group" and "well" in _ngff(well) and rel not in listed:
                    self.add(well.path, "well group on disk is not listed in the plate's wells")
        fc = plate.get("field_count")
        if isinstance(fc, int) and fc < max_fields:
            self.add(node.path, f"plate.field_count is {fc} but a well has {max_fields} fields")
        self._consistent(node.path, "field of view", fields)

    def _well(self, node: Node, well: dict[str, Any]) -> None:
        listed = set()
        for k, im in enumerate(_list(well.get("images"))):
            path = _dict(im).get("path")
            if not isinstance(path, str):
                self.add(node.path, f"well.images[{k}].path must be a string, found {path!r}")
                continue
            listed.add(path)
            field = node.find(path)
            if field is None or field.kind != "group":
                self.add(
                    join_key(node.path, path), f"field listed in well.images[{k}] is not on disk"
                )
            elif "multiscales" not in _ngff(field):
                self.add(
                    join_key(node.path, path),
                    f"field listed in well.images[{k}] has no 'multiscales' metadata",
                )
        for child in node.children:
            if (
                child.kind == "group"
                and "multiscales" in _ngff(child)
                and child.name not in listed
            ):
                self.add(child.path, "image group on disk is not listed in the well's images")

    def _series(self, node: Node) -> None:
        ome = node.find("OME")
        if ome is None:
            return  # the layout allows omitting OME/: nothing to cross-check
        series = _list(_ngff(ome).get("series"))
        for k, s in enumerate(series):
            target = node.find(str(s)) if isinstance(s, str) else None
            if target is None or "multiscales" not in _ngff(target):
                self.add(
                    join_key(node.path, str(s)),
                    f"series[{k}] in OME/ names an image that is not on disk",
                )
        paths = [join_key(node.path, s) for s in series if isinstance(s, str)]
        self._consistent(node.path, "position", paths)

    # -- labels ------------------------------------------------------------------------
    def _labels(self, node: Node) -> None:
        """A ``labels`` group: where it sits, and each label image it lists against the
        image it labels (readers overlay them level by level)."""
        try:
            parsed = parse_group(node.attrs, node.path)
        except StoreFormatError as exc:
            self.add(node.path, _strip_where(str(exc), node.path))
            return
        assert isinstance(parsed, ParsedLabels)
        parent_path = node.path.rpartition("/")[0]
        parent = self.root.find(parent_path) if node.path else None
        image = _ngff(parent) if parent is not None else {}
        if node.name != "labels" or "multiscales" not in image:
            self.add(
                node.path,
                "'labels' metadata belongs to a group named 'labels' inside an image group "
                "(one with 'multiscales'); readers look for label images only there",
            )
        n_image = _level_count(image)
        for i, name in enumerate(parsed.labels):
            where = join_key(node.path, name)
            child = node.find(name)
            if child is None or child.kind != "group":
                self.add(where, f"label image listed in labels[{i}] is not on disk")
                continue
            content = _ngff(child)
            if "multiscales" not in content:
                self.add(where, f"label image listed in labels[{i}] has no 'multiscales' metadata")
                continue
            if "image-label" not in content:
                self.warn(
                    where,
                    "label image has no 'image-label' metadata; the specification says it "
                    "should have one (colours, source image)",
                )
            n_label = _level_count(content)
            if n_image is not None and n_label is not None and n_label != n_image:
                self.add(
                    where,
                    f"label image has {n_label} resolution level(s) but the image it labels "
                    f"({parent_path or '.'}) has {n_image}; the specification requires the "
                    "same number. Rebuild the image's pyramid (omestream pyramid), which "
                    "rebuilds its labels too",
                )
            self._label_dtypes(child, content)
        listed = set(parsed.labels)
        for d in node.walk():
            rel = d.path[len(node.path) :].lstrip("/") if node.path else d.path
            if d is node or d.kind != "group" or "multiscales" not in _ngff(d):
                continue
            if not any(rel == n or rel.startswith(n + "/") for n in listed):
                self.warn(
                    d.path,
                    "label image on disk is not listed in the labels group's 'labels'; "
                    "readers will not find it",
                )

    def _label_dtypes(self, node: Node, content: dict[str, Any]) -> None:
        ms = _dict(next(iter(_list(content.get("multiscales"))), None))
        for ds in _list(ms.get("datasets")):
            path = _dict(ds).get("path")
            arr = node.find(path) if isinstance(path, str) else None
            if arr is None or arr.kind != "array" or arr.meta_error:
                continue  # reported by the image checks
            dtype = arr.meta.dtype
            if dtype not in _LABEL_DTYPES:
                self.add(
                    arr.path,
                    f"label pixels must be integers ({', '.join(_LABEL_DTYPES)}), found {dtype}",
                )

    def _consistent(self, where: str, what: str, paths: list[str]) -> None:
        """Positions / fields of one dataset that differ in axes, dtype or shape: the
        specification allows it (a field with one more time point, a slide's label
        image next to its scan), but tools that tile or stack them assume they match."""
        facts = [f for f in (self._facts(p) for p in paths) if f is not None]
        if len(facts) < 2:
            return
        ref = facts[0]
        for f in facts[1:]:
            for attr, label in (("axes", "axes"), ("dtype", "dtype"), ("shape", "shape")):
                a, b = getattr(ref, attr), getattr(f, attr)
                if a != b:
                    self.warn(
                        f.path,
                        f"{what} has {label} {_show(b)}, but {ref.path} has {_show(a)}; "
                        f"allowed, but viewers that tile or stack the {what}s expect them "
                        f"to match",
                    )

    def _facts(self, path: str) -> _ImageFacts | None:
        if path not in self.images:
            node = self.root.find(path)
            if node is None or "multiscales" not in _ngff(node):
                return None
            self._image(node, _ngff(node), _version(node))
        return self.images.get(path)


def _level_count(content: dict[str, Any]) -> int | None:
    """Levels of an image's first (default) multiscale; None when it lists none."""
    ms = _list(content.get("multiscales"))
    if not ms:
        return None
    datasets = _dict(ms[0]).get("datasets")
    return len(datasets) if isinstance(datasets, list) else None


def _show(v: Any) -> str:
    return str(list(v)) if isinstance(v, tuple) else repr(v)


def _ngff(node: Node) -> dict[str, Any]:
    try:
        return ngff_content(node.attrs, node.path)[1]
    except StoreFormatError:
        return {}


def _version(node: Node) -> str | None:
    try:
        return ngff_content(node.attrs, node.path)[0]
    except StoreFormatError:
        return None


def _strip_where(message: str, path: str) -> str:
    prefix = f"{path or '.'}: "
    return message.removeprefix(prefix)


def check_structure(root: Node) -> list[Problem]:
    """Every structural problem of the store whose root node is ``root``."""
    checker = _Checker(root)
    problems = checker.run()
    # _facts may check an image twice (once from its group, once from a plate): dedupe
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
