"""Build the resolution levels of images already on disk (ours or another tool's).

The one module of :mod:`omestream.pyramid` that does I/O. Level k is computed from
level k-1, block by block: each block is a whole number of level k's write units
(shards, or chunks without sharding), so no file is written twice and memory stays
bounded whatever the image size; the matching region of level k-1 (plus the gaussian
filter's margin) is read for each block. Blocks run on a thread pool.

Metadata changes are atomic document replacements: before any array is touched the
image's ``multiscales`` is cut to level 0 (so a reader never sees a level being
rebuilt), and the full list of levels is written when they are complete.

The label images listed in an image's ``labels`` group get the same levels (NGFF
requires as many as the image has), always by ``mode``: a label's lower levels
hold labels, never their averages. They are cut to level 0 with the image and
their full lists are written just before the image's.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from omestream.errors import SettingsError, StoreFormatError
from omestream.io.kv import KVStore, join_key, open_kv
from omestream.io.locks import check_no_stream
from omestream.metadata.parse import (
    Multiscale,
    ParsedBioformats2raw,
    ParsedImage,
    ParsedLabels,
    ParsedPlate,
    ParsedSeries,
    ParsedWell,
    has_ngff,
    parse_group,
)
from omestream.pyramid.kernels import METHODS, SHIFTING_METHODS, downsample, halo, source_window
from omestream.settings.acquisition import useful_levels

__all__ = ["PyramidResult", "build_pyramid", "level_paths", "set_datasets"]

Progress = Callable[[int, int], None]
DEFAULT_FACTORS = {"y": 2, "x": 2}
BLOCK_BYTES = 64 * 2**20  # level k-1 bytes read per block (bounded memory per thread)


@dataclass(frozen=True)
class PyramidResult:
    """What :func:`build_pyramid` wrote for one image."""

    image: str  # group path from the store root ("" for a root image)
    paths: tuple[str, ...]  # dataset paths, level 0 first
    shapes: tuple[tuple[int, ...], ...]
    method: str = "mean"  # "mode" for label images, whatever was asked


@dataclass(frozen=True)
class _Job:
    image: str
    zarr_format: int
    attrs_key: str
    ms: Multiscale
    factors: tuple[int, ...]
    paths: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    chunks: tuple[tuple[int, ...], ...]
    shards: tuple[tuple[int, ...] | None, ...]
    old_paths: tuple[str, ...]
    method: str


# -- planning (no writes) ---------------------------------------------------------------


def _zarr_format(kv: KVStore, path: str) -> int | None:
    if kv.exists(join_key(path, "zarr.json")):
        return 3
    if kv.exists(join_key(path, ".zgroup")) or kv.exists(join_key(path, ".zattrs")):
        return 2
    return None


def _group_attrs(kv: KVStore, path: str) -> tuple[int, dict[str, Any]]:
    fmt = _zarr_format(kv, path)
    where = f"{kv.url}/{path}" if path else kv.url
    if fmt is None:
        raise StoreFormatError(f"{where} is not a Zarr group (no zarr.json, .zgroup or .zattrs)")
    key = join_key(path, "zarr.json" if fmt == 3 else ".zattrs")
    raw = kv.get(key)
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise StoreFormatError(
            f"{where}/{key.rsplit('/', 1)[-1]} is not valid JSON: {exc}"
        ) from None
    if fmt == 3:
        if doc.get("node_type") != "group":
            raise StoreFormatError(f"{where} is a Zarr {doc.get('node_type')}, not a group")
        doc = doc.get("attributes", {})
    return fmt, doc


def _image_paths(kv: KVStore, path: str) -> list[str]:
    """The image groups at ``path``: itself, or those of a plate / bioformats2raw root."""
    _, attrs = _group_attrs(kv, path)
    node = parse_group(attrs, f"{kv.url}/{path}" if path else kv.url)
    if isinstance(node, ParsedImage):
        return [path]
    if isinstance(node, ParsedBioformats2raw):
        _, series_attrs = _group_attrs(kv, join_key(path, "OME"))
        series = parse_group(series_attrs, f"{kv.url}/{join_key(path, 'OME')}")
        if isinstance(series, ParsedSeries):
            return [join_key(path, s) for s in series.series]
        found = []
        for name in sorted(
            kv.list_dir(path), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)
        ):
            if name.isdigit() and _zarr_format(kv, join_key(path, name)) is not None:
                found.append(join_key(path, name))
        return found
    if isinstance(node, ParsedPlate):
        out: list[str] = []
        for w in node.wells:
            out += _image_paths(kv, join_key(path, w.path))
        return out
    if isinstance(node, ParsedWell):
        return [join_key(path, f) for f in node.images]
    raise StoreFormatError(f"{kv.url}/{path}: holds no image to build levels for")


def level_paths(level0: str, levels: int) -> tuple[str, ...]:
    """Dataset paths for levels 0..levels-1, following level 0's naming ("0", "s0", "scale0/image")."""
    digits = list(re.finditer(r"\d+", level0))
    paths = [level0]
    for k in range(1, levels):
        if digits:
            m = digits[-1]
            cand = level0[: m.start()] + str(int(m.group()) + k) + level0[m.end() :]
        else:
            cand = f"{level0}_{k}"
        paths.append(cand)
    return tuple(paths)


