"""One multiscale image of an opened dataset: read it, append to it, rewrite regions.

Every change follows the same order, so a failure (or a killed process) at any point
leaves what readers see unchanged or complete:

1. everything is validated (axis, shape, dtype, names) before anything is written;
2. pixels are written for every pyramid level, into an in-memory view of each array
   already grown to its new shape (chunks beyond the stored shape are invisible);
3. the stored shapes are updated, lower levels first and level 0 last: level 0 is the
   truth that :meth:`Image.repair` brings any disagreeing level back to;
4. group metadata (``omero`` channel entries) is written last, atomically.

All pixel writes into one image happen under that image's lock, so writers from
several processes are serialised per image and never overwrite each other's chunks.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omestream.errors import FrameShapeError, SettingsError, StoreFormatError
from omestream.io import zarr_nodes
from omestream.metadata.display import apply_windows, channel_windows
from omestream.metadata.ngff import channel_window
from omestream.metadata.parse import ParsedImage, ParsedPlate
from omestream.pyramid import KERNELS, downsample, halo
from omestream.pyramid.kernels import source_window
from omestream.settings._base import warn_user
from omestream.settings.colors import guess_color, pick_colors
from omestream.settings.names import check_label
from omestream.store.node import StoreContext, coerce_data

if TYPE_CHECKING:
    import dask.array
    import zarr

__all__ = ["Image", "Level"]


@dataclass(frozen=True)
class Level:
    """One resolution level as stored: its array path and geometry."""

    path: str  # full array path from the dataset root
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    write_unit: tuple[int, ...]  # shard, or chunk when not sharded
    factors: tuple[int, ...]  # per axis, relative to the level above (1 for level 0)
    floor: tuple[bool, ...]  # per axis: extent = floor(above / f) instead of ceil
    # per axis: the scale ratio to the level above is a whole number. Another tool's
    # valid pyramid may scale by e.g. 1.5: its levels are read as they are, but no
    # kernel here makes such a level, so pixel changes are refused
    whole: tuple[bool, ...]


def _extent(n: int, f: int, floor: bool) -> int:
    return n // f if floor else -(-n // f)


class Image:
    """A multiscale image (``multiscales`` group), e.g. ``plate["B/3"]["fov0"]``."""

    def __init__(self, ctx: StoreContext, path: str) -> None:
        self._ctx = ctx
        self.path = path
        self._warned_method = False  # an unknown downsampling method is told once
        self._load()

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> tuple[dict[str, Any], ParsedImage, list[Level], np.dtype]:
        ctx = self._ctx
        attrs, parsed = ctx.parse(self.path)
        if not isinstance(parsed, ParsedImage):
            raise StoreFormatError(
                f"{ctx.where(self.path)}: expected an image group ('multiscales'), "
                f"found a {type(parsed).__name__.removeprefix('Parsed').lower()} group"
            )
        ms = parsed.multiscale
        levels: list[Level] = []
        dtype: np.dtype | None = None
        ndim = len(ms.axes)
        for i, ds in enumerate(ms.datasets):
            apath = "/".join(p for p in (self.path, ds.path) if p)
            zarr_nodes.read_array_meta(ctx.kv, apath, ctx.zarr_format)  # clear error if absent
            arr = self._open(apath)
            shape = tuple(int(s) for s in arr.shape)
            if len(shape) != ndim:
                raise StoreFormatError(
                    f"{ctx.where(apath)}: array has {len(shape)} dimensions but the image "
                    f"declares {ndim} axes {ms.axis_names}"
                )
            if dtype is None:
                dtype = np.dtype(arr.dtype)
            elif np.dtype(arr.dtype) != dtype:
                raise StoreFormatError(
                    f"{ctx.where(apath)}: dtype {arr.dtype} differs from level 0 ({dtype})"
                )
            chunks = tuple(int(c) for c in arr.chunks)
            shards = getattr(arr, "shards", None)
            unit = tuple(int(s) for s in shards) if shards else chunks
            if i == 0:
                factors, floor, whole = (1,) * ndim, (False,) * ndim, (True,) * ndim
            else:
                prev, prev_scale = levels[-1], ms.datasets[i - 1].scale
                fs, fl, wh = [], [], []
                for a in range(ndim):
                    p, c = prev.shape[a], shape[a]
                    ratio = ds.scale[a] / prev_scale[a] if prev_scale[a] else 1.0
                    f = max(1, round(ratio))
                    w = abs(ratio - f) <= 1e-6 * f or (f > 1 and c in (p // f, -(-p // f)))
                    if f == 1 and w and p != c and c:
                        # equal scales: the shapes tell the factor (a level one step
                        # off, as in the middle of another process's append, is 1)
                        f = max(1, round(p / c))
                    fs.append(f)
                    fl.append(f > 1 and c == p // f and c != -(-p // f))
                    wh.append(w)
                factors, floor, whole = tuple(fs), tuple(fl), tuple(wh)
            levels.append(Level(apath, shape, chunks, unit, factors, floor, whole))
        assert dtype is not None
        self._attrs, self._parsed, self._levels, self._dtype = attrs, parsed, levels, dtype
        return attrs, parsed, levels, dtype

    def _open(self, apath: str) -> zarr.Array:
        import zarr

        ro = self._ctx.mode == "r"
        try:
            return zarr.open_array(
                self._ctx.kv.zarr_store(read_only=ro), path=apath, mode="r" if ro else "r+"
            )
        except Exception as exc:
            raise StoreFormatError(
                f"{self._ctx.where(apath)}: cannot open the array: {exc}"
            ) from None

    def _grown(self, level: Level, shape: tuple[int, ...]) -> zarr.Array:
        """The level's array seen with ``shape``, without storing that shape yet."""
        from zarr import Array
        from zarr.core.array import AsyncArray

        arr = self._open(level.path)
        if tuple(arr.shape) == shape:
            return arr
        aa = arr._async_array
        return Array(AsyncArray(aa.metadata.update_shape(shape), aa.store_path, aa.config))

    @property
    def axes(self) -> tuple[str, ...]:
        return self._parsed.multiscale.axis_names

    @property
    def axis_types(self) -> tuple[str | None, ...]:
        return tuple(a.type for a in self._parsed.multiscale.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._levels[0].shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def levels(self) -> tuple[Level, ...]:
        return tuple(self._levels)

    @property
    def name(self) -> str | None:
        return self._parsed.multiscale.name

    @property
    def channel_names(self) -> list[str | None]:
        return [c.label for c in self._parsed.channels or ()]

    @property
    def version(self) -> str:
        return self._ctx.version

    def refresh(self) -> Image:
        """Re-read metadata and shapes (another process may have changed them)."""
        self._load()
        return self

    def array(self, level: int = 0) -> zarr.Array:
        """The zarr-python array of a level (read-only when the store is)."""
        return self._open(self._levels[level].path)

    def read(self, level: int = 0) -> np.ndarray:
        return np.asarray(self.array(level)[...])

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.array(0)[key])

    def to_dask(self, level: int = 0) -> dask.array.Array:
        """A dask array over one level, one dask chunk per Zarr chunk (or shard)."""
        import dask.array as da

        arr = self.array(level)
        chunks = getattr(arr, "shards", None) or arr.chunks
        return da.from_zarr(arr, chunks=chunks)

    def __repr__(self) -> str:
        dims = ", ".join(f"{a}={s}" for a, s in zip(self.axes, self.shape, strict=True))
        where = self._ctx.where(self.path)
        return f"<Image {where!r} {dims} {self._dtype} levels={len(self._levels)}>"

    # -- helpers ---------------------------------------------------------------------------
    def _axis(self, axis: str | int) -> int:
        names = self.axes
        if isinstance(axis, int) and not isinstance(axis, bool):
            if not 0 <= axis < len(names):
                raise SettingsError(f"axis {axis} is out of range for axes {names}")
            return axis
        if axis not in names:
            raise SettingsError(
                f"{self._ctx.where(self.path)} has no axis {axis!r}; its axes are {names}"
            )
        return names.index(axis)

    def _channel_axis(self) -> int:
        types = self.axis_types
        if "channel" in types:
            return types.index("channel")
        if "c" in self.axes:
            return self.axes.index("c")
        raise SettingsError(f"{self._ctx.where(self.path)} has no channel axis (axes {self.axes})")

    def _method(self) -> str:
        if self._parsed.is_label:
            return "mode"  # a label's lower levels hold labels, never their averages
        ms = self._parsed.multiscale
        meta = ms.raw.get("metadata")
        method = meta.get("method") if isinstance(meta, dict) else None
        for cand in (method, ms.type):
            if isinstance(cand, str) and cand.rsplit(".", 1)[-1] in KERNELS:
                return cand.rsplit(".", 1)[-1]
        if len(self._levels) > 1 and not self._warned_method:
            self._warned_method = True
            named = f" ({method or ms.type!r})" if (method or ms.type) else ""
            warn_user(
                f"{self._ctx.where(self.path)}: its multiscales do not name a downsampling "
                f"method omestream knows{named}, so the lower levels of what changes are "
                "made by block mean, which may differ from how the rest of them were made; "
                "build_pyramid (omestream pyramid) remakes every level with one method"
            )
        return "mean"

    def _level_shapes(self, shape0: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Every level's shape for level-0 shape ``shape0``; an axis scaled by a
        fraction keeps its stored extent (changes along it are refused)."""
        shapes = [shape0]
        for lv in self._levels[1:]:
            prev = shapes[-1]
            shapes.append(
                tuple(
                    _extent(p, f, fl) if w else n
                    for p, f, fl, w, n in zip(
                        prev, lv.factors, lv.floor, lv.whole, lv.shape, strict=True
                    )
                )
            )
        return shapes

    def _check_whole_factors(self, where: str) -> None:
        """Refuse a pixel change when a lower level is scaled by a fraction: no kernel
        here makes such a level, so it could not be kept in step with level 0."""
        for lv in self._levels[1:]:
            for a, w in enumerate(lv.whole):
                if not w:
                    raise SettingsError(
                        f"{where}: level {lv.path!r} is not a whole-number downsampling of "
                        f"the level above along {self.axes[a]!r}, so omestream cannot keep "
                        "it in step; rebuild the pyramid with omestream.build_pyramid (or "
                        "remove the lower levels) first; nothing was written"
                    )

    def _propagate(
        self,
        arrays: list[zarr.Array],
        region: list[tuple[int, int]],
        data: np.ndarray | None = None,
    ) -> None:
        """Recompute lower levels over ``region`` (level 0 coordinates), level by level.

        ``data`` is what was just written there: reused instead of read back whenever the
        block a level needs is exactly that region (appends, whole planes). A gaussian
        output pixel depends on input pixels up to the kernel's radius away, so the
        changed region grows by that radius at each level and is recomputed from the
        level above with the same margin the pyramid builder reads (clipped to the array,
        so the result equals downsampling the whole level).
        """
        method = self._method()
        for i in range(1, len(arrays)):
            lv = self._levels[i]
            prev_shape = tuple(arrays[i - 1].shape)
            shape = tuple(arrays[i].shape)
            margins = halo(lv.factors, method)
            # output pixels whose kernel reaches into the changed region
            out = [
                (max(0, a0 - h) // f, min(n, -(-min(pn, a1 + h) // f)))
                for (a0, a1), f, h, n, pn in zip(
                    region, lv.factors, margins, shape, prev_shape, strict=True
                )
            ]
            if any(a >= b for a, b in out):
                break  # edge pixels a floor-sized level leaves out: nothing below changes
            read, core = source_window(out, lv.factors, margins, prev_shape)
            if data is not None and [(r.start, r.stop) for r in read] == region:
                block = data
            else:
                block = np.asarray(arrays[i - 1][read])
            down = downsample(block, lv.factors, method, core=core)
            down = down[tuple(slice(0, b - a) for a, b in out)]
            if down.size:
                arrays[i][tuple(slice(a, b) for a, b in out)] = down
            region, data = out, down

    def _commit_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        """Store new shapes: lower levels first, level 0 last (level 0 is the truth)."""
        ctx = self._ctx
        ctx.changing()
        for lv, shape in reversed(list(zip(self._levels, shapes, strict=True))):
            if lv.shape != shape:
                zarr_nodes.set_array_shape(ctx.kv, lv.path, shape, ctx.zarr_format)

    # -- appending ---------------------------------------------------------------------------
    def append(self, data: Any, axis: str | int = "t", *, cast: bool = False) -> Image:
        """Append ``data`` along ``axis`` (e.g. one or more time points) to every level.

        ``data`` has the image's shape except along ``axis``; a block without that axis
        counts as one step. Lossy dtype conversions need ``cast=True``.
        """
        self._ctx.check_writable("append data")
        a = self._axis(axis)
        is_channel = self.axis_types[a] == "channel" or self.axes[a] == "c"
        self._load()
        data = self._check_append(data, a, cast)  # refused here: nothing was touched
        labels = [] if is_channel else self._labels_along(a)
        with self._shape_change(is_channel):
            self._load()
            old = self.shape[a]
            block = self._append_locked(data, a, cast)
            n = int(block.shape[a])
            if is_channel and self._parsed.channels is not None:
                start = self.shape[a] - n
                windows = channel_windows(block, a, start)
                self._update_omero(add=[(None, None)] * n, expect_before=start, windows=windows)
        for label in labels:
            label._extend_empty(self.axes[a], old, n)
        self._warn_if_unlike_others()
        return self

    def _labels_along(self, a: int) -> list[Image]:
        """The label images of this image (its ``labels`` group) that have axis ``a``
        with the image's extent: an append along it extends them too, empty."""
        ctx = self._ctx
        group = "/".join(p for p in (self.path, "labels") if p)
        if not ctx.group_exists(group):
            return []
        try:
            _, parsed = ctx.parse(group)
        except StoreFormatError:
            return []  # validate reports a malformed labels group
        out = []
        axis = self.axes[a]
        for name in getattr(parsed, "labels", ()):
            try:
                label = Image(ctx, f"{group}/{name}")
            except StoreFormatError:
                continue
            if axis in label.axes and label.shape[label._axis(axis)] == self.shape[a]:
                out.append(label)
        return out

    def _extend_empty(self, axis: str, old: int, n: int) -> None:
        """Extend every level by ``n`` steps along ``axis`` holding the fill value (a
        label image following its image), if it still ends at ``old`` there. A level
        downsampled along ``axis`` is left alone (with a warning): its last step would
        mix old labels with new background."""
        a = self._axis(axis)
        with self._shape_change(False):
            self._load()
            if self.shape[a] != old:
                return  # changed by another writer meanwhile
            if any(lv.factors[a] != 1 for lv in self._levels[1:]):
                warn_user(
                    f"{self._ctx.where(self.path)}: not extended along {axis!r} with its "
                    f"image: its lower levels are downsampled along {axis!r}"
                )
                return
            new0 = tuple(s + n if i == a else s for i, s in enumerate(self.shape))
            shapes = self._level_shapes(new0)
            for lv, shape in zip(self._levels, shapes, strict=True):
                arr = self._grown(lv, shape)
                fill = arr.fill_value if arr.fill_value is not None else 0
                step = lv.write_unit[a]
                # a write unit at a time along the axis: writing the fill value
                # deletes stale chunks there and never stores empty ones
                for start in range(old - old % step, shape[a], step):
                    lo, hi = max(start, old), min(start + step, shape[a])
                    arr[
                        tuple(slice(lo, hi) if i == a else slice(None) for i in range(len(shape)))
                    ] = fill
            self._commit_shapes(shapes)
            self._load()

    def _warn_if_unlike_others(self) -> None:
        """After this image's shape changed: warn when it is a field of a plate and the
        plate's first other field now has another shape. NGFF allows it, but readers
        that stack a plate's fields (the ome-zarr reader, napari) refuse such a plate;
        the other fields need the same change."""
        ctx = self._ctx
        if self.path.count("/") != 2:  # plate fields live at row/column/field
            return
        other: str | None = None
        with contextlib.suppress(StoreFormatError, OSError, KeyError):
            _, root = ctx.parse("")
            if not isinstance(root, ParsedPlate):
                return
            for well in root.wells:
                _, wd = ctx.parse(well.path)
                fields = [f"{well.path}/{f}" for f in getattr(wd, "images", ())]
                other = next((f for f in fields if f != self.path), None)
                if other is not None:
                    break
        if other is None:
            return
        with contextlib.suppress(StoreFormatError, OSError):
            theirs = Image(ctx, other).shape
            if theirs != self.shape:
                warn_user(
                    f"{ctx.where(self.path)} now has shape {self.shape}, field {other!r} "
                    f"{theirs}: NGFF allows it, but the ome-zarr reader and napari refuse a "
                    "plate whose fields differ in shape; make the same change to every field"
                )

    def _channel_change(self, on: bool = True) -> contextlib.AbstractContextManager[None]:
        """Held around a change of the channel axis: its pixels and its ``omero`` entries
        change together, with no other process's channel change in between (metadata
        lock first, then the image's, the order every change takes)."""
        return self._ctx.locks.metadata() if on else contextlib.nullcontext()

    @contextlib.contextmanager
    def _shape_change(self, channel: bool) -> Iterator[None]:
        """The locks of a change of stored shapes, in the one order: metadata, then image.

        Storing a shape first drops stale consolidated metadata, which takes the
        metadata lock; that happens here, before the image lock, never under it (a
        channel change holds the metadata lock throughout)."""
        with self._channel_change(channel):
            self._ctx.changing()
            with self._ctx.locks.image(self.path):
                yield

    def _check_append(self, data: Any, a: int, cast: bool) -> np.ndarray:
        """``data`` as a block to append along axis ``a`` (with that axis, as the
        image's dtype), or the error saying why it cannot be."""
        where = f"{self._ctx.where(self.path)}: append along {self.axes[a]!r}"
        arr = np.asarray(data)
        shape0 = self.shape
        if arr.ndim == len(shape0) - 1:
            arr = np.expand_dims(arr, a)
        expected = tuple("n" if i == a else s for i, s in enumerate(shape0))
        if arr.ndim != len(shape0) or any(
            i != a and s != e for i, (s, e) in enumerate(zip(arr.shape, shape0, strict=True))
        ):
            raise FrameShapeError(
                f"{where}: data has shape {arr.shape}; expected {expected} (axes {self.axes}); "
                "nothing was written"
            )
        if arr.shape[a] == 0:
            raise FrameShapeError(f"{where}: data holds nothing along {self.axes[a]!r}")
        self._check_whole_factors(where)
        for lv in self._levels[1:]:
            if lv.factors[a] != 1:
                raise SettingsError(
                    f"{where}: level {lv.path!r} is downsampled along {self.axes[a]!r}; "
                    "appending along a downsampled axis is not supported; nothing was written"
                )
        return coerce_data(arr, self._dtype, cast, where)

    def _append_locked(self, data: Any, a: int, cast: bool) -> np.ndarray:
        """Append ``data`` along axis ``a`` (under the image lock, checked again against
        the shapes just re-read); the block as written (with that axis)."""
        arr = self._check_append(data, a, cast)
        shape0 = self.shape
        old = shape0[a]
        new0 = tuple(s + arr.shape[a] if i == a else s for i, s in enumerate(shape0))
        shapes = self._level_shapes(new0)
        arrays = [self._grown(lv, s) for lv, s in zip(self._levels, shapes, strict=True)]
        region = [(old, new0[i]) if i == a else (0, s) for i, s in enumerate(new0)]
        arrays[0][tuple(slice(x, y) for x, y in region)] = arr
        self._propagate(arrays, region, arr)
        self._commit_shapes(shapes)
        self._load()
        return arr

    def append_channel(
        self, name: str, data: Any, *, color: str | None = None, cast: bool = False
    ) -> Image:
        """Add a channel (``omero`` entry ``name``, ``color`` hex like ``"00FF00"``)."""
        self._ctx.check_writable("append a channel")
        try:
            check_label(name, "channel")
        except ValueError as exc:
            raise SettingsError(f"{exc}; nothing was written") from None
        if color is not None:
            from omestream.settings import Channel

            try:
                color = Channel(name=name, color=color).color
            except ValueError as exc:
                raise SettingsError(f"channel {name!r}: {exc}") from None
        with self._channel_change():
            with self._ctx.locks.image(self.path):
                self._load()
                a = self._channel_axis()
                if name in self.channel_names:
                    raise SettingsError(
                        f"{self._ctx.where(self.path)} already has a channel {name!r} "
                        f"(channels {self.channel_names}); nothing was written"
                    )
                start = self.shape[a]
                block = self._append_locked(data, a, cast)
            windows = channel_windows(block, a, start)
            self._update_omero(
                add=[(name, color)], expect_before=start, create=True, windows=windows
            )
        self._warn_if_unlike_others()
        return self

    def delete_channel(self, channel: str | int) -> Image:
        """Remove a channel: later channels move down by one, on every level."""
        self._ctx.check_writable("delete a channel", destructive=True)
        with self._channel_change(), self._ctx.locks.image(self.path):
            self._load()
            a = self._channel_axis()
            n = self.shape[a]
            if isinstance(channel, str):
                if channel not in self.channel_names:
                    raise SettingsError(
                        f"{self._ctx.where(self.path)} has no channel {channel!r} "
                        f"(channels {self.channel_names})"
                    )
                idx = self.channel_names.index(channel)
            elif isinstance(channel, bool) or not isinstance(channel, int | np.integer):
                # True would be taken as index 1: a channel is named or counted, not a flag
                raise SettingsError(
                    f"channel must be a name or an index, got {channel!r}; nothing was changed"
                )
            else:
                idx = int(channel)
                if not 0 <= idx < n:
                    raise SettingsError(f"channel index {idx} out of range 0..{n - 1}")
            if n == 1:
                raise SettingsError(
                    f"{self._ctx.where(self.path)}: cannot delete its only channel"
                )
            new0 = tuple(s - 1 if i == a else s for i, s in enumerate(self.shape))
            shapes = self._level_shapes(new0)
            for lv in self._levels:
                arr = self._open(lv.path)
                for k in range(idx, n - 1):  # one channel plane block at a time
                    src = tuple(k + 1 if i == a else slice(None) for i in range(arr.ndim))
                    dst = tuple(k if i == a else slice(None) for i in range(arr.ndim))
                    arr[dst] = arr[src]
            self._commit_shapes(shapes)
            self._load()
            self._update_omero(remove=idx)
        self._warn_if_unlike_others()
        return self

    # -- rewriting ---------------------------------------------------------------------------
    def _selection(
        self, key: Any
    ) -> tuple[list[tuple[int, int]], tuple[int, ...], tuple[int, ...]]:
        """(region per axis, selection shape, axes dropped by integer indices)."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (len(self.shape) - len(key) + 1) + key[i + 1 :]
        if len(key) > len(self.shape):
            raise SettingsError(f"too many indices ({len(key)}) for axes {self.axes}")
        key = key + (slice(None),) * (len(self.shape) - len(key))
        region, dropped = [], []
        for i, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step != 1:
                    raise SettingsError("slices with a step cannot be written")
                region.append((start, max(start, stop)))
            elif isinstance(k, int | np.integer):
                j = int(k) + n if k < 0 else int(k)
                if not 0 <= j < n:
                    raise SettingsError(
                        f"index {k} is outside axis {self.axes[i]!r} of extent {n}; use append() "
                        "to grow the image"
                    )
                region.append((j, j + 1))
                dropped.append(i)
            else:
                raise SettingsError(f"cannot index axis {self.axes[i]!r} with {k!r}")
        shape = tuple(b - a for a, b in region)
        return region, shape, tuple(dropped)

    def write(self, key: Any, data: Any, *, cast: bool = False) -> Image:
        """Rewrite a region of level 0 (``image.write((t, c), plane)``); lower levels follow."""
        self._ctx.check_writable("rewrite data", destructive=True)
        with self._ctx.locks.image(self.path):
            self._load()
            region, shape, dropped = self._selection(key)
            where = f"{self._ctx.where(self.path)}[{key!r}]"
            arr = np.asarray(data)
            full = tuple(s for i, s in enumerate(shape) if i not in dropped)
            if arr.shape == full:
                arr = arr.reshape(shape)
            elif arr.shape != shape:
                raise FrameShapeError(
                    f"{where}: data has shape {arr.shape}; the selection has shape {full} "
                    "; nothing was written"
                )
            arr = coerce_data(arr, self._dtype, cast, where)
            self._check_whole_factors(where)
            arrays = [self._open(lv.path) for lv in self._levels]
            arrays[0][tuple(slice(a, b) for a, b in region)] = arr
            self._propagate(arrays, region, arr)
        return self

    def __setitem__(self, key: Any, data: Any) -> None:
        self.write(key, data)

    # -- metadata ----------------------------------------------------------------------------
    def _update_omero(
        self,
        add: list[tuple[str | None, str | None]] | None = None,
        remove: int | None = None,
        expect_before: int | None = None,
        create: bool = False,
        windows: dict[int, tuple[float, float]] | None = None,
    ) -> None:
        """Keep ``omero.channels`` in step with the channel axis (under the metadata lock);
        ``windows`` are display windows measured for channels by index."""
        ctx = self._ctx
        with ctx.locks.metadata():
            self._load()
            if self._parsed.channels is None and not create:
                return
            omero = copy.deepcopy(self._parsed.raw.get("omero", {}))
            if not omero:  # a channel named by the user needs an omero block to live in
                omero = {"channels": [], "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}
                if self.name:
                    omero["name"] = self.name
            channels = list(omero.get("channels", []))
            if remove is not None and remove < len(channels):
                channels.pop(remove)
            if add:
                if expect_before is not None:
                    # entries for channels a killed writer added without listing them
                    channels = channels[:expect_before]
                    while len(channels) < expect_before:
                        channels.append(self._default_channel(len(channels), channels))
                for label, color in add:
                    entry = self._default_channel(len(channels), channels, label, color)
                    channels.append(entry)
            omero["channels"] = channels
            if windows:
                omero = apply_windows(omero, windows, self._dtype)
            ctx.write_content(self.path, {"omero": omero})
            self._load()

    def _default_channel(
        self,
        i: int,
        existing: list[dict[str, Any]],
        label: str | None = None,
        color: str | None = None,
    ) -> dict[str, Any]:
        window = existing[0].get("window") if existing else None
        label = label or f"Channel {i}"
        taken = [c.get("color") for c in existing if isinstance(c.get("color"), str)]
        return {
            "label": label,
            "color": pick_colors([color or guess_color(label)], taken)[0],
            "window": copy.deepcopy(window) if window else channel_window(str(self._dtype)),
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
        }

    def check(self) -> list[str]:
        """What is inconsistent (levels disagreeing with level 0, omero channel count)."""
        self._load()
        problems = []
        expected = self._level_shapes(self.shape)
        for lv, shape in zip(self._levels[1:], expected[1:], strict=True):
            if lv.shape != shape:
                problems.append(f"level {lv.path!r} has shape {lv.shape}, expected {shape}")
        if self._parsed.channels is not None:
            try:
                c = self.shape[self._channel_axis()]
            except SettingsError:
                c = None
            if c is not None and len(self._parsed.channels) != c:
                problems.append(
                    f"omero lists {len(self._parsed.channels)} channels, the array holds {c}"
                )
        return problems

    def repair(self) -> list[str]:
        """Bring lower levels to level 0's extent and ``omero`` to the channel count.

        Needed only after a process died between writing level shapes; returns what
        was fixed.
        """
        self._ctx.check_writable("repair the image")
        problems = self.check()
        if any(p.startswith("level") for p in problems):
            with self._shape_change(channel=False):
                problems = self.check()  # as they are now, under the lock
                if any(p.startswith("level") for p in problems):
                    self._commit_shapes(self._level_shapes(self.shape))
                    self._load()
        if any(p.startswith("omero") for p in problems):
            c = self.shape[self._channel_axis()]
            with self._ctx.locks.metadata():
                self._load()
                omero = copy.deepcopy(self._parsed.raw.get("omero", {}))
                chans = list(omero.get("channels", []))
                chans = chans[:c] + [self._default_channel(i, chans) for i in range(len(chans), c)]
                omero["channels"] = chans
                self._ctx.write_content(self.path, {"omero": omero})
                self._load()
        return problems
