"""Sources to convert from: any OME-Zarr store, OME-TIFF files and plain TIFF stacks.

A :class:`Source` says what the data is (dimensions, dtype, positions, plate) and
yields its frames in acquisition order as *blocks*: small reads (a few frames that
share source chunks, or one TIFF page) that can run on a thread pool.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omestream.errors import SettingsError, StoreFormatError
from omestream.settings import Channel, ChannelDisplay, Dimension, Plate, Position
from omestream.summary import DatasetInfo, ImageInfo, describe, tiff_file
from omestream.summary.acquisition import refuse_unfinished
from omestream.summary.tiff import missing_files, missing_pages

__all__ = ["Block", "Source", "open_source", "zarr_source"]

Block = Callable[[], np.ndarray]  # returns (n, y, x)
_TYPES = ("space", "time", "channel")


@dataclass
class Source:
    location: str
    info: DatasetInfo
    dims: list[Dimension]  # array dimensions, in the order frames are produced
    dtype: str
    positions: list[Position] = field(default_factory=list)  # empty: a single image
    plate: Plate | None = None
    levels: int = 1
    blocks: list[Block] = field(default_factory=list)
    # a TIFF source's series (by index) and page reader, for its lower levels
    series: Callable[[int], Any] | None = None
    read_page: Callable[[Any, int], np.ndarray] | None = None  # (page, its series)
    per_page: int = 1  # frames in each page: 1, or its planar samples

    @property
    def frame_shape(self) -> tuple[int, int]:
        y, x = self.dims[-2:]
        assert y.count is not None and x.count is not None
        return (y.count, x.count)

    @property
    def n_frames(self) -> int:
        n = math.prod(d.count or 0 for d in self.dims[:-2])
        return n * max(1, len(self.positions))


def _dimensions(image: ImageInfo, chunks: dict[str, int]) -> list[Dimension]:
    dims = []
    c_axis = image.channel_axis()
    n_channels = image.axes[c_axis].size if c_axis is not None else 0
    for a in image.axes:
        kind = a.type if a.type in _TYPES else "other"
        coords = None
        if kind == "channel" and image.channels and len(image.channels) == n_channels:
            coords = tuple(
                Channel(
                    name=ch.label,
                    color=ch.color,
                    excitation_wavelength=ch.excitation_wavelength,
                    emission_wavelength=ch.emission_wavelength,
                    fluorophore=ch.fluorophore,
                )
                for ch in image.channels
            )
        unit = a.unit if kind in ("space", "time") else None
        try:
            dims.append(
                Dimension(
                    name=a.name,
                    count=a.size,
                    type=kind,  # type: ignore[arg-type]
                    unit=unit,
                    scale=a.scale if a.scale > 0 else None,
                    translation=a.translation or None,
                    coords=coords,
                    chunk_size=min(chunks[a.name], a.size) if a.name in chunks else None,
                )
            )
        except ValueError as exc:  # e.g. a unit NGFF does not know: keep the pixels
            if unit is None:
                raise SettingsError(f"axis {a.name!r} cannot be converted: {exc}") from None
            dims.append(
                Dimension(
                    name=a.name,
                    count=a.size,
                    type=kind,  # type: ignore[arg-type]
                    scale=a.scale,
                    coords=coords,
                )
            )
    return dims


def _keep_display(dim: Dimension, images: list[ImageInfo]) -> Dimension:
    """``dim`` with the source's display of each channel (omero window, limits, active,
    inverted), so the output shows it as the source does instead of measuring anew.
    Images that differ (fields of a plate) share the window that holds all of theirs."""
    if dim.type != "channel" or not dim.coords:
        return dim
    coords: list[Any] = []
    for c, ch in enumerate(dim.coords):
        if not isinstance(ch, Channel):
            coords.append(ch)
            continue
        given = [im.channels[c] for im in images if c < len(im.channels)]
        display = None
        if given and any(
            g.window or g.limits or g.active is not None or g.inverted is not None for g in given
        ):
            display = ChannelDisplay(
                window=_union(g.window for g in given),
                limits=_union(g.limits for g in given),
                active=given[0].active is not False,
                inverted=given[0].inverted is True,
            )
        coords.append(ch.replace(display=display) if display is not None else ch)
    return dim.replace(coords=tuple(coords))


def _union(pairs: Iterable[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The range that holds every valid (low, high) pair; None if there is none, or if
    some image has none (its window is then measured)."""
    out: tuple[float, float] | None = None
    for p in pairs:
        if p is None or not (math.isfinite(p[0]) and math.isfinite(p[1]) and p[0] <= p[1]):
            return None
        out = p if out is None else (min(out[0], p[0]), max(out[1], p[1]))
    return out


