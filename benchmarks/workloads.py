"""Workload definitions: frame shape, count, chunk/shard layout, compression."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# Blosc block size for every compressed case (writers and the codec limit alike), so
# they compare engines, not codec settings. 1 MiB is what omestream uses.
BLOSC_BLOCKSIZE = 1 << 20


@dataclass(frozen=True)
class Workload:
    """A stream of 2-D frames appended along a leading axis (``t`` or ``z``).

    ``chunk`` and ``shard`` are in elements along ``(axis, y, x)``;
    ``shard=None`` means unsharded.  ``count`` is the number of appended frames.
    """

    name: str
    count: int
    height: int
    width: int
    chunk: tuple[int, int, int]
    shard: tuple[int, int, int] | None = None
    compressed: bool = False
    unbounded: bool = False
    fresh_buffers: bool = False
    axis: str = "t"
    quick_count: int | None = None
    dtype: str = "uint16"
    pool_size: int = 8
    description: str = ""

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 2

    @property
    def total_bytes(self) -> int:
        return self.frame_bytes * self.count

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.count, self.height, self.width)

    @property
    def shard_chunks(self) -> tuple[int, int, int] | None:
        """Shard size in number of chunks per dimension (None if unsharded)."""
        if self.shard is None:
            return None
        return (
            self.shard[0] // self.chunk[0],
            self.shard[1] // self.chunk[1],
            self.shard[2] // self.chunk[2],
        )

    def quick(self) -> Workload:
        count = self.quick_count if self.quick_count is not None else max(1, self.count // 5)
        return replace(self, count=count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workload:
        d = dict(d)
        d["chunk"] = tuple(d["chunk"])
        if d.get("shard") is not None:
            d["shard"] = tuple(d["shard"])
        return cls(**d)


_BIG = 2048
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "big-raw",
            200,
            _BIG,
            _BIG,
            (1, _BIG, _BIG),
            description="2048x2048 u16, chunk = frame, uncompressed",
        ),
        # Right after big-raw: the unbounded target compares the two workloads in one
        # round, and a round runs its workloads in this order, so the two measure
        # minutes apart instead of two whole workloads apart (the disk drifts).
        Workload(
            "big-unbounded",
            200,
            _BIG,
            _BIG,
            (1, _BIG, _BIG),
            unbounded=True,
            description="big-raw with an unbounded append axis",
        ),
        Workload(
            "big-sharded",
            200,
            _BIG,
            _BIG,
            (1, 512, 512),
            shard=(1, _BIG, _BIG),
            description="512x512 chunks, one shard per frame, uncompressed",
        ),
        Workload(
            "big-zstd",
            200,
            _BIG,
            _BIG,
            (1, 512, 512),
            shard=(1, _BIG, _BIG),
            compressed=True,
            description="big-sharded + blosc-zstd clevel 1 bitshuffle",
        ),
        Workload(
            "small-fast",
            5000,
            512,
            512,
            (64, 512, 512),
            quick_count=1000,
            description="512x512 u16, 64 frames per chunk along t",
        ),
        Workload(
            "zstack-3d",
            64,
            1024,
            1024,
            (16, 256, 256),
            axis="z",
            quick_count=64,
            description="64 z-planes 1024x1024, 3-D chunks 16x256x256",
        ),
        Workload(
            "fresh-buffers",
            200,
            _BIG,
            _BIG,
            (1, _BIG, _BIG),
            fresh_buffers=True,
            description="big-raw, a freshly allocated buffer per frame",
        ),
    )
}
