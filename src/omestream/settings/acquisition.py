"""AcquisitionSettings: the one description of a dataset to write."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from omestream.settings._base import FrozenModel, warn_user
from omestream.settings.dimensions import Dimension, Position, PositionDimension
from omestream.settings.formats import (
    ENGINES,
    FormatSpec,
    format_from_suffix,
    normalize_compression,
    resolve_format,
    strip_suffix,
)
from omestream.settings.names import check_label, check_path_name, row_letters

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["AcquisitionSettings", "Plate", "Pyramid", "WriterOptions"]

# Pixel types both OME-Zarr and OME-TIFF can describe (OME-XML has no 64-bit integers).
ZARR_DTYPES = frozenset(
    {
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float32",
        "float64",
    }
)
TIFF_DTYPES = frozenset(
    {"uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"}
)
MAX_COUNT = 2**31 - 1
MAX_FRAME_BYTES = 4 * 2**30

StorageOrder = Literal["ome", "acquisition"] | tuple[str, ...]


class Plate(FrozenModel):
    """The plate layout: every row and column name, acquired or not."""

    row_names: tuple[str, ...]
    column_names: tuple[str, ...]
    name: str | None = None

    if TYPE_CHECKING:
        # Any sequence of names is accepted; the fields hold tuples.
        def __init__(
            self, *, row_names: Sequence[str], column_names: Sequence[str], name: str | None = None
        ) -> None: ...

    @field_validator("row_names", "column_names")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("a plate needs at least one row and one column")
        for n in v:
            check_path_name(n, "plate row/column")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate names in {list(v)}")
        if len({n.casefold() for n in v}) != len(v):  # one folder on case-insensitive disks
            raise ValueError(f"names in {list(v)} differ only in case; use distinct names")
        return v

    @classmethod
    def from_standard_wells(cls, wells: int | tuple[int, int], name: str | None = None) -> Plate:
        """A plate of a standard well count (6, 12, 24, 48, 96, 384 or 1536), or of
        ``(rows, columns)``: rows named A, B, ... Z, AA, AB, ... as printed on 1536-well
        plates, columns 1, 2, ..."""
        if isinstance(wells, tuple | list):
            if len(wells) != 2 or not all(isinstance(n, int) and n > 0 for n in wells):
                raise ValueError(
                    f"plate shape must be (rows, columns) of positive ints, not {wells}"
                )
            rows, cols = wells
        elif wells in _STANDARD_PLATES:
            rows, cols = _STANDARD_PLATES[wells]
        else:
            raise ValueError(
                f"{wells} is not a standard well count: use one of {sorted(_STANDARD_PLATES)} "
                "or a (rows, columns) tuple"
            )
        return cls(
            row_names=[row_letters(i) for i in range(rows)],
            column_names=[str(j + 1) for j in range(cols)],
            name=name,
        )


# wells -> (rows, columns) of the ANSI/SLAS plate formats
_STANDARD_PLATES = {6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24),
                    1536: (32, 48)}  # fmt: skip


class Pyramid(FrozenModel):
    """Downsampled resolution levels written next to the full-resolution data."""

    levels: int = Field(default=4, ge=1, le=32, description="levels in total, level 0 included")
    factors: dict[str, int] = Field(
        default_factory=lambda: {"y": 2, "x": 2},
        description="downsampling factor per dimension name between two levels",
    )
    method: Literal["mean", "nearest", "stride", "gaussian", "mode"] = "mean"

    @field_validator("factors")
    @classmethod
    def _factors(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: f for k, f in v.items() if not isinstance(f, int) or f < 1}
        if bad or not any(f > 1 for f in v.values()):
            raise ValueError(f"factors must be whole numbers >= 1, at least one > 1; got {v}")
        return v


def useful_levels(sizes: Sequence[int], factors: Sequence[int]) -> int:
    """How many levels (level 0 included) downsampling ``sizes`` by ``factors`` per
    level gives before every downsampled axis is one pixel: more would repeat that
    one pixel at ever larger scales."""
    n, shape = 1, list(sizes)
    while any(f > 1 and s > 1 for s, f in zip(shape, factors, strict=True)):
        shape = [-(-s // f) for s, f in zip(shape, factors, strict=True)]
        n += 1
    return n


class WriterOptions(FrozenModel):
    """Knobs of the write engine; the defaults suit most acquisitions."""

    threads: int | None = Field(default=None, ge=1, description="encode/IO threads; None = cores")
    memory_budget_mb: int = Field(
        default=160, ge=16, description="frames held for encoding/writing before append waits"
    )
    fsync: bool = Field(default=True, description="close() returns only when data is durable")
    direct_io: bool = Field(
        default=True,
        description=(
            "local disks: write uncompressed chunks, encoded shards and TIFF pages "
            "around the page cache "
            "(TIFF: unless a bounded acquisition is under 256 MB in all)"
        ),
    )
    compression_level: int | None = Field(default=None, ge=0, le=22)
    shuffle: Literal["bitshuffle", "shuffle", "noshuffle"] | None = None
    metadata_interval_s: float = Field(
        default=1.0, gt=0, description="how often metadata is refreshed on disk while streaming"
    )
    tiff_single_file: bool = Field(
        default=False, description="OME-TIFF: all positions in one file (else one per position)"
    )


class AcquisitionSettings(FrozenModel):
    """What to write: dimensions in acquisition order, pixel type, format and layout."""

    root_path: str
    dimensions: tuple[Dimension | PositionDimension, ...]
    dtype: str
    format: FormatSpec | None = None
    compression: str | None = None
    storage_order: StorageOrder = "ome"
    plate: Plate | None = None
    overwrite: bool = False
    pyramid: Pyramid | None = None
    writer: WriterOptions = WriterOptions()

    if TYPE_CHECKING:
        # What the validators accept (sub-settings also as dicts); the fields hold the
        # resolved values (a tuple of dimensions, a dtype name, a FormatSpec).
        def __init__(
            self,
            *,
            root_path: str | os.PathLike[str],
            dimensions: Sequence[Dimension | PositionDimension],
            dtype: npt.DTypeLike,
            format: FormatSpec | str | dict[str, Any] | None = None,
            compression: str | None = None,
            storage_order: Literal["ome", "acquisition"] | Sequence[str] = "ome",
            plate: Plate | dict[str, Any] | None = None,
            overwrite: bool = False,
            pyramid: Pyramid | dict[str, Any] | None = None,
            writer: WriterOptions | dict[str, Any] = ...,
        ) -> None: ...

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler: Any) -> Any:
        warning = None
        untyped: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            root = data.get("root_path")
            if isinstance(root, os.PathLike):
                root = os.fspath(root)
            if not isinstance(root, str) or not root.strip():
                raise ValueError(f"root_path must be a non-empty path, got {root!r}")
            data["root_path"] = root
            data["format"], warning = resolve_format(data.get("format"), root)
            data["compression"] = normalize_compression(data.get("compression"))
            if isinstance(data.get("storage_order"), list):
                data["storage_order"] = tuple(data["storage_order"])
            if isinstance(data.get("dimensions"), list | tuple):  # not a str: its letters
                data["dimensions"] = [_position_axis(d) for d in data["dimensions"]]
                untyped = _frame_axes_spatial(data["dimensions"])
        self = handler(data)
        if warning:
            warn_user(warning)
        if untyped:
            warn_user(
                f"the frame axes {untyped} have no type: storing them as spatial axes "
                "(type='space'), the only type a frame's axes may have; give type='space' "
                "or a length unit to say so"
            )
        return self

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str:
        try:
            name = np.dtype(v).name
        except TypeError:
            raise ValueError(f"dtype {v!r} is not a numpy dtype") from None
        if name not in ZARR_DTYPES:
            raise ValueError(f"dtype {name!r} is not supported: use one of {sorted(ZARR_DTYPES)}")
        return name

    @model_validator(mode="after")
    def _check(self) -> AcquisitionSettings:
        _check_dimensions(self.dimensions)
        fmt = self.format
        assert fmt is not None
        info = ENGINES[fmt.backend]
        if self.compression not in info.compressions:
            ok = ", ".join(str(c) for c in info.compressions)
            raise ValueError(
                f"compression {self.compression!r} cannot be written by {fmt.name} backend "
                f"{fmt.backend!r}: use one of {ok}"
            )
        if fmt.name == "ome-tiff" and self.dtype not in TIFF_DTYPES:
            raise ValueError(
                f"OME-TIFF cannot store dtype {self.dtype!r}: use one of {sorted(TIFF_DTYPES)}"
            )
        _check_storage_order(self)
        order = self.storage_dimension_names
        if not info.reorders_frames and order != self.acquisition_dimension_names:
            raise ValueError(
                f"backend {fmt.backend!r} writes frames only in the order they arrive, but "
                f"storage order {order} differs from acquisition order "
                f"{self.acquisition_dimension_names}; use storage_order='acquisition' or "
                "another backend"
            )
        if fmt.name == "ome-zarr" and self.storage_order == "ome":
            _check_ngff_axes(self.array_dimensions)
        elif fmt.name == "ome-zarr" and not _ngff_ordered(self):
            warn_user(
                f"storage_order={self.storage_order!r} stores axes as {list(order)}, which is "
                "not the order OME-Zarr requires (time, channel, space); readers may reject "
                "the dataset, and omestream's own open_store, validate and pyramid commands "
                "refuse it (zarr reads its arrays as usual). Use "
                "storage_order='ome' for a compliant one."
            )
        _check_plate(self.plate, self.position_dimension)
        if self.writer.tiff_single_file and fmt.prefer_single_file == "never":
            raise ValueError(
                "writer.tiff_single_file=True and format prefer_single_file='never' disagree; "
                "keep one of them"
            )
        sharded = [d.name for d in self.array_dimensions if d.shard_size_chunks is not None]
        if sharded and fmt.zarr_format != 3:
            raise ValueError(
                f"shard_size_chunks is set on {sharded}, but sharding needs Zarr v3 "
                "(OME-Zarr 0.5); remove it or write format version '0.5'"
            )
        if self.pyramid is not None:
            names = {d.name for d in self.array_dimensions}
            extra = set(self.pyramid.factors) - names
            if extra:
                raise ValueError(f"pyramid factors name unknown dimensions {sorted(extra)}")
            not_space = [
                d.name
                for d in self.array_dimensions
                if d.name in self.pyramid.factors
                and d.type != "space"
                and self.pyramid.factors[d.name] != 1
            ]
            if not_space:
                raise ValueError(f"pyramid factors apply to spatial axes only, not {not_space}")
            dims = [d for d in self.array_dimensions if d.count]
            top = useful_levels(
                [d.count or 1 for d in dims], [self.pyramid.factors.get(d.name, 1) for d in dims]
            )
            if self.pyramid.levels > top:
                warn_user(
                    f"Pyramid(levels={self.pyramid.levels}): the frames reach one pixel along "
                    f"every downsampled axis at level {top - 1}; writing {top} levels (more "
                    "would repeat that pixel at ever larger scales)"
                )
        return self

    # -- derived views ----------------------------------------------------------------
    @property
    def position_dimension(self) -> PositionDimension | None:
        return next((d for d in self.dimensions if isinstance(d, PositionDimension)), None)

    @property
    def positions(self) -> tuple[Position, ...]:
        pd = self.position_dimension
        return pd.positions if pd is not None else ()

    @property
    def array_dimensions(self) -> tuple[Dimension, ...]:
        """Dimensions that become array axes (all but positions), in acquisition order."""
        return tuple(d for d in self.dimensions if isinstance(d, Dimension))

    @property
    def frame_dimensions(self) -> tuple[Dimension, Dimension]:
        y, x = self.array_dimensions[-2:]
        return y, x

    @property
    def frame_shape(self) -> tuple[int, int]:
        y, x = self.frame_dimensions
        assert y.count is not None and x.count is not None
        return (y.count, x.count)

    @property
    def acquisition_dimension_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.array_dimensions)

    @property
    def storage_dimension_names(self) -> tuple[str, ...]:
        """Array axes in the order they are stored."""
        acq = self.array_dimensions
        names = self.acquisition_dimension_names
        order = self.storage_order
        if order == "acquisition":
            return names
        if order == "ome":
            assert self.format is not None
            if self.format.name == "ome-tiff":
                return names  # OME-TIFF stores any t/c/z order
            rank = {"time": 0, "channel": 1, "other": 1, None: 1, "space": 2}
            outer = sorted(acq[:-2], key=lambda d: rank[d.type])
            return tuple(d.name for d in outer) + names[-2:]
        position = self.position_dimension
        given = tuple(n for n in order if position is None or n != position.name)
        if given[-2:] != names[-2:] and set(names[-2:]).isdisjoint(given):
            given = given + names[-2:]
        return given

    @property
    def output_path(self) -> str:
        """Where the data goes: the zarr group, the .ome.tiff file, or a folder of files."""
        assert self.format is not None
        scheme, sep, rest = self.root_path.partition("://")
        if not sep:
            root = self.root_path.rstrip("/")
        elif "/" in rest.rstrip("/"):  # a key under the bucket: 's3://b/run1/' is 'run1'
            root = scheme + sep + rest.rstrip("/")
        else:  # the bucket itself keeps its slash
            root = self.root_path
        fmt = self.format
        if fmt.name == "ome-tiff" and not self.single_tiff_file:
            return strip_suffix(root)  # a folder of files
        if fmt.suffix is not None:
            return strip_suffix(root) + fmt.suffix
        if format_from_suffix(root) == fmt.name:
            return root
        return root + (".ome.zarr" if fmt.name == "ome-zarr" else ".ome.tiff")

    @property
    def single_tiff_file(self) -> bool:
        """OME-TIFF: every image in one file, else one file per image in a folder."""
        single = self.format.prefer_single_file  # type: ignore[union-attr]
        if single == "always" or self.writer.tiff_single_file:
            return True
        return single == "auto" and len(self.positions) <= 1

    @property
    def is_unbounded(self) -> bool:
        return self.array_dimensions[0].count is None

    @property
    def frames_per_outer_step(self) -> int:
        """Frames per index of the first (possibly unbounded) dimension."""
        n = 1
        for d in self.dimensions[1:-2]:
            n *= d.count  # type: ignore[operator]
        return n

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Count of every dimension, positions included, in acquisition order."""
        return tuple(d.count for d in self.dimensions)

    @property
    def num_frames(self) -> int | None:
        """ome-writers' name for :attr:`total_frames`."""
        return self.total_frames

    @property
    def total_frames(self) -> int | None:
        """Frames the acquisition holds; None when the first dimension is unbounded."""
        outer = self.dimensions[:-2]
        if not outer:
            return 1
        if outer[0].count is None:
            return None
        return outer[0].count * self.frames_per_outer_step


