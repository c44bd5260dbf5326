"""Describe an OME-TIFF (or plain TIFF) file as a DatasetInfo, with tifffile and ome-types."""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any

import numpy as np

from omestream.errors import StoreFormatError
from omestream.metadata.ome_text import strip_planes
from omestream.settings.names import row_letters
from omestream.settings.units import SPACE_UNITS, normalize_unit
from omestream.summary.acquisition import AcquisitionInfo, acquisition_from_record
from omestream.summary.model import (
    AxisInfo,
    ChannelInfo,
    DatasetInfo,
    ImageInfo,
    LevelInfo,
    PlateInfo,
    WellInfo,
)

__all__ = [
    "TIFF_AXES",
    "describe_tiff",
    "missing_files",
    "missing_pages",
    "ome_model",
    "strip_planes",
    "tiff_axis",
]

# tifffile axis letters -> (name, type). 'I'/'Q' are unnamed page sequences.
TIFF_AXES: dict[str, tuple[str, str | None]] = {
    "T": ("t", "time"),
    "C": ("c", "channel"),
    "S": ("c", "channel"),
    "Z": ("z", "space"),
    "Y": ("y", "space"),
    "X": ("x", "space"),
    "I": ("i", None),
    "Q": ("q", None),
}


def tiff_axis(letter: str) -> tuple[str, str | None]:
    return TIFF_AXES.get(letter.upper(), (letter.lower(), None))


def ome_model(tif: Any) -> Any | None:
    """The ome-types model of the file's OME-XML (without its Plane elements and
    omestream's per-frame annotations), or None for plain TIFF."""
    xml = tif.ome_metadata
    if not xml:
        return None
    from ome_types import from_xml

    try:
        return from_xml(strip_planes(xml))
    except Exception:
        return None


def _unit(value: Any) -> str | None:
    if value is None:
        return None
    text = getattr(value, "value", value)
    try:
        return normalize_unit(str(text), None)[0]
    except ValueError:
        return str(text)


def plain_scales(imagej: dict[str, Any] | None, page: Any) -> dict[str, tuple[float, str | None]]:
    """Pixel sizes of a TIFF without OME-XML, per axis letter: (scale, unit).

    ImageJ keeps the length unit and the z spacing in its own metadata (``unit``,
    ``spacing``, ``finterval`` in ``tunit``, seconds unless given) and the x/y pixel
    size as the resolution tags (pixels per unit). Without ImageJ metadata only a
    resolution in centimetres is taken (as micrometres): one in inches is a print
    setting (72 dpi), not a pixel size.
    """
    out: dict[str, tuple[float, str | None]] = {}
    ij = imagej or {}
    # ImageJ may keep "µm" as the escape sequence itself
    unit = _unit(str(ij["unit"]).replace("\\u00B5", "µ")) if ij.get("unit") else None
    factor = 1.0
    if unit is None and int(getattr(page, "resolutionunit", 1) or 1) == 3:  # CENTIMETER
        unit, factor = "micrometer", 1e4
    if unit in SPACE_UNITS:  # a length NGFF knows (_unit gave its name)
        try:
            xres, yres = (float(r) for r in page.resolution)
        except (TypeError, ValueError, AttributeError):
            xres = yres = 0.0
        for letter, res in (("X", xres), ("Y", yres)):
            if res > 0 and res != 1.0:  # 1 pixel per unit: the writers' "no resolution"
                out[letter] = (factor / res, unit)
        spacing = ij.get("spacing")
        if isinstance(spacing, int | float) and spacing > 0:
            out["Z"] = (float(spacing), unit)
    interval = ij.get("finterval")
    if isinstance(interval, int | float) and interval > 0:
        out["T"] = (float(interval), _time_unit(ij.get("tunit")))
    return out


# ImageJ's time units (Calibration.getTimeUnit, "sec" unless set), as typed in its
# Properties dialog, beyond the abbreviations omestream knows for any unit
_IMAGEJ_TIME = {
    "secs": "second", "seconds": "second", "mins": "minute", "minutes": "minute",
    "hours": "hour", "hrs": "hour", "msec": "millisecond", "msecs": "millisecond",
    "usec": "microsecond", "usecs": "microsecond", "nsec": "nanosecond", "days": "day",
}  # fmt: skip


