"""`omestream view`: a PNG of a dataset (channel composite or plate mosaic)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from omestream.cli.app import app, flag
from omestream.summary import describe
from omestream.view import render_dataset

__all__ = ["view"]


@app.command()
def view(
    path: str = typer.Argument(
        ..., help="An OME-Zarr store, an OME-TIFF file or a folder of them."
    ),
    output: Path = typer.Option(Path("view.png"), "--output", "-o", help="PNG to write."),  # noqa: B008
    size: int = typer.Option(256, min=16, max=4096, help="Thumbnail edge in pixels."),
    mid: bool = flag(False, "--mid", help="Show the middle z plane, not the max projection."),
    t: int | None = typer.Option(None, "--t", min=0, help="Time point (default: the middle one)."),
) -> None:
    """Draw the dataset as a PNG: projections per channel, or a plate's wells.

    Per-channel max projections coloured from omero plus their composite, or for a
    plate one tile per well on the plate grid (empty wells dark).

    Example: omestream view plate.ome.zarr -o plate.png --size 128
    """
    info = describe(path)
    picture = render_dataset(path, size=size, mode="mid" if mid else "max", t=t, info=info)
    picture.save(str(output))
    h, w = picture.rgb.shape[:2]
    Console().print(f"wrote [bold]{output}[/] ({w}×{h}): {picture.description}")
    for note in info.notes:  # what the picture cannot show (a missing file, cut pages)
        Console(stderr=True).print(f"[yellow]note:[/] {note}", highlight=False)
