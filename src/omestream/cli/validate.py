"""`omestream validate`: structural checks plus the installed independent validators."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.text import Text

from omestream.cli.app import app, flag
from omestream.validate import ValidationReport, validate_store

__all__ = ["render_report", "validate"]

_STATUS = {"passed": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("–", "yellow")}


def render_report(report: ValidationReport, console: Console) -> None:
    n, w = len(report.errors), len(report.warnings)
    mark, style = ("✓", "green") if n == 0 else ("✗", "red")
    summary = f"  {n} problem{'s' if n != 1 else ''}" if n else "  consistent"
    if w:
        summary += f", {w} warning{'s' if w != 1 else ''}"
    console.print(Text.assemble((f"{mark} ", style), ("structure", "bold"), summary))
    for p in report.errors:
        console.print(Text.assemble("    ", (p.where, "bold"), ": ", p.message))
    for p in report.warnings:
        console.print(Text.assemble("    ", ("! ", "yellow"), (p.where, "bold"), ": ", p.message))
    for v in report.validators:
        mark, style = _STATUS[v.status]
        took = f" in {v.seconds:.1f} s" if v.status != "skipped" and v.seconds >= 1 else ""
        console.print(Text.assemble((f"{mark} ", style), (v.name, "bold"), f"  {v.status}{took}"))
        for line in v.detail.splitlines():
            console.print(Text("    " + line, style="dim" if v.status == "skipped" else ""))
    verdict = Text("valid", style="bold green") if report.ok else Text("INVALID", style="bold red")
    console.print(Text.assemble(report.path, ": ", verdict))


@app.command()
def validate(
    path: str = typer.Argument(
        ..., help="An OME-Zarr store (folder or URL), or an OME-TIFF file or folder of them."
    ),
    external: bool = flag(
        True,
        "--external/--structure-only",
        help="Also run ome-zarr-models and yaozarrs (OME-TIFF: the OME schema and tifffile).",
    ),
    as_json: bool = flag(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a store's structure and metadata, then run independent validators.

    Checks plate indices, wells and fields on disk, axes against arrays, level shapes
    and channels; warns where positions or fields differ in axes, dtype or shape. An
    OME-TIFF: every declared plane mapped to a page that exists, page size and pixel
    type as declared, channels and planes inside the declared sizes.

    Exits with code 1 when anything fails (warnings do not). Example: omestream validate plate.ome.zarr
    """
    import os

    from omestream.io.paths import missing

    if "://" not in path and not os.path.exists(path):
        raise missing(path)
    # what runs now, on stderr (the report, --json included, goes to stdout); shown
    # only on a terminal
    with Console(stderr=True).status("validating") as status:

        def step(name: str) -> None:
            what = "structure checks" if name == "structure" else f"{name} (independent)"
            status.update(f"validating {path}: {what}")

        report = validate_store(path, external=external, on_step=step)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report, Console())
    if not report.ok:
        raise typer.Exit(1)