def _time_unit(value: Any) -> str | None:
    """The NGFF unit of ImageJ's ``tunit`` (seconds when absent); None when it is not a
    time unit (e.g. "frame"): the interval is kept, its unit unknown."""
    if value is None or str(value).strip() == "":
        return "second"
    text = str(value).strip().replace("\\u00B5", "µ")
    text = _IMAGEJ_TIME.get(text.lower(), text)
    try:
        name, kind = normalize_unit(text, None)
    except ValueError:
        return None
    return name if kind == "time" else None


def _pixel_axes(
    pixels: Any,
    letters: str,
    shape: tuple[int, ...],
    plain: dict[str, tuple[float, str | None]] | None = None,
) -> tuple[AxisInfo, ...]:
    out = []
    for letter, size in zip(letters, shape, strict=True):
        name, typ = tiff_axis(letter)
        scale, unit = 1.0, None
        if pixels is None and plain and letter.upper() in plain:
            scale, unit = plain[letter.upper()]
        elif pixels is not None and letter in "XYZ":
            s = getattr(pixels, f"physical_size_{letter.lower()}", None)
            if s:
                scale = float(s)
                unit = _unit(getattr(pixels, f"physical_size_{letter.lower()}_unit", None))
        elif pixels is not None and letter == "T" and pixels.time_increment:
            scale = float(pixels.time_increment)
            unit = _unit(pixels.time_increment_unit)
        out.append(AxisInfo(name=name, type=typ, size=int(size), unit=unit, scale=scale))
    return tuple(out)


_SAMPLES = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"), ("alpha", None))


def _channels(pixels: Any, n: int, rgb: bool) -> tuple[ChannelInfo, ...]:
    """One row per channel of the series' channel axis: a Channel of several samples
    is one row per sample, as the axis counts them (``rgb``: named and coloured red,
    green, blue)."""
    if pixels is None:  # a plain TIFF: only RGB says what its samples are
        samples = _SAMPLES[:n] if rgb else ()
        return tuple(ChannelInfo(label=name, color=color) for name, color in samples)
    out: list[ChannelInfo] = []
    for i, ch in enumerate(pixels.channels):
        row = _channel(ch, i)
        spp = ch.samples_per_pixel or 1
        if spp == 1:
            out.append(row)
            continue
        for s in range(spp):
            name, color = _SAMPLES[s] if rgb and s < 4 else (f"sample {s}", None)
            label = f"{ch.name} {name}" if ch.name else name
            out.append(dataclasses.replace(row, label=label, color=color))
    return tuple(out[:n])


def _channel(ch: Any, i: int) -> ChannelInfo:
    color = None
    if ch.color is not None:
        r, g, b, _a = (
            ch.color.as_rgb_tuple(alpha=True)
            if hasattr(ch.color, "as_rgb_tuple")
            else (255, 255, 255, 1)
        )
        color = f"{r:02X}{g:02X}{b:02X}"
    return ChannelInfo(
        label=ch.name or f"Channel {i}",
        color=color,
        excitation_wavelength=_nm(ch.excitation_wavelength, ch.excitation_wavelength_unit),
        emission_wavelength=_nm(ch.emission_wavelength, ch.emission_wavelength_unit),
        fluorophore=ch.fluor or None,
    )


def _is_rgb(page: Any) -> bool:
    return page is not None and page.photometric == 2  # PHOTOMETRIC.RGB


_NM_PER = {"nm": 1.0, "pm": 1e-3, "Å": 0.1, "µm": 1e3, "um": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9}


def _nm(value: Any, unit: Any) -> float | None:
    """An OME-XML wavelength in nanometres (its default unit); None when unset or in a
    unit that is not a length."""
    if value is None or float(value) <= 0:
        return None
    factor = _NM_PER.get(str(getattr(unit, "value", unit) or "nm"))
    return float(value) * factor if factor is not None else None


