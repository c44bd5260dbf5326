"""Pyramid levels computed from frames as they are streamed.

Only y/x factors are applied per frame here; each level is computed from the level
above it, so the work per frame is about a third of one frame's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from omestream.errors import SettingsError
from omestream.plan import StoragePlan
from omestream.pyramid.kernels import downsample

__all__ = ["StreamPyramid"]


class StreamPyramid:
    def __init__(self, plan: StoragePlan, method: str) -> None:
        self.method = method
        im = plan.images[0]
        self.n_levels = len(im.levels)
        self.factors: list[tuple[int, int]] = []
        for lv in range(1, self.n_levels):
            prev, cur = im.levels[lv - 1], im.levels[lv]
            outer_change = [
                p != c for p, c in zip(prev.shape[:-2], cur.shape[:-2], strict=True) if p
            ]
            if any(outer_change) or any(
                round(cs / ps) != 1 for ps, cs in zip(prev.scale[:-2], cur.scale[:-2], strict=True)
            ):
                raise SettingsError(
                    "downsampling along axes other than y and x is not available while "
                    "streaming; build those levels afterwards with omestream.build_pyramid"
                )
            fy = round(cur.scale[-2] / prev.scale[-2])
            fx = round(cur.scale[-1] / prev.scale[-1])
            self.factors.append((fy, fx))

    def feed(
        self, index: tuple[int, ...], frame: np.ndarray
    ) -> Iterator[tuple[int, tuple[int, ...], np.ndarray]]:
        current = frame
        for lv, f in enumerate(self.factors, start=1):
            current = downsample(current, f, self.method)
            yield lv, index, current
