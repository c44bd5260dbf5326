"""Which plane each page of an OME-TIFF acquisition holds, in a few numbers per run.

A long time-lapse writes 10^5-10^6 pages. Kept as an (image, index) pair per page and
a set of every plane queued, the engine grew by ~170 bytes a frame; here pages are
runs and queued planes are bits:

* :class:`PlaneKeys` numbers the planes of an image (its storage indexes over the outer
  axes) with the first acquisition axis outermost, so that the key space does not
  depend on how far that axis has grown.
* :class:`PageMap` keeps, per file, runs of pages holding consecutive keys of one image
  at IFDs a fixed step apart: an acquisition in storage order is one run per file,
  several positions interleaved in one file one run per position, channels acquired
  inside a time point but stored outside it one run per channel and time point.
  :meth:`PageMap.blocks` turns the runs into the TiffData blocks of an image.
* :class:`PlaneBits` is a bitmap of planes (one bit per plane).

Each plane has at most one page: the engine writes every storage index once.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence

import numpy as np

from omestream.plan import StoragePlan

__all__ = ["Block", "PageMap", "PlaneBits", "PlaneKeys", "plane_keys"]

# (first OME plane, file, first IFD, planes) of a TiffData block
Block = tuple[int, int, int, int]
# runs still open for extension, per file; past this many the oldest are all closed
# (a run that is closed only stops growing: a new one starts where it would have)
_OPEN_RUNS = 1 << 14


class PlaneKeys:
    """Plane numbers of one image, independent of the first axis' extent.

    A plane's key is its storage index read as a mixed-radix number with the first
    acquisition axis (``first_axis``, None for a lone 2-D frame) as the most
    significant digit and the other outer axes, in storage order, after it. When the
    first axis is storage axis 0 (the default order), keys are OME plane numbers.
    """

    __slots__ = ("first", "per_step", "rest", "sizes")

    def __init__(self, sizes: Sequence[int], first_axis: int | None) -> None:
        self.sizes = tuple(int(s) for s in sizes)  # outer axes; the first may be 0 (unbounded)
        self.first = first_axis
        self.rest = tuple(a for a in range(len(self.sizes)) if a != first_axis)
        self.per_step = math.prod(self.sizes[a] for a in self.rest)  # keys per first-axis step

    def key(self, index: Sequence[int]) -> int:
        k = int(index[self.first]) if self.first is not None else 0
        for a in self.rest:
            k = k * self.sizes[a] + int(index[a])
        return k

    def index(self, key: int) -> tuple[int, ...]:
        out = [0] * len(self.sizes)
        for a in reversed(self.rest):
            key, out[a] = divmod(key, self.sizes[a])
        if self.first is not None:
            out[self.first] = key
        return tuple(out)

    def step(self, key: int) -> int:
        """The first-axis index of a key."""
        return key // self.per_step


def plane_keys(plan: StoragePlan, first_axis: int | None) -> list[PlaneKeys]:
    """The keys of each image of ``plan`` (sizes of its level-0 outer axes)."""
    return [PlaneKeys(im.levels[0].shape[:-2], first_axis) for im in plan.images]


class PlaneBits:
    """A set of one image's planes, one bit each, growing with the keys added."""

    __slots__ = ("_bits", "keys")

    def __init__(self, keys: PlaneKeys) -> None:
        self.keys = keys
        self._bits = bytearray()

    def add(self, index: Sequence[int]) -> None:
        self.add_key(self.keys.key(index))

    def add_key(self, key: int) -> None:
        byte = key >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits) // 2)))
        self._bits[byte] |= 1 << (key & 7)

    def has_key(self, key: int) -> bool:
        byte = key >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (key & 7)))

    def __contains__(self, index: object) -> bool:
        return self.has_key(self.keys.key(index))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return sum(b.bit_count() for b in self._bits)


