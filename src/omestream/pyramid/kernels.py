"""Downsampling kernels on numpy blocks (pure, no I/O).

Each kernel reduces an n-D block by integer ``factors`` per axis. Sizes that are not
a multiple of the factor are padded by repeating the edge, so the last output
element summarises the remaining pixels (ceil division, as in the level shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["KERNELS", "downsample"]


def _pad(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    pad = [(0, (-s) % f) for s, f in zip(block.shape, factors, strict=True)]
    if any(p for _, p in pad):
        return np.pad(block, pad, mode="edge")
    return block


def _blocks(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """View as (n0, f0, n1, f1, ...)."""
    shape: list[int] = []
    for s, f in zip(block.shape, factors, strict=True):
        shape += [s // f, f]
    return block.reshape(shape)


def _round_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def mean(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Area average, rounded to nearest for integer types."""
    b = _blocks(_pad(block, factors), factors)
    axes = tuple(range(1, b.ndim, 2))
    return _round_like(b.mean(axis=axes, dtype=np.float64), block.dtype)


def stride(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Every f-th pixel (nearest neighbour on the grid start)."""
    return np.ascontiguousarray(block[tuple(slice(None, None, f) for f in factors)])


def mode(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Most frequent value per block (label images); ties go to the smallest value."""
    b = _blocks(_pad(block, factors), factors)
    n = b.ndim // 2
    b = b.transpose(tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2)))
    flat = b.reshape(*b.shape[:n], -1)
    flat = np.sort(flat, axis=-1)
    # run lengths of equal values along the last axis; pick the longest run
    change = np.ones(flat.shape, dtype=bool)
    change[..., 1:] = flat[..., 1:] != flat[..., :-1]
    idx = np.arange(flat.shape[-1])
    run_start = np.maximum.accumulate(np.where(change, idx, 0), axis=-1)
    run_len = idx - run_start + 1
    best = np.argmax(run_len, axis=-1)
    return np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]


def gaussian(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Gaussian smoothing (sigma per skimage's anti-aliasing rule) then area average."""
    from scipy import ndimage

    sigma = [max(0.0, (f - 1) / 2) for f in factors]
    smooth = ndimage.gaussian_filter(block.astype(np.float64), sigma=sigma, mode="nearest")
    b = _blocks(_pad(smooth, factors), factors)
    axes = tuple(range(1, b.ndim, 2))
    return _round_like(b.mean(axis=axes), block.dtype)


KERNELS: dict[str, Callable[[np.ndarray, Sequence[int]], np.ndarray]] = {
    "mean": mean,
    "nearest": stride,
    "stride": stride,
    "mode": mode,
    "gaussian": gaussian,
}


def downsample(block: np.ndarray, factors: Sequence[int], method: str = "mean") -> np.ndarray:
    if all(f == 1 for f in factors):
        return block
    return KERNELS[method](block, factors)
