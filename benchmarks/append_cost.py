"""What appending to an existing image costs, for images of growing size.

Appending one time point should cost the same whatever the image holds already, and
appending a channel should cost in proportion to that channel's data, not to the
whole image. Run: ``python benchmarks/append_cost.py [--frame 128] [--sizes 10,100,1000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from omestream import AcquisitionSettings, Dimension, Pyramid, create_stream, open_store
from omestream.store import Image


def _make(root: Path, t: int, frame: int, version: str) -> None:
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=t, type="time"),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=frame, type="space"),
            Dimension(name="x", count=frame, type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
        pyramid=Pyramid(levels=2),
        writer={"fsync": False},
    )
    plane = np.arange(frame * frame, dtype="uint16").reshape(frame, frame)
    with create_stream(settings) as s:
        for _ in range(t * 2):
            s.append(plane)


def _timed(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frame", type=int, default=128)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--version", default="0.5", choices=["0.4", "0.5"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    f = args.frame
    print(f"NGFF {args.version}, frames {f}x{f} uint16, 2 channels, 2 pyramid levels")
    print(
        f"{'t':>6} {'dataset MB':>11} {'+1 t ms':>9} {'+1 channel ms':>14} {'channel MB':>11} {'MB/s':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for t in sizes:
            root = Path(tmp) / f"t{t}.ome.zarr"
            _make(root, t, f, args.version)
            img = open_store(root, mode="r+")
            assert isinstance(img, Image)  # _make writes a single image
            mb = t * 2 * f * f * 2 / 2**20
            tp = np.ones((2, f, f), "uint16")
            t_ms = _timed(lambda img=img, tp=tp: img.append(tp, axis="t"), args.repeat) * 1e3
            n_t = img.shape[0]
            channel = np.ones((n_t, f, f), "uint16")
            t0 = time.perf_counter()
            img.append_channel("extra", channel)
            c_s = time.perf_counter() - t0
            c_mb = channel.nbytes / 2**20
            print(
                f"{t:>6} {mb:>11.1f} {t_ms:>9.1f} {c_s * 1e3:>14.1f} {c_mb:>11.1f} {c_mb / c_s:>7.1f}"
            )


if __name__ == "__main__":
    main()
