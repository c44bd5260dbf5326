"""Map a function over every position (or well field) of a dataset on a Dask cluster.

The common HPC pattern: one task per position reads it, applies ``fn`` and writes the
result (and its pyramid levels) into the same image path of another dataset. Tasks
write whole arrays of their own image, so they never share a chunk; a task that runs
twice writes the same bytes, so failed tasks are retried and a rerun of the whole
call finishes what an earlier one left undone.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream.backends.codecs import SHUFFLE_CODES
from omestream.dask._deps import require_dask, require_distributed
from omestream.dask.layout import ArrayRef, Dataset, ImageRef, open_array, read_dataset
from omestream.dask.target import NewDataset, StreamHold, create_dataset, location, overlaps
from omestream.errors import FrameDtypeError, FrameShapeError, SettingsError
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore, open_kv
from omestream.io.locks import check_no_stream
from omestream.metadata.display import apply_windows, channel_windows, merge_windows
from omestream.plan import plan_storage
from omestream.pyramid.kernels import KERNELS, downsample
from omestream.settings import AcquisitionSettings, Pyramid, WriterOptions
from omestream.stream.zarr_sink import OMESTREAM_KEY
from omestream.summary.acquisition import acquisition_from_record, refuse_unfinished

__all__ = ["PositionJob", "ProcessSummary", "process_positions", "run_position", "settings_like"]

Progress = Callable[[int, int, str, "BaseException | None"], None]
Window = tuple[float, float]


@dataclass(frozen=True)
class PositionJob:
    """One task: read ``src``, apply the function, write every level of ``dst``."""

    path: str  # image path in the destination
    src: ArrayRef
    dst: tuple[ArrayRef, ...]  # per level
    factors: tuple[tuple[int, ...], ...]  # level k-1 -> k, for k >= 1
    method: str
    channel_axis: int | None = None  # the output's channel axis: measure display windows


def run_position(job: PositionJob, fn: Callable[[np.ndarray], Any]) -> dict[str, Any]:
    """Task body (runs on a worker). Idempotent: the same input writes the same bytes.

    Returns what it wrote, with the display window of each channel of the result (see
    :mod:`omestream.metadata.display`), measured as Dask writes measure them.
    """
    t0 = time.perf_counter()
    data = open_array(job.src, "r")[...]
    result = np.asarray(fn(data))
    current = result
    shape0: tuple[int, ...] = ()
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
        shape0 = shape0 or shape
    a = job.channel_axis
    return {
        "path": job.path,
        "seconds": time.perf_counter() - t0,
        "nbytes": int(result.nbytes),
        "dtype": result.dtype.name,
        "shape": shape0,
        "windows": {} if a is None else channel_windows(result, a),
    }


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
_SHUFFLES = {code: name for name, code in SHUFFLE_CODES.items()}


def _codec_of(arr: Any) -> tuple[str | None, int | None, str | None]:
    """(compression, level, shuffle) of a zarr-python array, as settings name them; a
    codec omestream does not write becomes its default, blosc-zstd."""
    compressors = tuple(getattr(arr, "compressors", ()) or ())
    if not compressors:
        return None, None, None
    c = compressors[0]
    kind = type(c).__name__.lower()
    level = getattr(c, "clevel", getattr(c, "level", None))
    level = level if isinstance(level, int) and 0 <= level <= 22 else None
    if "blosc" in kind:
        cname = getattr(c, "cname", None)
        cname = getattr(cname, "value", cname)
        shuffle = getattr(c, "shuffle", None)
        shuffle = getattr(shuffle, "value", shuffle)
        shuffle = _SHUFFLES.get(shuffle) if isinstance(shuffle, int) else shuffle
        if cname not in ("zstd", "lz4"):
            return "blosc-zstd", None, None
        return f"blosc-{cname}", level, shuffle if shuffle in _SHUFFLES.values() else None
    if kind.startswith("zstd"):
        return "zstd", level, None
    if kind.startswith("gzip"):
        return "gzip", level, None
    return "blosc-zstd", None, None


def _pyramid_of(image: ImageRef) -> Pyramid | None:
    """The pyramid of ``image``: its levels, its first step's factors and method."""
    if len(image.levels) < 2:
        return None
    factors = {a.name: f for a, f in zip(image.axes, image.factors(1), strict=True) if f > 1}
    method = image.method if image.method in KERNELS else "mean"
    if not factors:
        return Pyramid(levels=len(image.levels), method=method)  # type: ignore[arg-type]
    return Pyramid(levels=len(image.levels), factors=factors, method=method)  # type: ignore[arg-type]


