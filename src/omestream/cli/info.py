"""`omestream info`: what a dataset is, in a few tables (or JSON for machines)."""

from __future__ import annotations

import json

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from omestream.cli.app import app, flag
from omestream.summary import AcquisitionInfo, DatasetInfo, ImageInfo, describe

__all__ = ["human_bytes", "info", "render_info"]


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} PB"  # pragma: no cover


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "×".join(str(s) for s in shape)


def _fmt_num(v: float) -> str:
    return f"{v:g}"


def _signature(im: ImageInfo) -> tuple[object, ...]:
    return (
        tuple((a.name, a.type, a.unit, a.scale) for a in im.axes),
        im.dtype,
        tuple((lv.shape, lv.chunks, lv.shards) for lv in im.levels),
        im.codecs,
        tuple(im.channels),
        im.labels,
    )


def _title(info: DatasetInfo) -> Text:
    fmt = {"ome-zarr": "OME-Zarr", "ome-tiff": "OME-TIFF", "tiff": "TIFF"}[info.format]
    parts = [fmt]
    if info.ngff_version:
        parts.append(info.ngff_version)
    if info.zarr_format:
        parts.append(f"(Zarr v{info.zarr_format})")
    n = len(info.images)
    kind = {
        "image": "single image",
        "multi-position": f"multi-position: {n} images",
        "plate": "plate",
        "zarr": f"Zarr hierarchy with {n} OME image(s)",
    }[info.kind]
    if info.plate is not None:
        n_wells = len(info.plate.wells)
        kind = f"plate: {n_wells} well(s), {n} field(s) of view"
    return Text.assemble((" ".join(parts), "bold cyan"), "  ·  ", (kind, "bold"))


def _axes_table(im: ImageInfo) -> Table:
    t = Table(title="axes", title_justify="left", box=None, pad_edge=False)
    for col in ("axis", "type", "size", "scale", "unit", "translation"):
        t.add_column(col, justify="left" if col in ("axis", "type", "unit") else "right")
    for a in im.axes:
        t.add_row(a.name, a.type or "-", str(a.size), _fmt_num(a.scale), a.unit or "-",
                  _fmt_num(a.translation))  # fmt: skip
    return t


def _levels_table(im: ImageInfo) -> Table:
    t = Table(title=f"levels · dtype {im.dtype}", title_justify="left", box=None, pad_edge=False)
    for col in ("level", "shape", "chunks", "shards", "scale", "size"):
        t.add_column(col, justify="right" if col == "size" else "left", no_wrap=col != "scale")
    for lv in im.levels:
        scale = " ".join(_fmt_num(s) for s in lv.scale) if lv.scale else "-"
        t.add_row(lv.path, _fmt_shape(lv.shape), _fmt_shape(lv.chunks), _fmt_shape(lv.shards),
                  scale, human_bytes(lv.nbytes))  # fmt: skip
    return t


def _channels_table(im: ImageInfo) -> Table:
    t = Table(title="channels", title_justify="left", box=None, pad_edge=False)
    for col in ("#", "label", "color", "window"):
        t.add_column(col)
    for i, ch in enumerate(im.channels):
        swatch = Text("■ ", style=f"#{ch.color}") if ch.color else Text("  ")
        swatch.append(ch.color or "-")
        window = f"{_fmt_num(ch.window[0])} – {_fmt_num(ch.window[1])}" if ch.window else "-"
        t.add_row(str(i), ch.label, swatch, window)
    return t


def _plate_grid(info: DatasetInfo) -> Text:
    plate = info.plate
    assert plate is not None
    fields = {w.path: len(w.fields) for w in plate.wells}
    width = max(len(c) for c in plate.columns) + 1
    head = " " * (max(len(r) for r in plate.rows) + 1)
    out = Text(head + "".join(c.rjust(width) for c in plate.columns) + "\n", style="dim")
    for r in plate.rows:
        out.append(r.ljust(len(head)), style="dim")
        for c in plate.columns:
            n = fields.get(f"{r}/{c}")
            out.append(" " * (width - 1))
            out.append("■" if n else "·", style="green" if n else "dim")
        out.append("\n")
    name = f" {plate.name!r}" if plate.name else ""
    out.append(
        f"plate{name}: {len(plate.rows)} rows × {len(plate.columns)} columns, "
        f"{len(plate.wells)} well(s) acquired"
    )
    return out


