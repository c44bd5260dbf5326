"""Write Dask arrays into an image, a multi-position dataset or a plate, in parallel.

The client creates the whole structure and its metadata first (``target``). Each
array is then rechunked onto the write-unit grid of its level (shards when sharded,
else chunks; ``ArrayPlan.write_unit``) and every block becomes one task that writes
whole units with zarr-python. No two tasks touch the same chunk or shard, and a task
run twice writes the same bytes, so failed tasks can simply run again.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omestream.dask._deps import require_dask
from omestream.dask.layout import ArrayRef, open_array
from omestream.dask.regions import aligned_chunks, block_selections, units_covered
from omestream.dask.target import NewDataset, bounded, create_dataset, location, overlaps
from omestream.errors import FrameDtypeError, FrameShapeError, SettingsError
from omestream.io.kv import KVStore, open_kv
from omestream.metadata.display import channel_windows, merge_windows
from omestream.plan import ImagePlan
from omestream.pyramid.kernels import downsample, halo
from omestream.settings import (
    AcquisitionSettings,
    Plate,
    Position,
    PositionDimension,
    dims_from_standard_axes,
)

if TYPE_CHECKING:
    import dask.array as da
    from dask.delayed import Delayed

__all__ = [
    "UnitWrite",
    "WritePlan",
    "WriteReport",
    "write_image",
    "write_plate",
    "write_positions",
]

WRITE_PREFIX = "omestream-write"


@dataclass(frozen=True)
class UnitWrite:
    """One task's job: write ``selection`` (whole write units) of one array."""

    array: ArrayRef
    image: int
    level: int
    selection: tuple[slice, ...]
    unit: tuple[int, ...]
    channel_axis: int | None = None  # level 0 of an image with channels: measure windows

    def units(self) -> list[tuple[int, ...]]:
        return units_covered(self.selection, self.unit)


def write_unit_block(
    block: np.ndarray, job: UnitWrite
) -> tuple[int, dict[int, tuple[float, float]]]:
    """Task body: write one block; rerunning it rewrites the same chunks. Returns the
    bytes written and the display windows of the channels in the block (see
    :mod:`omestream.metadata.display`), so the client can put them into ``omero``."""
    arr = open_array(job.array, mode="r+")
    arr[job.selection] = block
    a = job.channel_axis
    windows = {} if a is None else channel_windows(block, a, job.selection[a].start or 0)
    return int(block.nbytes), windows


@dataclass(frozen=True)
class WriteReport:
    url: str
    images: int
    tasks: int
    nbytes: int
    seconds: float


@dataclass
class WritePlan:
    """The created dataset and one Dask task per block of whole write units.

    ``compute`` runs the tasks (again, if a run failed: they are idempotent) and then
    records the outcome in the root metadata.
    """

    dataset: NewDataset
    writes: list[UnitWrite]
    tasks: list[Delayed]

    @property
    def url(self) -> str:
        return self.dataset.kv.url

    def graph(self) -> dict[Any, Any]:
        """The merged task graph of every write task (key -> task)."""
        import dask

        return dict(dask.delayed(list)(self.tasks).__dask_graph__())

    def compute(self, client: Any = None, retries: int = 0) -> WriteReport:
        t0 = time.perf_counter()
        self.dataset.hold()  # a rerun after a failure takes the stream lock again
        try:
            if client is not None:
                futures = client.compute(self.tasks, retries=retries)
                results = client.gather(futures)
            else:
                import dask

                results = dask.compute(*self.tasks)
        except BaseException:
            self.dataset.finish(complete=False)
            raise
        windows = self.dataset.state.windows
        for job, (_, measured) in zip(self.writes, results, strict=True):
            for c, win in measured.items():
                merged = merge_windows(windows[job.image].get(c), win)
                if merged is not None:
                    windows[job.image][c] = merged
        self.dataset.finish(complete=True)
        return WriteReport(
            self.url,
            len(self.dataset.plan.images),
            len(self.tasks),
            sum(nbytes for nbytes, _ in results),
            time.perf_counter() - t0,
        )


# -- settings for a path ------------------------------------------------------------------
def _default_dims(ndim: int) -> str:
    if not 2 <= ndim <= 5:
        raise FrameShapeError(
            f"arrays to write need 2 to 5 dimensions (t, c, z, y, x); got {ndim}"
        )
    return "tczyx"[-ndim:]