def _zarr_blocks(location: str, image: ImageInfo) -> list[Block]:
    import zarr

    path = "/".join(p for p in (image.path, image.levels[0].path) if p)
    arr = zarr.open_array(location, path=path, mode="r")
    outer = arr.shape[:-2]
    if not outer:
        return [lambda: np.asarray(arr[...])[None]]
    # Frames along the innermost outer axis are read a source chunk at a time, so
    # each chunk is decoded once.
    step = arr.chunks[len(outer) - 1]
    names = [a.name for a in image.axes]
    blocks: list[Block] = []
    for prefix in np.ndindex(*outer[:-1]):
        for k0 in range(0, outer[-1], step):
            sl = (*prefix, slice(k0, min(k0 + step, outer[-1])))

            def read(sl: tuple[Any, ...] = sl) -> np.ndarray:
                try:
                    a = np.asarray(arr[sl])
                except Exception as exc:  # a codec's error does not say where
                    raise _damaged(location, path, names, sl, exc) from exc
                return a.reshape(-1, *a.shape[-2:])

            blocks.append(read)
    return blocks


def _damaged(
    location: str, path: str, names: list[str], sl: tuple[Any, ...], exc: Exception
) -> StoreFormatError:
    where = ", ".join(
        f"{n}={i.start}..{i.stop - 1}" if isinstance(i, slice) else f"{n}={i}"
        for n, i in zip(names, sl, strict=False)
    )
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return StoreFormatError(
        f"{location}: array {path or '.'} cannot be read at {where} ({reason}): a chunk or "
        "shard file there is damaged or cut short; restore it from a copy of the dataset "
        "(nothing was written)"
    )


def _plate_positions(
    src: Source, info: DatasetInfo, field_name: Callable[[ImageInfo], str]
) -> None:
    """The source's plate, and one position per image in its well, named ``field_name``."""
    p = info.plate
    assert p is not None
    src.plate = Plate(row_names=p.rows, column_names=p.columns, name=p.name)
    for im in info.images:
        assert im.well is not None
        row, col = im.well.split("/")
        src.positions.append(Position(name=field_name(im), plate_row=row, plate_column=col))


def zarr_source(location: str, info: DatasetInfo, chunks: dict[str, int] | None = None) -> Source:
    """What the OME-Zarr store described by ``info`` holds, as it is on disk: its
    dimensions, dtype, positions or plate (``chunks`` per axis name, if given); no
    blocks to read. Images of different axes, shapes or dtypes are refused."""
    chunks = chunks or {}
    if not info.images:
        raise StoreFormatError(f"{location}: holds no OME-Zarr images to convert")
    first = info.images[0]
    for im in info.images[1:]:
        if (im.axis_names, im.shape, im.dtype) != (first.axis_names, first.shape, first.dtype):
            raise StoreFormatError(
                f"{location}: image {im.path!r} has axes {im.axis_names} shape {im.shape} "
                f"{im.dtype}, unlike {first.path!r} ({first.axis_names} {first.shape} "
                f"{first.dtype}); convert images of different shapes one at a time"
            )
    src = Source(location, info, _dimensions(first, chunks), first.dtype, levels=len(first.levels))
    if info.plate is not None:
        _plate_positions(src, info, lambda im: im.path.rsplit("/", 1)[-1])
    elif len(info.images) > 1:
        names = [im.name or im.path for im in info.images]
        if len(set(names)) != len(names):
            names = [im.path for im in info.images]
        src.positions = [Position(name=n) for n in names]
    return src