def _resolve_factors(
    ms: Multiscale, factors: Mapping[str, int] | None, where: str
) -> tuple[int, ...]:
    given = dict(DEFAULT_FACTORS if factors is None else factors)
    names = [a.name for a in ms.axes]
    lower = {n.lower(): i for i, n in enumerate(names)}
    out = [1] * len(names)
    for name, f in given.items():
        i = lower.get(str(name).lower())
        if i is None:
            raise SettingsError(f"{where}: factors name axis {name!r}; the image has axes {names}")
        if isinstance(f, bool) or not isinstance(f, int) or f < 1:
            raise SettingsError(
                f"{where}: factor for {name!r} must be a whole number >= 1, got {f!r}"
            )
        typ = ms.axes[i].type
        if f > 1 and typ not in (None, "space"):
            raise SettingsError(
                f"{where}: cannot downsample axis {names[i]!r} of type {typ!r}; only space axes "
                "have resolution levels"
            )
        out[i] = f
    if not any(f > 1 for f in out):
        raise SettingsError(f"{where}: factors {given} downsample nothing; give at least one > 1")
    return tuple(out)


def _plan_image(
    kv: KVStore, image: str, levels: int, factors: Mapping[str, int] | None, method: str
) -> tuple[_Job, Any]:
    import zarr

    where = f"{kv.url}/{image}" if image else kv.url
    fmt, attrs = _group_attrs(kv, image)
    node = parse_group(attrs, where)
    if not isinstance(node, ParsedImage):
        raise StoreFormatError(
            f"{where}: expected an image (multiscales), found {type(node).__name__}"
        )
    if node.is_label:
        method = "mode"  # labels must never be averaged, whatever was asked for the image
    ms = node.multiscale
    f = _resolve_factors(ms, factors, where)
    level0 = ms.datasets[0].path
    try:
        src = zarr.open_array(kv.zarr_store(), path=join_key(image, level0), mode="r")
    except Exception as exc:
        raise StoreFormatError(
            f"{where}: level 0 ({level0!r}) is not a readable Zarr array: {exc}"
        ) from None
    if src.ndim != len(ms.axes):
        raise StoreFormatError(
            f"{where}/{level0}: array has {src.ndim} dimensions; multiscales names {len(ms.axes)} axes"
        )
    old = tuple(d.path for d in ms.datasets[1:])
    levels = min(levels, useful_levels(src.shape, f))  # never a level of one repeated pixel
    paths = level_paths(level0, levels)
    for p in paths[1:] + old:
        if p == level0 or p.startswith(level0 + "/") or level0.startswith(p + "/"):
            raise StoreFormatError(f"{where}: level path {p!r} overlaps level 0 ({level0!r})")
    for p in paths[1:]:
        if p not in old and _zarr_format(kv, join_key(image, p)) is not None:
            raise StoreFormatError(
                f"{where}/{p} already holds a Zarr node that is not one of this image's levels; "
                "omestream will not overwrite it"
            )
        if p not in old and kv.exists(join_key(image, p, ".zarray")):
            raise StoreFormatError(f"{where}/{p} already holds a Zarr array; not overwriting it")
    shapes = [tuple(src.shape)]
    for _ in range(1, levels):
        shapes.append(tuple(-(-s // fi) for s, fi in zip(shapes[-1], f, strict=True)))
    src_shards = getattr(src, "shards", None)
    units = [level_units(tuple(src.chunks), src_shards, shp) for shp in shapes]
    chunks = [c for c, _ in units]
    shards = [sh for _, sh in units]
    key = join_key(image, "zarr.json" if fmt == 3 else ".zattrs")
    job = _Job(
        image, fmt, key, ms, f, paths, tuple(shapes), tuple(chunks), tuple(shards), old, method
    )
    return job, src


def level_units(
    chunk0: tuple[int, ...], shard0: tuple[int, ...] | None, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Chunks (and shards) of a level of ``shape``: level 0's, cut to the level's size,
    shards kept whole multiples of the chunks."""
    c = tuple(min(ci, max(si, 1)) for ci, si in zip(chunk0, shape, strict=True))
    if not shard0:
        return c, None
    sh = tuple(
        max(ci, min(s, -(-max(si, 1) // ci) * ci) // ci * ci)
        for s, si, ci in zip(shard0, shape, c, strict=True)
    )
    return c, sh


def label_images(kv: KVStore, image: str) -> list[str]:
    """Group paths of the label images the image's ``labels`` group lists ([] without one)."""
    path = join_key(image, "labels")
    if _zarr_format(kv, path) is None:
        return []
    _, attrs = _group_attrs(kv, path)
    if not has_ngff(attrs):
        return []  # a group that happens to be called labels, not NGFF labels
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "version" not in ome:
        # ome-zarr-py writes NGFF 0.5 labels groups without ome.version; the list is
        # all that is needed here
        attrs = {**attrs, "ome": {**ome, "version": "0.5"}}
    node = parse_group(attrs, f"{kv.url}/{path}")
    if not isinstance(node, ParsedLabels):
        raise StoreFormatError(
            f"{kv.url}/{path}: expected a 'labels' list of label images, found "
            f"{type(node).__name__}"
        )
    return [join_key(path, name) for name in node.labels]


def _plan_labels(kv: KVStore, job: _Job, src: Any, levels: int) -> list[tuple[_Job, Any]]:
    """Jobs giving each label image of ``job``'s image the same levels, by ``mode``.

    Refused (before anything is written) when a label's level 0 differs from the
    image's along a downsampled axis: its levels could not overlay the image's.
    """
    where = f"{kv.url}/{job.image}" if job.image else kv.url
    named = {a.name: fi for a, fi in zip(job.ms.axes, job.factors, strict=True) if fi > 1}
    out = []
    for label in label_images(kv, job.image):
        lwhere = f"{kv.url}/{label}"
        try:
            ljob, lsrc = _plan_image(kv, label, levels, named, "mode")
        except SettingsError as exc:
            raise SettingsError(
                f"{lwhere}: this label image cannot get the levels of the image {where} "
                f"({exc}). Fix or remove the label image (and its entry in labels/), then "
                "build the pyramid again"
            ) from None
        lnames = [a.name.lower() for a in ljob.ms.axes]
        for a, fi in zip(job.ms.axes, job.factors, strict=True):
            if fi == 1:
                continue
            n_image = src.shape[job.ms.axis_index(a.name)]
            n_label = lsrc.shape[lnames.index(a.name.lower())]
            if n_label != n_image:
                raise StoreFormatError(
                    f"{lwhere}: label image has {n_label} pixels along axis {a.name!r} at "
                    f"level 0, the image {where} has {n_image}; its levels could not overlay "
                    "the image's. Fix or remove the label image (and its entry in "
                    "labels/), then build the pyramid again"
                )
        out.append((ljob, lsrc))
    return out


# -- metadata ---------------------------------------------------------------------------


def _datasets(job: _Job, method: str, n: int) -> list[dict[str, Any]]:
    first = job.ms.datasets[0]
    raw0 = job.ms.raw["datasets"][0]
    out = [raw0]
    t0 = first.translation or tuple(0.0 for _ in first.scale)
    for k in range(1, n):
        fk = [fi**k for fi in job.factors]
        scale = [s * fi for s, fi in zip(first.scale, fk, strict=True)]
        tf: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        shift = method in SHIFTING_METHODS
        trans = [
            t + (s * (fi - 1) / 2 if shift else 0.0)
            for t, s, fi in zip(t0, first.scale, fk, strict=True)
        ]
        if any(trans) or first.translation is not None:
            tf.append({"type": "translation", "translation": trans})
        out.append({"path": job.paths[k], "coordinateTransformations": tf})
    return out


def _write_multiscale(kv: KVStore, job: _Job, method: str | None, n: int) -> None:
    """Atomically replace the first multiscale's datasets (other keys stay as they were)."""
    made: dict[str, Any] = {}
    if method is not None and n > 1:
        from omestream import __version__

        made["type"] = method
        made["metadata"] = {
            "description": f"levels computed by omestream.build_pyramid, method {method!r}",
            "method": f"omestream.pyramid.{method}",
            "version": __version__,
            "kwargs": {
                "factors": {
                    a.name: fi for a, fi in zip(job.ms.axes, job.factors, strict=True) if fi > 1
                }
            },
        }
    set_datasets(kv, job.attrs_key, job.zarr_format, _datasets(job, method or "mean", n), made)


def set_datasets(
    kv: KVStore,
    key: str,
    zarr_format: int,
    datasets: list[dict[str, Any]],
    made: dict[str, Any],
) -> None:
    """Replace the first multiscale's ``datasets`` in the image document at ``key``, in
    one write; ``made`` holds the ``type``/``metadata`` saying how the levels were made
    (those it leaves out are removed). The multiscale's other keys stay as they were."""
    raw = kv.get(key)
    doc = json.loads(raw) if raw else {}
    attrs = doc.setdefault("attributes", {}) if zarr_format == 3 else doc
    content = attrs.get("ome", attrs)
    ms = dict(content["multiscales"][0])
    ms["datasets"] = datasets
    for k in ("type", "metadata"):
        if k in made:
            ms[k] = made[k]
        else:
            ms.pop(k, None)
    content["multiscales"] = [ms, *content["multiscales"][1:]]
    kv.set(key, json.dumps(doc, indent=2, allow_nan=False).encode())


def _reconsolidate(kv: KVStore) -> None:
    """Stores with consolidated metadata (other tools write it) must not go stale."""
    import zarr

    raw = kv.get("zarr.json")
    v3 = raw is not None and json.loads(raw).get("consolidated_metadata") is not None
    if v3 or kv.exists(".zmetadata"):
        zarr.consolidate_metadata(kv.zarr_store(), zarr_format=3 if v3 else 2)


# -- pixels -----------------------------------------------------------------------------


def _create_level(kv: KVStore, job: _Job, src: Any, k: int) -> Any:
    import zarr

    path = join_key(job.image, job.paths[k])
    kv.delete_prefix(path)
    kwargs: dict[str, Any] = {
        "store": kv.zarr_store(),
        "name": path,
        "shape": job.shapes[k],
        "chunks": job.chunks[k],
        "dtype": src.dtype,
        "fill_value": src.fill_value,
        "overwrite": True,
        "zarr_format": job.zarr_format,
        "compressors": src.compressors or None,
        "filters": src.filters or None,
    }
    meta = src.metadata
    if job.zarr_format == 3:
        kwargs["shards"] = job.shards[k]
        kwargs["serializer"] = src.serializer
        kwargs["dimension_names"] = meta.dimension_names
        kwargs["chunk_key_encoding"] = meta.chunk_key_encoding
    else:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": meta.dimension_separator or "."}
    return zarr.create_array(**kwargs)


def unit_blocks(
    shape: tuple[int, ...], unit: tuple[int, ...], src_bytes_per_el: float
) -> Iterator[tuple[range, ...]]:
    """Blocks of whole write units, grown from the innermost axis up to BLOCK_BYTES."""
    mult = [1] * len(shape)
    size = math.prod(unit) * src_bytes_per_el
    for a in reversed(range(len(shape))):
        n_units = -(-shape[a] // unit[a])
        m = max(1, min(n_units, int(BLOCK_BYTES // max(size, 1))))
        mult[a] = m
        size *= m
        if m < n_units:
            break
    step = [u * m for u, m in zip(unit, mult, strict=True)]
    grid = [range(0, s, st) for s, st in zip(shape, step, strict=True)]
    for start in itertools.product(*grid):
        yield tuple(range(b, min(b + st, s)) for b, st, s in zip(start, step, shape, strict=True))


def _reduce_block(
    src: Any, dst: Any, block: tuple[range, ...], factors: tuple[int, ...], method: str
) -> None:
    sel, core = source_window(
        [(r.start, r.stop) for r in block], factors, halo(factors, method), src.shape
    )
    out = downsample(np.asarray(src[sel]), factors, method, core=core)
    dst[tuple(slice(r.start, r.stop) for r in block)] = out


def _fill_level(
    src: Any,
    dst: Any,
    job: _Job,
    k: int,
    method: str,
    pool: ThreadPoolExecutor,
    workers: int,
    tick: Callable[[], None],
) -> None:
    unit = job.shards[k] or job.chunks[k]
    per_el = np.dtype(src.dtype).itemsize * math.prod(job.factors)
    pending: list[Future[None]] = []
    limit = 2 * workers  # bounded: only a few blocks in memory at once
    for block in unit_blocks(job.shapes[k], unit, per_el):
        pending.append(pool.submit(_reduce_block, src, dst, block, job.factors, method))
        while len(pending) >= limit:
            pending.pop(0).result()
            tick()
    for fut in pending:
        fut.result()
        tick()


def _count_blocks(job: _Job, src_itemsize: int) -> int:
    total = 0
    for k in range(1, len(job.shapes)):
        unit = job.shards[k] or job.chunks[k]
        total += sum(
            1 for _ in unit_blocks(job.shapes[k], unit, src_itemsize * math.prod(job.factors))
        )
    return total


# -- public -----------------------------------------------------------------------------


def _location(path_or_image: Any, storage_options: dict[str, Any] | None) -> tuple[KVStore, str]:
    """(store, image group path inside it) for a path/URL, an opened store's image or a zarr.Group."""
    if isinstance(path_or_image, str | os.PathLike):
        return open_kv(os.fspath(path_or_image), storage_options), ""
    ctx = getattr(path_or_image, "_ctx", None)
    if ctx is not None and isinstance(
        getattr(ctx, "kv", None), KVStore
    ):  # omestream.open_store(...)
        return ctx.kv, str(path_or_image.path)
    root = getattr(getattr(path_or_image, "store", None), "root", None)
    if root is not None:  # a zarr.Group on a local store
        return open_kv(os.fspath(root)), str(getattr(path_or_image, "path", "") or "")
    raise SettingsError(
        f"build_pyramid needs a path to an OME-Zarr image (or a zarr.Group on local storage), "
        f"got {type(path_or_image).__name__}"
    )


def build_pyramid(
    path_or_image: str | os.PathLike[str] | Any,
    levels: int = 4,
    method: str = "mean",
    factors: Mapping[str, int] | None = None,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[PyramidResult]:
    """(Re)build resolution levels 1..``levels``-1 of the OME-Zarr image(s) at ``path_or_image``.

    ``path_or_image``: an image group (NGFF 0.4 or 0.5, written by any tool), or a plate
    or bioformats2raw root (every image in it); a path or URL, an image of
    :func:`omestream.open_store`, or a ``zarr.Group``. ``levels`` counts level 0. ``factors``
    per axis name between two levels (default ``{"y": 2, "x": 2}``; add ``"z": 2`` for
    volumes). ``method``: mean, nearest/stride, gaussian or mode (labels).
    The label images listed in an image's ``labels`` group are rebuilt too, with the
    same levels and factors and always by mode (so is a label image given directly);
    their results follow the image's.
    Existing lower levels are replaced; level 0 is only read. New arrays copy level 0's
    codecs, chunks (and shards). ``progress(done, total)`` is called per block.
    Bad arguments raise SettingsError/StoreFormatError before anything is written.
    """
    if method not in METHODS:
        raise SettingsError(f"unknown downsampling method {method!r}; choose one of {METHODS}")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 32:
        raise SettingsError(
            f"levels counts level 0 and must be a whole number from 1 to 32, got {levels!r}"
        )
    kv, start = _location(path_or_image, storage_options)
    if not kv.root_exists():
        raise StoreFormatError(f"{kv.url} does not exist")
    check_no_stream(kv, "build its pyramid")  # its levels are an open stream's to write
    # every image with its label images, all planned before anything is written
    groups: list[list[tuple[_Job, Any]]] = []
    capped: list[str] = []
    for image in _image_paths(kv, start):
        job, src = _plan_image(kv, image, levels, factors, method)
        if len(job.paths) < levels:
            capped.append(f"{job.image or '.'} ({len(job.paths)})")
        groups.append([(job, src), *_plan_labels(kv, job, src, len(job.paths))])
    if capped:
        warnings.warn(
            f"levels={levels}: some images reach one pixel along every downsampled axis "
            f"sooner and get fewer levels (more would repeat that pixel at ever larger "
            f"scales): {', '.join(capped[:5])}{' ...' if len(capped) > 5 else ''}",
            UserWarning,
            stacklevel=2,
        )
    total = sum(
        _count_blocks(job, np.dtype(src.dtype).itemsize) for group in groups for job, src in group
    )
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    results = []
    n_threads = threads or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(n_threads, thread_name_prefix="omestream-pyramid") as pool:
        for group in groups:
            for job, _ in group:  # readers see level 0 only while rebuilding
                _write_multiscale(kv, job, None, 1)
            for job, src in group:
                for p in job.old_paths:
                    if p not in job.paths:
                        kv.delete_prefix(join_key(job.image, p))
                prev = src
                for k in range(1, len(job.paths)):
                    dst = _create_level(kv, job, src, k)
                    _fill_level(prev, dst, job, k, job.method, pool, n_threads, tick)
                    prev = dst
            # labels first, the image last: whoever finds the image's levels finds theirs
            for job, _ in reversed(group):
                _write_multiscale(kv, job, job.method, len(job.paths))
            results += [PyramidResult(j.image, j.paths, j.shapes, j.method) for j, _ in group]
    _reconsolidate(kv)
    return results