def _settings_for(
    location: str,
    shape: tuple[int, ...],
    dtype: Any,
    dims: str | Sequence[str] | None,
    chunks: Mapping[str, int] | None,
    shards: Mapping[str, int] | None,
    positions: Any = None,
    plate: Plate | None = None,
    **kwargs: Any,
) -> AcquisitionSettings:
    names = list(dims) if dims is not None else list(_default_dims(len(shape)))
    if len(names) != len(shape):
        raise FrameShapeError(
            f"dims {names} name {len(names)} axes; the arrays have shape {shape}"
        )
    if len(set(names)) != len(names):
        raise SettingsError(f"dims {''.join(names)!r} name an axis twice; name each once")
    named = set(chunks or {}) | set(shards or {})
    if dims is None and named - set(names):
        raise SettingsError(
            f"chunks or shards name {sorted(named - set(names))}, but the arrays' "
            f"{len(shape)} axes are {''.join(names)!r} (the default for {len(shape)}-D "
            "arrays); pass dims= to name them, e.g. dims='tyx'"
        )
    sizes: dict[str, Any] = {}
    if positions is not None:
        sizes["p"] = positions
    sizes.update(zip(names, shape, strict=True))
    try:
        dimensions = dims_from_standard_axes(sizes, dict(chunks or {}), dict(shards or {}))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return AcquisitionSettings(
        root_path=location,
        dimensions=tuple(dimensions),
        dtype=np.dtype(dtype).name,
        plate=plate,
        **kwargs,
    )


# -- inputs -------------------------------------------------------------------------------
def _as_dask(arrays: Sequence[Any]) -> list[da.Array]:
    """Each input as a Dask array; arrays of unknown size are refused."""
    import dask.array as da

    out = [a if isinstance(a, da.Array) else da.asarray(a) for a in arrays]
    for i, a in enumerate(out):
        if any(isinstance(n, float) and math.isnan(n) for n in a.shape):
            raise FrameShapeError(
                f"array {i} has chunks of unknown size (shape {a.shape}), as after boolean "
                "indexing: call arr.compute_chunk_sizes() first, so that the dataset can be "
                "laid out; nothing was written"
            )
    return out


def _zarr_arrays(arr: da.Array) -> Iterator[Any]:
    """The zarr-python arrays that ``arr``'s task graph reads (``da.from_zarr``, also
    nested in tasks' arguments)."""
    import zarr

    try:
        from dask._task_spec import DataNode, Task
    except ImportError:  # older Dask: tasks are plain tuples
        DataNode = Task = ()  # type: ignore[assignment,misc]
    stack: list[Any] = list(arr.__dask_graph__().values())
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, zarr.Array):
            yield v
            continue
        if isinstance(v, str | bytes | int | float | complex | bool) or v is None:
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, functools.partial):
            stack.extend([*v.args, *v.keywords.values()])
        elif isinstance(v, Task):
            stack.extend([*v.args, *v.kwargs.values()])
        elif isinstance(v, DataNode):
            stack.append(v.value)


def _zarr_location(z: Any) -> tuple[str, str] | None:
    """Where a zarr-python array is stored, as :func:`location` gives it; None for
    stores that are not files or fsspec URLs (memory, zip)."""
    from zarr.storage import FsspecStore, LocalStore

    store = z.store
    if isinstance(store, LocalStore):
        return "file", os.path.realpath(os.path.join(str(store.root), *z.path.split("/")))
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        scheme = protocol[0] if isinstance(protocol, tuple | list) else str(protocol)
        return scheme, "/".join(p for p in (store.path.rstrip("/"), z.path) if p)
    return None


def _check_not_reading(arrays: Sequence[da.Array], kv: KVStore) -> None:
    """Refuse arrays that read from zarr arrays stored inside the destination: replacing
    it (overwrite=True) would delete them before a task reads them."""
    if not kv.root_exists():
        return  # nothing can be read from it
    dest = location(kv)
    for i, arr in enumerate(arrays):
        for z in _zarr_arrays(arr):
            where = _zarr_location(z)
            if where is not None and overlaps(where, dest):
                raise SettingsError(
                    f"array {i} reads {where[1]}, which is inside the destination {kv.url}: "
                    "replacing it would delete the data before it is read; write to another "
                    "path (and move it over the old one afterwards if that is what you want); "
                    "nothing was changed"
                )


