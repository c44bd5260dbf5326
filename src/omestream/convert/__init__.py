"""Convert datasets: OME-TIFF / TIFF stacks / any OME-Zarr -> OME-Zarr 0.5 or 0.4, and
OME-Zarr -> OME-TIFF.

The source is read chunk by chunk (bounded memory) and its frames are appended to
a :func:`omestream.create_stream` stream, so the output gets exactly what a live
acquisition would: the same engines, codecs, pyramids and metadata.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from omestream.backends.codecs import codec_choice
from omestream.convert.labels import LabelSet, copy_labels, find_labels
from omestream.convert.levels import check_levels, copy_levels
from omestream.convert.sources import Source, close_source, iter_frames, open_source
from omestream.convert.tiff_levels import TiffLevels, copy_tiff_levels, tiff_levels
from omestream.errors import ConcurrentModificationError, SettingsError, StoreExistsError
from omestream.io.durability import syncfs
from omestream.io.paths import overlaps, path_location
from omestream.plan.storage import StoragePlan, plan_storage
from omestream.pyramid.build import build_pyramid
from omestream.settings import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    Pyramid,
    WriterOptions,
)
from omestream.settings.formats import format_from_suffix
from omestream.stream import create_stream

__all__ = ["ConvertOptions", "Source", "convert", "open_source", "output_settings"]


@dataclass(frozen=True)
class ConvertOptions:
    version: str | None = None  # NGFF version of an OME-Zarr output (None: 0.5)
    # "auto": blosc-zstd for OME-Zarr, zstd for OME-TIFF (which has no blosc)
    compression: str | None = "auto"
    chunks: dict[str, int] = field(default_factory=dict)  # per axis name
    shards: dict[str, int] = field(default_factory=dict)  # chunks per shard, per axis name
    # None: an OME-Zarr source's levels copied as they are into an OME-Zarr output
    # (else as many computed anew); a number: that many computed anew
    pyramid_levels: int | None = None
    workers: int | None = None  # read + encode threads
    overwrite: bool = False
    stack_axis: str = "z"  # what an unnamed TIFF page sequence is


def output_settings(src: Source, dst: str, opts: ConvertOptions) -> AcquisitionSettings:
    """The settings of an output at ``dst`` holding what ``src`` holds, written as ``opts`` say."""
    fmt_name = format_from_suffix(dst) or "ome-zarr"
    compression = opts.compression
    if fmt_name == "ome-tiff":
        _check_tiff_options(dst, opts)
        compression = "zstd" if compression == "auto" else compression
    elif compression == "auto":
        compression = "blosc-zstd"
    names = [d.name for d in src.dims]
    for what, sizes in (("chunk sizes", opts.chunks), ("shard sizes", opts.shards)):
        unknown = [n for n in sizes if n not in names]
        if unknown:
            raise SettingsError(
                f"{what} given for {', '.join(map(repr, unknown))}, which {src.location!r} "
                f"does not have; its axes are {', '.join(names)}"
            )
    dims: list[Dimension | PositionDimension] = []
    for d in src.dims:
        shard = opts.shards.get(d.name) if fmt_name == "ome-zarr" else None
        dims.append(d.replace(shard_size_chunks=shard) if shard else d)
    if src.positions:
        dims.insert(0, PositionDimension(positions=tuple(src.positions)))
    # OME-TIFF keeps reduced resolutions as SubIFDs of each plane (y and x halved)
    levels = opts.pyramid_levels if opts.pyramid_levels is not None else src.levels
    try:
        return AcquisitionSettings(
            root_path=dst,
            dimensions=dims,
            dtype=src.dtype,
            format={"name": fmt_name, "version": opts.version or "0.5"}
            if fmt_name == "ome-zarr"
            else {"name": "ome-tiff"},
            compression=compression,
            plate=src.plate,
            overwrite=opts.overwrite,
            pyramid=Pyramid(levels=levels) if levels and levels > 1 else None,
            writer=WriterOptions(threads=opts.workers, tiff_single_file=True),
        )
    except ValidationError as exc:
        errs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise SettingsError(f"cannot write {dst!r} from {src.location!r}: {errs}") from None


def _check_tiff_options(dst: str, opts: ConvertOptions) -> None:
    """Refuse what an OME-TIFF output cannot honour, rather than ignore it."""
    given = {"chunks": opts.chunks, "shards": opts.shards, "version": opts.version}
    zarr_only = [f"{name}={value!r}" for name, value in given.items() if value]
    if zarr_only:
        raise SettingsError(
            f"{', '.join(zarr_only)}: only OME-Zarr outputs have chunks, shards and an NGFF "
            f"version, and {dst!r} is an OME-TIFF (its pages are whole frames); leave "
            "them out, or write *.ome.zarr"
        )
    if opts.compression and opts.compression.lower().startswith("blosc"):
        raise SettingsError(
            f"compression {opts.compression!r} is not a TIFF compression: for {dst!r} use "
            "zstd, gzip, lzw or none"
        )


def convert(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    options: ConvertOptions | None = None,
    progress: Callable[[int, int], Any] | None = None,
    on_start: Callable[[Source, AcquisitionSettings], Any] | None = None,
    on_stage: Callable[[str], Any] | None = None,
) -> AcquisitionSettings:
    """Convert ``src_path`` to ``dst_path`` (format from its suffix: .ome.zarr / .ome.tiff).

    ``progress(frames, bytes)`` is called after each frame; ``on_start`` once the
    output is planned; ``on_stage(what)`` when work other than frames starts once
    they are written (copying levels and labels, building levels). Returns the
    settings the output was written with.
    """
    opts = options or ConvertOptions()
    src_s, dst_s = os.fspath(src_path), os.fspath(dst_path)
    src = open_source(src_s, opts.chunks, opts.stack_axis)
    created: str | None = None  # only an output this call created is removed on failure
    try:
        settings = output_settings(src, dst_s, opts)
        # before anything is deleted (overwrite=True) or created
        _check_apart(src_s, settings.output_path)
        if on_start is not None:
            on_start(src, settings)
        workers = opts.workers or min(4, os.cpu_count() or 1)
        frame_bytes = 0
        n = 0
        # an existing output (replaced with overwrite=True) is not ours to delete
        out = settings.output_path  # the destination, with the suffix its format adds
        created = out if not os.path.lexists(out) else None
        carry = _plan_carry(src, settings, opts)
        # levels copied or built once the images' level 0 (and labels) are there
        streamed = settings.model_copy(update={"pyramid": None}) if carry.after else settings
        with create_stream(streamed) as stream:
            for frame in iter_frames(src.blocks, workers):
                if not frame.dtype.isnative:  # big-endian TIFFs
                    frame = frame.astype(frame.dtype.newbyteorder("="))
                stream.append(frame)
                n += 1
                frame_bytes += frame.nbytes
                if progress is not None:
                    progress(n, frame_bytes)
        if carry.after:
            if on_stage is not None:
                on_stage(carry.describe(settings.pyramid is not None))
            _carry(src, settings, carry, workers)
    except BaseException as exc:
        # A partly converted output would look like a dataset (closed streams write
        # complete metadata) while missing frames: leave nothing rather than that. A
        # path that appeared meanwhile and is held or kept by another writer is theirs.
        if created and not isinstance(exc, StoreExistsError | ConcurrentModificationError):
            _remove_output(created)
        raise
    finally:
        close_source(src)
    return settings


@dataclass(frozen=True)
class _Carry:
    """What an OME-Zarr source has that the frame stream does not write."""

    labels: list[LabelSet]
    copy_levels: bool  # the source's lower levels as they are (else computed anew)
    plan: StoragePlan | None = None  # the output's, when it is an OME-Zarr
    tiff: TiffLevels | None = None  # an OME-TIFF source's SubIFD levels, to copy

    @property
    def after(self) -> bool:
        return self.copy_levels or bool(self.labels)

    def describe(self, pyramid: bool) -> str:
        n = sum(len(ls.names) for ls in self.labels)
        labels = f"{n} label image{'s' if n != 1 else ''}"
        if self.copy_levels:
            return "copying the source's resolution levels" + (f" and {labels}" if n else "")
        return f"copying {labels}" + (
            ", building the levels of images and labels" if pyramid else ""
        )


def _plan_carry(src: Source, settings: AcquisitionSettings, opts: ConvertOptions) -> _Carry:
    """Checked before anything is written. Levels are copied into an OME-Zarr output
    unless ``--pyramid-levels`` asks for others (or a label's level count differs
    from its image's, which NGFF forbids: then both are rebuilt); a warning names the
    label images an output cannot hold (an OME-TIFF has none, reordered axes no overlay)."""
    zarr_out = settings.format is not None and settings.format.name == "ome-zarr"
    if src.info.format != "ome-zarr":
        return _plan_tiff_carry(src, settings, opts) if zarr_out else _Carry([], False)
    plan = plan_storage(settings) if zarr_out else None
    images = [im.path for im in src.info.images]
    labels = find_labels(src.location, images)
    why = None
    if plan is None:
        why = "an OME-TIFF has no label images"
    elif tuple(a.name for a in src.info.images[0].axes) != plan.images[0].axis_names:
        why = "the output's axes are ordered unlike the source's"
        zarr_out = False  # nor would the source's levels fit
    if labels and why is not None:
        n = sum(len(ls.names) for ls in labels)
        warnings.warn(
            f"{src.location}: {n} label image(s) left out of {settings.output_path} "
            f"({why}); the images' pixels and metadata are converted",
            UserWarning,
            stacklevel=3,
        )
        labels = []
    counts = {im.path: len(im.levels) for im in src.info.images}
    copy = (
        zarr_out
        and opts.pyramid_levels is None
        and max(counts.values()) > 1
        and all(n == counts[ls.image] for ls in labels for n in ls.levels)
    )
    if copy:
        check_levels(src.location, images)
    return _Carry(labels, copy, plan)


def _plan_tiff_carry(src: Source, settings: AcquisitionSettings, opts: ConvertOptions) -> _Carry:
    """An OME-TIFF's SubIFD levels are copied into an OME-Zarr output unless
    ``--pyramid-levels`` asks for others; levels that cannot be (series whose levels
    differ, say) are computed anew, with a warning that says why."""
    if opts.pyramid_levels is not None or src.levels < 2 or src.series is None:
        return _Carry([], False)
    assert src.read_page is not None
    plan = plan_storage(settings)
    levels = TiffLevels(
        src.series,
        src.read_page,
        len(src.info.images),
        tuple(d.name for d in src.dims),
        plan.images[0].axis_names,
        src.per_page,
        np.dtype(src.dtype).newbyteorder("="),
    )
    why = tiff_levels(levels)
    if why is not None:
        warnings.warn(
            f"{src.location}: its resolution levels cannot be copied ({why}); "
            f"{settings.output_path} gets levels computed anew from the full resolution",
            UserWarning,
            stacklevel=4,
        )
        return _Carry([], False)
    return _Carry([], True, plan, levels)


def _carry(src: Source, settings: AcquisitionSettings, carry: _Carry, workers: int) -> None:
    """Copy the source's levels and label images beside the output's images, or copy
    the labels' level 0 and build the levels of both (the stream wrote level 0 only)."""
    plan = carry.plan
    assert plan is not None  # only OME-Zarr outputs carry anything
    by_position = {im.position: im.path for im in plan.images}
    out_of = {
        im.path: by_position[src.positions[i]] if src.positions else plan.images[0].path
        for i, im in enumerate(src.info.images)
    }
    out = settings.output_path
    codec = codec_choice(settings.compression, settings.writer)
    if carry.tiff is not None:  # series k is image k of the source
        series = [(k, out_of[im.path]) for k, im in enumerate(src.info.images)]
        copy_tiff_levels(carry.tiff, out, series, zarr_format=plan.zarr_format, codec=codec)
    elif carry.copy_levels:
        pairs = list(out_of.items())
        copy_levels(src.location, out, pairs, zarr_format=plan.zarr_format, codec=codec)
    copy_labels(
        src.location,
        out,
        [(ls, out_of[ls.image]) for ls in carry.labels],
        zarr_format=plan.zarr_format,
        ngff_version=plan.ngff_version,
        codec=codec,
        all_levels=carry.copy_levels,
    )
    pyramid = settings.pyramid
    if not carry.copy_levels and pyramid is not None:
        build_pyramid(
            out, pyramid.levels, pyramid.method, pyramid.factors, threads=max(2, workers)
        )
    if settings.writer.fsync and os.path.isdir(out):  # durable as the stream's close is
        syncfs(out)


def _remove_output(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.remove(path)


def _check_apart(src: str, out: str) -> None:
    """Refuse an output that is the source, holds it or is inside it (after the suffix
    its format adds, symbolic links resolved): writing it would destroy what is read."""
    a, b = path_location(src), path_location(out)
    if not overlaps(a, b):
        return
    how = "is" if a == b else "is inside" if b[1].startswith(a[1]) else "holds"
    raise SettingsError(
        f"cannot convert {src!r} to {out!r}: the output {how} the source ({a[1]}), and "
        "writing it would destroy what is being read; nothing was changed. Choose a "
        "destination outside the source"
    )
