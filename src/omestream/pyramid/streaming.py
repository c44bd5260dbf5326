"""Pyramid levels computed from frames as they are streamed (pure, no I/O).

Each level is computed from the level above it, frame by frame, so y/x-only
pyramids cost about a third of a frame's pixels per frame and hold nothing.
A factor on an outer axis (usually z) groups ``f`` consecutive planes of the same
outer position (t, c, ...): planes of level k-1 are buffered per outer position until
their group is complete (plus the filter's margin for ``gaussian``), then reduced
into one plane of level k and dropped. The router may deliver planes in any order
(e.g. channels inner to z), so buffers are keyed by the index without the grouped
axes. Skipped frames (``None``) take part as fill-valued planes; a group made only of
skipped planes is reported as skipped. :meth:`StreamPyramid.finish` emits groups left
incomplete when a stream ends early.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from omestream.errors import SettingsError
from omestream.plan import ArrayPlan, StoragePlan
from omestream.pyramid.kernels import KERNELS, downsample, halo

__all__ = ["LevelFrame", "StreamPyramid", "level_factors"]

#: (level, storage index at that level, frame or None when it holds only fill)
LevelFrame = tuple[int, tuple[int, ...], np.ndarray | None]
_ImageFrame = tuple[int, int, tuple[int, ...], np.ndarray | None]


def level_factors(levels: tuple[ArrayPlan, ...]) -> list[tuple[int, ...]]:
    """Per level k >= 1, the whole-number factor per axis from level k-1 to level k."""
    out: list[tuple[int, ...]] = []
    for lv in range(1, len(levels)):
        prev, cur = levels[lv - 1], levels[lv]
        f = tuple(
            max(1, round(c / p)) if p else 1 for p, c in zip(prev.scale, cur.scale, strict=True)
        )
        for a, (fa, ps, cs) in enumerate(zip(f, prev.shape, cur.shape, strict=True)):
            if ps and cs != -(-ps // fa):
                raise SettingsError(
                    f"pyramid level {lv} has {cs} elements on axis {a}; a factor of {fa} from "
                    f"level {lv - 1} ({ps} elements) gives {-(-ps // fa)}"
                )
        out.append(f)
    return out


class _Level:
    """Grouping along outer axes for one level (from level k-1)."""

    def __init__(self, prev: ArrayPlan, factors: tuple[int, ...], method: str) -> None:
        self.factors = factors
        nd = len(factors)
        self.group_axes = tuple(a for a in range(nd - 2) if factors[a] > 1)
        self.f = tuple(factors[a] for a in self.group_axes)
        margins = halo(factors, method)
        self.h = tuple(margins[a] for a in self.group_axes)
        self.n = tuple(prev.shape[a] for a in self.group_axes)  # level k-1 extents
        self.n_groups = tuple(-(-n // f) for n, f in zip(self.n, self.f, strict=True))
        self.total_groups = math.prod(self.n_groups)
        self.margins_yx = margins[-2:]

    def window(self, g: tuple[int, ...]) -> list[range]:
        return [
            range(max(0, gi * f - h), min(n, (gi + 1) * f + h))
            for gi, f, h, n in zip(g, self.f, self.h, self.n, strict=True)
        ]

    def groups_of(self, pos: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Groups whose window holds plane ``pos``."""
        per_axis = []
        for p, f, h, ng in zip(pos, self.f, self.h, self.n_groups, strict=True):
            lo = max(0, (p - h) // f)
            hi = min(ng - 1, (p + h) // f)
            per_axis.append(range(lo, hi + 1))
        return list(itertools.product(*per_axis))


class StreamPyramid:
    """Turns each level-0 frame into the frames of levels 1..N as they become computable."""

    def __init__(self, plan: StoragePlan, method: str) -> None:
        if method not in KERNELS:
            raise SettingsError(f"unknown downsampling method {method!r}")
        self.method = method
        self.fill_value = plan.fill_value
        self.dtype = np.dtype(plan.dtype)
        im = plan.images[0]
        self.n_levels = len(im.levels)
        self.factors = level_factors(im.levels)
        self._levels = [
            _Level(im.levels[k - 1], self.factors[k - 1], method) for k in range(1, self.n_levels)
        ]
        u = plan.unbounded_axis
        for lv in self._levels:
            if u is not None and u in lv.group_axes:
                raise SettingsError(
                    f"cannot downsample axis {im.axis_names[u]!r} while streaming: its length is "
                    "not known in advance; build those levels afterwards with "
                    "omestream.build_pyramid"
                )
        # (image, level, outer key) -> {group-axis position: plane of level-1 | None}
        self._planes: dict[tuple, dict[tuple[int, ...], np.ndarray | None]] = {}
        self._emitted: dict[tuple, set[tuple[int, ...]]] = {}

    @property
    def buffered_planes(self) -> int:
        """Planes held for outer-axis groups (what bounds the memory used)."""
        return sum(len(p) for p in self._planes.values())

    def feed(
        self, index: tuple[int, ...], frame: np.ndarray | None, image: int = 0
    ) -> Iterator[LevelFrame]:
        """Frames of lower levels that ``frame`` (at level-0 ``index``) completes.

        ``frame=None`` means the frame was skipped (it reads as the fill value).
        """
        for _, level, idx, out in self._push(image, 1, tuple(index), frame):
            yield level, idx, out

    def finish(self) -> Iterator[tuple[int, int, tuple[int, ...], np.ndarray | None]]:
        """Emit groups left incomplete (a stream that ended early); missing planes are fill.

        Yields ``(image, level, index, frame)``.
        """
        for k in range(1, self.n_levels):
            lv = self._levels[k - 1]
            for key in [key for key in self._planes if key[1] == k]:
                planes = self._planes.get(key)
                if not planes:
                    continue
                emitted = self._emitted.setdefault(key, set())
                todo = sorted({g for pos in planes for g in lv.groups_of(pos)} - emitted)
                for g in todo:
                    yield from self._emit(key, lv, g, allow_missing=True)
        self._planes.clear()
        self._emitted.clear()

    # -- internals ----------------------------------------------------------------------
    def _push(
        self, image: int, k: int, index: tuple[int, ...], plane: np.ndarray | None
    ) -> Iterator[_ImageFrame]:
        if k >= self.n_levels:
            return
        lv = self._levels[k - 1]
        if not lv.group_axes:
            out = None if plane is None else downsample(plane, lv.factors[-2:], self.method)
            yield image, k, index, out
            yield from self._push(image, k + 1, index, out)
            return
        pos = tuple(index[a] for a in lv.group_axes)
        outer = tuple(-1 if a in lv.group_axes else i for a, i in enumerate(index))
        key = (image, k, outer)
        self._planes.setdefault(key, {})[pos] = plane
        emitted = self._emitted.setdefault(key, set())
        for g in lv.groups_of(pos):
            if g not in emitted and self._complete(key, lv, g):
                yield from self._emit(key, lv, g, allow_missing=False)

    def _complete(self, key: tuple, lv: _Level, g: tuple[int, ...]) -> bool:
        planes = self._planes[key]
        return all(p in planes for p in itertools.product(*lv.window(g)))

    def _emit(
        self, key: tuple, lv: _Level, g: tuple[int, ...], allow_missing: bool
    ) -> Iterator[_ImageFrame]:
        image, k, outer = key
        planes = self._planes.setdefault(key, {})
        window = lv.window(g)
        positions = list(itertools.product(*window))
        present = [planes.get(p) for p in positions]
        emitted = self._emitted.setdefault(key, set())
        emitted.add(g)
        out_index = list(outer)
        for a, gi in zip(lv.group_axes, g, strict=True):
            out_index[a] = gi
        out: np.ndarray | None = None
        real = [p for p in present if p is not None]
        if real:
            yx = real[0].shape
            stack = np.empty((*[len(r) for r in window], *yx), dtype=self.dtype)
            for p, plane in zip(positions, present, strict=True):
                rel = tuple(pi - r.start for pi, r in zip(p, window, strict=True))
                if plane is None:
                    stack[rel] = self.fill_value
                else:
                    stack[rel] = plane
            core = tuple(
                slice(gi * f - r.start, min((gi + 1) * f, n) - r.start)
                for gi, f, n, r in zip(g, lv.f, lv.n, window, strict=True)
            )
            reduced = downsample(
                stack,
                (*lv.f, *lv.factors[-2:]),
                self.method,
                core=(*core, slice(None), slice(None)),
            )
            out = reduced.reshape(reduced.shape[-2:])
        self._release(key, lv, positions, allow_missing)
        idx = tuple(out_index)
        yield image, k, idx, out
        yield from self._push(image, k + 1, idx, out)

    def _release(
        self, key: tuple, lv: _Level, positions: list[tuple[int, ...]], finishing: bool
    ) -> None:
        """Drop planes that no group still waiting needs; forget finished outer positions."""
        planes = self._planes.get(key, {})
        emitted = self._emitted.get(key, set())
        for p in positions:
            if p in planes and all(g in emitted for g in lv.groups_of(p)):
                del planes[p]
        if len(emitted) >= lv.total_groups and not finishing:
            self._planes.pop(key, None)
            self._emitted.pop(key, None)
