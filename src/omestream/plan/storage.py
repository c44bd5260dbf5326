"""StoragePlan: the hierarchy to write, as pure data (no I/O).

A plan says which images exist (their group paths), the axes of each, and for every
resolution level the array's shape, chunks and shards. Backends and metadata
builders consume it; nothing here touches disk.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from omestream.plan.memory import open_units, slab_budget_bytes
from omestream.settings import AcquisitionSettings, Channel, Dimension, Plate, Position
from omestream.settings.acquisition import useful_levels
from omestream.settings.colors import guess_color, pick_colors

__all__ = [
    "ArrayPlan",
    "AxisPlan",
    "ImagePlan",
    "StoragePlan",
    "auto_chunks",
    "plan_storage",
    "series_name_ok",
    "series_paths",
]

Layout = Literal["image", "bioformats2raw", "plate"]

# Shards (or v2 chunks) of about this size keep per-file overhead small on every
# filesystem while a partial write at a crash loses little.
TARGET_SHARD_BYTES = 8 * 2**20
MAX_FRAME_CHUNK = 512  # default y/x chunk edge when sharding (readers fetch 512x512 tiles)
MAX_V2_CHUNK = 2048  # default y/x chunk edge without sharding
# Frames grouped into one shard at most: a partial shard is rewritten on every
# metadata refresh, so tiny frames must not make shards of thousands of frames.
MAX_FRAMES_PER_SHARD = 256


@dataclass(frozen=True)
class AxisPlan:
    name: str
    type: str  # space | time | channel | other
    unit: str | None = None
    scale: float = 1.0
    translation: float = 0.0
    # the scale was given, not the 1.0 default: a time axis's default unit with no scale
    # says nothing about the interval, an explicit 1 s does
    scale_given: bool = False


@dataclass(frozen=True)
class ArrayPlan:
    """One resolution level of one image."""

    path: str  # relative to the image group: "0", "1", ...
    shape: tuple[int, ...]  # unbounded axis starts at 0
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None  # in elements, Zarr v3 only
    scale: tuple[float, ...]
    translation: tuple[float, ...]

    @property
    def write_unit(self) -> tuple[int, ...]:
        """The block written as one file: a shard if sharded, else a chunk."""
        return self.shards or self.chunks


@dataclass(frozen=True)
class ImagePlan:
    path: str  # group path from the root: "" (single image), "0", "A/1/fov0"
    name: str
    axes: tuple[AxisPlan, ...]  # storage order
    levels: tuple[ArrayPlan, ...]
    channels: tuple[Channel, ...] | None = None
    position: Position | None = None
    downscale_method: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def channel_axis(self) -> int | None:
        return next((i for i, a in enumerate(self.axes) if a.type == "channel"), None)


@dataclass(frozen=True)
class StoragePlan:
    layout: Layout
    images: tuple[ImagePlan, ...]
    dtype: str
    fill_value: int | float
    ngff_version: str  # "0.4" | "0.5"
    zarr_format: int  # 2 | 3
    compression: str | None
    unbounded_axis: int | None  # storage axis that grows, if any
    plate: Plate | None = None
    wells: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())

    def with_images(self, images: tuple[ImagePlan, ...]) -> StoragePlan:
        return replace(self, images=images)


def auto_chunks(
    dims: tuple[Dimension, ...], itemsize: int, sharded: bool
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Chunk and shard shapes for ``dims`` (storage order), honouring user values.

    Heuristic: y/x chunks of at most 512 (2048 without sharding); one frame per chunk
    along the outer axes. With sharding, a shard covers the whole frame and groups
    frames along the innermost outer axis until it holds about 8 MiB (at most 256
    frames), in whole chunks of that axis (given or chosen), so small frames are not
    written as one tiny file each. Shard sizes given for any axis are kept as given.
    A shard that would hold a single chunk is left out: the array is then not sharded.
    """
    counts = [d.count or 1 for d in dims]
    edge = MAX_FRAME_CHUNK if sharded else MAX_V2_CHUNK
    chunks = []
    for i, d in enumerate(dims):
        if d.chunk_size is not None:
            chunks.append(d.chunk_size)
        elif i >= len(dims) - 2:
            chunks.append(min(counts[i], edge))
        else:
            chunks.append(1)
    if not sharded:
        return tuple(chunks), None
    if any(d.shard_size_chunks is not None for d in dims):
        shards = [c * (d.shard_size_chunks or 1) for c, d in zip(chunks, dims, strict=True)]
        return tuple(chunks), tuple(shards)
    shards = list(chunks)
    for i in (len(dims) - 2, len(dims) - 1):
        shards[i] = math.ceil(counts[i] / chunks[i]) * chunks[i]
    if len(dims) > 2:
        inner = len(dims) - 3
        # bytes per step along that axis (a frame, times the chunks of the axes outside)
        frame_bytes = shards[-2] * shards[-1] * itemsize * math.prod(shards[:-3])
        # whole chunks along that axis, given or chosen: a chunk of one frame (as
        # ome-writers' settings give t, c and z) still needs no file of its own
        if frame_bytes < TARGET_SHARD_BYTES:
            per = max(1, min(TARGET_SHARD_BYTES // frame_bytes, MAX_FRAMES_PER_SHARD))
            limit = dims[inner].count or per
            n_chunks = max(1, min(per, limit) // chunks[inner])
            shards[inner] = chunks[inner] * n_chunks
    if tuple(shards) == tuple(chunks):
        # A shard of one chunk only adds an index that readers must fetch first.
        return tuple(chunks), None
    return tuple(chunks), tuple(shards)


def _fit_open_units(
    settings: AcquisitionSettings,
    dims: tuple[Dimension, ...],
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    itemsize: int,
    user_shards: bool,
) -> tuple[int, ...] | None:
    """Shards small enough that the units filling at once (see :mod:`.memory`) fit half
    the memory budget: automatic ones shrink along the frame axes they group, down to
    one chunk (no sharding); a layout the user gave is kept, with a warning."""
    budget = slab_budget_bytes(settings)

    def need(unit: tuple[int, ...]) -> tuple[int, int]:
        n = open_units(settings, unit)
        return n, n * math.prod(unit) * itemsize

    unit = shards or chunks
    n, nbytes = need(unit)
    if nbytes <= budget:
        return shards
    if shards is not None and not user_shards:
        while shards is not None and nbytes > budget:
            outer = [i for i in range(len(dims) - 2) if shards[i] > chunks[i]]
            if not outer:
                break
            i = outer[-1]
            smaller = list(shards)
            smaller[i] = max(chunks[i], (shards[i] // 2) // chunks[i] * chunks[i])
            shards = tuple(smaller) if tuple(smaller) != chunks else None
            n, nbytes = need(shards or chunks)
        if nbytes <= budget:
            return shards
    warnings.warn(
        f"with this layout up to {n} write units of {math.prod(shards or chunks) * itemsize / 2**20:.1f} "
        f"MB each fill at once ({nbytes / 2**20:.0f} MB), more than half the memory budget "
        f"(memory_budget_mb={settings.writer.memory_budget_mb}): the stream will use that "
        "much memory, and up to twice that while it writes partial shards whose chunks "
        "hold several frames (every metadata_interval_s). Smaller chunk_size/"
        "shard_size_chunks along the frame axes, a storage order closer to the "
        "acquisition order, or a larger budget keep it within bounds",
        UserWarning,
        stacklevel=3,
    )
    return shards


def _level_plans(
    dims: tuple[Dimension, ...],
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    settings: AcquisitionSettings,
    auto_shards: bool = False,
) -> tuple[ArrayPlan, ...]:
    shape0 = tuple(d.count or 0 for d in dims)
    scale0 = tuple(float(d.scale) if d.scale else 1.0 for d in dims)
    trans0 = tuple(float(d.translation or 0.0) for d in dims)
    pyr = settings.pyramid
    factors = tuple((pyr.factors.get(d.name, 1) if pyr else 1) for d in dims)
    # no level past the one where every downsampled axis is one pixel (settings warn)
    top = useful_levels([s or 1 for s in shape0], factors)
    n_levels = min(pyr.levels, top) if pyr is not None else 1
    levels = []
    for lv in range(n_levels):
        f = tuple(fi**lv for fi in factors)
        shape = tuple(-(-s // fi) if s else 0 for s, fi in zip(shape0, f, strict=True))
        scale = tuple(s * fi for s, fi in zip(scale0, f, strict=True))
        # Averaging a block of fi pixels moves the sample centre by (fi - 1)/2 pixels.
        shifted = pyr is not None and pyr.method in ("mean", "gaussian", "mode")
        trans = tuple(
            t + (s0 * (fi - 1) / 2 if shifted else 0.0)
            for t, s0, fi in zip(trans0, scale0, f, strict=True)
        )
        c = tuple(min(ci, max(si, 1)) if si else ci for ci, si in zip(chunks, shape, strict=True))
        sh = None
        if shards is not None:
            sh = tuple(
                min(s, -(-max(si, 1) // ci) * ci) if si else s
                for s, si, ci in zip(shards, shape, c, strict=True)
            )
            sh = tuple(max(ci, s - s % ci) for s, ci in zip(sh, c, strict=True))
            if auto_shards and sh == c:  # see auto_chunks: one chunk, no shard
                sh = None
        levels.append(ArrayPlan(str(lv), shape, c, sh, scale, trans))
    return tuple(levels)


def _channels(dim: Dimension | None) -> tuple[Channel, ...] | None:
    if dim is None or dim.count is None:
        return None
    given = dim.channels
    chans = [given[i] if given and i < len(given) else Channel(name=f"Channel {i}")
             for i in range(dim.count)]  # fmt: skip
    colors = pick_colors([
        ch.color or guess_color(ch.name, fluorophore=ch.fluorophore,
                                excitation=ch.excitation_wavelength,
                                emission=ch.emission_wavelength)
        for ch in chans
    ])  # fmt: skip
    return tuple(ch.replace(color=c) for ch, c in zip(chans, colors, strict=True))


def plan_storage(settings: AcquisitionSettings) -> StoragePlan:
    """Turn validated settings into the plan of groups and arrays to create."""
    fmt = settings.format
    assert fmt is not None
    by_name = {d.name: d for d in settings.array_dimensions}
    dims = tuple(by_name[n] for n in settings.storage_dimension_names)
    itemsize = np.dtype(settings.dtype).itemsize
    sharded = fmt.zarr_format == 3
    chunks, shards = auto_chunks(dims, itemsize, sharded)
    user_shards = any(d.shard_size_chunks is not None for d in dims)
    if fmt.name == "ome-zarr":
        shards = _fit_open_units(settings, dims, chunks, shards, itemsize, user_shards)
    levels = _level_plans(dims, chunks, shards, settings, auto_shards=not user_shards)
    axes = tuple(
        AxisPlan(
            name=d.name.lower() if fmt.name == "ome-zarr" else d.name,
            type=d.type or "other",
            unit=d.unit,
            scale=float(d.scale) if d.scale else 1.0,
            translation=float(d.translation or 0.0),
            scale_given=d.scale is not None,
        )
        for d in dims
    )
    channel_dim = next((d for d in dims if d.type == "channel"), None)
    channels = _channels(channel_dim)
    method = settings.pyramid.method if settings.pyramid else None
    positions = settings.positions
    images: list[ImagePlan] = []
    wells: dict[tuple[str, str], list[str]] = {}
    if settings.plate is not None:
        layout: Layout = "plate"
        for p in positions:
            row, col = p.well  # type: ignore[misc]
            wells.setdefault((row, col), []).append(p.name)
            images.append(
                ImagePlan(f"{row}/{col}/{p.name}", p.name, axes, levels, channels, p, method)
            )
    elif positions:
        layout = "bioformats2raw"
        paths = series_paths(positions, fmt.version or "0.5")
        for path, p in zip(paths, positions, strict=True):
            images.append(ImagePlan(path, p.name, axes, levels, channels, p, method))
    else:
        layout = "image"
        name = _image_name(settings.root_path)
        images.append(ImagePlan("", name, axes, levels, channels, None, method))
    first = settings.array_dimensions[0]
    unbounded = settings.storage_dimension_names.index(first.name) if first.count is None else None
    plate = settings.plate
    ordered_wells: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    if plate is not None:
        ordered_wells = tuple(
            (r, c, tuple(wells[(r, c)]))
            for r in plate.row_names
            for c in plate.column_names
            if (r, c) in wells
        )
    return StoragePlan(
        layout=layout,
        images=tuple(images),
        dtype=settings.dtype,
        fill_value=0,
        ngff_version=fmt.version or "0.5",
        zarr_format=fmt.zarr_format or 3,
        compression=settings.compression,
        unbounded_axis=unbounded,
        plate=plate,
        wells=ordered_wells,
    )


# Names that serve as a series' group path as they are: portable file and key names
# (no spaces, no leading dot or underscore, which Zarr v3 reserves as "__").
_SERIES_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def series_paths(positions: Sequence[Position], ngff_version: str = "0.5") -> list[str]:
    """Group paths of the images of a multi-position (bioformats2raw) collection.

    In NGFF 0.5 each image is found under its position's name (``Pos0/``; with a grid
    cell, ``name_row_col``), as ome-writers lays them out, so a reader can open a
    position by name; the root's ``OME/`` group lists the paths in order. They are
    numbered ``0``, ``1``, ... (the bioformats2raw convention) when any name would make
    an unusable or ambiguous path (characters outside letters, digits, ``.``, ``_``
    and ``-``; two names differing only in case, which collide on case-insensitive
    disks; the metadata group ``OME``), and always in NGFF 0.4, whose root carries no
    version: readers such as yaozarrs find it in series ``0``.
    """
    if ngff_version == "0.4":
        return [str(i) for i in range(len(positions))]
    names = [
        p.name if p.grid_row is None else f"{p.name}_{p.grid_row}_{p.grid_column}"
        for p in positions
    ]
    folded = {n.casefold() for n in names}
    if len(folded) == len(names) and all(series_name_ok(n) for n in names):
        return names
    return [str(i) for i in range(len(positions))]


def series_name_ok(name: str) -> bool:
    """Whether ``name`` can be a series' group path as it is (see :func:`series_paths`)."""
    return bool(_SERIES_PATH.fullmatch(name)) and name.casefold() != "ome"


def _image_name(root: str) -> str:
    base = root.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or "image"
    return base or "image"
