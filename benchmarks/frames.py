"""Pre-made frame pools with realistic compressibility.

Frames are a smooth background (bilinear upsampling of a coarse random field)
plus gaussian spots, with Poisson noise: blosc-zstd(clevel 1, bitshuffle)
compresses them ~2:1.  Pools are cached as ``.npy`` so that every case child
loads identical frames quickly.

``python -m benchmarks.frames CACHE_DIR H W POOL`` creates a pool and prints
its compression ratio as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SEED = 20240601


def _interp_matrix(n: int, g: int) -> np.ndarray:
    t = np.linspace(0, g - 1, n)
    i0 = np.minimum(np.floor(t).astype(np.intp), g - 2)
    f = t - i0
    m = np.zeros((n, g))
    m[np.arange(n), i0] = 1 - f
    m[np.arange(n), i0 + 1] = f
    return m


def make_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    g = 8
    coarse = rng.uniform(100, 600, size=(g, g))
    lam = _interp_matrix(h, g) @ coarse @ _interp_matrix(w, g).T
    r = 6
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    kern = np.exp(-(yy**2 + xx**2) / 8.0)
    n_spots = max(4, h * w // 4000)
    ys = rng.integers(0, h - 2 * r - 1, n_spots)
    xs = rng.integers(0, w - 2 * r - 1, n_spots)
    for y, x, a in zip(ys, xs, rng.uniform(200, 3000, n_spots), strict=True):
        lam[y : y + 2 * r + 1, x : x + 2 * r + 1] += a * kern
    return rng.poisson(lam).astype(np.uint16)


def pool_path(cache_dir: Path, h: int, w: int, size: int) -> Path:
    return cache_dir / f"pool-{h}x{w}x{size}-{SEED}.npy"


def load_pool(cache_dir: Path, h: int, w: int, size: int) -> list[np.ndarray]:
    """Load (or create and cache) a pool of ``size`` uint16 frames."""
    path = pool_path(cache_dir, h, w, size)
    if not path.exists():
        rng = np.random.default_rng(SEED)
        stack = np.empty((size, h, w), dtype=np.uint16)
        for i in range(size):
            stack[i] = make_frame(rng, h, w)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, stack)
        tmp.rename(path)
    stack = np.load(path)
    return [stack[i] for i in range(size)]


def compression_ratio(pool: list[np.ndarray]) -> dict[str, float]:
    """blosc ratios on 512x512 tiles of the first frame (sanity check)."""
    from numcodecs import Blosc

    tile = np.ascontiguousarray(pool[0][:512, :512])
    out: dict[str, float] = {}
    for cname in ("zstd", "lz4"):
        codec = Blosc(cname=cname, clevel=1, shuffle=Blosc.BITSHUFFLE)
        out[f"blosc-{cname}"] = tile.nbytes / len(codec.encode(tile))
    return out


def main(argv: list[str]) -> None:
    cache, h, w, size = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    pool = load_pool(cache, h, w, size)
    info = {"mean": float(np.mean(pool[0])), "max": int(np.max(pool[0]))}
    print(json.dumps(info | compression_ratio(pool)))


if __name__ == "__main__":
    main(sys.argv[1:])