def _position_axis(dim: Any) -> Any:
    """``Dimension(type="position", coords=[...])`` (ome-writers' spelling) as the
    PositionDimension it describes."""
    if isinstance(dim, Dimension) and dim.type == "position":
        fields = dim.model_dump(exclude_defaults=True)
        if dim.coords is not None:
            fields["coords"] = dim.coords
        return PositionDimension(**fields)
    if isinstance(dim, dict) and dim.get("type") == "position":
        return PositionDimension(**dim)
    return dim


def _frame_axes_spatial(dims: list[Any]) -> list[str]:
    """Give the frame's two axes ``type="space"`` where no type was given or inferred
    (a name other than y/x, no length unit); returns their names.

    Left untyped they would be stored as "other", which no OME reader accepts for a
    frame's axes.
    """
    untyped = []
    for i in range(max(0, len(dims) - 2), len(dims)):
        d = dims[i]
        if isinstance(d, dict) and d.get("type") != "position":
            with contextlib.suppress(ValueError):  # field validation reports it
                d = Dimension.model_validate(d)
        if isinstance(d, Dimension) and d.type is None:
            dims[i] = d.model_copy(update={"type": "space"})
            untyped.append(d.name)
    return untyped


def _check_dimensions(dims: tuple[Dimension | PositionDimension, ...]) -> None:
    if sum(isinstance(d, PositionDimension) for d in dims) > 1:
        raise ValueError("only one PositionDimension is allowed")
    arr = [d for d in dims if isinstance(d, Dimension)]
    if not 2 <= len(arr) <= 5:
        raise ValueError(
            f"{len(arr)} array dimensions given: need 2 to 5 (besides positions), the last two "
            "being the frame's y and x"
        )
    lowered = [d.name.lower() for d in dims]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise ValueError(f"dimension names must be unique (ignoring case); repeated: {dupes}")
    for i, d in enumerate(dims):
        if d.count is None and i != 0:
            raise ValueError(
                f"dimension {d.name!r} has count=None: only the first may be unbounded"
            )
        if d.count is not None and d.count > MAX_COUNT:
            raise ValueError(f"dimension {d.name!r}: count={d.count} is larger than {MAX_COUNT}")
    if isinstance(dims[-1], PositionDimension) or isinstance(dims[-2], PositionDimension):
        raise ValueError("the last two dimensions must be the frame's y and x, not positions")
    y, x = arr[-2:]
    for d in (y, x):
        if d.count is None:
            raise ValueError(f"frame dimension {d.name!r} needs a count")
        if d.type not in ("space", None):
            raise ValueError(
                f"the last two dimensions are the frame's axes and must be spatial; "
                f"{d.name!r} has type {d.type!r}"
            )
    if y.count * x.count * 8 > MAX_FRAME_BYTES:  # type: ignore[operator]
        raise ValueError(f"frame of {y.count}x{x.count} is larger than omestream supports")
    for d in arr:
        check_label(d.name, "dimension")


