"""HCS plates and wells: add, rename and delete rows, columns, wells and fields.

Every change is one read-modify-write under the dataset's metadata lock, re-reading
the plate and well documents inside the lock, so concurrent writers (processes,
cluster jobs) never lose each other's wells or fields. Groups on disk change first
(created, moved) and the documents that list them are written last; deletions go
the other way (unlisted first, then removed). The plate document is rebuilt from
scratch each time: ``rows``/``columns`` sorted, ``wells`` sorted with
``rowIndex``/``columnIndex`` recomputed, ``field_count`` the largest well.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

from omestream.errors import SettingsError, StoreError, StoreExistsError, StoreFormatError
from omestream.metadata.parse import ParsedImage, ParsedPlate, ParsedWell, parse_group
from omestream.settings.names import case_twin, check_path_name
from omestream.store.create import create_image, remove_node
from omestream.store.image import Image
from omestream.store.node import StoreContext, natural_key

__all__ = ["Plate", "Well"]

_GROUP_FILES = ("zarr.json", ".zgroup", ".zattrs")


def _plate_name(name: Any, what: str) -> str:
    """A row, column or field name: letters and digits only (NGFF plate paths)."""
    try:
        return check_path_name(name, what)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{exc}; nothing was changed") from None


def _no_case_twin(name: str, existing: Any, what: str, where: str) -> None:
    """Refuse ``name`` when ``existing`` holds it in other case (see :func:`case_twin`)."""
    twin = case_twin(name, existing)
    if twin is not None:
        raise SettingsError(
            f"{where} already has {what} {twin!r}; {name!r} differs from it only in case, "
            "and both would be one folder on case-insensitive disks; nothing was changed"
        )


class _Undo:
    """Puts groups back as they were before a call that failed part way: nodes it made
    are removed (with groups zarr made on the way, e.g. a new well's row), and the
    group documents of nodes that were there get their old bytes back."""

    def __init__(self, ctx: StoreContext, new: list[str], docs: dict[str, bytes | None]) -> None:
        self._ctx, self._new, self._docs = ctx, new, docs

    @classmethod
    def before(cls, ctx: StoreContext, paths: list[str]) -> _Undo:
        """Note ``paths`` (outermost first) before anything is written below them."""
        new = [p for p in paths if not ctx.node_exists(p)]
        docs = {
            f"{p}/{f}": ctx.kv.get(f"{p}/{f}") for p in paths if p not in new for f in _GROUP_FILES
        }
        return cls(ctx, new, docs)

    def __call__(self) -> None:
        for p in reversed(self._new):  # innermost first
            remove_node(self._ctx, p)
        for key, doc in self._docs.items():
            if doc is None:
                if self._ctx.kv.exists(key):
                    self._ctx.kv.delete(key)
            elif self._ctx.kv.get(key) != doc:
                self._ctx.kv.set(key, doc)


class Well:
    """One well: its fields of view (images), in order."""

    def __init__(self, plate: Plate, row: str, column: str) -> None:
        self.plate = plate
        self.row = row
        self.column = column
        self.path = f"{row}/{column}"

    def _parsed(self) -> ParsedWell:
        ctx = self.plate._ctx
        _, parsed = ctx.parse(self.path)
        if not isinstance(parsed, ParsedWell):
            raise StoreFormatError(f"{ctx.where(self.path)}: expected a well group ('well')")
        return parsed

    @property
    def fields(self) -> list[str]:
        # a well from add_well() is written with its first field; until then it has none
        if not self.plate._ctx.group_exists(self.path) and self.path not in self.plate.wells:
            return []
        return list(self._parsed().images)

    def __getitem__(self, field: str) -> Image:
        if field not in self.fields:
            raise KeyError(f"well {self.path!r} has no field {field!r} (fields: {self.fields})")
        return Image(self.plate._ctx, f"{self.path}/{field}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def add_position(self, name: str, **kwargs: Any) -> Image:
        """Add field of view ``name`` to this well: :meth:`Plate.add_position`."""
        return self.plate.add_position(self.row, self.column, name, **kwargs)

    def __repr__(self) -> str:
        return f"<Well {self.path!r} fields={self.fields}>"


class Plate:
    """An HCS plate opened with :func:`omestream.open_store`."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        self._read()

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any], ParsedPlate]:
        attrs, parsed = self._ctx.parse("")
        if not isinstance(parsed, ParsedPlate):
            raise StoreFormatError(f"{self._ctx.url}: expected an HCS plate ('plate' metadata)")
        self._attrs, self._p = attrs, parsed
        return attrs, parsed

    def refresh(self) -> Plate:
        self._read()
        return self

    @property
    def rows(self) -> list[str]:
        return list(self._read()[1].rows)

    @property
    def columns(self) -> list[str]:
        return list(self._read()[1].columns)

    @property
    def wells(self) -> list[str]:
        return [w.path for w in self._read()[1].wells]

    @property
    def name(self) -> str | None:
        return self._p.name

    @property
    def version(self) -> str:
        return self._ctx.version

    def well(self, row: str, column: str | None = None) -> Well:
        """The well in ``row`` and ``column``; ``well("B/3")`` (a name from ``wells``) too."""
        if column is None:
            given = row
            row, _, column = given.partition("/")
            if not row or not column or "/" in column:
                raise KeyError(f"use well('B', '3') or well('B/3'), got {given!r}")
        path = f"{row}/{column}"
        if path not in self.wells:
            raise KeyError(f"plate {self._ctx.url} has no well {path!r} (wells: {self.wells})")
        return Well(self, row, column)

    def __getitem__(self, key: str) -> Well | Image:
        """``plate["B/3"]`` is a well, ``plate["B/3/fov0"]`` an image."""
        parts = key.split("/")
        if len(parts) == 2:
            return self.well(*parts)
        if len(parts) == 3:
            return self.well(parts[0], parts[1])[parts[2]]
        raise KeyError(f"use 'row/column' or 'row/column/field', got {key!r}")

    def images(self) -> Iterator[tuple[str, Image]]:
        for w in self.wells:
            well = Well(self, *w.split("/"))
            for f in well.fields:
                yield f"{w}/{f}", well[f]

    def __repr__(self) -> str:
        return f"<Plate {self._ctx.url!r} NGFF {self.version} wells={self.wells}>"

    # -- metadata writing (call under the metadata lock) -----------------------------------
    def _write_plate(
        self,
        parsed: ParsedPlate,
        rows: list[str],
        columns: list[str],
        wells: list[str],
        field_counts: dict[str, int] | None = None,
    ) -> None:
        ctx = self._ctx
        rows = sorted(set(rows), key=natural_key)
        columns = sorted(set(columns), key=natural_key)
        doc = copy.deepcopy(parsed.raw)
        doc["rows"] = [{"name": r} for r in rows]
        doc["columns"] = [{"name": c} for c in columns]
        entries = []
        for w in set(wells):
            r, c = w.split("/")
            entries.append({"path": w, "rowIndex": rows.index(r), "columnIndex": columns.index(c)})
        entries.sort(key=lambda e: (e["rowIndex"], e["columnIndex"]))
        doc["wells"] = entries
        counts = dict(field_counts or {})
        for w in wells:
            if w not in counts:
                counts[w] = len(self._well_doc(w)[1].images) if ctx.group_exists(w) else 0
        if counts and max(counts.values()) > 0:
            doc["field_count"] = max(counts.values())
        else:
            doc.pop("field_count", None)
        if ctx.version == "0.4":
            doc["version"] = "0.4"
        ctx.drop_consolidated()
        ctx.write_content("", {"plate": doc})
        self._read()

    def _well_doc(self, path: str) -> tuple[dict[str, Any], ParsedWell]:
        attrs, parsed = self._ctx.parse(path)
        if not isinstance(parsed, ParsedWell):
            raise StoreFormatError(f"{self._ctx.where(path)}: expected a well group ('well')")
        return attrs, parsed

    def _write_well(self, path: str, images: list[dict[str, Any]], raw: dict[str, Any]) -> None:
        doc = copy.deepcopy(raw)
        images = sorted(images, key=lambda im: natural_key(im["path"]))
        doc["images"] = images
        if self._ctx.version == "0.4":
            doc["version"] = "0.4"
        self._ctx.write_content(path, {"well": doc})

    # -- rows, columns, wells --------------------------------------------------------------
    def add_row(self, name: str) -> Plate:
        return self._add_axis(rows=[_plate_name(name, "row")])

    def add_column(self, name: str) -> Plate:
        return self._add_axis(columns=[_plate_name(name, "column")])

    def _add_axis(self, rows: list[str] = (), columns: list[str] = ()) -> Plate:  # type: ignore[assignment]
        ctx = self._ctx
        ctx.check_writable("add rows or columns")
        with ctx.locks.metadata():
            _, p = self._read()
            new_rows = [r for r in rows if r not in p.rows]
            new_cols = [c for c in columns if c not in p.columns]
            for r in new_rows:
                _no_case_twin(r, p.rows, "row", f"plate {ctx.url}")
            for c in new_cols:
                _no_case_twin(c, p.columns, "column", f"plate {ctx.url}")
            if new_rows or new_cols:
                self._write_plate(p, [*p.rows, *new_rows], [*p.columns, *new_cols], self.wells)
        return self

    def add_well(self, row: str, column: str) -> Well:
        """Add well ``row``/``column``: its row and column are added to the plate now; the
        well itself is written and listed with its first field (``add_position``).

        NGFF wells must hold at least one image, so no empty well is ever written.
        """
        row, column = _plate_name(row, "row"), _plate_name(column, "column")
        ctx = self._ctx
        ctx.check_writable("add a well")
        with ctx.locks.metadata():
            _, p = self._read()
            _no_case_twin(row, p.rows, "row", f"plate {ctx.url}")
            _no_case_twin(column, p.columns, "column", f"plate {ctx.url}")
            path = f"{row}/{column}"
            if path in self.wells:
                raise StoreExistsError(
                    f"plate {ctx.url} already has well {path!r}; nothing was changed"
                )
            if row not in p.rows or column not in p.columns:
                self._write_plate(
                    p, [*p.rows, row], [*p.columns, column], self.wells, self._counts_hint(p, "")
                )
        return Well(self, row, column)

    def add_position(
        self,
        row: str,
        column: str,
        name: str,
        *,
        like: Image | None = None,
        data: Any = None,
        shape: dict[str, int] | None = None,
        axes: str | list[str] | None = None,
        chunks: tuple[int, ...] | None = None,
        channel_names: list[str] | None = None,
        cast: bool = False,
    ) -> Image:
        """Add field of view ``name`` to well ``row``/``column`` (well, row and column are
        created as needed).

        ``like=`` copies another image's axes, levels, chunks, codecs, dtype and channels
        (``shape={"t": 1}`` overrides extents); ``data=`` fills it. Without ``like=`` and
        ``axes=`` the new field is like the plate's first field, so fields stay alike;
        ``axes="tczyx"`` (with ``data=``) makes a different one. Everything is checked
        before anything is written; on failure the groups this call created are removed
        and no document lists them.
        """
        row, column = _plate_name(row, "row"), _plate_name(column, "column")
        name = _plate_name(name, "field")  # well image paths are alphanumeric (NGFF)
        ctx = self._ctx
        ctx.check_writable("add a position")
        if like is not None and not isinstance(like, Image):
            raise SettingsError(f"like= must be an Image, got {type(like).__name__}")
        if like is None and axes is None:
            like = next((im for _, im in self.images()), None)
        well_path = f"{row}/{column}"
        path = f"{well_path}/{name}"
        with ctx.locks.metadata():
            _, p = self._read()
            _no_case_twin(row, p.rows, "row", f"plate {ctx.url}")
            _no_case_twin(column, p.columns, "column", f"plate {ctx.url}")
            if ctx.group_exists(well_path):
                _no_case_twin(name, self._well_doc(well_path)[1].images, "field",
                              f"well {well_path!r}")  # fmt: skip
            if ctx.node_exists(path) and ctx.kv.list_dir(path):
                raise StoreExistsError(
                    f"{ctx.where(path)} already exists; choose another field name or delete it "
                    "first; nothing was changed"
                )
            undo = _Undo.before(ctx, [row, well_path, path])
            try:
                new_well = not ctx.group_exists(well_path)
                # the image first: it checks every argument before writing, so a refused
                # call creates no row or well group either
                image = create_image(
                    ctx, path, name, like=like, data=data, shape=shape, axes=axes,
                    chunks=chunks, channel_names=channel_names, cast=cast,
                )  # fmt: skip
                if not ctx.group_exists(row):
                    ctx.empty_group(row)
                if new_well:
                    self._write_well(well_path, [{"path": name}], {})
                else:
                    _, wd = self._well_doc(well_path)
                    images = [copy.deepcopy(im) for im in wd.raw.get("images", [])]
                    self._write_well(well_path, [*images, {"path": name}], wd.raw)
                n_fields = len(self._well_doc(well_path)[1].images)
                wells = self.wells
                if well_path not in wells:
                    wells.append(well_path)
                self._write_plate(
                    p, [*p.rows, row], [*p.columns, column], wells,
                    {well_path: n_fields} | self._counts_hint(p, well_path),
                )  # fmt: skip
            except BaseException:
                undo()
                raise
        return image

    def _counts_hint(self, p: ParsedPlate, skip: str) -> dict[str, int]:
        """field_count from the plate document for wells not touched (no reads needed)."""
        fc = p.field_count or 0
        return {w.path: fc for w in p.wells if w.path != skip} if fc else {}

    # -- renames -------------------------------------------------------------------------
    def _local_path(self, path: str) -> str:
        kv = self._ctx.kv
        if not kv.is_local:
            raise StoreError(f"{self._ctx.url}: renaming needs a local store")
        return kv.path(path)  # type: ignore[attr-defined,no-any-return]

    def rename_position(self, row: str, column: str, old: str, new: str) -> Image:
        ctx = self._ctx
        ctx.check_writable("rename a position", destructive=True)
        new = _plate_name(new, "field")  # well image paths are alphanumeric (NGFF)
        well_path = f"{row}/{column}"
        with ctx.locks.metadata():
            _, wd = self._well_doc(well_path)
            if old not in wd.images:
                raise KeyError(
                    f"well {well_path!r} has no field {old!r} (fields {list(wd.images)})"
                )
            _no_case_twin(new, [f for f in wd.images if f != old], "field", f"well {well_path!r}")
            if new in wd.images or (
                ctx.node_exists(f"{well_path}/{new}") and ctx.kv.list_dir(f"{well_path}/{new}")
            ):
                raise StoreExistsError(f"well {well_path!r} already has a field {new!r}")
            ctx.changing()
            with ctx.locks.image(f"{well_path}/{old}"):
                os.rename(
                    self._local_path(f"{well_path}/{old}"), self._local_path(f"{well_path}/{new}")
                )
            images = [copy.deepcopy(im) for im in wd.raw.get("images", [])]
            for im in images:
                if im.get("path") == old:
                    im["path"] = new
            self._write_well(well_path, images, wd.raw)
            self._rename_image_name(f"{well_path}/{new}", old, new)
            self._write_plate(self._p, list(self._p.rows), list(self._p.columns), self.wells)
        return Image(ctx, f"{well_path}/{new}")

    def _rename_image_name(self, path: str, old: str, new: str) -> None:
        ctx = self._ctx
        _, parsed = ctx.parse(path)
        if isinstance(parsed, ParsedImage):
            ms = copy.deepcopy(parsed.raw["multiscales"])
            changed = False
            for m in ms:
                if m.get("name") == old:
                    m["name"] = new
                    changed = True
            if changed:
                ctx.write_content(path, {"multiscales": ms})

    def rename_well(self, old: str, new: str) -> Well:
        """Move well ``"A/1"`` to ``"B/3"`` (rows/columns added as needed)."""
        ctx = self._ctx
        ctx.check_writable("rename a well", destructive=True)
        parts = new.split("/") if isinstance(new, str) else []
        if len(parts) != 2:
            raise SettingsError(f"new well must be 'row/column', got {new!r}")
        r, c = _plate_name(parts[0], "row"), _plate_name(parts[1], "column")
        with ctx.locks.metadata():
            _, p = self._read()
            wells = self.wells
            if old not in wells:
                raise KeyError(f"plate {ctx.url} has no well {old!r} (wells: {wells})")
            _no_case_twin(r, p.rows, "row", f"plate {ctx.url}")
            _no_case_twin(c, p.columns, "column", f"plate {ctx.url}")
            if new in wells or (ctx.node_exists(new) and ctx.kv.list_dir(new)):
                raise StoreExistsError(f"plate {ctx.url} already has well {new!r}")
            if not ctx.group_exists(r):
                ctx.empty_group(r)
            ctx.changing()
            os.rename(self._local_path(old), self._local_path(new))
            wells = [new if w == old else w for w in wells]
            self._write_plate(p, [*p.rows, r], [*p.columns, c], wells, self._counts_hint(p, ""))
            self._drop_empty_row(old.split("/")[0])
        return Well(self, r, c)

    def _drop_empty_row(self, row: str) -> None:
        ctx = self._ctx
        in_use = any(w.split("/")[0] == row for w in self.wells)
        if ctx.group_exists(row) and not in_use:  # noqa: SIM102 - one condition per line
            if not [n for n in ctx.kv.list_dir(row) if n not in _GROUP_FILES]:
                remove_node(ctx, row)

    # -- deletions -------------------------------------------------------------------------
    def _refuse_last_well(self, path: str, action: str) -> None:
        """NGFF plates must list at least one well: never remove the last one."""
        if self.wells == [path]:
            raise SettingsError(
                f"cannot {action}: {path!r} is the only well of plate {self._ctx.url} and "
                "a plate must keep at least one well; add another well first (or delete "
                "the whole dataset); nothing was changed"
            )

    def delete_position(self, row: str, column: str, name: str) -> None:
        """Delete a field of view; deleting a well's last field deletes the well too
        (NGFF wells must hold at least one image)."""
        ctx = self._ctx
        ctx.check_writable("delete a position", destructive=True)
        well_path = f"{row}/{column}"
        with ctx.locks.metadata():
            _, wd = self._well_doc(well_path)
            if name not in wd.images:
                raise KeyError(
                    f"well {well_path!r} has no field {name!r} (fields {list(wd.images)})"
                )
            if list(wd.images) == [name]:
                self._refuse_last_well(
                    well_path, f"delete field {name!r}, the last one of well {well_path!r}"
                )
                with ctx.locks.image(f"{well_path}/{name}"):
                    self._delete_well_locked(row, column)
                return
            images = [
                copy.deepcopy(im) for im in wd.raw.get("images", []) if im.get("path") != name
            ]
            self._write_well(well_path, images, wd.raw)  # unlisted first, then removed
            _, p = self._read()
            self._write_plate(p, list(p.rows), list(p.columns), self.wells)
            with ctx.locks.image(f"{well_path}/{name}"):
                remove_node(ctx, f"{well_path}/{name}")

    def delete_well(self, row: str, column: str) -> None:
        ctx = self._ctx
        ctx.check_writable("delete a well", destructive=True)
        path = f"{row}/{column}"
        with ctx.locks.metadata():
            self._read()
            if path not in self.wells:
                raise KeyError(f"plate {ctx.url} has no well {path!r} (wells: {self.wells})")
            self._refuse_last_well(path, f"delete well {path!r}")
            self._delete_well_locked(row, column)

    def _delete_well_locked(self, row: str, column: str) -> None:
        """Unlist the well, then remove its group (call under the metadata lock)."""
        ctx = self._ctx
        path = f"{row}/{column}"
        _, p = self._read()
        wells = [w for w in self.wells if w != path]
        self._write_plate(p, list(p.rows), list(p.columns), wells)
        remove_node(ctx, path)
        self._drop_empty_row(row)

    def delete_row(self, name: str) -> None:
        """Remove an empty row from the plate (delete its wells first)."""
        self._delete_axis(name, rows=True)

    def delete_column(self, name: str) -> None:
        self._delete_axis(name, rows=False)

    def _delete_axis(self, name: str, rows: bool) -> None:
        ctx = self._ctx
        what = "row" if rows else "column"
        ctx.check_writable(f"delete a {what}", destructive=True)
        with ctx.locks.metadata():
            _, p = self._read()
            names = list(p.rows if rows else p.columns)
            if name not in names:
                raise KeyError(f"plate {ctx.url} has no {what} {name!r}")
            used = [w.path for w in p.wells if (w.row if rows else w.column) == name]
            if used:
                raise SettingsError(f"{what} {name!r} still holds wells {used}; delete them first")
            names.remove(name)
            if rows:
                self._write_plate(p, names, list(p.columns), self.wells, self._counts_hint(p, ""))
            else:
                self._write_plate(p, list(p.rows), names, self.wells, self._counts_hint(p, ""))

    # -- repair ----------------------------------------------------------------------------
    def rebuild_metadata(self) -> list[str]:
        """Rewrite plate and well documents from the groups on disk; returns what changed.

        Lists every well holding image groups and every image group in a well (e.g. left
        by a writer that died before listing it), drops listed entries that are gone,
        keeps rows/columns already declared. Well groups holding nothing at all are
        removed (NGFF wells must hold an image). Also repairs each image's levels.
        """
        ctx = self._ctx
        ctx.check_writable("rebuild metadata")
        changes: list[str] = []
        with ctx.locks.metadata():
            _, p = self._read()
            found: dict[str, list[str]] = {}
            empty: list[str] = []  # well groups with no child at all: nothing to keep
            for row in ctx.kv.list_dir(""):
                if row.startswith(".") or not ctx.group_exists(row):
                    continue
                for col in ctx.kv.list_dir(row):
                    wpath = f"{row}/{col}"
                    if col.startswith(".") or not ctx.group_exists(wpath):
                        continue
                    fields = []
                    for f in ctx.kv.list_dir(wpath):
                        fpath = f"{wpath}/{f}"
                        if f.startswith(".") or not ctx.group_exists(fpath):
                            continue
                        try:
                            attrs = ctx.attrs(fpath)
                            if isinstance(parse_group(attrs, fpath), ParsedImage):
                                fields.append(f)
                        except StoreFormatError:
                            changes.append(f"skipped {fpath!r}: not a valid image group")
                    if fields:
                        found[wpath] = fields
                    elif not [n for n in ctx.kv.list_dir(wpath) if n not in _GROUP_FILES]:
                        empty.append(wpath)
            listed = {w.path for w in p.wells}
            for w in sorted(set(found) - listed):
                changes.append(f"listed well {w!r}")
            for w in sorted(listed - set(found)):
                changes.append(f"unlisted well {w!r} (no image groups on disk)")
            for wpath, fields in found.items():
                try:
                    _, wd = self._well_doc(wpath)
                    raw = wd.raw
                    have = list(wd.images)
                except StoreFormatError:
                    raw, have = {}, []
                if sorted(have) != sorted(fields):
                    changes.append(
                        f"well {wpath!r}: fields {have} -> {sorted(fields, key=natural_key)}"
                    )
                    keep = [
                        copy.deepcopy(im)
                        for im in raw.get("images", [])
                        if im.get("path") in fields
                    ]
                    keep += [{"path": f} for f in fields if f not in have]
                    self._write_well(wpath, keep, raw)
            rows = [*p.rows, *(w.split("/")[0] for w in found)]
            cols = [*p.columns, *(w.split("/")[1] for w in found)]
            counts = {w: len(f) for w, f in found.items()}
            if not found:
                # a plate must list a well: keep the documents rather than write an invalid one
                raise StoreFormatError(
                    f"{ctx.url}: no well holds an image group, so no valid plate can be "
                    "written; add a field (add_position) first; nothing was changed"
                )
            self._write_plate(p, rows, cols, list(found), counts)
            for wpath in empty:  # unlisted above, removed now
                remove_node(ctx, wpath)
                changes.append(f"removed empty well group {wpath!r}")
                self._drop_empty_row(wpath.split("/")[0])
        for path, image in self.images():
            fixed = image.repair() if ctx.mode != "r" else []
            changes += [f"image {path!r}: {f}" for f in fixed]
        return changes

    repair = rebuild_metadata