def _from_zarr(location: str, info: DatasetInfo, chunks: dict[str, int]) -> Source:
    src = zarr_source(location, info, chunks)
    src.dims = [_keep_display(d, info.images) for d in src.dims]
    for im in info.images:
        src.blocks += _zarr_blocks(location, im)
    return src


def _from_tiff(
    location: str, info: DatasetInfo, chunks: dict[str, int], stack_axis: str
) -> Source:
    import tifffile

    if not info.images:
        raise StoreFormatError(f"{location}: a TIFF file without pages, no image to convert")
    first = info.images[0]
    if first.axes[-1].name != "x" or first.axes[-2].name != "y":
        raise StoreFormatError(
            f"{location}: pages with axes {first.axis_names} (e.g. RGB samples stored "
            "contiguously, samples last) are not supported; frames must end in y, x: "
            "save the samples as separate planes (planar configuration) to convert them"
        )
    for im in info.images[1:]:
        if (im.axis_names, im.shape, im.dtype) != (first.axis_names, first.shape, first.dtype):
            raise StoreFormatError(
                f"{location}: {im.path} has axes {im.axis_names} shape {im.shape}, unlike "
                f"series 0 ({first.axis_names} {first.shape}); only files whose series match "
                "can be converted together"
            )
    axes = list(first.axes)
    names = {a.name for a in axes}
    for k, a in enumerate(axes):
        if a.name in ("i", "q"):  # an unnamed page sequence: a stack along stack_axis
            if stack_axis in names:
                raise StoreFormatError(
                    f"{location}: cannot name the page sequence {stack_axis!r}, the file "
                    f"already has that axis; choose another --stack-axis"
                )
            kind = {"z": "space", "t": "time", "c": "channel"}[stack_axis]
            axes[k] = type(a)(name=stack_axis, type=kind, size=a.size)
    first = type(first)(**{**first.__dict__, "axes": tuple(axes)})
    src = Source(location, info, _dimensions(first, chunks), first.dtype, levels=len(first.levels))
    if info.plate is not None:  # an OME-TIFF plate: fields named in its wells
        _plate_positions(src, info, lambda im: im.name or "0")
    elif len(info.images) > 1:
        src.positions = [
            Position(name=im.name or f"series{k}") if im.name and
            len({i.name for i in info.images}) == len(info.images) else Position(name=f"series{k}")
            for k, im in enumerate(info.images)
        ]  # fmt: skip
    # tifffile handles are not safe to share between reading threads (page lookups
    # and reads seek the same file): each thread reads through a handle of its own.
    handles: list[Any] = []
    local = threading.local()
    handles_lock = threading.Lock()

    def handle() -> Any:
        tif = getattr(local, "tif", None)
        if tif is None:
            tif = local.tif = tifffile.TiffFile(location)
            with handles_lock:
                handles.append(tif)
        return tif

    def series_pages(k: int) -> Any:
        return handle().series[k].pages

    src._tiff_handles = handles  # type: ignore[attr-defined]  # closed by close_source
    # Images whose file of a multi-file set is gone would be left out of the output
    gone = missing_files(handle())
    if gone:
        raise StoreFormatError(
            f"{'; '.join(gone)}. Converting would leave those images out; nothing was "
            "written. Put the missing file(s) back in the folder beside the others (the "
            "files of a multi-file OME-TIFF are read together), then convert again"
        )
    # Frames the metadata declares but the file does not hold would be written as zeros
    problems = missing_pages(handle())
    if problems:
        raise StoreFormatError(
            f"{'; '.join(problems)}. The file is truncated or incomplete, and converting it "
            "would leave frames out; nothing was written"
        )

    def read_page(page: Any, k: int) -> np.ndarray:
        if page.parent.filehandle.closed:
            # tifffile closes the other files of a multi-file series once their
            # pages are listed, then reopens them for every read: keep them open
            page.parent.filehandle.open()
            with handles_lock:
                handles.append(page.parent)
        try:
            return np.asarray(page.asarray())
        except Exception as exc:  # data cut off, or not decodable
            raise StoreFormatError(
                f"{page.parent.filehandle.path}: page {page.index} of series {k} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ) from None

    frame = first.shape[-2:]
    # A page may hold several frames: planar (separate) samples, which info shows as
    # channels. Each page is read once and yields its sample planes in order.
    per_page = _frames_per_page(location, series_pages, len(info.images), first.shape)
    n = math.prod(first.shape[:-2]) // per_page  # pages per series
    for k in range(len(info.images)):
        for i in range(n):

            def read(i: int = i, k: int = k) -> np.ndarray:
                pages = series_pages(k)
                try:
                    page = pages[i] if i < len(pages) else None
                except (IndexError, tifffile.TiffFileError):
                    page = None
                if page is None:
                    raise StoreFormatError(
                        f"{location}: series {k} holds {len(pages)} pages, page {i} of the "
                        f"{n} its metadata declares is missing"
                    )
                return read_page(page, k).reshape(per_page, *frame)

            src.blocks.append(read)
    src.series = lambda k: handle().series[k]
    src.read_page = read_page
    src.per_page = per_page
    return src


def _frames_per_page(
    location: str, series_pages: Callable[[int], Any], n_series: int, shape: tuple[int, ...]
) -> int:
    """How many (y, x) frames each page of the series holds: 1, or its planar samples.

    Refused (before anything is written) when the pages are laid out otherwise, e.g.
    volumes in one page, which no frame order of the series' axes would match.
    """
    per_page = 0
    for k in range(n_series):
        keyframe = series_pages(k).keyframe
        page_axes, page_shape = keyframe.axes, tuple(keyframe.shape)
        ok = page_axes in ("YX", "SYX") and page_shape[-2:] == tuple(shape[-2:])
        n = math.prod(page_shape[:-2])
        if ok and len(page_shape) > 2:
            # the samples must be the series' axis just before y, x
            ok = len(shape) >= 3 and shape[-3] == n
        if not ok or (per_page and n != per_page):
            raise StoreFormatError(
                f"{location}: series {k} has pages with axes {page_axes} shape {page_shape} "
                f"that cannot be read as frames of shape {tuple(shape[-2:])} (y, x); "
                "only pages of one (y, x) plane, or of separate sample planes, can be "
                "converted"
            )
        per_page = n
    return per_page or 1


def open_source(
    location: str, chunks: dict[str, int] | None = None, stack_axis: str = "z"
) -> Source:
    """Describe ``location`` and prepare to read its frames in acquisition order."""
    info = describe(location)
    _check_complete(info)
    chunks = chunks or {}
    if info.format == "ome-zarr":
        return _from_zarr(location, info, chunks)
    return _from_tiff(tiff_file(location), info, chunks, stack_axis)


def _check_complete(info: DatasetInfo) -> None:
    """Refuse a dataset whose stream never closed it and that was not repaired since:
    its metadata (an OME-TIFF's OME-XML above all, written whole only at close) does
    not describe the frames it holds."""
    refuse_unfinished(info.acquisition, info.path, "convert it")


def close_source(src: Source) -> None:
    for tif in getattr(src, "_tiff_handles", ()):
        tif.close()


def iter_frames(blocks: list[Block], workers: int) -> Iterator[np.ndarray]:
    """Frames of every block, in order; up to ``2 * workers`` blocks are read ahead."""
    if workers <= 1:
        for b in blocks:
            yield from b()
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="omestream-read") as pool:
        pending: deque[Any] = deque()
        it = iter(blocks)
        for b in it:
            pending.append(pool.submit(b))
            if len(pending) >= 2 * workers:
                break
        while pending:
            data = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(nxt))
            yield from data
