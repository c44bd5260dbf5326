"""Pictures of a dataset: channel thumbnails, colour composites and plate mosaics.

Pixels are read from the smallest pyramid level that still has the requested
size, one plane at a time (a max projection never holds more than two planes),
and coloured with each channel's ``omero`` colour. Contrast is set per channel
from percentiles shared by every well/position of one picture, so a well that is
brighter than the others also looks brighter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from omestream.errors import SettingsError, StoreFormatError
from omestream.settings.colors import guess_color, pick_colors
from omestream.summary import DatasetInfo, ImageInfo, describe, tiff_file

__all__ = ["Picture", "channel_planes", "render_dataset"]

Mode = Literal["max", "mid"]
_EMPTY = (28, 28, 32)  # empty plate wells
_BACKGROUND = (0, 0, 0)
_TEXT = (220, 220, 220)


@dataclass
class Picture:
    """An RGB uint8 image and what it shows."""

    rgb: np.ndarray  # (H, W, 3) uint8
    description: str

    def save(self, path: str) -> None:
        from PIL import Image

        Image.fromarray(self.rgb, "RGB").save(path)


def _level_for(image: ImageInfo, size: int) -> int:
    """The coarsest level whose frame still has at least ``size`` pixels on its long side."""
    y, x = _yx(image)
    for k in range(len(image.levels) - 1, -1, -1):
        shape = image.levels[k].shape
        if max(shape[y], shape[x]) >= size:
            return k
    return 0


def _yx(image: ImageInfo) -> tuple[int, int]:
    """Positions of the y and x axes: the last two, but for RGB samples stored
    contiguously (y, x, c) the channel axis comes after them."""
    names = [a.name for a in image.axes]
    if "y" in names and "x" in names:
        return names.index("y"), names.index("x")
    return len(names) - 2, len(names) - 1


def _open_level(location: str, info: DatasetInfo, image: ImageInfo, level: int) -> Any:
    if info.format == "ome-zarr":
        import zarr

        path = "/".join(p for p in (image.path, image.levels[level].path) if p)
        return zarr.open_array(location, path=path, mode="r")
    import tifffile

    series = int(image.path.split()[-1])
    store = tifffile.imread(tiff_file(location), series=series, level=level, aszarr=True)
    import zarr

    return zarr.open_array(store, mode="r")


def channel_planes(
    array: Any, image: ImageInfo, mode: Mode = "max", t: int | None = None
) -> np.ndarray:
    """(channels, y, x) float32: per channel the max projection over z or the mid plane."""
    axes = image.axes
    types = [a.type for a in axes]
    names = [a.name for a in axes]
    shape = array.shape
    y_axis, x_axis = _yx(image)
    c_axis = types.index("channel") if "channel" in types else None
    n_c = shape[c_axis] if c_axis is not None else 1
    z_axis = next(
        (i for i in range(len(axes)) if i not in (y_axis, x_axis)
         and (types[i] == "space" or names[i] == "z")), None,
    )  # fmt: skip
    out = np.zeros((n_c, shape[y_axis], shape[x_axis]), np.float32)
    for c in range(n_c):
        index: list[Any] = []
        for i in range(len(axes)):
            if i in (y_axis, x_axis):
                index.append(slice(None))
            elif i == c_axis:
                index.append(c)
            elif types[i] == "time":
                index.append(shape[i] // 2 if t is None else min(t, shape[i] - 1))
            elif i == z_axis:
                index.append(None)  # filled below
            else:
                index.append(0)
        if z_axis is None:
            out[c] = np.asarray(array[tuple(index)], np.float32)
            continue
        zs = [shape[z_axis] // 2] if mode == "mid" else range(shape[z_axis])
        acc = None
        for z in zs:
            index[z_axis] = z
            plane = np.asarray(array[tuple(index)], np.float32)
            acc = plane if acc is None else np.maximum(acc, plane)
        out[c] = acc
    return out


def _colors(image: ImageInfo, n: int) -> np.ndarray:
    chans = image.channels
    given = [(chans[i].color or guess_color(chans[i].label)) if i < len(chans) else None
             for i in range(n)]  # fmt: skip
    if n == 1 and given[0] is None:
        given[0] = "FFFFFF"  # one channel of unknown colour: grey levels
    cols = []
    for hexa in pick_colors(given):
        cols.append([int(hexa[k : k + 2], 16) / 255 for k in (0, 2, 4)])
    return np.asarray(cols, np.float32)


def _limits(stacks: list[np.ndarray]) -> list[tuple[float, float]]:
    """Per channel (low, high) from the 0.5/99.8 percentiles of every stack together
    (stacks with fewer channels count for the channels they have)."""
    n_c = max(s.shape[0] for s in stacks)
    out = []
    for c in range(n_c):
        values = np.concatenate([s[c].ravel() for s in stacks if c < s.shape[0]])
        lo, hi = np.percentile(values, [0.5, 99.8]) if values.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = float(values.min(initial=0)), float(values.max(initial=1))
            if hi <= lo:
                hi = lo + 1
        out.append((float(lo), float(hi)))
    return out


def _normalise(stack: np.ndarray, limits: list[tuple[float, float]]) -> np.ndarray:
    out = np.empty_like(stack)
    for c in range(stack.shape[0]):
        lo, hi = limits[c]
        out[c] = np.clip((stack[c] - lo) / (hi - lo), 0, 1)
    return out


def _composite(norm: np.ndarray, colors: np.ndarray) -> np.ndarray:
    rgb = np.tensordot(norm, colors, axes=([0], [0]))  # (y, x, 3): additive blend
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(rgb, "RGB").resize(new, resample))


def _label(canvas: np.ndarray, xy: tuple[int, int], text: str, color: tuple[int, ...]) -> None:
    from PIL import Image, ImageDraw

    img = Image.fromarray(canvas, "RGB")
    ImageDraw.Draw(img).text(xy, text, fill=color)
    canvas[...] = np.asarray(img)


def _paste(canvas: np.ndarray, tile: np.ndarray, top: int, left: int, cell: int) -> None:
    h, w = tile.shape[:2]
    y0, x0 = top + (cell - h) // 2, left + (cell - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = tile


def _planes(
    location: str, info: DatasetInfo, image: ImageInfo, size: int, mode: Mode, t: int | None
) -> tuple[np.ndarray, bool]:
    """The image's (channels, y, x) planes to draw, and whether they are the red, green
    and blue samples of an RGB image (an alpha sample is left out)."""
    arr = _open_level(location, info, image, _level_for(image, size))
    stack = channel_planes(arr, image, mode, t)
    rgb = image.rgb and stack.shape[0] >= 3
    return (stack[:3] if rgb else stack), rgb


_RGB = np.eye(3, dtype=np.float32)  # the colours of red, green and blue samples


def _looks(
    drawn: list[tuple[ImageInfo, np.ndarray, bool]],
) -> list[tuple[list[tuple[float, float]], np.ndarray]]:
    """Contrast limits and colours per drawn image. Images alike (same dtype and
    channels: the wells of a plate) share them, so a brighter well looks brighter;
    series unlike the others get their own. RGB samples keep their colour balance:
    one range for the three (8-bit ones as they are)."""
    groups: dict[tuple[str, int, bool], list[int]] = {}
    for k, (image, stack, rgb) in enumerate(drawn):
        groups.setdefault((image.dtype, stack.shape[0], rgb), []).append(k)
    out: list[Any] = [None] * len(drawn)
    for (dtype, n_c, rgb), members in groups.items():
        stacks = [drawn[k][1] for k in members]
        limits = _limits(stacks)
        if rgb:
            shared = (min(lo for lo, _ in limits), max(hi for _, hi in limits))
            limits = [(0.0, 255.0) if dtype == "uint8" else shared] * n_c
        colors = _RGB if rgb else _colors(drawn[members[0]][0], n_c)
        for k in members:
            out[k] = (limits, colors)
    return out


def _image_panels(
    location: str, info: DatasetInfo, size: int, mode: Mode, t: int | None
) -> Picture:
    image = info.images[0]
    stack, rgb = _planes(location, info, image, size, mode, t)
    ((limits, colors),) = _looks([(image, stack, rgb)])
    norm = _normalise(stack, limits)
    tiles = [_fit(_composite(norm, colors), size)]
    labels = ["composite"]
    if stack.shape[0] > 1:
        for c in range(stack.shape[0]):
            tiles.append(_fit(_composite(norm[c : c + 1], colors[c : c + 1]), size))
            labels.append(image.channels[c].label if c < len(image.channels) else f"channel {c}")
    gap, top = 4, 14
    canvas = np.zeros((size + top, len(tiles) * (size + gap) - gap, 3), np.uint8)
    for k, (tile, text) in enumerate(zip(tiles, labels, strict=True)):
        _paste(canvas, tile, top, k * (size + gap), size)
        color = tuple(int(v * 255) for v in colors[k - 1]) if k else _TEXT
        _label(canvas, (k * (size + gap) + 2, 1), text, color)
    what = "max projection over z" if mode == "max" else "mid plane"
    channels = "RGB" if rgb else f"{stack.shape[0]} channel(s)"
    return Picture(canvas, f"{image.path or 'image'}: {what}, {channels}")


def _mosaic(
    location: str,
    info: DatasetInfo,
    cells: list[tuple[int, int, ImageInfo | None]],
    n_rows: int,
    n_cols: int,
    row_labels: list[str],
    col_labels: list[str],
    cell: int,
    mode: Mode,
    t: int | None,
) -> np.ndarray:
    drawn = [(r, c, image, *_planes(location, info, image, cell, mode, t))
             for r, c, image in cells if image is not None]  # fmt: skip
    if not drawn:
        raise StoreFormatError(f"{location}: no images to draw")
    looks = _looks([(image, stack, rgb) for _r, _c, image, stack, rgb in drawn])
    margin_left, margin_top, gap = 18, 14, 2
    h = margin_top + n_rows * (cell + gap)
    w = margin_left + n_cols * (cell + gap)
    canvas = np.zeros((h, w, 3), np.uint8)
    canvas[...] = _BACKGROUND
    for r in range(n_rows):
        for c in range(n_cols):
            top, left = margin_top + r * (cell + gap), margin_left + c * (cell + gap)
            canvas[top : top + cell, left : left + cell] = _EMPTY
    for (r, c, _image, stack, _rgb), (limits, colors) in zip(drawn, looks, strict=True):
        tile = _fit(_composite(_normalise(stack, limits), colors), cell)
        top, left = margin_top + r * (cell + gap), margin_left + c * (cell + gap)
        _paste(canvas, tile, top, left, cell)
    for r, text in enumerate(row_labels):
        _label(canvas, (3, margin_top + r * (cell + gap) + cell // 2 - 6), text, _TEXT)
    for c, text in enumerate(col_labels):
        _label(canvas, (margin_left + c * (cell + gap) + cell // 2 - 3, 1), text, _TEXT)
    return canvas


def _check_time_point(location: str, info: DatasetInfo, t: int) -> None:
    """A time point no image has is refused (images shorter than ``t`` show their last)."""
    lengths = [
        im.shape[i] for im in info.images for i, a in enumerate(im.axes) if a.type == "time"
    ]
    if not lengths:
        raise SettingsError(f"{location} has no time axis; leave out the time point")
    if t >= max(lengths):
        raise SettingsError(
            f"time point {t} is outside {location}: it has {max(lengths)} (0..{max(lengths) - 1})"
        )


def render_dataset(
    location: str,
    size: int = 256,
    mode: Mode = "max",
    t: int | None = None,
    info: DatasetInfo | None = None,
) -> Picture:
    """A picture of the dataset: channel panels + composite for one image, a plate
    mosaic (one tile per well, first field) for plates, a grid for multi-position."""
    info = info or describe(location)
    if not info.images:
        raise StoreFormatError(f"{location}: holds no images to draw")
    if t is not None:
        _check_time_point(location, info, t)
    if info.plate is not None:
        plate = info.plate
        cell = max(16, min(size, 1024 // max(len(plate.columns), 1)))
        by_well = {im.well: im for im in reversed(info.images)}  # first field wins
        cells = [
            (plate.rows.index(w.row), plate.columns.index(w.column), by_well.get(w.path))
            for w in plate.wells
        ]
        rgb = _mosaic(location, info, cells, len(plate.rows), len(plate.columns),
                      list(plate.rows), list(plate.columns), cell, mode, t)  # fmt: skip
        return Picture(rgb, f"plate mosaic: {len(plate.wells)} well(s), first field each")
    if len(info.images) > 1:
        n = len(info.images)
        n_cols = math.ceil(math.sqrt(n))
        n_rows = math.ceil(n / n_cols)
        cells = [(k // n_cols, k % n_cols, im) for k, im in enumerate(info.images)]
        rgb = _mosaic(location, info, cells, n_rows, n_cols, [""] * n_rows,
                      [""] * n_cols, size, mode, t)  # fmt: skip
        for k, im in enumerate(info.images):
            top, left = 14 + (k // n_cols) * (size + 2), 18 + (k % n_cols) * (size + 2)
            _label(rgb, (left + 2, top + 2), im.name or im.path, _TEXT)
        return Picture(rgb, f"{n} positions")
    return _image_panels(location, info, size, mode, t)
