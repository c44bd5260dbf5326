"""open_store: open an existing OME-Zarr dataset (image, bioformats2raw root, plate).

Opening only reads. The root is checked before anything else is looked at: it must be
a Zarr group whose attributes are NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3) metadata; any
problem raises StoreFormatError naming the location and what is wrong.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterator
from typing import Any

from omestream.errors import (
    ConcurrentModificationError,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
)
from omestream.io import zarr_nodes
from omestream.io.kv import KVStore, open_kv
from omestream.io.locks import check_no_stream
from omestream.io.paths import missing
from omestream.metadata.parse import (
    ParsedBioformats2raw,
    ParsedImage,
    ParsedLabels,
    ParsedPlate,
    ParsedSeries,
    ParsedWell,
    detect_version,
    parse_group,
)
from omestream.plan.storage import series_name_ok
from omestream.settings.names import case_twin, check_label
from omestream.store.create import create_image, remove_node
from omestream.store.image import Image
from omestream.store.lock import DEFAULT_TIMEOUT_S, StoreLocks
from omestream.store.node import Mode, StoreContext
from omestream.store.plate import Plate, Well
from omestream.summary.acquisition import acquisition_from_record

__all__ = ["Collection", "Dataset", "open_store"]


class Collection:
    """A bioformats2raw root: several images (series) listed in ``OME/``."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        self.series  # noqa: B018 - validate on open

    @property
    def series(self) -> list[str]:
        ctx = self._ctx
        if ctx.group_exists("OME"):
            _, parsed = ctx.parse("OME")
            if not isinstance(parsed, ParsedSeries):
                raise StoreFormatError(f"{ctx.where('OME')}: expected a 'series' list")
            return list(parsed.series)
        # without OME/series, the spec's fallback: consecutive integer groups 0, 1, ...
        out, i = [], 0
        while ctx.group_exists(str(i)):
            out.append(str(i))
            i += 1
        return out

    def __getitem__(self, key: str | int) -> Image:
        """A series by path (``"Pos0"``) or by its place in the ``series`` list."""
        series = self.series
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(series) <= key < len(series):
                raise IndexError(f"{self._ctx.url} has {len(series)} series, no series {key}")
            return Image(self._ctx, series[key])
        path = str(key)
        if path not in series:
            raise KeyError(f"{self._ctx.url} has no series {path!r} (series: {series})")
        return Image(self._ctx, path)

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[Image]:
        return (Image(self._ctx, s) for s in self.series)

    @property
    def version(self) -> str:
        return self._ctx.version

    def add_image(
        self,
        *,
        name: str | None = None,
        like: Image | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> Image:
        """Add a series and list it in ``OME/`` (written last).

        Its group path is ``name`` (a position name such as ``"Pos3"``: letters, digits,
        ``.``, ``_``, ``-``, as the stream names its series) or, without one, the next
        free integer. Without ``like=`` and ``axes=`` it is like the first series (see
        :meth:`Plate.add_position`). ``OME/METADATA.ome.xml`` is not rewritten; the
        ``series`` list is what readers use.
        """
        ctx = self._ctx
        ctx.check_writable("add an image")
        if like is None and kwargs.get("axes") is None:
            like = next(iter(self), None)
        with ctx.locks.metadata():
            series = self.series
            if name is not None:
                if not ctx.group_exists("OME"):
                    # readers find such a root's series by counting groups 0, 1, ...: a
                    # named one would never be listed (an OME/ group made up here would
                    # lack the METADATA.ome.xml bioformats2raw readers expect)
                    raise SettingsError(
                        f"{ctx.url} has no OME/ group listing its series, so they are "
                        f"numbered 0..{len(series) - 1} and a series named {name!r} would "
                        f"never be found; omit name= (it becomes series {len(series)}); "
                        "nothing was changed"
                    )
                path = _new_series_path(name, series)
                if ctx.node_exists(path) and ctx.kv.list_dir(path):
                    raise StoreExistsError(
                        f"{ctx.where(path)} already holds data; choose another name"
                    )
            else:  # the next integer with nothing stored under it
                i = len(series)
                while ctx.node_exists(str(i)) and ctx.kv.list_dir(str(i)):
                    i += 1
                path = str(i)
            try:
                image = create_image(ctx, path, name or path, like=like, data=data, **kwargs)
                if ctx.group_exists("OME"):
                    attrs = ctx.attrs("OME")
                    ctx.write_attrs("OME", ctx.with_content(attrs, {"series": [*series, path]}))
            except BaseException:
                remove_node(ctx, path)
                raise
        return image

    def repair(self) -> list[str]:
        out = []
        for s in self.series:
            out += [f"image {s!r}: {p}" for p in self[s].repair()]
        return out

    def __repr__(self) -> str:
        return f"<Collection {self._ctx.url!r} NGFF {self.version} series={self.series}>"


Dataset = Image | Plate | Collection | Well


def _new_series_path(name: str, series: list[str]) -> str:
    """``name`` as the path of a new series, or a SettingsError saying why not."""
    try:
        check_label(name, "series")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if not series_name_ok(name):
        raise SettingsError(
            f"series name {name!r} is not a portable group path: use letters, digits, "
            "'.', '_' and '-', starting with a letter or digit (not 'OME')"
        )
    if name in series:
        raise StoreExistsError(
            f"the collection already has a series {name!r}; choose another name; "
            "nothing was changed"
        )
    clash = case_twin(name, series)
    if clash is not None:
        raise SettingsError(
            f"the collection already has a series {clash!r}; names must differ in more "
            "than case (they share a folder on case-insensitive disks)"
        )
    return name


def _stream_records(kv: KVStore, zf: int) -> Iterator[tuple[str | KVStore, Any]]:
    """(where, record) of the omestream stream records at the opened group and, on a
    local disk, at the groups holding it (a field opened inside a streamed plate)."""
    yield kv if not kv.is_local else kv.url, zarr_nodes.read_group_attrs(kv, "", zf)
    if not kv.is_local:
        return
    path = os.path.abspath(kv.url)
    for _ in range(3):  # a plate field is three levels below the plate's record
        path = os.path.dirname(path)
        if not os.path.basename(path):
            return
        try:
            attrs = zarr_nodes.read_group_attrs(open_kv(path), "", zf)
        except (OSError, StoreFormatError, ValueError):
            return
        if attrs is None:
            return
        yield path, attrs


def _refuse_interrupted(kv: KVStore, url: str, zf: int) -> None:
    """Refuse to open for writing a dataset whose stream was interrupted and that was
    not repaired since: its unbounded axis is stored grown past the frames written, so
    an append would land after blank frames and the stream could never be resumed.
    A stream still open is not refused here: its lock refuses every change until it
    closes, and the handle is usable after that."""
    from omestream.stream.zarr_sink import OMESTREAM_KEY

    for where, attrs in _stream_records(kv, zf):
        info = acquisition_from_record((attrs or {}).get(OMESTREAM_KEY))
        if info is None:
            continue
        if info.complete or info.mended:
            return
        try:
            check_no_stream(where, "open it for writing")
        except ConcurrentModificationError:
            return  # a live stream: changes wait for it to close
        where = getattr(where, "url", where)
        raise StoreFormatError(
            f"{where}: the stream that wrote it was interrupted ({info.frames} frames "
            "recorded) and it has not been repaired: its arrays may be stored longer than "
            "the frames written, so a change now would land after blank frames and the "
            f"stream could not be resumed. Run `omestream repair {where}` first (or resume "
            "the stream with create_stream(settings, resume=True)); opening with mode='r' "
            "reads it as it is; nothing was changed"
        )


def _zarr_format(kv: Any, url: str) -> int:
    listing = kv.list_dir("")
    if not listing and not kv.root_exists():
        if "://" in url:
            raise StoreFormatError(f"{url} does not exist")
        raise StoreFormatError(str(missing(url)))
    if "zarr.json" in listing:
        doc = zarr_nodes.load_json(kv, "zarr.json")
        assert doc is not None
        if doc.get("node_type") != "group":
            raise StoreFormatError(
                f"{url} is a Zarr {doc.get('node_type')!r}, not a group; OME-Zarr datasets are "
                "groups with NGFF metadata"
            )
        return 3
    if ".zgroup" in listing:
        return 2
    if ".zarray" in listing:
        raise StoreFormatError(f"{url} is a Zarr v2 array, not an OME-Zarr group")
    raise StoreFormatError(
        f"{url} is not a Zarr store: no zarr.json (Zarr v3) or .zgroup (Zarr v2) at its root"
    )


def open_store(
    path: str | os.PathLike[str],
    mode: Mode = "r",
    *,
    storage_options: dict[str, Any] | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
) -> Image | Plate | Collection | Well:
    """Open an existing OME-Zarr dataset (NGFF 0.4 or 0.5, written by any tool).

    ``mode="r"`` reads only (every change raises ReadOnlyError); ``"r+"`` allows every
    change; ``"a"`` allows additions (positions, wells, time points, channels) but
    refuses to replace or delete existing data. Returns an :class:`Image`, a
    :class:`Plate`, a :class:`Collection` (bioformats2raw root) or a :class:`Well`.
    """
    if mode not in ("r", "r+", "a"):
        raise SettingsError(f"mode must be 'r', 'r+' or 'a', got {mode!r}")
    loc = os.fspath(path)
    kv = open_kv(loc, storage_options)
    url = kv.url
    if kv.is_local and os.path.isfile(url):
        raise StoreFormatError(f"{url} is a file; an OME-Zarr dataset is a folder")
    zf = _zarr_format(kv, url)
    attrs = zarr_nodes.read_group_attrs(kv, "", zf)
    assert attrs is not None
    version = detect_version(attrs, url)
    if version is None:
        raise StoreFormatError(
            f"{url} is a Zarr v{zf} group without OME-Zarr (NGFF) metadata: expected "
            f"'multiscales', 'plate', 'well' or 'bioformats2raw.layout' in its attributes"
            f"{' under ome' if zf == 3 else ''}, found keys {sorted(attrs)[:8]}"
        )
    want = 3 if version == "0.5" else 2
    if zf != want:
        raise StoreFormatError(
            f"{url}: NGFF {version} must be stored as Zarr v{want}, found Zarr v{zf}"
        )
    if mode != "r":
        _refuse_interrupted(kv, url, zf)
    locks = StoreLocks.of(kv, lock_timeout)
    ctx = StoreContext(kv, url, version, zf, mode, locks)
    parsed = parse_group(copy.deepcopy(attrs), url)
    if isinstance(parsed, ParsedPlate):
        gone = [w.path for w in parsed.wells if not ctx.group_exists(w.path)]
        if gone:
            # opened all the same: rebuild_metadata is how such a plate is mended
            warnings.warn(
                f"{url}: the plate lists well(s) {gone} that are not on disk; reading "
                "them fails. plate.rebuild_metadata() (mode 'r+') drops them from the plate.",
                UserWarning,
                stacklevel=2,
            )
        return Plate(ctx)
    if isinstance(parsed, ParsedImage):
        return Image(ctx, "")
    if isinstance(parsed, ParsedBioformats2raw):
        return Collection(ctx)
    if isinstance(parsed, ParsedWell):
        raise StoreFormatError(
            f"{url} is a single well; open the plate that holds it (its parent folder)"
        )
    if isinstance(parsed, ParsedLabels):
        listed = ", ".join(f"{url}/{name}" for name in parsed.labels) or "none listed"
        raise StoreFormatError(
            f"{url} is a labels group, which only lists label images; open one of them "
            f"({listed}) or the image that holds it (the parent folder)"
        )
    raise StoreFormatError(
        f"{url}: a 'series' list belongs in the OME group of a bioformats2raw root"
    )
