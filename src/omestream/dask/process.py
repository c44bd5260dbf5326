"""Map a function over every position (or well field) of a dataset on a Dask cluster.

The common HPC pattern: one task per position reads it, applies ``fn`` and writes the
result (and its pyramid levels) into the same image path of another dataset. Tasks
write whole arrays of their own image, so they never share a chunk; a task that runs
twice writes the same bytes, so failed tasks are retried and a rerun of the whole
call finishes what an earlier one left undone.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream.dask._deps import require_dask, require_distributed
from omestream.dask.layout import ArrayRef, Dataset, ImageRef, open_array, read_dataset
from omestream.dask.target import bounded, create_dataset
from omestream.errors import FrameDtypeError, FrameShapeError, SettingsError, StoreFormatError
from omestream.io.kv import KVStore, open_kv
from omestream.io.locks import check_no_stream
from omestream.pyramid.kernels import KERNELS, downsample
from omestream.settings import AcquisitionSettings
from omestream.stream.zarr_sink import OMESTREAM_KEY

__all__ = ["PositionJob", "ProcessSummary", "process_positions", "run_position", "settings_like"]

Progress = Callable[[int, int, str, "BaseException | None"], None]


@dataclass(frozen=True)
class PositionJob:
    """One task: read ``src``, apply the function, write every level of ``dst``."""

    path: str  # image path, the same in source and destination
    src: ArrayRef
    dst: tuple[ArrayRef, ...]  # per level
    factors: tuple[tuple[int, ...], ...]  # level k-1 -> k, for k >= 1
    method: str


def run_position(job: PositionJob, fn: Callable[[np.ndarray], Any]) -> dict[str, Any]:
    """Task body (runs on a worker). Idempotent: the same input writes the same bytes."""
    t0 = time.perf_counter()
    data = open_array(job.src, "r")[...]
    result = np.asarray(fn(data))
    current = result
    for lv, ref in enumerate(job.dst):
        arr = open_array(ref, "r+")
        if lv:
            current = downsample(current, job.factors[lv - 1], job.method)
        where = f"position {job.path!r} level {lv}"
        if current.dtype != arr.dtype:
            raise FrameDtypeError(
                f"{where}: the function returned dtype {current.dtype}; the output holds "
                f"{arr.dtype} (return fn(x).astype(...) or pass dtype=)"
            )
        shape = tuple(arr.shape)
        fits = current.ndim == len(shape) and current.shape[1:] == shape[1:]
        if not fits or current.shape[0] > shape[0]:
            raise FrameShapeError(
                f"{where}: the function returned shape {current.shape}; the output array has "
                f"shape {shape} (only the first axis may be shorter)"
            )
        arr[tuple(slice(0, n) for n in current.shape)] = current
    return {"path": job.path, "seconds": time.perf_counter() - t0, "nbytes": int(result.nbytes)}


@dataclass
class ProcessSummary:
    """What a :func:`process_positions` run did."""

    url: str
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # image path -> "Error: message"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [
            f"{self.url}: {len(self.done)} done, {len(self.failed)} failed in {self.seconds:.1f} s"
        ]
        lines += [f"  {path or '.'}: {err}" for path, err in self.failed.items()]
        return "\n".join(lines)


# -- destination ----------------------------------------------------------------------------
def _unbounded_extent(settings: AcquisitionSettings, src: Dataset, kv: KVStore, opts: Any) -> int:
    axis = settings.storage_dimension_names.index(settings.dimensions[0].name)
    shapes = [open_array(ArrayRef.make(kv, im.array_path(0), opts)).shape for im in src.images]
    return max(s[axis] for s in shapes)


def settings_like(
    src: Dataset,
    src_kv: KVStore,
    root_path: str,
    storage_options: dict[str, Any] | None = None,
    **changes: Any,
) -> AcquisitionSettings:
    """Settings for a new dataset shaped like ``src``, from the settings omestream
    recorded in it (``changes`` such as ``dtype`` or ``overwrite`` are applied)."""
    record = src.root_attrs.get(OMESTREAM_KEY, {})
    data = record.get("settings") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        raise StoreFormatError(
            f"{src.url} was not written by omestream (no '{OMESTREAM_KEY}.settings' record), so "
            "its output cannot be derived: pass dst=AcquisitionSettings(...) describing the output"
        )
    settings = AcquisitionSettings(**data)
    if settings.is_unbounded:
        settings = bounded(settings, _unbounded_extent(settings, src, src_kv, storage_options))
    return settings.replace(root_path=root_path, **changes)


def _jobs(src: Dataset, src_kv: KVStore, src_opts: Any, dst: Dataset, dst_kv: KVStore,
          dst_opts: Any, level: int, by_index: bool) -> list[PositionJob]:  # fmt: skip
    if by_index and len(dst.images) != len(src.images):
        raise SettingsError(
            f"the output has {len(dst.images)} images; the source {src.url} has {len(src.images)}"
        )
    jobs = []
    for i, im in enumerate(src.images):
        out: ImageRef = dst.images[i] if by_index else dst.image(im.path)
        jobs.append(
            PositionJob(
                path=out.path,
                src=ArrayRef.make(src_kv, im.array_path(level), src_opts),
                dst=tuple(ArrayRef.make(dst_kv, out.array_path(k), dst_opts)
                          for k in range(len(out.levels))),
                factors=tuple(out.factors(k) for k in range(1, len(out.levels))),
                method=out.method if out.method in KERNELS else "mean",
            )
        )  # fmt: skip
    return jobs


def _precheck(src: Dataset, dst: Any, level: int) -> None:
    """Refuse before anything is created."""
    for im in src.images:
        if level >= len(im.levels):
            raise SettingsError(f"{src.url}/{im.path}: no level {level}; it has {len(im.levels)}")
    if isinstance(dst, AcquisitionSettings):
        n = max(1, len(dst.positions))
        if n != len(src.images):
            raise SettingsError(
                f"the output settings describe {n} images; the source {src.url} has "
                f"{len(src.images)}"
            )


# -- cluster --------------------------------------------------------------------------------
@contextmanager
def _client(client: Any) -> Iterator[Any]:
    """The given client, the current one, or a LocalCluster of processes for this call."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster, get_client

    try:
        yield get_client()
        return
    except ValueError:
        pass
    cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        with Client(cluster) as own:
            yield own
    finally:
        cluster.close()


