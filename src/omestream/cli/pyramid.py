"""`omestream pyramid PATH`: build the resolution levels of an existing OME-Zarr image."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from omestream.cli.app import app, flag
from omestream.errors import SettingsError
from omestream.pyramid import METHODS, build_pyramid

__all__ = ["parse_factors", "pyramid"]


def parse_factors(text: str) -> dict[str, int]:
    """``"z=2,y=2,x=2"`` -> ``{"z": 2, "y": 2, "x": 2}``."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise SettingsError(
                f"--factors expects name=number pairs like 'y=2,x=2', got {part!r}"
            )
        out[name.strip()] = int(value)
    if not out:
        raise SettingsError("--factors is empty; give pairs like 'y=2,x=2'")
    return out


@app.command()
def pyramid(
    path: Annotated[  # a str: a Path would fold the '//' of URLs (s3://...)
        str, typer.Argument(help="OME-Zarr image, plate or bioformats2raw root (path or URL).")
    ],
    levels: int = typer.Option(4, "--levels", "-n", help="Levels in total, level 0 included."),
    method: str = typer.Option("mean", help=f"Downsampling method: {', '.join(METHODS)}."),
    factors: str = typer.Option(
        "y=2,x=2", help="Factor per axis between levels, e.g. z=2,y=2,x=2."
    ),
    threads: int | None = typer.Option(
        None, min=1, help="Worker threads (default: one per core)."
    ),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """(Re)build levels 1..N-1 of existing images, chunk by chunk (any image size).

    Example: omestream pyramid data.ome.zarr --levels 5 --method gaussian --factors z=2,y=2,x=2
    """
    console = Console(stderr=True)
    parsed = parse_factors(factors)
    if method not in METHODS:
        raise SettingsError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    with Progress(
        TextColumn("[bold]pyramid"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    ) as bar:
        task = bar.add_task("build", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        results = build_pyramid(
            str(path),
            levels=levels,
            method=method,
            factors=parsed,
            threads=threads,
            progress=progress,
        )
    out = Console()
    for r in results:
        name = r.image or "."
        shapes = ", ".join(
            f"{p}: {'×'.join(map(str, s))}" for p, s in zip(r.paths, r.shapes, strict=True)
        )
        out.print(f"{name}: {len(r.paths)} levels ({r.method}) {shapes}")
