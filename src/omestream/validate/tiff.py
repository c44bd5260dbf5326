"""Checks of an OME-TIFF dataset: its OME-XML against its pages, file by file.

What a schema cannot say: every plane a ``Pixels`` element declares is mapped by its
``TiffData`` to a page that exists, in a file that exists, once; the pages have the
declared width, height and pixel type; channels and planes lie inside the declared
sizes. A writer killed before it closed typically leaves TiffData pointing past the
last page, or planes that no TiffData maps (readers then show zeros).

The plane arithmetic (:func:`plane_index`, :func:`tiffdata_planes`) is pure; only
:func:`check_tiff` opens files (with tifffile, parsing the XML with ome-types).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from omestream.summary import tiff_files
from omestream.summary.tiff import block_file
from omestream.validate.structure import Problem

__all__ = ["check_tiff", "plane_index", "tiffdata_planes"]

_DTYPES = {
    "int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "float": "float32", "double": "float64",
    "bit": "bool", "complex": "complex64", "double-complex": "complex128",
}  # fmt: skip


def plane_index(order: str, sizes: dict[str, int], z: int, c: int, t: int) -> int:
    """The plane number of (z, c, t) in ``order`` (a DimensionOrder such as ``XYZCT``:
    the first of Z, C, T after XY varies fastest)."""
    index, stride = 0, 1
    for axis in order[2:]:
        index += {"Z": z, "C": c, "T": t}[axis] * stride
        stride *= sizes[axis]
    return index


def tiffdata_planes(
    block: Any, order: str, sizes: dict[str, int], only_block: bool
) -> Iterator[tuple[int, int]]:
    """(plane number, IFD) pairs a TiffData element maps. Without ``PlaneCount`` it maps
    one plane, or every plane from its own on when it is the only element (the
    schema's default for an element without ``IFD``; ome-types reads a missing ``IFD``
    as 0, so the two cannot be told apart)."""
    total = sizes["Z"] * sizes["C"] * sizes["T"]
    first = plane_index(order, sizes, block.first_z or 0, block.first_c or 0, block.first_t or 0)
    ifd = block.ifd or 0
    count = block.plane_count
    if count is None:
        count = total - first if only_block else 1
    for k in range(count):
        yield first + k, ifd + k


class _Pages:
    """Page counts and page geometry of TIFF files. Each file is opened once for its
    count; geometry is read per (file, IFD) asked for, through one handle kept open
    for as long as the lookups stay in that file (one image after the other)."""

    def __init__(self) -> None:
        self._counts: dict[str, int | None] = {}
        self._geometry: dict[tuple[str, int], tuple[int, int, str, int] | None] = {}
        self._open: tuple[str, Any] | None = None

    def count(self, path: str) -> int | None:
        """The file's number of pages; None when it is missing or unreadable."""
        key = os.path.abspath(path)
        if key not in self._counts:
            tif = self._handle(key)
            self._counts[key] = len(tif.pages) if tif is not None else None
        return self._counts[key]

    def geometry(self, path: str, ifd: int) -> tuple[int, int, str, int] | None:
        """(height, width, dtype, samples) of page ``ifd``; None when it cannot be read
        (a missing page is reported from the count)."""
        import tifffile

        key = (os.path.abspath(path), ifd)
        if key not in self._geometry:
            tif = self._handle(key[0])
            try:
                self._geometry[key] = _geometry(tif.pages[ifd]) if tif is not None else None
            except (OSError, ValueError, IndexError, tifffile.TiffFileError):
                self._geometry[key] = None
        return self._geometry[key]

    def _handle(self, key: str) -> Any | None:
        import tifffile

        if self._open is not None and self._open[0] == key:
            return self._open[1]
        self.close()
        try:
            tif = tifffile.TiffFile(key)
        except (OSError, ValueError, tifffile.TiffFileError):
            return None
        self._open = (key, tif)
        return tif

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


def _geometry(page: Any) -> tuple[int, int, str, int]:
    return int(page.imagelength), int(page.imagewidth), str(page.dtype), int(page.samplesperpixel)


def check_tiff(location: str) -> list[Problem]:
    """Every problem found in the OME-TIFF file (or folder of files) at ``location``."""
    pages = _Pages()
    try:
        return _check_files(tiff_files(location), pages)
    finally:
        pages.close()


def _check_files(paths: list[str], pages: _Pages) -> list[Problem]:
    import tifffile

    problems: list[Problem] = []
    for path in paths:
        name = os.path.basename(path)
        try:
            with tifffile.TiffFile(path) as tif:
                xml = tif.ome_metadata
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            problems.append(Problem(name, f"not a readable TIFF file: {exc}"))
            continue
        if not xml:
            problems.append(Problem(name, "not an OME-TIFF: no OME-XML in its first page"))
            continue
        from ome_types import from_xml

        from omestream.summary.tiff import strip_planes

        try:
            # Plane elements (one per frame) are checked from the text: parsed into
            # objects they cost ~0.5 ms each.
            ome = from_xml(strip_planes(xml))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(Problem(name, f"OME-XML does not parse: {first}"))
            continue
        if not ome.images:
            problems.append(Problem(name, "OME-XML describes no image"))
        problems += _check_record(ome, name)
        folder = os.path.dirname(os.path.abspath(path))
        plane_texts = _IMAGE_START.split(xml)[1:]
        for i, image in enumerate(ome.images):
            where = f"{name}:{image.id}"
            problems += _check_pixels(image, where, folder, path, ome.uuid, pages)
            if i < len(plane_texts):
                problems += _check_planes(image.pixels, where, plane_texts[i])
    return problems