# -- planning -----------------------------------------------------------------------------
def _check_arrays(
    arrays: Sequence[da.Array], settings: AcquisitionSettings
) -> AcquisitionSettings:
    first = arrays[0]
    for i, a in enumerate(arrays):
        if a.shape != first.shape or a.dtype != first.dtype:
            raise FrameShapeError(
                f"array {i} has shape {a.shape} and dtype {a.dtype}; array 0 has "
                f"{first.shape} {first.dtype}: every image must match"
            )
    if settings.is_unbounded and first.ndim == len(settings.array_dimensions):
        settings = bounded(settings, first.shape[0])
    expected = tuple(d.count for d in settings.array_dimensions)
    names = settings.acquisition_dimension_names
    if first.shape != expected:
        raise FrameShapeError(
            f"the arrays have shape {first.shape}; the settings expect {expected} "
            f"(dims {', '.join(names)}); nothing was written"
        )
    if np.dtype(first.dtype).name != settings.dtype:
        raise FrameDtypeError(
            f"the arrays have dtype {first.dtype}; the settings expect {settings.dtype} "
            "(omestream does not cast: use arr.astype(...) if that is intended); "
            "nothing was written"
        )
    return settings


def _levels(arr: da.Array, image: ImagePlan, method: str) -> list[da.Array]:
    """Level 0 and every lower level, each on its own write-unit grid."""
    out = [arr]
    for lv in range(1, len(image.levels)):
        prev, cur = image.levels[lv - 1], image.levels[lv]
        factors = tuple(max(1, round(c / p)) for p, c in zip(prev.scale, cur.scale, strict=True))
        # source blocks of factor x unit: each output block is exactly one unit row
        src = out[-1].rechunk(tuple(u * f for u, f in zip(cur.write_unit, factors, strict=True)))
        out.append(_reduce(src, factors, method))
    return out