def _page_chunks(page: Any, axes: str) -> tuple[int, ...]:
    """A stored strip or tile of ``page``, per tifffile axis letter of its series level.

    Samples stored contiguously (RGB, axis S last) are in every strip or tile; planar
    ones are one plane per strip. Axes outside the page are one page at a time.
    """
    if page.is_tiled:
        rows, cols = page.tilelength, page.tilewidth
    else:
        rows = min(page.rowsperstrip or page.imagelength, page.imagelength)
        cols = page.imagewidth
    samples = page.samplesperpixel if page.planarconfig == 1 else 1  # 1: CONTIG
    per_axis = {"Y": rows, "X": cols, "S": samples}
    return tuple(per_axis.get(letter.upper(), 1) for letter in axes)


def _files_on_disk(path: str, ome: Any) -> list[str]:
    """``path`` and the other files its OME-XML puts images in (one per position)."""
    files = {os.path.abspath(path)}
    folder = os.path.dirname(os.path.abspath(path))
    for image in ome.images if ome is not None else ():
        for block in image.pixels.tiff_data_blocks:
            name = block.uuid.file_name if block.uuid is not None else None
            if name and os.path.isfile(other := os.path.join(folder, name)):
                files.add(os.path.abspath(other))
    return sorted(files)


def block_file(block: Any, own_uuid: str | None) -> str | None:
    """The file a TiffData block names, or None for the file holding the OME-XML: a
    block without a UUID, or with the file's own UUID whatever it was renamed to
    (as tifffile reads it)."""
    if block.uuid is None or block.uuid.value == own_uuid:
        return None
    return block.uuid.file_name or None


def missing_files(tif: Any, ome: Any | None = None) -> list[str]:
    """The images of a multi-file OME-TIFF set (one file per position, each file's
    OME-XML naming them all) whose file is not beside ``tif``. tifffile leaves such
    an image out of the series it lists, so no page count shows it missing.
    ``ome``: the file's OME-XML model, if already parsed."""
    model = ome or ome_model(tif)
    if model is None:
        return []
    path = tif.filehandle.path
    folder = os.path.dirname(os.path.abspath(path))
    out = []
    for image in model.images:
        names = {block_file(b, model.uuid) for b in image.pixels.tiff_data_blocks}
        gone = sorted(n for n in names if n and not os.path.isfile(os.path.join(folder, n)))
        if gone:
            label = f"{image.name!r} ({image.id})" if image.name else image.id
            out.append(
                f"{os.path.basename(path)}: image {label} is stored in {', '.join(gone)}, "
                f"which is missing from {folder}"
            )
    return out


def missing_pages(tif: Any, ome: Any | None = None) -> list[str]:
    """What the file's metadata declares that its pages do not hold: pages missing from a
    series (a truncated file, an OME-TIFF file of another position that is not there),
    and pixel data of the last page cut off by the end of the file. Empty when whole.

    Cheap enough for every description: page counts, not pages, except for OME series
    (tifffile lists their pages, ``None`` where one is missing). ``ome``: the file's
    OME-XML model, if already parsed.
    """
    name = os.path.basename(tif.filehandle.path)
    out = []
    n_pages = len(tif.pages)  # the IFD chain as far as the file holds it
    kinds = {series.kind for series in tif.series}
    shaped = tif.shaped_metadata or () if tif.is_shaped else ()
    for k, series in enumerate(tif.series):
        page = series.keyframe
        per_page = int(np.prod(page.shape)) if page is not None else 0
        if series.kind == "ome":
            declared, what = len(series), "OME-XML"
            found = sum(1 for p in series if p is not None)
        elif series.kind == "shaped" and k < len(shaped) and per_page:
            declared, what = int(np.prod(shaped[k].get("shape", ()))) // per_page, "shape metadata"
            found = len(series)
        elif series.kind == "imagej" and per_page:
            declared, what = int(np.prod(series.shape)) // per_page, "ImageJ metadata"
            found = len(series)
        else:
            continue
        if found < declared:
            out.append(
                f"{name}: series {k} has {found} of the {declared} pages its {what} declares"
            )
    # metadata tifffile could not follow (it read the pages as plain pages instead)
    declared = 0
    what = ""
    if tif.is_imagej and "imagej" not in kinds:
        images = (tif.imagej_metadata or {}).get("images")
        declared, what = (images, "ImageJ metadata") if isinstance(images, int) else (0, "")
    elif "ome" not in kinds and (model := ome or ome_model(tif)) and _one_file(model, name):
        declared, what = sum(_planes(im.pixels) for im in model.images), "OME-XML"
    if declared > n_pages:
        out.append(f"{name}: the file has {n_pages} of the {declared} pages its {what} declares")
    if n_pages:
        problem = _last_page_problem(tif, n_pages)
        if problem:
            out.append(f"{name}: {problem}")
    return out


