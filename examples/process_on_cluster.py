"""Process every position of an OME-Zarr dataset on a Dask cluster: a laptop or SLURM.

The same code runs on a LocalCluster (default) and on a SLURM cluster through
dask-jobqueue; only the cluster object changes. See examples/README.md.

    # on a laptop: make a small synthetic dataset, process it with local workers
    python examples/process_on_cluster.py --demo input.ome.zarr output.ome.zarr

    # on a SLURM login node: the workers are SLURM jobs
    python examples/process_on_cluster.py --cluster slurm --jobs 8 \\
        --queue compute --memory 16GB --walltime 01:00:00 input.ome.zarr output.ome.zarr

    # look at the batch script dask-jobqueue would submit, without submitting anything
    python examples/process_on_cluster.py --cluster slurm --print-job-script in out

Inputs and outputs may be local paths on a file system every node sees, or object
storage URLs (``s3://bucket/data.ome.zarr``; credentials and endpoint from the usual
AWS_* environment variables, which the SLURM jobs inherit).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def subtract_background(stack: np.ndarray) -> np.ndarray:
    """The per-position work: remove each plane's smooth background (a compute-bound filter).

    Gets one position as a numpy array (e.g. T, C, Z, Y, X) and returns the same shape and
    dtype. Must be deterministic: a retried task then rewrites the same bytes.
    """
    from scipy import ndimage

    planes = stack.reshape(-1, *stack.shape[-2:]).astype(np.float32)
    out = np.empty_like(planes)
    for i, plane in enumerate(planes):
        background = ndimage.uniform_filter(ndimage.minimum_filter(plane, size=15), size=31)
        out[i] = plane - background
    info = np.iinfo(stack.dtype) if stack.dtype.kind in "ui" else None
    if info is not None:
        out = np.clip(np.rint(out), info.min, info.max)
    return out.reshape(stack.shape).astype(stack.dtype)


def make_demo_dataset(path: str, positions: int = 6) -> None:
    """A synthetic multi-position time-lapse, written in parallel with omestream.dask."""
    import dask.array as da

    import omestream.dask as odask

    rng = da.random.default_rng(0)  # generated lazily, block by block, on the workers
    ramp = da.linspace(0, 2000, 256, chunks=256, dtype=np.float32)[None, :]
    arrays = [
        (rng.poisson(50, size=(3, 2, 8, 256, 256), chunks=(1, 1, 8, 256, 256)) + ramp).astype(
            np.uint16
        )
        for _ in range(positions)
    ]
    odask.write_positions(arrays, path, dims="tczyx", overwrite=True, compression="blosc-zstd")


def make_cluster(args: argparse.Namespace) -> Any:
    if args.cluster == "local":
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=args.cores,  # threads per job; one position task per core at a time
        processes=1,  # one worker process per job
        memory=args.memory,
        walltime=args.walltime,
        job_name="omestream",
        # each of the job's cores runs one task: keep numpy/scipy single-threaded
        job_script_prologue=["export OMP_NUM_THREADS=1"],
        log_directory=args.log_directory,
    )
    if not args.print_job_script:
        cluster.scale(jobs=args.jobs)
    return cluster


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="input dataset (path or URL)")
    p.add_argument("dst", help="output dataset (created like the input, or existing)")
    p.add_argument("--cluster", choices=("local", "slurm"), default="local")
    p.add_argument("--workers", type=int, default=2, help="local worker processes")
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs (one worker each)")
    p.add_argument("--queue", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--cores", type=int, default=4, help="cores per SLURM job")
    p.add_argument("--memory", default="8GB", help="memory per SLURM job")
    p.add_argument("--walltime", default="01:00:00")
    p.add_argument("--log-directory", default=None, help="where SLURM job logs go")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed position")
    p.add_argument("--demo", action="store_true", help="first write a synthetic input dataset")
    p.add_argument("--print-job-script", action="store_true", help="show the SLURM script, exit")
    args = p.parse_args(argv)

    from distributed import Client

    import omestream.dask as odask

    cluster = make_cluster(args)
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        with Client(cluster) as client:
            if args.demo:
                make_demo_dataset(args.src)
            if args.cluster == "slurm":
                client.wait_for_workers(1, timeout=600)  # jobs may wait in the queue
            summary = odask.process_positions(
                args.src, args.dst, subtract_background, client=client, retries=args.retries
            )
        print(summary)
        # tasks are idempotent: after failures, run the same command again; it writes
        # every position into the existing output, the same bytes where one was done
        return 0 if summary.ok else 1
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