def _check_record(ome: Any, name: str) -> list[Problem]:
    """A warning when omestream's record says its stream never closed the file, or
    closed it before the last planned frame."""
    from omestream.summary.acquisition import acquisition_from_record
    from omestream.tiff.xml import record_in

    acq = acquisition_from_record(record_in(ome))
    early = acq.early_close_warning() if acq is not None else None
    if early:
        return [Problem(name, early, severity="warning")]
    if acq is None or acq.complete or acq.mended:
        return []
    return [
        Problem(
            name,
            f"the stream that wrote it did not close it ({acq.frames} frames recorded): it "
            "is still being written, or was interrupted. Once no writer runs, "
            "`omestream repair` makes it whole",
            severity="warning",
        )
    ]


_IMAGE_START = re.compile(r"<(?:\w+:)?Image\b")
_PLANE = re.compile(r"<(?:\w+:)?Plane\b([^>]*)>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def _check_planes(px: Any, where: str, text: str) -> list[Problem]:
    """Plane elements of one Image (its part of the XML) inside the declared sizes."""
    for match in _PLANE.finditer(text):
        attrs = dict(_ATTR.findall(match.group(1)))
        zct = [int(attrs.get(k, "0") or 0) for k in ("TheZ", "TheC", "TheT")]
        if any(v >= n for v, n in zip(zct, (px.size_z, px.size_c, px.size_t), strict=True)):
            return [
                Problem(
                    where,
                    f"Plane TheZ={zct[0]} TheC={zct[1]} TheT={zct[2]} outside "
                    f"SizeZ={px.size_z} SizeC={px.size_c} SizeT={px.size_t}",
                )
            ]
    return []


def _check_pixels(
    image: Any,
    where: str,
    folder: str,
    path: str,
    own_uuid: str | None,
    pages: _Pages,
) -> list[Problem]:
    px = image.pixels
    out: list[Problem] = []
    sizes = {"Z": px.size_z, "C": px.size_c, "T": px.size_t}
    order = px.dimension_order.value
    spp = max((ch.samples_per_pixel or 1 for ch in px.channels), default=1)
    if px.channels and len(px.channels) * spp != px.size_c:
        out.append(Problem(where, f"{len(px.channels)} Channel element(s) for SizeC={px.size_c}"))
    # An RGB page holds all of a plane's samples: planes count C / samples.
    sizes_planes = dict(sizes, C=max(1, px.size_c // spp))
    total = sizes_planes["Z"] * sizes_planes["C"] * sizes_planes["T"]
    dtype = _DTYPES.get(px.type.value, px.type.value)
    mapped: dict[int, tuple[str, int]] = {}
    measured: set[str] = set()  # files whose pages of this image were measured
    for block in px.tiff_data_blocks:
        named = block_file(block, own_uuid)
        target = os.path.join(folder, named) if named else path
        count = pages.count(target)
        label = os.path.basename(target)
        if count is None:
            out.append(Problem(where, f"TiffData names {label}, which is missing or unreadable"))
            continue
        if target not in measured and (block.ifd or 0) < count:
            # the image's own first page in the file: series of one file may differ
            measured.add(target)
            out += _check_geometry(px, where, label, block.ifd or 0, dtype, pages, target)
        only = len(px.tiff_data_blocks) == 1
        for plane, ifd in tiffdata_planes(block, order, sizes_planes, only):
            if plane >= total:
                out.append(Problem(where, f"TiffData maps plane {plane} of only {total}"))
                break
            if ifd >= count:
                out.append(
                    Problem(
                        where,
                        f"TiffData maps a plane to page {ifd} of {label}, which has "
                        f"{count} page(s): the file was cut short or the XML is stale",
                    )
                )
                break
            if plane in mapped:
                out.append(Problem(where, f"plane {plane} is mapped by two TiffData elements"))
                break
            mapped[plane] = (label, ifd)
    if px.tiff_data_blocks and len(mapped) < total:
        out.append(
            Problem(
                where,
                f"{total - len(mapped)} of {total} planes are mapped to no page "
                "(readers show them as zeros)",
                severity="warning",
            )
        )
    if not px.tiff_data_blocks and not px.bin_data_blocks and not px.metadata_only:
        out.append(Problem(where, "Pixels has no TiffData: its planes are in no page"))
    return out


def _check_geometry(
    px: Any, where: str, label: str, ifd: int, dtype: str, pages: _Pages, target: str
) -> list[Problem]:
    """The image's first page (``ifd`` of ``target``) against the width, height and
    pixel type its Pixels ``px`` declares."""
    geom = pages.geometry(target, ifd)
    out: list[Problem] = []
    if geom is not None and geom[:2] != (px.size_y, px.size_x):
        out.append(
            Problem(
                where,
                f"pages of {label} are {geom[0]}x{geom[1]}, "
                f"Pixels declares {px.size_y}x{px.size_x}",
            )
        )
    if geom is not None and geom[2] != dtype and geom[2] != "bool":
        out.append(Problem(where, f"pages of {label} hold {geom[2]}, Pixels Type is {dtype}"))
    return out
