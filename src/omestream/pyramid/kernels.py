"""Downsampling kernels on numpy blocks (pure, no I/O).

Each kernel reduces an n-D block by whole-number ``factors`` per axis. An axis whose
size is not a multiple of its factor ends in a partial block; that block summarises
only the pixels that exist (no padding, so edges are not darkened or biased), which
matches the level shapes (ceil division).

Methods (every pyramid level is computed from the level above it, as stored):

* ``mean``: area average; integers rounded to nearest (ties to even, as ``numpy.rint``).
* ``stride`` / ``nearest``: the first pixel of each block (pure subsampling).
* ``mode``: most frequent value of each block (label images); ties go to the smallest.
* ``gaussian``: :func:`scipy.ndimage.gaussian_filter` with sigma ``2 f / 6`` on each
  downsampled axis (scikit-image's ``pyramid_reduce`` rule, ``mode="reflect"``), then
  the area average of each block.

``mean``, ``gaussian`` and ``mode`` summarise a block of ``f`` pixels, so the centre of an
output pixel lies ``(f - 1) / 2`` input pixels after the block start: the NGFF
``translation`` of such levels shifts accordingly (see :data:`SHIFTING_METHODS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from omestream.errors import SettingsError

__all__ = [
    "KERNELS",
    "METHODS",
    "SHIFTING_METHODS",
    "downsample",
    "gaussian_sigma",
    "halo",
    "source_window",
]

METHODS = ("mean", "nearest", "stride", "gaussian", "mode")
#: methods whose output pixel centre sits at the middle of the input block
SHIFTING_METHODS = frozenset({"mean", "gaussian", "mode"})
_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default

Kernel = Callable[[np.ndarray, Sequence[int]], np.ndarray]


def gaussian_sigma(factors: Sequence[int]) -> tuple[float, ...]:
    """Per-axis sigma: ``2 f / 6`` where the axis is downsampled, else 0."""
    return tuple(2.0 * f / 6.0 if f > 1 else 0.0 for f in factors)


def halo(factors: Sequence[int], method: str) -> tuple[int, ...]:
    """Extra input pixels needed on each side of a block (the gaussian kernel's radius)."""
    if method != "gaussian":
        return tuple(0 for _ in factors)
    return tuple(int(_TRUNCATE * s + 0.5) for s in gaussian_sigma(factors))


def source_window(
    out: Sequence[tuple[int, int]],
    factors: Sequence[int],
    margins: Sequence[int],
    shape: Sequence[int],
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """What to read from the level above (of ``shape``) to compute output pixels
    ``out`` (a [start, stop) range per axis): the slices to read, margins included and
    clipped to the array, and the ``core`` of :func:`downsample` within them."""
    read, core = [], []
    for (o0, o1), f, h, n in zip(out, factors, margins, shape, strict=True):
        lo, hi = max(0, o0 * f - h), min(n, o1 * f + h)
        read.append(slice(lo, hi))
        core.append(slice(o0 * f - lo, min(o1 * f, n) - lo))
    return tuple(read), tuple(core)


# -- helpers ------------------------------------------------------------------------------


def _check(block: np.ndarray, factors: Sequence[int]) -> None:
    if len(factors) != block.ndim:
        raise SettingsError(
            f"downsampling factors {tuple(factors)} name {len(factors)} axes; the block has "
            f"{block.ndim} (shape {block.shape})"
        )
    if any((not isinstance(f, int | np.integer)) or f < 1 for f in factors):
        raise SettingsError(
            f"downsampling factors must be whole numbers >= 1, got {tuple(factors)}"
        )


def _counts(n: int, f: int) -> np.ndarray:
    full, rest = divmod(n, f)
    return np.array([f] * full + ([rest] if rest else []), dtype=np.int64)


def _sum_axis(a: np.ndarray, axis: int, f: int, acc: np.dtype) -> np.ndarray:
    """Sums of ``f`` consecutive elements along ``axis`` (last group may be shorter)."""
    n = a.shape[axis]
    full = n // f * f

    def part(sl: slice) -> np.ndarray:
        idx = [slice(None)] * a.ndim
        idx[axis] = sl
        return a[tuple(idx)]

    out: np.ndarray | None = None
    if full:
        # strided adds: far faster than reshape(...).sum(axis=...) on large frames
        out = part(slice(0, full, f)).astype(acc)
        for k in range(1, f):
            out += part(slice(k, full, f))
    if full < n:
        tail = part(slice(full, n)).sum(axis=axis, keepdims=True, dtype=acc)
        out = tail if out is None else np.concatenate([out, tail], axis=axis)
    assert out is not None
    return out


def _accumulator(dtype: np.dtype, count: int) -> np.dtype:
    """float32 where sums stay exact integers (small ints), else float64."""
    if dtype.kind in "uib":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        if max(abs(int(info.min)), int(info.max)) * count < 2**24:
            return np.dtype(np.float32)
    return np.dtype(np.float64)


def _block_mean(block: np.ndarray, factors: Sequence[int], acc: np.dtype) -> np.ndarray:
    out = block
    for axis, f in enumerate(factors):
        if f > 1:
            out = _sum_axis(out, axis, f, acc)
    if out is block:
        out = block.astype(acc)
    counts = [_counts(n, f) for n, f in zip(block.shape, factors, strict=True)]
    if all(len(set(c.tolist())) <= 1 for c in counts):
        total = int(np.prod([c[0] if len(c) else 1 for c in counts]))
        if total & (total - 1) == 0:  # a power of two: multiplying is exact
            out *= out.dtype.type(1.0 / total)
            return out
    grid = np.ones((), dtype=np.float64)
    for axis, c in enumerate(counts):
        shape = [1] * block.ndim
        shape[axis] = len(c)
        grid = grid * c.reshape(shape)
    return out.astype(np.float64) / grid


def _round_like(values: np.ndarray, dtype: np.dtype, clip: bool = True) -> np.ndarray:
    """Back to ``dtype``; ``clip=False`` when values cannot leave its range (averages)."""
    if dtype.kind in "ui":
        values = np.rint(values, out=values if values.dtype.kind == "f" else None)
        info = np.iinfo(dtype)
        if dtype.itemsize == 8 and values.dtype.kind == "f":
            # float64 rounds 64-bit extremes outwards (2**64 - 1 becomes 2**64), where a
            # cast would wrap: saturate at the type's own limits instead
            high, low = values >= float(info.max), values <= float(info.min)
            out = np.clip(values, float(info.min), np.nextafter(float(info.max), 0))
            out = out.astype(dtype)
            out[high], out[low] = info.max, info.min
            return out
        if clip:
            np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype)
    if dtype.kind == "b":
        return np.rint(values) > 0
    return values.astype(dtype, copy=False)


# -- kernels ------------------------------------------------------------------------------


def mean(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Area average over the pixels of each block, rounded to nearest for integers."""
    count = int(np.prod(factors))
    acc = _accumulator(block.dtype, count)
    return _round_like(_block_mean(block, factors, acc), block.dtype, clip=False)


def stride(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The first pixel of each block (nearest neighbour on the block start)."""
    return np.ascontiguousarray(block[tuple(slice(None, None, f) for f in factors)])


def _as_blocks(a: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """(n0*f0, n1*f1, ...) -> (n0, n1, ..., f0*f1*...)."""
    n = a.ndim
    shape: list[int] = []
    for s, f in zip(a.shape, factors, strict=True):
        shape += [s // f, f]
    b = a.reshape(shape).transpose(tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2)))
    return b.reshape(*b.shape[:n], -1)


def mode(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Most frequent value among the pixels of each block; ties go to the smallest value."""
    pad = [(0, (-s) % f) for s, f in zip(block.shape, factors, strict=True)]
    if any(p for _, p in pad):
        padded = np.pad(block, pad, mode="edge")
        valid = np.pad(np.ones(block.shape, dtype=bool), pad, constant_values=False)
    else:
        padded, valid = block, None
    b = _as_blocks(padded, factors)
    order = np.argsort(b, axis=-1, kind="stable")
    b = np.take_along_axis(b, order, axis=-1)
    eq = b[..., :, None] == b[..., None, :]
    if valid is not None:
        v = np.take_along_axis(_as_blocks(valid, factors), order, axis=-1)
        eq &= v[..., None, :]
        counts = eq.sum(axis=-1)
        counts[~v] = -1  # padding never wins
    else:
        counts = eq.sum(axis=-1)
    best = np.argmax(counts, axis=-1)  # first maximum: the smallest value, values sorted
    return np.take_along_axis(b, best[..., None], axis=-1)[..., 0]


def gaussian(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Gaussian smoothing (scipy.ndimage) then the area average of each block."""
    return _gaussian(block, factors, None)


def _gaussian(
    block: np.ndarray, factors: Sequence[int], core: tuple[slice, ...] | None
) -> np.ndarray:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(
        block.astype(np.float64),
        sigma=gaussian_sigma(factors),
        mode="reflect",
        truncate=_TRUNCATE,
    )
    if core is not None:
        smooth = smooth[core]
    return _round_like(_block_mean(smooth, factors, np.dtype(np.float64)), block.dtype)


KERNELS: dict[str, Kernel] = {
    "mean": mean,
    "nearest": stride,
    "stride": stride,
    "mode": mode,
    "gaussian": gaussian,
}


def downsample(
    block: np.ndarray,
    factors: Sequence[int],
    method: str = "mean",
    core: tuple[slice, ...] | None = None,
) -> np.ndarray:
    """Reduce ``block`` by ``factors`` (one per axis) with ``method``.

    ``core``: the part of ``block`` to reduce when ``block`` also holds a margin of
    neighbouring pixels (see :func:`halo`); only the gaussian filter reads the margin.
    The core must start on a block boundary of the full array.
    """
    if method not in KERNELS:
        raise SettingsError(f"unknown downsampling method {method!r}; choose one of {METHODS}")
    factors = tuple(int(f) for f in factors)
    _check(block, factors)
    if method == "gaussian":
        if all(f == 1 for f in factors):
            return np.array(block[core] if core is not None else block)
        return _gaussian(block, factors, core)
    if core is not None:
        block = block[core]
    if all(f == 1 for f in factors):
        return np.array(block)
    return KERNELS[method](block, factors)