def settings_like(
    src: Dataset,
    src_kv: KVStore,
    root_path: str,
    storage_options: dict[str, Any] | None = None,
    **changes: Any,
) -> AcquisitionSettings:
    """Settings for a new dataset shaped like ``src`` as it is on disk now.

    The source is read the way ``omestream convert`` reads one: its layout, plate,
    wells and fields, axes, shapes, channels and scales from the NGFF documents and
    arrays, and the chunks (shards where it has them), codec and pyramid of its first
    image. The settings omestream recorded when it wrote the source are not used:
    changes made since with ``open_store`` (time points, wells, fields) do not update
    them. ``changes`` such as ``dtype`` or ``overwrite`` are applied. Images of
    different axes, shapes or dtypes are refused (nothing is created).
    """
    from omestream.convert import ConvertOptions, output_settings
    from omestream.convert.sources import zarr_source
    from omestream.summary.nodes import read_tree
    from omestream.summary.zarr_store import describe_zarr

    info = describe_zarr(src_kv.url, read_tree(src_kv.url, storage_options), measure_disk=False)
    if not info.images:
        raise SettingsError(f"{src.url} holds no OME-Zarr images to process")
    first = info.images[0]
    level0 = first.levels[0]
    names = [a.name for a in first.axes]
    chunks = dict(zip(names, level0.chunks or level0.shape, strict=True))
    shards = {}  # an unsharded source: shards as a stream would choose them
    if level0.shards is not None:
        shards = {n: s // c for n, s, c in zip(names, level0.shards, chunks.values(), strict=True)}
    path0 = "/".join(p for p in (first.path, level0.path) if p)
    compression, level, shuffle = _codec_of(
        open_array(ArrayRef.make(src_kv, path0, storage_options))
    )
    opts = ConvertOptions(
        version="0.4" if info.zarr_format == 2 else "0.5",
        compression=compression,
        shards=shards,
        pyramid_levels=1,
    )
    settings = output_settings(zarr_source(src.url, info, chunks), root_path, opts)
    return settings.replace(
        pyramid=_pyramid_of(src.image(first.path)),
        writer=WriterOptions(compression_level=level, shuffle=shuffle),  # type: ignore[arg-type]
        **changes,
    )


def _pairing(src: Dataset, out_paths: list[str], url: str) -> list[str]:
    """The output image path of each source image of a new output: the same path, or,
    where the output names its images otherwise (a source without NGFF series or
    plate metadata), the image in the same place."""
    paths = [im.path for im in src.images]
    if set(paths) <= set(out_paths):
        return paths
    if len(out_paths) != len(paths):
        raise SettingsError(
            f"the output {url} has {len(out_paths)} images; the source {src.url} has "
            f"{len(paths)}; nothing was written"
        )
    return list(out_paths)


def _jobs(src: Dataset, src_kv: KVStore, src_opts: Any, dst: Dataset, dst_kv: KVStore,
          dst_opts: Any, level: int, out_paths: list[str]) -> list[PositionJob]:  # fmt: skip
    jobs = []
    for im, path in zip(src.images, out_paths, strict=True):
        out: ImageRef = dst.image(path)
        channel_axis = next((k for k, a in enumerate(out.axes) if a.type == "channel"), None)
        jobs.append(
            PositionJob(
                path=out.path,
                src=ArrayRef.make(src_kv, im.array_path(level), src_opts),
                dst=tuple(ArrayRef.make(dst_kv, out.array_path(k), dst_opts)
                          for k in range(len(out.levels))),
                factors=tuple(out.factors(k) for k in range(1, len(out.levels))),
                method=out.method if out.method in KERNELS else "mean",
                channel_axis=channel_axis,
            )
        )  # fmt: skip
    return jobs


def _refuse_source(src_kv: KVStore, dst_kv: KVStore) -> None:
    if overlaps(location(src_kv), location(dst_kv)):
        raise SettingsError(
            f"the destination {dst_kv.url} is the source {src_kv.url} (or inside it, or holds "
            "it): overwrite=True would delete the source before a task reads it, and a task "
            "run again would read its own output; write to another path (and move it over "
            "the source afterwards if that is what you want); nothing was changed"
        )


def _precheck(src: Dataset, src_kv: KVStore, dst_kv: KVStore, dst: Any, level: int) -> None:
    """Refuse before anything is created or deleted."""
    _refuse_source(src_kv, dst_kv)
    # as convert does: a stream still writing it, or killed, left it longer than its frames
    refuse_unfinished(
        acquisition_from_record(src.root_attrs.get(OMESTREAM_KEY)), src.url, "process it"
    )
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


# -- outcome --------------------------------------------------------------------------------
def _record_windows(created: NewDataset, windows: dict[str, dict[int, Window]]) -> None:
    for i, im in enumerate(created.plan.images):
        for c, win in windows.get(im.path, {}).items():
            merged = merge_windows(created.state.windows[i].get(c), win)
            if merged is not None:
                created.state.windows[i][c] = merged


def _finish_existing(
    kv: KVStore, ds: Dataset, results: dict[str, dict[str, Any]], summary: ProcessSummary
) -> None:
    """Into an existing dataset: the display windows of the images written, and, once
    every image of it is done, the root record of an unfinished omestream output marked
    complete (what a first run that succeeded records). Each document is read, changed
    and replaced under the dataset's metadata lock; nothing else in it changes."""
    from omestream.store.lock import StoreLocks
    from omestream.store.node import StoreContext

    zf = ds.zarr_format
    locks = StoreLocks.of(kv)
    # the caller holds the stream lock: the documents are written here, not through
    # StoreContext.write_attrs, which would find that lock held
    ctx = StoreContext(kv, kv.url, "0.5" if zf == 3 else "0.4", zf, "r+", locks)
    all_done = summary.ok and {im.path for im in ds.images} <= set(results)
    with locks.metadata():
        changed: dict[str, dict[str, Any]] = {}
        for path, res in results.items():
            attrs = zarr_nodes.read_group_attrs(kv, path, zf)
            ngff = (attrs or {}).get("ome", {}) if zf == 3 else (attrs or {})
            omero = ngff.get("omero") if isinstance(ngff, dict) else None
            if attrs is not None and res["windows"] and isinstance(omero, dict):
                omero = apply_windows(omero, res["windows"], res["dtype"])
                changed[path] = ctx.with_content(attrs, {"omero": omero})
        root = changed.get("") or zarr_nodes.read_group_attrs(kv, "", zf) or {}
        record = root.get(OMESTREAM_KEY)
        if all_done and isinstance(record, dict) and record.get("complete") is False:
            frames = sum(math.prod(res["shape"][:-2]) for res in results.values())
            changed[""] = {**root, OMESTREAM_KEY: {**record, "frames": frames, "complete": True}}
        if changed:
            ctx.drop_consolidated()
        for path, attrs in changed.items():
            zarr_nodes.write_group(kv, path, attrs, zf)


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


def _run(jobs: list[PositionJob], fn: Callable[[np.ndarray], Any], client: Any, retries: int,
         report: Progress | None, token: str, summary: ProcessSummary,
         ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Every job on the cluster; the results of those that succeeded, by image path."""
    from distributed import as_completed

    results: dict[str, dict[str, Any]] = {}
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
                results[job.path] = fut.result()
            else:
                summary.failed[job.path] = f"{type(error).__name__}: {error}"
            fut.release()  # a worker lost later must not have to recompute it
            if report is not None:
                report(n, len(jobs), job.path, error)
    return results


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
      ``src`` as it is on disk is created (same layout, wells and fields, axes, shapes,
      chunks, codec, pyramid; ``dtype`` if given; see :func:`settings_like`);
    * an existing dataset: results go into the images with the same paths;
    * ``AcquisitionSettings``: that dataset is created; its images pair with the
      source's in order.

    ``dst`` may not be ``src`` (nor inside it or hold it): that is refused before
    anything is changed. Runs on ``client``, else the current Dask client, else a
    LocalCluster of worker processes started for this call. Failed tasks are retried
    ``retries`` times; a worker that dies has its task rerun elsewhere. Failures do not
    stop the others: they are listed in the returned summary (run the call again to
    redo them; a rerun in which every position succeeds records the output as
    complete). Display windows are measured from the results. ``progress`` is True (a
    line per position on stderr), False, or a callable ``(done, total, path,
    error_or_None)``.
    """
    require_dask()
    require_distributed()
    from dask.base import tokenize

    t0 = time.perf_counter()
    src_kv = open_kv(src, storage_options)
    src_ds = read_dataset(src_kv)
    dst_opts = dst_storage_options if dst_storage_options is not None else storage_options
    where = dst.output_path if isinstance(dst, AcquisitionSettings) else os.fspath(dst)
    dst_kv = open_kv(where, dst_opts)
    _precheck(src_ds, src_kv, dst_kv, dst, level)
    created: NewDataset | None = None
    hold: StreamHold | None = None
    if isinstance(dst, AcquisitionSettings):
        out_paths = [im.path for im in plan_storage(dst).images]  # in order (checked)
        created = create_dataset(dst, dst_opts)
    elif dst_kv.root_exists() and not overwrite:
        if dtype is not None:
            raise SettingsError(f"{dst_kv.url} exists: its dtype is fixed; do not pass dtype=")
        check_no_stream(dst_kv, "write into it with Dask")
        existing = read_dataset(dst_kv)
        out_paths = [existing.image(im.path).path for im in src_ds.images]  # same paths
        hold = StreamHold(dst_kv)
        hold.take("write into it with Dask")
    else:
        changes: dict[str, Any] = {"overwrite": overwrite}
        if dtype is not None:
            changes["dtype"] = np.dtype(dtype).name
        settings = settings_like(src_ds, src_kv, where, storage_options, **changes)
        _refuse_source(src_kv, open_kv(settings.output_path, dst_opts))  # suffix added
        out = [im.path for im in plan_storage(settings).images]
        out_paths = _pairing(src_ds, out, settings.output_path)
        created = create_dataset(settings, dst_opts)
    try:
        dst_kv = created.kv if created is not None else dst_kv
        dst_ds = read_dataset(dst_kv)
        jobs = _jobs(src_ds, src_kv, storage_options, dst_ds, dst_kv, dst_opts, level, out_paths)
        report = _default_progress() if progress is True else (progress or None)
        summary = ProcessSummary(dst_kv.url)
        token = tokenize(src_kv.url, dst_kv.url, fn, time.time_ns())
        results = _run(jobs, fn, client, retries, report, token, summary)
        if created is not None:
            _record_windows(created, {p: r["windows"] for p, r in results.items()})
            created.finish(complete=summary.ok)
        else:
            _finish_existing(dst_kv, dst_ds, results, summary)
    finally:
        if created is not None:
            created.lock.release()
        if hold is not None:
            hold.release()
    summary.done.sort()
    summary.seconds = time.perf_counter() - t0
    return summary