class PageMap:
    """Per file, the (image, storage index) each level-0 page holds, as runs.

    A run is ``[image, first key, first IFD, pages, IFD step]``: its pages hold keys
    ``first key + j`` at IFDs ``first IFD + j * IFD step``. A page extends the open run
    of its image that expects its key, if its IFD is that run's next; else it starts
    a run.
    """

    def __init__(self, keys: Sequence[PlaneKeys], n_files: int) -> None:
        self.keys = list(keys)
        self._runs: list[list[list[int]]] = [[] for _ in range(n_files)]
        self._open: list[dict[tuple[int, int], list[int]]] = [{} for _ in range(n_files)]
        self._pages = [0] * n_files
        self._extent = [0] * len(self.keys)

    @property
    def n_files(self) -> int:
        return len(self._pages)

    def add(self, f: int, image: int, index: Sequence[int]) -> None:
        """Page ``pages(f)`` of file ``f`` holds ``index`` of ``image``."""
        self.add_key(f, image, self.keys[image].key(index))

    def add_key(self, f: int, image: int, key: int) -> None:
        ifd = self._pages[f]
        self._pages[f] = ifd + 1
        step = self.keys[image].step(key) + 1
        if step > self._extent[image]:
            self._extent[image] = step
        lanes = self._open[f]
        run = lanes.pop((image, key), None)
        if run is not None and (run[3] == 1 or ifd == run[2] + run[3] * run[4]):
            if run[3] == 1:
                run[4] = ifd - run[2]
            run[3] += 1
        else:
            run = [image, key, ifd, 1, 0]
            self._runs[f].append(run)
            if len(lanes) >= _OPEN_RUNS:
                lanes.clear()
        lanes[(image, key + 1)] = run

    def pages(self, f: int) -> int:
        """Level-0 pages in file ``f``."""
        return self._pages[f]

    def __len__(self) -> int:
        return sum(self._pages)

    def extent(self, image: int) -> int:
        """Steps of the first acquisition axis in which ``image`` has a page (0: none)."""
        return self._extent[image]

    def runs(self, f: int) -> list[tuple[int, int, int, int, int]]:
        """The runs of file ``f``: (image, first key, first IFD, pages, IFD step)."""
        return [(r[0], r[1], r[2], r[3], r[4]) for r in self._runs[f]]

    def file_pages(self, f: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        """(image, storage index) of each page of file ``f``, in IFD order."""

        def pages(run: list[int]) -> Iterator[tuple[int, int, int]]:
            image, key, ifd, count, step = run
            for j in range(count):
                yield ifd + j * step, image, key + j

        for _, image, key in heapq.merge(*(pages(r) for r in self._runs[f])):
            yield image, self.keys[image].index(key)

    def present(self, image: int) -> PlaneBits:
        """The planes of ``image`` that have a page."""
        bits = PlaneBits(self.keys[image])
        for runs in self._runs:
            for img, key, _, count, _ in runs:
                if img == image:
                    for k in range(key, key + count):
                        bits.add_key(k)
        return bits

    def blocks(self, image: int, shape: Sequence[int]) -> Iterator[Block]:
        """TiffData blocks of ``image`` declared with level-0 ``shape``, by plane.

        Pages of planes outside ``shape`` are left out (``shape`` differs from the plan
        only in the first axis' extent). A block is a longest run of consecutive planes
        in consecutive IFDs of one file.
        """
        keys = self.keys[image]
        outer = [max(int(n), 1) for n in shape[:-2]]
        if keys.first in (None, 0):
            parts = self._key_blocks(image, outer[0] * keys.per_step if outer else 1)
        else:
            parts = self._sorted_blocks(image, outer)
        run: list[int] = []  # [first plane, file, first ifd, count]
        for plane, f, ifd, count in parts:
            if run and plane == run[0] + run[3] and f == run[1] and ifd == run[2] + run[3]:
                run[3] += count
                continue
            if run:
                yield run[0], run[1], run[2], run[3]
            run = [plane, f, ifd, count]
        if run:
            yield run[0], run[1], run[2], run[3]

    def _key_blocks(self, image: int, limit: int) -> Iterator[Block]:
        """Keys are plane numbers: the runs' pieces below ``limit``, merged in order."""
        plain: list[Block] = []
        strided: list[Iterator[Block]] = []

        def each(f: int, key: int, ifd: int, count: int, step: int) -> Iterator[Block]:
            for j in range(count):
                yield key + j, f, ifd + j * step, 1

        for f, runs in enumerate(self._runs):
            for img, key, ifd, count, step in runs:
                count = min(count, limit - key)
                if img != image or count <= 0:
                    continue
                if count == 1 or step == 1:
                    plain.append((key, f, ifd, count))
                else:
                    strided.append(each(f, key, ifd, count, step))
        plain.sort()
        if not strided:
            return iter(plain)
        return heapq.merge(plain, *strided)

    def _sorted_blocks(self, image: int, outer: Sequence[int]) -> Iterator[Block]:
        """The first axis is not storage axis 0: plane numbers are computed page by page
        (a few numbers each, for as long as the document is built) and sorted."""
        keys = self.keys[image]
        assert keys.first is not None
        planes: list[np.ndarray] = []
        where: list[np.ndarray] = []  # file << 48 | ifd
        for f, runs in enumerate(self._runs):
            for img, key, ifd, count, step in runs:
                if img != image:
                    continue
                k = np.arange(key, key + count, dtype=np.int64)
                index = []
                rest = k % keys.per_step
                for a in reversed(keys.rest):
                    rest, i = np.divmod(rest, keys.sizes[a])
                    index.append((a, i))
                first = k // keys.per_step
                inside = first < outer[keys.first]
                plane = np.zeros(len(k), dtype=np.int64)
                by_axis = dict(index)
                by_axis[keys.first] = first
                for a, size in enumerate(outer):
                    plane = plane * size + by_axis[a]
                ifds = ifd + np.arange(count, dtype=np.int64) * step
                planes.append(plane[inside])
                where.append((np.int64(f) << 48) | ifds[inside])
        if not planes:
            return
        plane = np.concatenate(planes)
        loc = np.concatenate(where)
        del planes, where
        order = np.argsort(plane, kind="stable")
        plane, loc = plane[order], loc[order]
        del order
        mask = (1 << 48) - 1
        for at in range(0, len(plane), 1 << 16):
            part = slice(at, at + (1 << 16))
            for p, w in zip(plane[part].tolist(), loc[part].tolist(), strict=True):
                yield p, w >> 48, w & mask, 1
