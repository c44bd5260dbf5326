"""Resume an interrupted acquisition: ``create_stream(settings, resume=True)``.

A stream records its settings and progress (frames appended or skipped) under the
root attribute ``"omestream"``. Resuming checks that the settings match, reopens
the arrays, and continues from the first frame not yet written.

Engines write whole shards/chunks from in-memory slabs, so frames already on disk
that share a write unit with frames still to come must be in the slab before the
unit is written again, or it would be rewritten with fill values. Resuming
therefore rewinds to the start of the current block of the outermost acquisition
axis (every earlier write unit is complete) and replays the frames from there to
the recorded count through the normal append path, reading them back from disk —
so pyramid levels are rebuilt from the same data as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
from collections.abc import Callable
from typing import Any

import numpy as np

from omestream.backends.registry import load_engine
from omestream.backends.zarr_common import array_path
from omestream.errors import SettingsError, StoreFormatError
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore, open_kv
from omestream.io.locks import hold_stream
from omestream.metadata.ngff import channel_window
from omestream.metadata.parse import ParsedImage, parse_group
from omestream.metadata.records import FrameRecords
from omestream.plan import FrameRouter, StoragePlan, plan_storage
from omestream.settings import AcquisitionSettings
from omestream.stream import OMEStream
from omestream.stream.state import StreamState
from omestream.stream.zarr_sink import OMESTREAM_KEY, ZarrMetadataSink
from omestream.summary.nodes import ArrayMeta, array_meta

__all__ = ["check_same_settings", "resume_stream"]

# May differ between the first run and the resumed one. root_path: the dataset is the
# one at the path being resumed, wherever it was first written (copied, moved, or the
# same folder named relative to another working directory).
_IGNORED = {"overwrite", "writer", "root_path"}


def _record(kv: KVStore, zarr_format: int, where: str) -> dict[str, Any]:
    attrs = zarr_nodes.read_group_attrs(kv, "", zarr_format, lift_records=True)
    if attrs is None:
        raise StoreFormatError(
            f"{where}: nothing to resume; no Zarr v{zarr_format} group here (check the format "
            "and version in the settings)"
        )
    record = attrs.get(OMESTREAM_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise StoreFormatError(
            f"{where} was not written by an omestream stream (no '{OMESTREAM_KEY}' record at "
            "its root); nothing to resume. Use omestream.open_store to change it"
        )
    if not isinstance(record.get("frames"), int) or record["frames"] < 0:
        raise StoreFormatError(f"{where}: '{OMESTREAM_KEY}.frames' is missing or not a count")
    return record


def check_same_settings(settings: AcquisitionSettings, saved: dict[str, Any], where: str) -> None:
    now = settings.model_dump(mode="json")
    diffs = sorted(
        k for k in set(now) | set(saved) if k not in _IGNORED and now.get(k) != saved.get(k)
    )
    if diffs:
        detail = "; ".join(f"{k}: stored {saved.get(k)!r}, given {now.get(k)!r}" for k in diffs)
        raise SettingsError(
            f"{where}: cannot resume with different settings ({detail[:600]}); nothing was written"
        )


def _stored_series(kv: KVStore, plan: StoragePlan) -> StoragePlan:
    """The plan with each position's image at the path the store's ``OME/`` series list
    gives it: an earlier omestream numbered every series (``0/``, ``1/``) where the
    same settings now name them after their positions."""
    if plan.layout != "bioformats2raw":
        return plan
    attrs = zarr_nodes.read_group_attrs(kv, "OME", plan.zarr_format) or {}
    content = attrs.get("ome", attrs)
    series = content.get("series") if isinstance(content, dict) else None
    planned = [im.path for im in plan.images]
    if (
        not isinstance(series, list)
        or len(series) != len(planned)
        or not all(isinstance(s, str) for s in series)
        or series == planned
    ):
        return plan
    images = tuple(
        dataclasses.replace(im, path=p) for im, p in zip(plan.images, series, strict=True)
    )
    return dataclasses.replace(plan, images=images)


def _stored_layout(kv: KVStore, plan: StoragePlan) -> tuple[StoragePlan, dict[int, ArrayMeta]]:
    """The plan with every array's chunks and shards as stored, and each image's stored
    level 0. The automatic layout of the same settings may differ in another omestream
    version (one-chunk shards are no longer made, for one); frames must be written as
    the stored arrays say."""
    plan = _stored_series(kv, plan)
    images = []
    level0: dict[int, ArrayMeta] = {}
    for i, im in enumerate(plan.images):
        levels = []
        for lv, level in enumerate(im.levels):
            path = array_path(plan, i, lv)
            doc = zarr_nodes.load_json(kv, zarr_nodes.array_meta_key(path, plan.zarr_format))
            if doc is None:  # the engine reports missing arrays when it opens them
                levels.append(level)
                continue
            meta = array_meta(doc, plan.zarr_format, path)
            if lv == 0:
                level0[i] = meta
            if len(meta.chunks) != len(level.chunks):
                raise StoreFormatError(
                    f"{kv.url}/{path}: {len(meta.chunks)} dimensions stored, the settings "
                    f"give {len(level.chunks)}; nothing to resume here"
                )
            levels.append(dataclasses.replace(level, chunks=meta.chunks, shards=meta.shards))
        images.append(dataclasses.replace(im, levels=tuple(levels)))
    return plan.with_images(tuple(images)), level0


def _check_unchanged(
    kv: KVStore,
    plan: StoragePlan,
    level0: dict[int, ArrayMeta],
    record: dict[str, Any],
    done: int,
    per_outer: int,
    where: str,
) -> None:
    """Refuse a dataset changed since its stream stopped (with ``open_store`` or another
    tool): a channel added or deleted, time points appended. The resumed stream writes
    what its settings describe, so it would drop or overwrite such changes."""
    from omestream.metadata import plan_documents
    from omestream.metadata.parse import ngff_content

    docs = plan_documents(plan)
    u = plan.unbounded_axis
    # After a repair every array ends at the last time point written; before one, a
    # stream's arrays may have been grown past it ahead of the frames.
    limit = -(-done // per_outer) if u is not None and record.get("repaired") else None
    advice = (
        "resuming would drop or overwrite that change; nothing was written. Resume only a "
        "dataset as its stream (and `omestream repair`) left it"
    )
    for i, im in enumerate(plan.images):
        meta = level0.get(i)
        if meta is None:
            continue  # the engine reports missing arrays when it opens them
        want = im.levels[0].shape
        label = im.path or "the image"
        same = [a == u or s == w for a, (s, w) in enumerate(zip(meta.shape, want, strict=False))]
        if len(meta.shape) != len(want) or not all(same) or meta.dtype != plan.dtype:
            raise StoreFormatError(
                f"{where}: {label} is stored as {meta.dtype} {meta.shape}, its stream's "
                f"settings give {plan.dtype} {_shape_text(want, u)} (changed since the "
                "stream stopped?); " + advice
            )
        if limit is not None and u is not None and meta.shape[u] > limit:
            raise StoreFormatError(
                f"{where}: {label} holds {meta.shape[u]} steps along "
                f"{im.axis_names[u]!r}, its stream wrote {limit} (appended since?); " + advice
            )
        attrs = zarr_nodes.read_group_attrs(kv, im.path, plan.zarr_format) or {}
        labels = _channel_labels(ngff_content(attrs, im.path)[1])
        planned = _channel_labels(ngff_content(docs[im.path], im.path)[1])
        if labels is not None and planned is not None and labels != planned:
            raise StoreFormatError(
                f"{where}: {label} has channels {labels}, its stream's settings give "
                f"{planned} (changed since the stream stopped?); " + advice
            )


def _shape_text(shape: tuple[int, ...], grows: int | None) -> str:
    return "(" + ", ".join("any" if a == grows else str(n) for a, n in enumerate(shape)) + ")"


def _channel_labels(content: dict[str, Any]) -> list[Any] | None:
    omero = content.get("omero")
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list):
        return None
    return [c.get("label") if isinstance(c, dict) else None for c in channels]


def _rewind_point(settings: AcquisitionSettings, router: FrameRouter, n: int, plan: Any) -> int:
    """First frame of the block (along the outermost acquisition axis) holding frame ``n``."""
    if n == 0 or not settings.dimensions[:-2]:
        return 0
    first = settings.dimensions[0]
    storage = list(settings.storage_dimension_names[:-2])
    unit = 1
    if first.name in storage:  # a position axis maps to images, whose units never mix
        a = storage.index(first.name)
        unit = max(lv.write_unit[a] for im in plan.images for lv in im.levels)
    outer_index = router.acquisition_index(n)[0]
    start = outer_index - outer_index % unit
    return start * router.per_outer


def _saved_metadata(
    kv: KVStore, plan: Any, record: dict[str, Any], rewind: int
) -> tuple[list[FrameRecords], dict[int, dict[str, Any]]]:
    """Per image, the frame metadata records of frames before ``rewind``; and by frame
    number, the records from ``rewind`` on (those frames are appended again)."""
    later: dict[int, dict[str, Any]] = {}

    def keep(r: Any) -> bool:
        if not isinstance(r, dict) or not isinstance(r.get("frame"), int):
            return False
        if r["frame"] >= rewind:
            later[r["frame"]] = r
        return r["frame"] < rewind

    out: list[FrameRecords] = []
    for im in plan.images:
        if im.path == "":
            recs = record.get("frame_metadata", [])
        else:
            attrs = zarr_nodes.read_group_attrs(kv, im.path, plan.zarr_format, lift_records=True)
            recs = ((attrs or {}).get(OMESTREAM_KEY) or {}).get("frame_metadata", [])
        if isinstance(recs, FrameRecords):
            out.append(recs.select(keep))
        else:  # not one record per line: read as plain JSON
            out.append(
                FrameRecords(r for r in recs if keep(r))
                if isinstance(recs, list)
                else FrameRecords()
            )
    return out, later


def _saved_windows(kv: KVStore, plan: Any) -> list[dict[int, tuple[float, float]]]:
    """Display windows an earlier run measured (those narrower than the dtype's range)."""
    full = channel_window(plan.dtype)
    out: list[dict[int, tuple[float, float]]] = [{} for _ in plan.images]
    for i, im in enumerate(plan.images):
        try:
            node = parse_group(zarr_nodes.read_group_attrs(kv, im.path, plan.zarr_format) or {})
        except StoreFormatError:
            continue  # unreadable metadata: the windows start afresh
        if not isinstance(node, ParsedImage):
            continue
        for c, ch in enumerate(node.channels or ()):
            win = ch.window or {}
            lo, hi = win.get("start"), win.get("end")
            if lo is not None and hi is not None and (lo, hi) != (full["start"], full["end"]):
                out[i][c] = (lo, hi)
    return out


def resume_stream(
    settings: AcquisitionSettings, *, store: KVStore | None = None, **storage_options: Any
) -> OMEStream:
    """Reopen the stream that wrote ``settings.output_path`` and continue after its last frame."""
    fmt = settings.format
    assert fmt is not None
    if fmt.name != "ome-zarr":
        raise SettingsError(f"resume_stream continues OME-Zarr, not {fmt.name!r}")
    engine = load_engine(fmt.backend)
    reason = engine.check(settings)
    if reason:
        raise SettingsError(f"backend {fmt.backend!r} cannot write these settings: {reason}")
    plan = plan_storage(settings)
    where = settings.output_path
    kv = store if store is not None else open_kv(where, storage_options or None)
    release = hold_stream(kv)
    try:
        return _resume(settings, plan, kv, engine, release)
    except BaseException:
        release()
        raise


def _resume(
    settings: AcquisitionSettings,
    plan: StoragePlan,
    kv: KVStore,
    engine: Any,
    release: Callable[[], None],
) -> OMEStream:
    where = settings.output_path
    record = _record(kv, plan.zarr_format, where)
    check_same_settings(settings, record["settings"], where)
    plan, level0 = _stored_layout(kv, plan)
    done = int(record["frames"])
    router = FrameRouter(settings)
    if router.total is not None and done > router.total:
        raise StoreFormatError(f"{where}: records {done} frames; the settings hold {router.total}")
    _check_unchanged(kv, plan, level0, record, done, router.per_outer, where)
    rewind = _rewind_point(settings, router, done, plan)

    backend = engine(plan, kv, settings.writer)
    backend.open_arrays()
    started = record.get("started")
    state = StreamState(n_images=len(plan.images))
    if isinstance(started, str):
        with contextlib.suppress(ValueError):
            state.started = _dt.datetime.fromisoformat(started)
    state.frames = rewind
    skipped = [int(s) for s in record.get("skipped", []) if isinstance(s, int)]
    state.skipped = [s for s in skipped if s < rewind]
    state.frame_metadata, later_meta = _saved_metadata(kv, plan, record, rewind)
    state.windows = _saved_windows(kv, plan)
    u = plan.unbounded_axis
    if u is not None and rewind:
        steps = router.acquisition_index(rewind)[0]  # whole outer steps before the rewind point
        state.extents = [steps] * len(plan.images)
    sink = ZarrMetadataSink(kv, plan, settings)
    stream = OMEStream(settings, plan, kv, backend, sink, state, release=release)
    if u is not None:  # arrays were pre-grown; never shrink them below what is on disk
        shapes = getattr(backend, "shapes", {})
        stream._alloc = max((s[u] for s in shapes.values()), default=0)

    # replay frames rewind..done-1 from disk through the normal append path
    import zarr

    arrays: dict[int, Any] = {}
    skipped_set = set(skipped)
    stream._replaying = True  # no partial shard may be pushed before the replay ends
    for n in range(rewind, done):
        if n in skipped_set:
            stream.skip(1)
            continue
        route = router.route(n)
        arr = arrays.get(route.image)
        if arr is None:
            arr = arrays[route.image] = zarr.open_array(
                kv.zarr_store(read_only=True), path=array_path(plan, route.image, 0), mode="r"
            )
        frame = np.asarray(arr[route.index])
        rec = later_meta.get(n)
        meta = {k: v for k, v in rec.items() if k not in ("frame", "index")} if rec else None
        stream.append(frame, metadata=meta)
    stream._replaying = False
    return stream
