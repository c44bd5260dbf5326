"""Describe an OME-Zarr store (NGFF 0.4/0.5, any writer) as a DatasetInfo.

Group attributes are interpreted by :mod:`omestream.metadata.parse`; array facts
(shape, dtype, chunks, codecs) come from the array documents themselves.
"""

from __future__ import annotations

from omestream.errors import StoreFormatError
from omestream.metadata.parse import (
    ParsedBioformats2raw,
    ParsedImage,
    ParsedPlate,
    ParsedSeries,
    ParsedWell,
    has_ngff,
    parse_group,
)
from omestream.stream.zarr_sink import OMESTREAM_KEY
from omestream.summary.acquisition import acquisition_from_record, changed_since
from omestream.summary.model import (
    AxisInfo,
    ChannelInfo,
    DatasetInfo,
    ImageInfo,
    LevelInfo,
    PlateInfo,
    WellInfo,
)
from omestream.summary.nodes import Node, disk_usage, read_tree

__all__ = ["describe_image", "describe_zarr", "image_groups"]


def _color(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().removeprefix("#").upper()
    return v[:6] if len(v) in (6, 8) else None


def _pair(window: dict[str, float] | None, a: str, b: str) -> tuple[float, float] | None:
    if window and a in window and b in window:
        return window[a], window[b]
    return None


def describe_image(
    root: Node, path: str, parsed: ParsedImage, well: str | None = None
) -> ImageInfo:
    """One multiscale image: its axes, levels (from the arrays on disk) and channels."""
    ms = parsed.multiscale
    group = root.find(path)
    levels: list[LevelInfo] = []
    metas = []
    for ds in ms.datasets:
        node = group.find(ds.path) if group is not None else None
        where = "/".join(p for p in (path, ds.path) if p)
        if node is None or node.kind != "array":
            raise StoreFormatError(
                f"{where}: listed in multiscales datasets but no array is there"
            )
        meta = node.meta
        if meta.ndim != len(ms.axes):
            raise StoreFormatError(
                f"{where}: array has {meta.ndim} dimensions but multiscales names "
                f"{len(ms.axes)} axes {list(ms.axis_names)}"
            )
        metas.append(meta)
        levels.append(
            LevelInfo(ds.path, meta.shape, meta.chunks, meta.shards, ds.scale, meta.nbytes)
        )
    first, ds0 = metas[0], ms.datasets[0]
    axes = tuple(
        AxisInfo(
            name=a.name,
            type=a.type,
            size=first.shape[i],
            unit=a.unit,
            scale=ds0.scale[i],
            translation=ds0.translation[i] if ds0.translation else 0.0,
        )
        for i, a in enumerate(ms.axes)
    )
    channels: tuple[ChannelInfo, ...] = ()
    if parsed.channels:
        channels = tuple(
            ChannelInfo(
                label=ch.label or f"Channel {i}",
                color=_color(ch.color),
                window=_pair(ch.window, "start", "end"),
                limits=_pair(ch.window, "min", "max"),
                active=ch.active,
                inverted=inverted
                if isinstance(inverted := ch.raw.get("inverted"), bool)
                else None,
            )
            for i, ch in enumerate(parsed.channels)
        )
    return ImageInfo(
        path=path,
        name=ms.name,
        axes=axes,
        dtype=first.dtype,
        levels=tuple(levels),
        codecs=first.codecs,
        channels=channels,
        fill_value=first.fill_value,
        well=well,
        labels=_label_names(group),
    )


def _label_names(image: Node | None) -> tuple[str, ...]:
    """What the image's ``labels`` group lists: shown, not checked (``validate`` does)."""
    node = image.child("labels") if image is not None else None
    if node is None or node.kind != "group":
        return ()
    content = node.attrs.get("ome", node.attrs)
    names = content.get("labels") if isinstance(content, dict) else None
    return tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()


def _parse(root: Node, path: str) -> object | None:
    node = root.find(path)
    if node is None or node.kind != "group" or not has_ngff(node.attrs):
        return None
    return parse_group(node.attrs, path)


def _image(root: Node, path: str, what: str, well: str | None = None) -> ImageInfo:
    node = root.find(path)
    if node is None:
        raise StoreFormatError(f"{path}: {what} is listed but no group is there")
    parsed = parse_group(node.attrs, path)
    if not isinstance(parsed, ParsedImage):
        raise StoreFormatError(f"{path}: {what} has no 'multiscales' metadata")
    return describe_image(root, path, parsed, well)


def image_groups(root: Node) -> list[str]:
    """Paths of every group below ``root`` that carries multiscales metadata."""
    out = []
    for node in root.walk():
        if node.kind == "group" and has_ngff(node.attrs):
            try:
                if isinstance(parse_group(node.attrs, node.path), ParsedImage):
                    out.append(node.path)
            except StoreFormatError:
                continue
    return out


def describe_zarr(
    location: str, root: Node | None = None, *, measure_disk: bool = True
) -> DatasetInfo:
    """Describe the OME-Zarr (or plain Zarr) store at ``location``.

    ``measure_disk=False`` leaves ``disk_bytes`` unknown instead of listing every file.
    """
    root = root or read_tree(location)
    info = DatasetInfo(
        path=location,
        format="ome-zarr",
        kind="image",
        ngff_version=None,
        zarr_format=root.zarr_format,
        images=[],
        disk_bytes=disk_usage(location) if measure_disk else None,
        acquisition=acquisition_from_record(root.attrs.get(OMESTREAM_KEY)),
    )
    top = _parse(root, "")
    if isinstance(top, ParsedImage):
        info.ngff_version = top.version
        info.images.append(describe_image(root, "", top))
    elif isinstance(top, ParsedPlate):
        info.kind, info.ngff_version = "plate", top.version
        wells = []
        for w in top.wells:
            parsed = _parse(root, w.path)
            if not isinstance(parsed, ParsedWell):
                raise StoreFormatError(
                    f"{w.path}: well listed in the plate has no 'well' metadata"
                )
            wells.append(WellInfo(w.path, w.row, w.column, parsed.images))
            for f in parsed.images:
                info.images.append(_image(root, f"{w.path}/{f}", "field of view", w.path))
        info.plate = PlateInfo(top.name, top.rows, top.columns, tuple(wells))
    elif isinstance(top, ParsedWell):
        info.kind, info.ngff_version = "multi-position", top.version
        info.images = [_image(root, f, "field of view") for f in top.images]
    elif isinstance(top, ParsedBioformats2raw):
        info.kind, info.ngff_version = "multi-position", top.version
        series = _parse(root, "OME")
        if isinstance(series, ParsedSeries):
            paths = list(series.series)
        else:  # the layout allows omitting OME/: series are 0, 1, 2, ...
            paths = [c.name for c in root.children if c.name.isdigit()]
            paths.sort(key=int)
        info.images = [_image(root, p, "series") for p in paths]
    else:
        info.kind = "zarr"
        paths = image_groups(root)
        info.images = [_image(root, p, "image") for p in paths]
        versions = {parse_group(root.find(p).attrs, p).version for p in paths}  # type: ignore[union-attr]
        info.ngff_version = versions.pop() if len(versions) == 1 else None
        if paths:
            info.notes.append(
                "the root group has no NGFF metadata; listing the images found below it"
            )
        else:
            info.notes.append("no OME-Zarr (NGFF) metadata found: a plain Zarr hierarchy")
    if info.kind != "zarr" and not info.images:
        info.notes.append("no images")
    if info.acquisition is not None:
        shapes = {im.path: im.shape for im in info.images}
        info.notes += changed_since(root.attrs.get(OMESTREAM_KEY), shapes)
    return info