def _reduce(src: da.Array, factors: tuple[int, ...], method: str) -> da.Array:
    """``src`` downsampled block by block; each block is reduced with the margin of
    neighbouring pixels its filter reads (the gaussian kernel's reach), so the result
    equals a filter over the whole array, as :func:`omestream.pyramid.build_pyramid`
    computes it."""
    import dask.array as da

    margins = halo(factors, method)
    # An axis whose blocks are thinner than the margin (z planes, one per unit) is
    # taken whole: its blocks stay aligned to whole units, and it needs no margin.
    whole = [h > 0 and min(cs) < h for h, cs in zip(margins, src.chunks, strict=True)]
    if any(whole):
        src = src.rechunk(tuple(-1 if w else cs for w, cs in zip(whole, src.chunks, strict=True)))
    depth = {a: 0 if w else h for a, (h, w) in enumerate(zip(margins, whole, strict=True))}
    chunks = tuple(
        tuple(-(-c // f) for c in cs) for cs, f in zip(src.chunks, factors, strict=True)
    )
    if not any(depth.values()):
        return da.map_blocks(downsample, src, factors, method, chunks=chunks, dtype=src.dtype)
    core_sizes = src.chunks
    padded = da.overlap.overlap(src, depth=depth, boundary="none")

    def reduce_block(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        loc = block_info[None]["chunk-location"]
        core = []
        for a, i in enumerate(loc):
            lo = depth[a] if i > 0 else 0  # no margin before the array's first block
            core.append(slice(lo, lo + core_sizes[a][i]))
        return downsample(block, factors, method, core=tuple(core))

    return padded.map_blocks(reduce_block, chunks=chunks, dtype=src.dtype)


def plan_write(
    arrays: Sequence[da.Array],
    settings: AcquisitionSettings,
    storage_options: dict[str, Any] | None = None,
) -> WritePlan:
    """Create the dataset for ``settings`` and one write task per block of whole units.

    ``arrays`` holds one Dask array per image (per position, in settings order), with
    the axes of ``settings.array_dimensions`` in the order given there.
    """
    require_dask()
    import dask
    from dask.base import tokenize

    if not isinstance(settings, AcquisitionSettings):
        raise SettingsError(f"expected AcquisitionSettings, got {type(settings).__name__}")
    arrays = _as_dask(arrays)
    if not arrays:
        raise SettingsError("nothing to write: no arrays given")
    settings = _check_arrays(arrays, settings)
    n_images = max(1, len(settings.positions))
    if len(arrays) != n_images:
        raise SettingsError(f"the settings describe {n_images} images; {len(arrays)} arrays given")
    acq = settings.acquisition_dimension_names
    perm = tuple(acq.index(n) for n in settings.storage_dimension_names)
    _check_not_reading(arrays, open_kv(settings.output_path, storage_options or None))
    dataset = create_dataset(settings, storage_options)
    plan = dataset.plan
    method = settings.pyramid.method if settings.pyramid else "mean"
    writes: list[UnitWrite] = []
    tasks: list[Delayed] = []
    name = f"{WRITE_PREFIX}-{tokenize(*(a.name for a in arrays), dataset.kv.url)}"
    for i, (arr, image) in enumerate(zip(arrays, plan.images, strict=True)):
        stored = arr.transpose(perm) if perm != tuple(range(arr.ndim)) else arr
        channel_axis = image.channel_axis() if image.channels else None
        for lv, level_arr in enumerate(_levels(stored, image, method)):
            unit = image.levels[lv].write_unit
            level_arr = level_arr.rechunk(aligned_chunks(level_arr.chunks, unit))
            blocks = level_arr.to_delayed()
            ref = ArrayRef.make(dataset.kv, _array_path(image, lv), storage_options)
            for idx, selection in block_selections(level_arr.chunks):
                job = UnitWrite(ref, i, lv, selection, unit, channel_axis if lv == 0 else None)
                writes.append(job)
                tasks.append(
                    dask.delayed(write_unit_block, pure=True)(
                        blocks[idx], job, dask_key_name=(name, i, lv, *idx)
                    )
                )
    return WritePlan(dataset, writes, tasks)


def _array_path(image: ImagePlan, level: int) -> str:
    return "/".join(p for p in (image.path, image.levels[level].path) if p)


def _run(plan: WritePlan, compute: bool, client: Any, retries: int) -> WritePlan | WriteReport:
    return plan.compute(client, retries) if compute else plan


# -- public entry points ------------------------------------------------------------------
def write_image(
    array: Any,
    settings_or_path: AcquisitionSettings | str,
    *,
    dims: str | Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
    shards: Mapping[str, int] | None = None,
    storage_options: dict[str, Any] | None = None,
    client: Any = None,
    compute: bool = True,
    retries: int = 0,
    **settings_kwargs: Any,
) -> WriteReport | WritePlan:
    """Write one Dask array as a single OME-Zarr image.

    ``settings_or_path`` is either full ``AcquisitionSettings`` (the array's axes follow
    its dimensions) or a path/URL; then ``dims`` names the axes with standard names
    (default the last ``ndim`` of ``"tczyx"``), ``chunks``/``shards`` set chunk sizes and
    chunks per shard, and ``settings_kwargs`` go to AcquisitionSettings (``compression``,
    ``pyramid``, ``overwrite``, ``format``, ...). Runs on ``client`` if given, else on
    Dask's current scheduler. ``compute=False`` creates the dataset and returns the
    :class:`WritePlan` without running it.
    """
    require_dask()
    (arr,) = _as_dask([array])
    if isinstance(settings_or_path, AcquisitionSettings):
        settings = settings_or_path
    else:
        settings = _settings_for(str(settings_or_path), arr.shape, arr.dtype, dims, chunks, shards,
                                 **settings_kwargs)  # fmt: skip
    if settings.positions:
        raise SettingsError(
            "these settings describe several positions: use write_positions or write_plate"
        )
    return _run(plan_write([arr], settings, storage_options), compute, client, retries)


def write_positions(
    arrays: Sequence[Any],
    settings_or_path: AcquisitionSettings | str,
    *,
    names: Sequence[str] | None = None,
    dims: str | Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
    shards: Mapping[str, int] | None = None,
    storage_options: dict[str, Any] | None = None,
    client: Any = None,
    compute: bool = True,
    retries: int = 0,
    **settings_kwargs: Any,
) -> WriteReport | WritePlan:
    """Write one Dask array per position as a multi-position (bioformats2raw) dataset.

    With settings, ``arrays`` follow the order of its PositionDimension. With a path,
    positions are named ``names`` (default ``Pos0``, ``Pos1``, ...). Other arguments as
    in :func:`write_image`.
    """
    require_dask()
    arrs = _as_dask(arrays)
    if not arrs:
        raise SettingsError("nothing to write: no arrays given")
    if isinstance(settings_or_path, AcquisitionSettings):
        settings = settings_or_path
        if settings.plate is not None:
            raise SettingsError("these settings describe a plate: use write_plate")
    else:
        pos = list(names) if names is not None else [f"Pos{i}" for i in range(len(arrs))]
        if len(pos) != len(arrs):
            raise SettingsError(f"{len(pos)} names given for {len(arrs)} arrays")
        settings = _settings_for(str(settings_or_path), arrs[0].shape, arrs[0].dtype, dims,
                                 chunks, shards, positions=pos, **settings_kwargs)  # fmt: skip
    return _run(plan_write(arrs, settings, storage_options), compute, client, retries)


def _well_key(key: str | tuple[str, ...]) -> tuple[str, str, str | None]:
    parts = tuple(key.split("/")) if isinstance(key, str) else tuple(key)
    if len(parts) == 2:
        return parts[0], parts[1], None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise SettingsError(f"plate key {key!r} must be 'row/column' or 'row/column/field'")


def write_plate(
    wells: Mapping[str | tuple[str, ...], Any],
    settings_or_path: AcquisitionSettings | str,
    *,
    plate: Plate | None = None,
    dims: str | Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
    shards: Mapping[str, int] | None = None,
    storage_options: dict[str, Any] | None = None,
    client: Any = None,
    compute: bool = True,
    retries: int = 0,
    **settings_kwargs: Any,
) -> WriteReport | WritePlan:
    """Write one Dask array per field of view into an HCS plate.

    ``wells`` maps ``"A/1"`` (one field, named ``"0"``) or ``"A/1/fov0"`` (or tuples) to
    arrays. With settings, keys must match its positions' wells and names. With a path,
    ``plate`` gives the row and column names (default: the rows and columns used).
    """
    require_dask()
    keys = [_well_key(k) for k in wells]
    arrs = _as_dask(list(wells.values()))
    if not arrs:
        raise SettingsError("nothing to write: no wells given")
    if isinstance(settings_or_path, AcquisitionSettings):
        settings = settings_or_path
        if settings.plate is None:
            raise SettingsError("these settings describe no plate: pass plate= in the settings")
        by_path: dict[str, Any] = {}
        for (r, c, f), a in zip(keys, arrs, strict=True):
            matches = [
                p for p in settings.positions if p.well == (r, c) and (f is None or p.name == f)
            ]
            if len(matches) != 1:
                raise SettingsError(
                    f"well key {r}/{c}{'/' + f if f else ''} matches {len(matches)} positions of "
                    "the settings; expected exactly one"
                )
            by_path[f"{r}/{c}/{matches[0].name}"] = a
        ordered = []
        for p in settings.positions:
            path = f"{p.plate_row}/{p.plate_column}/{p.name}"
            if path not in by_path:
                raise SettingsError(f"no array given for position {path} of the settings")
            ordered.append(by_path[path])
        arrs = ordered
    else:
        if plate is None:
            rows = sorted({r for r, _, _ in keys})
            cols = sorted({c for _, c, _ in keys}, key=lambda c: (len(c), c))
            plate = Plate(row_names=tuple(rows), column_names=tuple(cols))
        positions = tuple(
            Position(name=f if f is not None else "0", plate_row=r, plate_column=c)
            for r, c, f in keys
        )
        settings = _settings_for(
            str(settings_or_path), arrs[0].shape, arrs[0].dtype, dims, chunks, shards,
            positions=PositionDimension(positions=positions).positions, plate=plate,
            **settings_kwargs,
        )  # fmt: skip
    return _run(plan_write(arrs, settings, storage_options), compute, client, retries)