def _ngff_ordered(settings: AcquisitionSettings) -> bool:
    rank = {"time": 0, "channel": 1, "other": 1, None: 1, "space": 2}
    by_name = {d.name: d for d in settings.array_dimensions}
    ranks = [rank[by_name[n].type] for n in settings.storage_dimension_names]
    return ranks == sorted(ranks)


def _check_ngff_axes(arr: tuple[Dimension, ...]) -> None:
    types = [d.type or "other" for d in arr[:-2]]
    space = types.count("space") + 2
    if space > 3:
        raise ValueError(f"OME-Zarr images have at most 3 spatial axes; got {space}")
    if types.count("time") > 1:
        raise ValueError("OME-Zarr images have at most one time axis")
    if types.count("channel") + types.count("other") > 1:
        raise ValueError("OME-Zarr images have at most one channel (or custom) axis")


def _check_storage_order(settings: AcquisitionSettings) -> None:
    """A storage order given as names must be a permutation of the array's axes: an axis
    left out or named twice would put frames on top of each other."""
    if isinstance(settings.storage_order, str):
        return
    names = settings.acquisition_dimension_names
    given = list(settings.storage_order)
    position = settings.position_dimension
    outer = list(names[:-2])
    known = set(names) | ({position.name} if position is not None else set())
    unknown = [n for n in given if n not in known]
    twice = sorted({n for n in given if given.count(n) > 1})
    stored = settings.storage_dimension_names
    missing = [n for n in outer if n not in stored]
    hint = (
        f"storage_order must name each of {outer} exactly once (the frame axes "
        f"{list(names[-2:])} may be left out, else they come last); got {given}"
    )
    if unknown:
        raise ValueError(f"{hint}: unknown {unknown}")
    if twice:
        raise ValueError(f"{hint}: named twice {twice}")
    if missing:
        raise ValueError(f"{hint}: missing {missing}")
    if stored[-2:] != names[-2:] or len(stored) != len(names):
        raise ValueError(f"{hint}: the frame axes must come last, in their order")


def _check_plate(plate: Plate | None, pdim: PositionDimension | None) -> None:
    positions = pdim.positions if pdim is not None else ()
    in_wells = [p for p in positions if p.well is not None]
    if plate is None:
        if in_wells:
            raise ValueError(
                f"position {in_wells[0].name!r} names a well ({in_wells[0].plate_row}, "
                f"{in_wells[0].plate_column}) but no plate= was given"
            )
        return
    if not positions:
        raise ValueError("plate= needs a PositionDimension whose positions name their wells")
    for p in positions:
        if p.well is None:
            raise ValueError(f"position {p.name!r} has no plate_row/plate_column on a plate")
        if p.plate_row not in plate.row_names:
            raise ValueError(
                f"position {p.name!r}: row {p.plate_row!r} is not in {list(plate.row_names)}"
            )
        if p.plate_column not in plate.column_names:
            raise ValueError(
                f"position {p.name!r}: column {p.plate_column!r} is not in {list(plate.column_names)}"
            )
        check_path_name(p.name, "position (field of view)")