def _default_progress() -> Progress:
    def report(done: int, total: int, path: str, error: BaseException | None) -> None:
        state = f"FAILED {type(error).__name__}: {error}" if error else "done"
        print(f"[{done}/{total}] {path or '.'} {state}", file=sys.stderr, flush=True)

    return report


def process_positions(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | AcquisitionSettings,
    fn: Callable[[np.ndarray], Any],
    client: Any = None,
    *,
    level: int = 0,
    dtype: Any = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    dst_storage_options: dict[str, Any] | None = None,
    retries: int = 2,
    progress: bool | Progress = True,
) -> ProcessSummary:
    """Apply ``fn`` to every position (or well field) of ``src``; write results to ``dst``.

    ``fn`` gets one image's level ``level`` as a numpy array (storage order, e.g.
    TCZYX) and returns an array of the output's shape and dtype. ``dst`` is:

    * a path/URL that does not exist yet (or ``overwrite=True``): a dataset like
      ``src`` is created (same layout, axes, chunks, pyramid; ``dtype`` if given);
    * an existing dataset: results go into the images with the same paths;
    * ``AcquisitionSettings``: that dataset is created; its images pair with the
      source's in order.

    Runs on ``client``, else the current Dask client, else a LocalCluster of worker
    processes started for this call. Failed tasks are retried ``retries`` times; a
    worker that dies has its task rerun elsewhere. Failures do not stop the others:
    they are listed in the returned summary (run the call again to redo them).
    ``progress`` is True (a line per position on stderr), False, or a callable
    ``(done, total, path, error_or_None)``.
    """
    require_dask()
    require_distributed()
    from dask.base import tokenize
    from distributed import as_completed

    t0 = time.perf_counter()
    src_kv = open_kv(src, storage_options)
    src_ds = read_dataset(src_kv)
    dst_opts = dst_storage_options if dst_storage_options is not None else storage_options
    _precheck(src_ds, dst, level)
    created = None
    if isinstance(dst, AcquisitionSettings):
        created = create_dataset(dst, dst_opts)
        by_index = True
    else:
        dst_kv = open_kv(dst, dst_opts)
        if dst_kv.root_exists() and not overwrite:
            check_no_stream(dst_kv, "write into it with Dask")
            by_index = False
            if dtype is not None:
                raise SettingsError(f"{dst_kv.url} exists: its dtype is fixed; do not pass dtype=")
        else:
            changes: dict[str, Any] = {"overwrite": overwrite}
            if dtype is not None:
                changes["dtype"] = np.dtype(dtype).name
            settings = settings_like(src_ds, src_kv, os.fspath(dst), storage_options, **changes)
            created = create_dataset(settings, dst_opts)
            by_index = True
    dst_kv = created.kv if created is not None else dst_kv
    dst_ds = read_dataset(dst_kv)
    jobs = _jobs(src_ds, src_kv, storage_options, dst_ds, dst_kv, dst_opts, level, by_index)
    report = _default_progress() if progress is True else (progress or None)
    summary = ProcessSummary(dst_kv.url)
    token = tokenize(src_kv.url, dst_kv.url, fn, time.time_ns())
    with _client(client) as cl:
        futures = {
            cl.submit(run_position, job, fn, key=f"omestream-process-{token}-{i}",
                      retries=retries, pure=False): job
            for i, job in enumerate(jobs)
        }  # fmt: skip
        for n, fut in enumerate(as_completed(futures), start=1):
            job = futures[fut]
            error = fut.exception() if fut.status != "finished" else None
            if error is None:
                summary.done.append(job.path)
            else:
                summary.failed[job.path] = f"{type(error).__name__}: {error}"
            fut.release()  # a worker lost later must not have to recompute it
            if report is not None:
                report(n, len(jobs), job.path, error)
    if created is not None:
        created.finish(complete=summary.ok)
    summary.done.sort()
    summary.seconds = time.perf_counter() - t0
    return summary
