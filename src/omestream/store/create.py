"""Create a new image group inside an opened dataset, shaped like another or from data.

Only the image's own group and arrays are written here; listing it in a well or a
series is the caller's job (done last, under the metadata lock), so a failure
leaves at most an unlisted group that :func:`remove_node` cleans up.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from omestream.errors import FrameShapeError, SettingsError, StoreFormatError
from omestream.io.kv import join_key
from omestream.metadata.ngff import omero_doc
from omestream.metadata.parse import parse_group
from omestream.settings import Channel
from omestream.store.node import StoreContext, coerce_data

if TYPE_CHECKING:
    from omestream.store.image import Image

__all__ = ["create_image", "remove_node"]

_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _from_like(
    ctx: StoreContext, path: str, name: str, like: Image, shape: dict[str, int] | None
) -> None:
    like.refresh()
    src = like._ctx
    if (src.version, src.zarr_format) != (ctx.version, ctx.zarr_format):
        raise SettingsError(
            f"like= is an NGFF {src.version} image; this dataset is NGFF {ctx.version}"
        )
    shape0 = list(like.shape)
    for axis, n in (shape or {}).items():
        if axis not in like.axes:
            raise SettingsError(f"shape names axis {axis!r}; the image's axes are {like.axes}")
        if not isinstance(n, int) or n < 1:
            raise SettingsError(f"shape[{axis!r}] must be a positive integer, got {n!r}")
        shape0[like.axes.index(axis)] = n
    _check_channel_count(ctx, path, like, shape0)
    shapes = like._level_shapes(tuple(shape0))
    key = "zarr.json" if ctx.zarr_format == 3 else ".zarray"
    docs = {}
    for lv, s in zip(like.levels, shapes, strict=True):
        raw = src.kv.get(f"{lv.path}/{key}")
        assert raw is not None
        doc = json.loads(raw)
        doc["shape"] = list(s)
        rel = lv.path[len(like.path) :].lstrip("/") if like.path else lv.path
        docs[join_key(path, rel, key)] = json.dumps(doc, indent=2).encode()
    content = copy.deepcopy(like._parsed.raw)
    content = {k: v for k, v in content.items() if k in ("multiscales", "omero")}
    for m in content["multiscales"]:
        m["name"] = name
    if isinstance(content.get("omero"), dict):
        content["omero"]["name"] = name
    ctx.write_attrs(path, ctx.with_content({}, content))
    for k, v in docs.items():
        ctx.kv.set(k, v)


def _check_channel_count(ctx: StoreContext, path: str, like: Image, shape0: list[int]) -> None:
    """The copied ``omero`` channel list must match the new image's channel count."""
    chans = like._parsed.channels
    if chans is None:
        return
    try:
        a = like._channel_axis()
    except SettingsError:
        return
    if shape0[a] != len(chans):
        raise SettingsError(
            f"{ctx.where(path)}: the new image would have {shape0[a]} channel(s) along "
            f"{like.axes[a]!r} but like={like.path!r} lists {len(chans)} "
            f"({like.channel_names}), which it would copy; give data/shape with "
            f"{len(chans)} channel(s) and use append_channel/delete_channel afterwards, or "
            "add it without like= (data=..., axes=..., channel_names=...); nothing was written"
        )


def _data_content(
    ctx: StoreContext,
    path: str,
    name: str,
    data: np.ndarray,
    names: list[str],
    channel_names: list[str] | None,
) -> dict[str, Any]:
    """The NGFF content of a new single-level image holding ``data``, checked as a reader
    would check it, or the error saying why there can be none (nothing is written)."""
    if len(names) != data.ndim:
        raise FrameShapeError(
            f"data has {data.ndim} dimensions but axes {names} name {len(names)}; "
            "nothing was written"
        )
    axes_doc = [{"name": n, "type": _AXIS_TYPES.get(n, "other")} for n in names]
    ms: dict[str, Any] = {
        "name": name,
        "axes": axes_doc,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": [1.0] * len(names)}],
            }
        ],
    }
    if ctx.version == "0.4":
        ms["version"] = "0.4"
    content: dict[str, Any] = {"multiscales": [ms]}
    if "c" in names:
        n_c = data.shape[names.index("c")]
        labels = list(channel_names or [f"Channel {i}" for i in range(n_c)])
        if len(labels) != n_c:
            raise SettingsError(
                f"{len(labels)} channel names for {n_c} channels; nothing was written"
            )
        try:
            channels = [Channel(name=lb) for lb in labels]
        except ValueError as exc:
            raise SettingsError(f"channel_names: {exc}; nothing was written") from None
        content["omero"] = omero_doc(channels, str(data.dtype), name)
    try:  # the same checks as opening it: axes a reader refuses are refused now
        parse_group(ctx.with_content({}, content), ctx.where(path))
    except StoreFormatError as exc:
        raise SettingsError(f"axes {names}: {exc}; nothing was written") from None
    return content


