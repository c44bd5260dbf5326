"""`omestream repair PATH`: report and fix what an interrupted acquisition left."""

from __future__ import annotations

import json

import typer

from omestream.cli.app import app, flag
from omestream.repair import repair as repair_dataset
from omestream.repair.zarr import DEFAULT_IDLE_S


@app.command()
def repair(
    # a str, not a Path: Path would fold the '//' of URLs such as s3://bucket/x.ome.zarr
    path: str = typer.Argument(
        ..., help="The OME-Zarr store (path or URL) or OME-TIFF file/folder."
    ),
    dry_run: bool = flag(False, "--dry-run", help="Only report; change nothing."),
    force: bool = flag(
        False, "--force", help="Repair even if the dataset was written to very recently."
    ),
    idle: float = typer.Option(
        DEFAULT_IDLE_S,
        "--idle",
        help="Seconds without writes before a dataset counts as stopped (not needed when "
        "the stream that wrote it is known to be gone: its lock is free).",
    ),
    as_json: bool = flag(False, "--json", help="Print the report as JSON."),
) -> None:
    """Make an interrupted acquisition readable again (or ready to resume).

    Reports the frames present and the last complete time point, trims shapes to the
    data present, folds frame metadata back and removes temporary files.

    Example: omestream repair acquisition.ome.zarr --dry-run
    """
    report = repair_dataset(path, dry_run=dry_run, force=force, idle_s=idle)
    if as_json:
        doc = {
            "path": report.path,
            "format": report.format,
            "interrupted": report.interrupted,
            "frames_expected": report.frames_expected,
            "frames_present": report.frames_present,
            "resume_at": report.resume_at,
            "last_complete_time_point": report.last_complete_time_point,
            "extents": report.extents,
            "metadata_records": report.metadata_records,
            "removed_files": report.removed_files,
            "changes": report.changes,
            "notes": report.notes,
            "dry_run": report.dry_run,
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(report.summary())
