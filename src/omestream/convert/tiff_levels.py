"""Resolution levels carried from an OME-TIFF source into an OME-Zarr conversion.

OME-TIFF keeps each plane's reduced resolutions as SubIFDs. Like an OME-Zarr source's
levels (see :mod:`omestream.convert.levels`), they are copied as they are: the same
pixels and sizes, however the source's writer made them, instead of being computed
anew from level 0. The stream writes level 0; each level is then read plane by plane
(bounded memory) and the image's ``multiscales`` lists the levels, their scales taken
from the ratio of level 0's size to theirs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from omestream.backends.codecs import CodecChoice
from omestream.convert.levels import OutputLevels
from omestream.io.kv import open_kv

__all__ = ["TiffLevels", "copy_tiff_levels", "tiff_levels"]


class TiffLevels:
    """The lower levels of each series of a TIFF source, as the output sees them."""

    def __init__(
        self,
        series: Callable[[int], Any],
        read_page: Callable[[Any, int], np.ndarray],
        n_series: int,
        source_axes: tuple[str, ...],
        output_axes: tuple[str, ...],
        per_page: int,
        dtype: np.dtype,
    ) -> None:
        self.series = series
        self.read_page = read_page
        self.n_series = n_series
        # output leading axis a reads the source's leading axis order[a]
        self.order = tuple(source_axes.index(n) for n in output_axes[:-2])
        self.per_page = per_page
        self.dtype = dtype

    def shapes(self, k: int) -> list[tuple[int, ...]]:
        """The (source order) shape of every level of series ``k``, level 0 first."""
        return [tuple(int(n) for n in lv.shape) for lv in self.series(k).levels]

    def array(self, k: int, level: int) -> _LevelArray:
        lv = self.series(k).levels[level]
        return _LevelArray(k, lv.pages, tuple(int(n) for n in lv.shape), self)


class _LevelArray:
    """One level of one series as an array in the output's axis order (what
    :func:`~omestream.convert.arrays.copy_array` reads), read one page at a time."""

    fill_value = 0

    def __init__(self, k: int, pages: Any, shape: tuple[int, ...], levels: TiffLevels) -> None:
        self._series = k
        self._pages = pages
        self._lead = shape[:-2]  # source order
        self._yx = shape[-2:]
        self._levels = levels
        self.dtype = levels.dtype
        self.shape = (*(self._lead[a] for a in levels.order), *self._yx)
        self.ndim = len(self.shape)

    def _plane(self, frame: int, cache: dict[int, np.ndarray]) -> np.ndarray:
        page, sample = divmod(frame, self._levels.per_page)
        data = cache.get(page)
        if data is None:
            cache.clear()  # planes come page by page: one page is kept
            data = cache[page] = self._levels.read_page(self._pages[page], self._series).reshape(
                self._levels.per_page, *self._yx
            )
        return data[sample]

    def __getitem__(self, sel: tuple[slice, ...]) -> np.ndarray:
        ranges = [range(*s.indices(n)) for s, n in zip(sel, self.shape, strict=True)]
        lead, (ys, xs) = ranges[:-2], ranges[-2:]
        out = np.empty([len(r) for r in ranges], dtype=self.dtype)
        order = self._levels.order
        cache: dict[int, np.ndarray] = {}
        for idx in itertools.product(*lead):
            src_idx = [0] * len(self._lead)
            for a, i in zip(order, idx, strict=True):
                src_idx[a] = i
            frame = int(np.ravel_multi_index(src_idx, self._lead)) if self._lead else 0
            plane = self._plane(frame, cache)[ys.start : ys.stop, xs.start : xs.stop]
            out[tuple(i - r.start for i, r in zip(idx, lead, strict=True))] = plane
        return out


def _step(n0: int, n: int) -> float:
    """How many level-0 pixels one pixel of a level of ``n`` pixels spans (``n0`` at
    level 0): the whole factor that gives ``n`` by rounding up or down (70 pixels
    reduced 4x are 18, each spanning 4), else the ratio of the sizes."""
    f = max(1, round(n0 / n))
    return float(f) if n in (-(-n0 // f), n0 // f) else n0 / n


def tiff_levels(levels: TiffLevels) -> str | None:
    """Why the source's levels cannot be copied (None: they can): every series must
    have the same levels, each keeping the leading axes and shrinking y and x."""
    first = levels.shapes(0)
    for k in range(levels.n_series):
        shapes = levels.shapes(k)
        if shapes != first:
            return f"series {k} has levels {shapes}, series 0 {first}"
        for lv, shape in enumerate(shapes[1:], start=1):
            if len(shape) != len(shapes[0]) or shape[:-2] != shapes[0][:-2]:
                return f"level {lv} of series {k} has shape {shape}, level 0 {shapes[0]}"
            if any(n < 1 or n > m for n, m in zip(shape[-2:], shapes[lv - 1][-2:], strict=True)):
                return f"level {lv} of series {k} ({shape}) is not smaller than level {lv - 1}"
            pages = len(levels.series(k).levels[lv].pages)
            if pages * levels.per_page != int(np.prod(shape[:-2], dtype=np.int64)):
                return f"level {lv} of series {k} has {pages} pages for shape {shape}"
    return None


def copy_tiff_levels(
    levels: TiffLevels,
    output: str,
    pairs: Sequence[tuple[int, str]],
    *,
    zarr_format: int,
    codec: CodecChoice,
) -> None:
    """For each (series, output image) pair: the series' levels 1.. written beside the
    output's level 0 (chunked and sharded as it is, cut to each level's size), then
    listed in the output's ``multiscales``."""
    out_kv = open_kv(output)
    for k, out_image in pairs:
        shapes = levels.shapes(k)
        out = OutputLevels(out_kv, out_image, len(shapes))
        shape0 = out.array0.shape
        scale0 = next(
            (list(t["scale"]) for t in out.level0.get("coordinateTransformations", ())
             if t.get("type") == "scale"),
            [1.0] * len(out.names),
        )  # fmt: skip
        shift = [t for t in out.level0.get("coordinateTransformations", ())
                 if t.get("type") == "translation"]  # fmt: skip
        for lv in range(1, len(shapes)):
            src = levels.array(k, lv)
            # y and x shrink by the source's step; the leading axes keep their pixel size
            steps = [1.0] * (len(out.names) - 2) + [
                _step(a, b) for a, b in zip(shape0[-2:], src.shape[-2:], strict=True)
            ]
            scale = [float(s) * f for s, f in zip(scale0, steps, strict=True)]
            tfs: list[dict[str, Any]] = [{"type": "scale", "scale": scale}, *shift]
            out.copy(lv, src, levels.dtype, tfs, codec, zarr_format)
        description = "reduced resolutions copied from the OME-TIFF's SubIFDs"
        out.list_levels(zarr_format, {"metadata": {"description": description}})
