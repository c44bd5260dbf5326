"""Independent reference pyramids: scikit-image, scipy and plain numpy, never omestream's kernels.

Every level is the method applied to the level above (as stored, i.e. rounded back to
the dtype), with partial blocks at the far edges summarising only the pixels that exist.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce
from skimage.transform import downscale_local_mean, pyramid_reduce


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        return np.rint(values).astype(dtype)
    return values.astype(dtype)


def ref_mean(a: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    if all(s % k == 0 for s, k in zip(a.shape, f, strict=True)):
        return _to_dtype(downscale_local_mean(a.astype(np.float64), f), a.dtype)
    sums = block_reduce(a.astype(np.float64), f, np.sum, cval=0)
    counts = block_reduce(np.ones(a.shape), f, np.sum, cval=0)
    return _to_dtype(sums / counts, a.dtype)


def ref_stride(a: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    return a[tuple(slice(None, None, k) for k in f)]


def ref_mode(a: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    shape = tuple(-(-s // k) for s, k in zip(a.shape, f, strict=True))
    out = np.empty(shape, a.dtype)
    for idx in itertools.product(*(range(n) for n in shape)):
        block = a[tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f, strict=True))]
        values, counts = np.unique(block, return_counts=True)
        out[idx] = values[np.argmax(counts)]  # first maximum: smallest value
    return out


def ref_gaussian(a: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """scikit-image's pyramid_reduce on every block of downsampled axes (even sizes),
    else scipy's gaussian filter followed by the valid-pixel area average."""
    axes = [i for i, k in enumerate(f) if k > 1]
    even = all(a.shape[i] % f[i] == 0 for i in axes) and len({f[i] for i in axes}) == 1
    if even:
        moved = np.moveaxis(a, axes, range(a.ndim - len(axes), a.ndim))
        lead = moved.shape[: a.ndim - len(axes)]
        out = None
        for idx in np.ndindex(*lead):
            r = pyramid_reduce(
                moved[idx].astype(np.float64), downscale=f[axes[0]], preserve_range=True
            )
            if out is None:
                out = np.empty((*lead, *r.shape))
            out[idx] = r
        assert out is not None
        return _to_dtype(np.moveaxis(out, range(a.ndim - len(axes), a.ndim), axes), a.dtype)
    sigma = [2 * k / 6 if k > 1 else 0 for k in f]
    smooth = ndimage.gaussian_filter(a.astype(np.float64), sigma, mode="reflect")
    sums = block_reduce(smooth, f, np.sum, cval=0)
    counts = block_reduce(np.ones(a.shape), f, np.sum, cval=0)
    return _to_dtype(sums / counts, a.dtype)


REFS = {
    "mean": ref_mean,
    "stride": ref_stride,
    "nearest": ref_stride,
    "mode": ref_mode,
    "gaussian": ref_gaussian,
}


def ref_pyramid(a: np.ndarray, f: tuple[int, ...], method: str, levels: int) -> list[np.ndarray]:
    out = [a]
    for _ in range(1, levels):
        out.append(REFS[method](out[-1], f))
    return out


def assert_level_equal(got: np.ndarray, want: np.ndarray, method: str, where: str) -> None:
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=where)
    else:
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert diff.max(initial=0) == 0, f"{where}: {int((diff > 0).sum())} pixels differ"
