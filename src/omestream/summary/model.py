"""A read-only description of a dataset: what ``omestream info`` shows.

Plain dataclasses, filled by :mod:`omestream.summary.zarr` (OME-Zarr) and
:mod:`omestream.summary.tiff` (OME-TIFF); :meth:`DatasetInfo.to_dict` is the
``--json`` output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from omestream.summary.acquisition import AcquisitionInfo

__all__ = [
    "AcquisitionInfo",
    "AxisInfo",
    "ChannelInfo",
    "DatasetInfo",
    "ImageInfo",
    "LevelInfo",
    "PlateInfo",
    "WellInfo",
]

Kind = Literal["image", "multi-position", "plate", "zarr"]


@dataclass(frozen=True)
class AxisInfo:
    name: str
    type: str | None
    size: int
    unit: str | None = None
    scale: float = 1.0
    translation: float = 0.0


@dataclass(frozen=True)
class LevelInfo:
    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...] | None
    shards: tuple[int, ...] | None
    scale: tuple[float, ...] | None
    nbytes: int


@dataclass(frozen=True)
class ChannelInfo:
    label: str
    color: str | None = None  # RRGGBB
    window: tuple[float, float] | None = None  # start, end
    limits: tuple[float, float] | None = None  # min, max of the window (omero)
    active: bool | None = None  # omero; None: not said
    inverted: bool | None = None  # omero; None: not said
    excitation_wavelength: float | None = None  # nm (OME-XML)
    emission_wavelength: float | None = None  # nm (OME-XML)
    fluorophore: str | None = None  # OME-XML Fluor


@dataclass(frozen=True)
class ImageInfo:
    path: str  # group path (Zarr) or "series N" (TIFF)
    name: str | None
    axes: tuple[AxisInfo, ...]
    dtype: str
    levels: tuple[LevelInfo, ...]
    codecs: tuple[str, ...]
    channels: tuple[ChannelInfo, ...] = ()
    fill_value: Any = None
    well: str | None = None  # "A/1" for plate fields
    rgb: bool = False  # a TIFF's RGB pages: its channel axis holds red, green, blue samples
    labels: tuple[str, ...] = ()  # label images its NGFF labels group lists (OME-Zarr)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.levels[0].shape

    @property
    def axis_names(self) -> str:
        return "".join(a.name for a in self.axes)

    @property
    def nbytes(self) -> int:
        return sum(lv.nbytes for lv in self.levels)

    def channel_axis(self) -> int | None:
        return next((i for i, a in enumerate(self.axes) if a.type == "channel"), None)


@dataclass(frozen=True)
class WellInfo:
    path: str
    row: str
    column: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class PlateInfo:
    name: str | None
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    wells: tuple[WellInfo, ...]


@dataclass
class DatasetInfo:
    path: str
    format: Literal["ome-zarr", "ome-tiff", "tiff"]
    kind: Kind
    ngff_version: str | None
    zarr_format: int | None
    images: list[ImageInfo]
    plate: PlateInfo | None = None
    disk_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    acquisition: AcquisitionInfo | None = None  # from the record of the stream that wrote it

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes of every level of every image."""
        return sum(im.nbytes for im in self.images)

    @property
    def compression_ratio(self) -> float | None:
        if not self.disk_bytes:
            return None
        return self.nbytes / self.disk_bytes

    @property
    def positions(self) -> list[str]:
        return [im.path for im in self.images]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for d, im in zip(out["images"], self.images, strict=True):
            d["shape"] = list(im.shape)
            d["nbytes"] = im.nbytes
        out["nbytes"] = self.nbytes
        out["compression_ratio"] = self.compression_ratio
        out["positions"] = self.positions
        return _lists(out)


def _lists(value: Any) -> Any:
    """Tuples become lists so the dict equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value