def _from_data(
    ctx: StoreContext,
    path: str,
    name: str,
    data: np.ndarray,
    axes: str | list[str],
    chunks: tuple[int, ...] | None,
    channel_names: list[str] | None,
) -> None:
    import zarr

    names = list(axes)
    content = _data_content(ctx, path, name, data, names, channel_names)
    if chunks is None:
        chunks = tuple(1 for _ in names[:-2]) + tuple(min(s, 512) for s in data.shape[-2:])
    elif len(chunks) != data.ndim or any(int(c) < 1 for c in chunks):
        raise SettingsError(
            f"chunks {chunks!r} must give a positive size for each of the axes {names}; "
            "nothing was written"
        )
    kwargs: dict[str, Any] = {}
    if ctx.zarr_format == 3:
        kwargs["dimension_names"] = names
    ctx.changing()
    zarr.create_array(
        ctx.kv.zarr_store(),
        name=join_key(path, "0"),
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        fill_value=0,
        zarr_format=ctx.zarr_format,  # type: ignore[arg-type]
        chunk_key_encoding={"name": "default" if ctx.zarr_format == 3 else "v2", "separator": "/"},
        **kwargs,
    )
    ctx.write_attrs(path, ctx.with_content({}, content))


def create_image(
    ctx: StoreContext,
    path: str,
    name: str,
    *,
    like: Image | None = None,
    data: Any = None,
    shape: dict[str, int] | None = None,
    axes: str | list[str] | None = None,
    chunks: tuple[int, ...] | None = None,
    channel_names: list[str] | None = None,
    cast: bool = False,
) -> Image:
    """Create the image group at ``path`` and write ``data`` (if any) into every level."""
    from omestream.store.image import Image

    if like is None and data is None:
        raise SettingsError(
            "give like=<an Image> or data=<an array> (with axes=...) to add an image"
        )
    arr = None if data is None else np.asarray(data)
    if like is not None:
        if arr is not None:
            if shape is not None:
                raise SettingsError("give data= or shape=, not both (data sets the shape)")
            if arr.ndim != len(like.axes):
                raise FrameShapeError(
                    f"data has shape {arr.shape}; images like {like.path!r} have axes {like.axes}"
                )
            arr = coerce_data(arr, like.dtype, cast, f"{ctx.where(path)}")
            shape = dict(zip(like.axes, arr.shape, strict=True))
        _from_like(ctx, path, name, like, shape)
    else:
        assert arr is not None
        if axes is None:
            raise SettingsError("data= without like= needs axes=, e.g. axes='tczyx'")
        if not 2 <= arr.ndim <= 5:
            raise FrameShapeError(f"data must have 2 to 5 dimensions, got shape {arr.shape}")
        _from_data(ctx, path, name, arr, axes, chunks, channel_names)
    image = Image(ctx, path)
    if arr is not None:
        with ctx.locks.image(path):
            image.refresh()
            arrays = [image._open(lv.path) for lv in image.levels]
            arrays[0][...] = arr
            image._propagate(arrays, [(0, s) for s in arr.shape], arr)
    return image


def remove_node(ctx: StoreContext, path: str) -> None:
    """Delete a group and everything below it (rollback of a failed creation)."""
    if path:
        ctx.kv.delete_prefix(path)