def _acquisition_line(a: AcquisitionInfo, info: DatasetInfo) -> Text:
    """How far the stream that wrote the dataset got, from its record."""
    count = (
        f"{a.frames:,} frames" if a.planned is None else f"{a.frames:,} of {a.planned:,} frames"
    )
    if a.skipped:
        count += f" ({a.skipped:,} skipped)"
    started = ""
    if a.started:
        started = ", started " + a.started.replace("T", " ").replace("+00:00", " UTC")
    if a.complete:
        if a.closed_early:
            end = "closed before the last frame"
        else:
            end = "closed" if a.planned is None else "complete"
        return Text.assemble("acquisition: ", (count, "bold"), f", {end}{started}")
    if a.mended:
        return Text(
            f"acquisition: {count}{started}; interrupted, then repaired: readable, and "
            "resumable: create_stream(settings, resume=True)",
            style="yellow",
        )
    if a.writer == "streaming":
        return Text(f"acquisition: {count} so far{started}; being written now by an open stream")
    if a.writer == "gone":
        return Text(
            f"acquisition: {count}{started}; interrupted: the stream that wrote it is gone "
            f"without closing it. `omestream repair {info.path}` makes it readable and "
            "resumable",
            style="yellow",
        )
    return Text(
        f"acquisition: {count} so far{started}; its stream did not close it: still being "
        f"written, or interrupted (once no writer runs, `omestream repair {info.path}` "
        "makes it readable and resumable)",
        style="yellow",
    )


def render_info(info: DatasetInfo, console: Console) -> None:
    """Print the human summary of ``info``."""
    parts: list[object] = []
    groups: dict[tuple[object, ...], list[ImageInfo]] = {}
    for im in info.images:
        groups.setdefault(_signature(im), []).append(im)
    for members in groups.values():
        im = members[0]
        if len(info.images) > 1:
            names = ", ".join((m.path or "/") for m in members[:8])
            more = f", … ({len(members)} in all)" if len(members) > 8 else ""
            parts.append(Text(f"images {names}{more}", style="bold"))
        parts.append(_axes_table(im))
        parts.append(Text(""))
        parts.append(_levels_table(im))
        parts.append(Text(f"codecs: {', '.join(im.codecs) or 'none'}", style="dim"))
        if im.labels:
            parts.append(Text(f"labels: {', '.join(im.labels)}"))
        if im.channels:
            parts.append(Text(""))
            parts.append(_channels_table(im))
        parts.append(Text(""))
    if info.kind == "multi-position":
        positions = [f"{im.path} ({im.name})" if im.name and im.name != im.path else im.path
                     for im in info.images]  # fmt: skip
        parts.append(Text(f"positions: {', '.join(positions)}"))
    if info.plate is not None:
        parts.append(_plate_grid(info))
    if info.acquisition is not None:
        parts.append(_acquisition_line(info.acquisition, info))
    ratio = info.compression_ratio
    size = Text.assemble(
        "size: ", (human_bytes(info.nbytes), "bold"), " in memory, ",
        (human_bytes(info.disk_bytes), "bold"), " on disk",
        f", compression {ratio:.2f}:1" if ratio else "",
    )  # fmt: skip
    parts.append(size)
    for note in info.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    console.print(Panel(Group(*parts), title=_title(info), title_align="left", expand=False))  # type: ignore[arg-type]


@app.command()
def info(
    path: str = typer.Argument(
        ..., help="An OME-Zarr store (folder or URL), an OME-TIFF file or a folder of them."
    ),
    as_json: bool = flag(False, "--json", help="Print a JSON document instead of tables."),
) -> None:
    """Describe a dataset: layout, NGFF/Zarr version, axes, levels, channels, sizes.

    Example: omestream info demo.ome.zarr --json
    """
    described = describe(path)
    if as_json:
        typer.echo(json.dumps(described.to_dict(), indent=2, default=str))
        return
    render_info(described, Console())
