"""FrameRouter: from the n-th frame of the acquisition to where it is stored.

The only place that knows both the acquisition order (the order of
``settings.dimensions``) and the storage order of the arrays. Backends see storage
indices only.
"""

from __future__ import annotations

from dataclasses import dataclass

from omestream.errors import FrameCountError
from omestream.settings import AcquisitionSettings, PositionDimension

__all__ = ["FrameRouter", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    frame: int  # running frame number in acquisition order
    image: int  # index into StoragePlan.images
    index: tuple[int, ...]  # storage index over the non-frame axes of that image
    acquisition: dict[str, int]  # dimension name -> index, in acquisition order


class FrameRouter:
    """Maps frame numbers to (image, storage index) and back."""

    def __init__(self, settings: AcquisitionSettings) -> None:
        outer = settings.dimensions[:-2]
        self._names = tuple(d.name for d in outer)
        self._counts = tuple(d.count for d in outer)  # first may be None (unbounded)
        self._pos_axis = next(
            (i for i, d in enumerate(outer) if isinstance(d, PositionDimension)), None
        )
        storage = settings.storage_dimension_names[:-2]
        # for each storage axis: which acquisition axis feeds it
        self._storage_from_acq = tuple(self._names.index(n) for n in storage)
        # strides of the acquisition mixed-radix number (the first axis may be unbounded)
        strides = [1] * len(outer)
        for i in range(len(outer) - 2, -1, -1):
            strides[i] = strides[i + 1] * (self._counts[i + 1] or 1)
        self._strides = tuple(strides)
        self.total = settings.total_frames  # None when unbounded
        self.per_outer = settings.frames_per_outer_step if outer else 1

    @property
    def acquisition_names(self) -> tuple[str, ...]:
        return self._names

    def check(self, frame: int) -> None:
        if self.total is not None and frame >= self.total:
            raise FrameCountError(
                f"frame {frame} is beyond the acquisition: it holds {self.total} frames "
                f"({' x '.join(f'{n}={c}' for n, c in zip(self._names, self._counts, strict=True))}); "
                "nothing was written for it"
            )

    def acquisition_index(self, frame: int) -> tuple[int, ...]:
        idx = []
        rest = frame
        for i, stride in enumerate(self._strides):
            q, rest = divmod(rest, stride)
            if i > 0 or self._counts[0] is not None:
                count = self._counts[i]
                assert count is not None
                q = q % count if i > 0 else q
            idx.append(q)
        return tuple(idx)

    def route(self, frame: int) -> Route:
        self.check(frame)
        acq = self.acquisition_index(frame)
        image = acq[self._pos_axis] if self._pos_axis is not None else 0
        index = tuple(acq[a] for a in self._storage_from_acq)
        return Route(frame, image, index, dict(zip(self._names, acq, strict=True)))

    def frame_number(self, image: int, index: tuple[int, ...]) -> int:
        """Inverse of :meth:`route`: the frame number that lands at ``index`` of ``image``."""
        acq = [0] * len(self._names)
        for s_axis, a_axis in enumerate(self._storage_from_acq):
            acq[a_axis] = index[s_axis]
        if self._pos_axis is not None:
            acq[self._pos_axis] = image
        return sum(i * s for i, s in zip(acq, self._strides, strict=True))
