"""Pyramid benchmark: ``python -m benchmarks.pyramid [--frames N] [--planes Z] [--rounds R]``.

Two questions, each case timed in its own process after a memory pre-touch
(``python -m benchmarks.pretouch``), rounds interleaved so drift hits every case:

1. Streaming: 2048x2048 uint16 frames with a 4-level pyramid (y/x factor 2, mean)
   against the same stream without one. Target: at most 25% more wall time.
2. After the fact: the same (Z, 2048, 2048) uint16 volume given 4 levels (y/x factor 2)
   by omestream.build_pyramid (from a level 0 already on disk, and level 0 write +
   build), ome-zarr-py's ``write_image`` and ngff-zarr's ``to_multiscales`` +
   ``to_ngff_zarr`` (each writes level 0 too, from an array in memory).

ngff-zarr is not a project dependency: install it into the environment to include it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZE = 2048
LEVELS = 4


def _frames(n: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(100, 4000, (SIZE, SIZE), dtype=np.uint16)
    return [np.roll(base, 7 * k, axis=1) for k in range(min(n, 8))]


def _volume(z: int) -> Any:
    import numpy as np

    # independent planes: repeated ones would let chunks spanning z compress across planes
    rng = np.random.default_rng(1)
    return rng.integers(100, 4000, (z, SIZE, SIZE), dtype=np.uint16)


def _dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# -- cases (run in a child process) ----------------------------------------------------------


def _stream(out: str, n: int, pyramid: bool) -> dict[str, Any]:
    from omestream import AcquisitionSettings, Dimension, Pyramid, create_stream

    settings = AcquisitionSettings(
        root_path=out,
        dimensions=[
            Dimension(name="t", count=n, type="time"),
            Dimension(name="y", count=SIZE, type="space"),
            Dimension(name="x", count=SIZE, type="space"),
        ],
        dtype="uint16",
        format="ome-zarr",
        overwrite=True,
        pyramid=Pyramid(levels=LEVELS, method="mean") if pyramid else None,
    )
    frames = _frames(n)
    t0 = time.perf_counter()
    with create_stream(settings) as stream:
        for k in range(n):
            stream.append(frames[k % len(frames)])
    return {"seconds": time.perf_counter() - t0, "bytes": _dir_bytes(out)}


def _write_level0(out: str, z: int) -> None:
    from omestream import AcquisitionSettings, Dimension, create_stream

    vol = _volume(z)
    settings = AcquisitionSettings(
        root_path=out,
        dimensions=[
            Dimension(name="z", count=z, type="space"),
            Dimension(name="y", count=SIZE, type="space"),
            Dimension(name="x", count=SIZE, type="space"),
        ],
        dtype="uint16",
        format="ome-zarr",
        compression="zstd",  # as ome-zarr-py's and ngff-zarr's defaults (Zarr v3 zstd)
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for plane in vol:
            stream.append(plane)


def _omestream_build(out: str, z: int, method: str, with_level0: bool) -> dict[str, Any]:
    from omestream import build_pyramid

    t0 = time.perf_counter()
    if not with_level0:
        _write_level0(out, z)
        t0 = time.perf_counter()
    else:
        _write_level0(out, z)
    build_pyramid(out, levels=LEVELS, method=method)
    return {"seconds": time.perf_counter() - t0, "bytes": _dir_bytes(out)}


def _ome_zarr_py(out: str, z: int, method: str) -> dict[str, Any]:
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image

    vol = _volume(z)
    t0 = time.perf_counter()
    group = zarr.open_group(out, mode="w", zarr_format=3)
    write_image(
        vol,
        group,
        axes="zyx",
        fmt=FormatV05(),
        scale_factors=[2**k for k in range(1, LEVELS)],
        method=Methods(method),
    )
    return {"seconds": time.perf_counter() - t0, "bytes": _dir_bytes(out)}


def _ngff_zarr(out: str, z: int, method: str) -> dict[str, Any]:
    import ngff_zarr as nz

    vol = _volume(z)
    t0 = time.perf_counter()
    image = nz.to_ngff_image(vol, dims=["z", "y", "x"])
    factors = [{"z": 1, "y": 2**k, "x": 2**k} for k in range(1, LEVELS)]
    ms = nz.to_multiscales(image, scale_factors=factors, method=nz.Methods(method), chunks=512)
    nz.to_ngff_zarr(out, ms, version="0.5")
    return {"seconds": time.perf_counter() - t0, "bytes": _dir_bytes(out)}


def _run_case(name: str, out: str, frames: int, planes: int) -> dict[str, Any]:
    if name == "stream-plain":
        return _stream(out, frames, False)
    if name == "stream-pyramid4":
        return _stream(out, frames, True)
    kind, _, method = name.partition(":")
    if kind == "omestream-build":
        return _omestream_build(out, planes, method, with_level0=False)
    if kind == "omestream-write+build":
        return _omestream_build(out, planes, method, with_level0=True)
    if kind == "ome-zarr-py":
        return _ome_zarr_py(out, planes, method)
    if kind == "ngff-zarr":
        return _ngff_zarr(out, planes, method)
    raise SystemExit(f"unknown case {name!r}")


# -- orchestration (parent) ------------------------------------------------------------------

STREAM_CASES = ["stream-plain", "stream-pyramid4"]
BUILD_CASES = [
    "omestream-build:mean",
    "omestream-write+build:mean",
    "ome-zarr-py:local_mean",
    "ngff-zarr:dask_bin_shrink",
    "omestream-build:gaussian",
    "ome-zarr-py:resize",
]
# ngff-zarr's default (ITK wasm) methods take ~30 s for 4 planes here: only with --only
SLOW_CASES = ["ngff-zarr:itkwasm_gaussian", "ngff-zarr:itkwasm_bin_shrink"]


def _child(case: str, args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    py = sys.executable
    if args.pretouch_gb > 0:
        subprocess.run(
            [py, "-m", "benchmarks.pretouch", str(args.pretouch_gb)],
            check=True,
            capture_output=True,
        )
    out = os.path.join(scratch, "case.ome.zarr")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py, "-m", "benchmarks.pyramid", "--case", case, "--out", out,
           "--frames", str(args.frames), "--planes", str(args.planes)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.pyramid", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--frames", type=int, default=64, help="frames per streaming run")
    ap.add_argument("--planes", type=int, default=32, help="z planes of the post-hoc volume")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    ap.add_argument("--pretouch-gb", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--dir", default=None, help="scratch directory (the filesystem measured)")
    ap.add_argument("--json", default=None, help="write every raw number here")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(_run_case(args.case, args.out, args.frames, args.planes)))
        return 0
    cases = args.only or STREAM_CASES + BUILD_CASES
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="omestream-pyramid-bench-", dir=args.dir) as scratch:
        for r in range(args.rounds):
            for case in cases:
                res = _child(case, args, scratch)
                results[case].append(res)
                shown = f"{res['seconds']:.2f} s" if "seconds" in res else res["error"]
                print(f"round {r + 1} {case:32s} {shown}", file=sys.stderr, flush=True)
    med = {
        c: statistics.median([x["seconds"] for x in rs if "seconds" in x])
        for c, rs in results.items()
        if any("seconds" in x for x in rs)
    }
    frame_mb = SIZE * SIZE * 2 / 1e6
    print(f"\n{'case':34s} {'median s':>9s} {'MB/s':>8s} {'on disk MB':>11s}")
    for c, rs in results.items():
        if c not in med:
            print(f"{c:34s} error: {rs[0].get('error')}")
            continue
        mb = frame_mb * (args.frames if c.startswith("stream") else args.planes)
        size = next(x["bytes"] for x in rs if "bytes" in x) / 1e6
        print(f"{c:34s} {med[c]:9.2f} {mb / med[c]:8.0f} {size:11.0f}")
    if "stream-plain" in med and "stream-pyramid4" in med:
        ratio = med["stream-pyramid4"] / med["stream-plain"]
        print(f"\nstreaming with a {LEVELS}-level pyramid / without: {ratio:.3f} (target <= 1.25)")
    for method, others in (("mean", ("ome-zarr-py:local_mean", "ngff-zarr:dask_bin_shrink")),
                           ("gaussian", ("ome-zarr-py:resize", "ngff-zarr:itkwasm_gaussian"))):  # fmt: skip
        ours = med.get(f"omestream-build:{method}")
        for other in others:
            if ours and other in med:
                print(f"{other} / omestream-build:{method}: {med[other] / ours:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