def _last_page_problem(tif: Any, n_pages: int) -> str | None:
    """Why the last page the file holds is not its last whole page, or None: its IFD or
    its pixel data runs past the end of the file, or it links to a next page past the
    end (tifffile ends the chain of pages there, logging an error but raising none)."""
    import tifffile

    size = tif.filehandle.size
    try:
        last = tif.pages[-1]
    except (tifffile.TiffFileError, IndexError, ValueError):
        return f"page {n_pages - 1} (the last) is cut off by the end of the file"
    ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts, strict=False) if n]
    if any(end > size for end in ends):
        return f"the pixel data of page {n_pages - 1} (the last) runs past the end of the file"
    fmt, fh = tif.tiff, tif.filehandle
    try:
        fh.seek(last.offset)
        (count,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
        fh.seek(last.offset + fmt.tagnosize + count * fmt.tagsize)
        (following,) = struct.unpack(fmt.offsetformat, fh.read(fmt.offsetsize))
    except (OSError, struct.error):
        return f"page {n_pages - 1} (the last) is cut off by the end of the file"
    if following >= size:  # (an offset inside the file would have been followed)
        return (
            f"page {n_pages - 1} links to a next page at byte {following}, which the file "
            f"({size} bytes) does not hold"
        )
    return None


def _one_file(ome: Any, name: str) -> bool:
    """Whether the OME-XML puts every plane in the file ``name`` (no other file named)."""
    for image in ome.images:
        for block in image.pixels.tiff_data_blocks:
            other = block.uuid.file_name if block.uuid is not None else None
            if other and other != name:
                return False
    return True


def _planes(pixels: Any) -> int:
    """Pages an OME Pixels element takes: its planes, samples of one page counted once."""
    spp = max((ch.samples_per_pixel or 1 for ch in pixels.channels), default=1)
    return int(pixels.size_z * pixels.size_t * max(1, pixels.size_c // spp))


def describe_tiff(location: str) -> DatasetInfo:
    """``location``: an (OME-)TIFF file, or a folder of OME-TIFF files, one per position."""
    import tifffile

    from omestream.summary import tiff_file

    path = tiff_file(location)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{location}: no such file")
    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise StoreFormatError(f"{path}: not a TIFF file ({exc})") from None
    with tif:
        ome = ome_model(tif)
        images: list[ImageInfo] = []
        for k, series in enumerate(tif.series):
            pixels = ome.images[k].pixels if ome is not None and k < len(ome.images) else None
            first = series.pages[0] if series.pages else None
            page = first if first is not None else series.keyframe
            plain = plain_scales(tif.imagej_metadata, page) if ome is None else None
            axes = _pixel_axes(pixels, series.axes, series.shape, plain)
            levels = []
            for lv, level in enumerate(series.levels):
                shape = tuple(int(s) for s in level.shape)
                levels.append(
                    LevelInfo(
                        path=str(lv),
                        shape=shape,
                        chunks=_page_chunks(level.keyframe, level.axes),
                        shards=None,
                        scale=None,
                        nbytes=int(np.prod(shape, dtype=np.int64))
                        * np.dtype(level.dtype).itemsize,
                    )
                )
            c_axis = next((i for i, a in enumerate(axes) if a.type == "channel"), None)
            n_channels = axes[c_axis].size if c_axis is not None else 1
            rgb = _is_rgb(page)
            name = None
            if ome is not None and k < len(ome.images):
                name = ome.images[k].name
            images.append(
                ImageInfo(
                    path=f"series {k}",
                    name=name or series.name or None,
                    axes=axes,
                    dtype=np.dtype(series.dtype).name,
                    levels=tuple(levels),
                    # tifffile annotates compression as int; the value is a COMPRESSION
                    codecs=(tifffile.COMPRESSION(page.compression).name.lower(),),
                    channels=_channels(pixels, n_channels, rgb),
                    rgb=rgb,
                )
            )
        notes = [
            f"{problem}: the file is truncated or incomplete, and the missing frames cannot be read"
            for problem in missing_pages(tif, ome)
        ]
        notes += [
            f"{problem}: its frames cannot be read, and only the images of the files "
            "present are listed"
            for problem in missing_files(tif, ome)
        ]
        if not tif.series or not images:
            if ome is None:  # no OME-XML either: nothing says an image belongs here
                raise StoreFormatError(f"{path}: a TIFF file without pages: no image to read")
            notes.append(f"{os.path.basename(path)}: holds no pages (no image)")
    plate, images = _plate(ome, images)
    return DatasetInfo(
        path=location,
        format="ome-tiff" if ome is not None else "tiff",
        kind="plate" if plate is not None else "image" if len(images) == 1 else "multi-position",
        plate=plate,
        ngff_version=None,
        zarr_format=None,
        images=images,
        disk_bytes=sum(os.path.getsize(f) for f in _files_on_disk(path, ome)),
        notes=notes,
        acquisition=_acquisition(ome),
    )


def _plate(ome: Any, images: list[ImageInfo]) -> tuple[PlateInfo | None, list[ImageInfo]]:
    """The OME-XML's plate, and the images with their wells, when its wells hold every
    image (else the images stay positions). Row and column names come from the
    record of the stream that wrote the file, else from the naming conventions
    (rows letters and columns numbers when unset, as on most plates)."""
    if ome is None or not ome.plates or not ome.plates[0].wells:
        return None, images
    plate = ome.plates[0]
    from omestream.tiff.xml import record_in

    settings = (record_in(ome) or {}).get("settings")
    recorded = settings.get("plate") if isinstance(settings, dict) else None
    n_rows = max(plate.rows or 0, 1 + max(w.row for w in plate.wells))
    n_cols = max(plate.columns or 0, 1 + max(w.column for w in plate.wells))
    rows = _plate_names(recorded, "row_names", n_rows, plate.row_naming_convention, "letter")
    cols = _plate_names(recorded, "column_names", n_cols, plate.column_naming_convention, "number")
    index = {im.id: k for k, im in enumerate(ome.images)}
    wells: list[WellInfo] = []
    placed: dict[int, tuple[str, str]] = {}  # image -> (well, field name)
    for well in plate.wells:
        row, col = rows[well.row], cols[well.column]
        fields: list[str] = []
        for n, sample in enumerate(well.well_samples):
            k = index.get(sample.image_ref.id) if sample.image_ref is not None else None
            if k is None or k >= len(images) or k in placed:
                continue
            name = images[k].name or ""
            field_name = name if name.isalnum() and name not in fields else str(n)
            fields.append(field_name)
            placed[k] = (f"{row}/{col}", field_name)
        if fields:
            wells.append(WellInfo(path=f"{row}/{col}", row=row, column=col, fields=tuple(fields)))
    if len(placed) != len(images):
        return None, images
    out = [
        dataclasses.replace(im, well=placed[k][0], name=placed[k][1])
        for k, im in enumerate(images)
    ]
    info = PlateInfo(
        name=plate.name or None, rows=tuple(rows), columns=tuple(cols), wells=tuple(wells)
    )
    return info, out


def _plate_names(recorded: Any, key: str, count: int, convention: Any, default: str) -> list[str]:
    names = recorded.get(key) if isinstance(recorded, dict) else None
    if isinstance(names, list) and len(names) >= count and all(isinstance(n, str) for n in names):
        return list(names)
    kind = getattr(convention, "value", convention) or default
    if kind == "number":
        return [str(i + 1) for i in range(count)]
    return [row_letters(i) for i in range(count)]


def _acquisition(ome: Any) -> AcquisitionInfo | None:
    if ome is None:
        return None
    from omestream.tiff.xml import record_in

    return acquisition_from_record(record_in(ome))
