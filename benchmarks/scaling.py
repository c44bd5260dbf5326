"""Scaling of ``omestream.dask.process_positions`` with the number of worker processes.

    python -m benchmarks.scaling [--positions 8] [--repeats 2] [--out scaling.json]

Processes a synthetic multi-position dataset with a compute-bound function (per-plane
transcendental arithmetic on float32, cache resident) on a LocalCluster of 1 and then 2
single-threaded worker processes, and reports the wall times and their ratio. Before
every timed run, memory is pre-touched in a throw-away process (``benchmarks.pretouch``)
and the cluster's workers have already imported everything (a warm-up run), so the
timings measure processing, not page faults or imports. The outputs of every run are
compared with each other. Not a test: nothing is asserted about the timings.

The workers' CPU seconds are measured too: on a shared machine two workers may get less
than two cores, and ``effective_cores`` (CPU seconds / wall seconds) shows how many they
actually got, ``parallel_efficiency`` the speedup per core received.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# each worker does its own single-threaded arithmetic; no hidden thread pools
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def compute_bound(stack: np.ndarray, rounds: int = 100) -> np.ndarray:
    """Deterministic, CPU-bound work per plane: the plane stays in cache, math dominates."""
    out = np.empty_like(stack)
    flat_in = stack.reshape(-1, *stack.shape[-2:])
    flat_out = out.reshape(-1, *stack.shape[-2:])
    for i, plane in enumerate(flat_in):
        p = plane.astype(np.float32) / 4096.0
        for _ in range(rounds):
            p = np.sin(p) * 0.75 + np.cos(p) * 0.25
        flat_out[i] = np.clip(p * 4096.0, 0, 65535).astype(stack.dtype)
    return out


def pretouch(gb: float) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.pretouch", str(gb)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def make_source(path: str, positions: int, shape: tuple[int, ...]) -> None:
    import dask.array as da

    import omestream.dask as odask

    rng = da.random.default_rng(0)
    arrays = [
        rng.integers(0, 4096, size=shape, dtype=np.uint16, chunks=(1, *shape[1:]))
        for _ in range(positions)
    ]
    odask.write_positions(arrays, path, dims="tzyx"[-len(shape) :], overwrite=True)


def run(workers: int, src: str, dst: str, repeats: int, pretouch_gb: float) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    import omestream.dask as odask

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        env=SINGLE_THREAD_ENV,
    )  # fmt: skip
    times: list[float] = []
    cpu: list[float] = []  # CPU seconds of all worker processes during each timed run
    touch = []
    try:
        with Client(cluster) as client:
            # warm-up: imports on every worker, output dataset created once
            odask.process_positions(src, dst, compute_bound, client=client, overwrite=True,
                                    progress=False)  # fmt: skip
            for _ in range(repeats):
                touch.append(pretouch(pretouch_gb))
                cpu0 = client.run(time.process_time)
                t0 = time.perf_counter()
                summary = odask.process_positions(src, dst, compute_bound, client=client,
                                                  progress=False)  # fmt: skip
                times.append(time.perf_counter() - t0)
                cpu1 = client.run(time.process_time)
                cpu.append(sum(cpu1[w] - cpu0[w] for w in cpu1))
                if not summary.ok:
                    raise RuntimeError(str(summary))
    finally:
        cluster.close()
    best = times.index(min(times))
    return {
        "workers": workers,
        "seconds": times,
        "best_s": times[best],
        "worker_cpu_s": cpu,
        # cores the workers actually got: below `workers` when other processes compete
        "effective_cores": cpu[best] / times[best],
        "pretouch": touch,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="process_positions with 1 vs 2 workers")
    p.add_argument("--positions", type=int, default=8)
    p.add_argument("--shape", default="4,512,512", help="per position, e.g. z,y,x")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--pretouch-gb", type=float, default=1.0)
    p.add_argument("--out", default=None, help="also write the JSON result here")
    args = p.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))

    workdir = tempfile.mkdtemp(prefix="omestream-scaling-")
    try:
        src = os.path.join(workdir, "src.ome.zarr")
        make_source(src, args.positions, shape)
        runs = [
            run(n, src, os.path.join(workdir, f"out{n}.ome.zarr"), args.repeats, args.pretouch_gb)
            for n in (1, 2)
        ]
        import zarr

        for i in range(args.positions):  # both runs computed the same result
            a = zarr.open_array(os.path.join(workdir, "out1.ome.zarr", str(i), "0"))[...]
            b = zarr.open_array(os.path.join(workdir, "out2.ome.zarr", str(i), "0"))[...]
            if not np.array_equal(a, b):
                raise RuntimeError(f"position {i}: outputs of the 1- and 2-worker runs differ")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "benchmark": "process_positions scaling (compute-bound)",
        "positions": args.positions,
        "shape_per_position": list(shape),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "runs": runs,
        "speedup_2_over_1": runs[0]["best_s"] / runs[1]["best_s"],
        # the same ratio per core actually received (near 1.0 = no parallel overhead)
        "parallel_efficiency": (runs[0]["best_s"] / runs[1]["best_s"])
        / (runs[1]["effective_cores"] / runs[0]["effective_cores"]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
