"""`omestream demo`: a synthetic acquisition streamed to disk, then a summary."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from omestream.cli.app import app, flag, in_cli_words
from omestream.errors import OmeStreamError
from omestream.settings import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
)
from omestream.stream import OMEStream, create_stream

_NAMES = ["DAPI", "GFP", "mCherry", "Cy5"]  # coloured as usual: blue, green, red, magenta


def synthetic_frame(
    rng: np.random.Generator, size: int, t: int, c: int, z: int, p: int
) -> np.ndarray:
    """Blobs that drift over time and vary with channel and focus, plus camera noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size), np.float32)
    for k in range(6):
        cy = 0.2 + 0.6 * ((k * 0.37 + p * 0.11 + t * 0.01) % 1)
        cx = 0.2 + 0.6 * ((k * 0.61 + c * 0.07 + t * 0.02) % 1)
        width = 0.03 + 0.01 * abs(z - 2)
        img += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    img += 100 + rng.poisson(20, img.shape).astype(np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16)


# The Python API's advice, as this command's arguments and options say it
_CLI_WORDS = (
    ("use omestream.open_store(...) to change it", "choose another PATH"),
    ("overwrite=True", "--overwrite"),
)


def _stream(settings: AcquisitionSettings) -> OMEStream:
    try:
        return create_stream(settings)
    except OmeStreamError as exc:
        in_cli_words(exc, _CLI_WORDS)
        raise


@app.command()
def demo(
    path: Path = typer.Argument(Path("demo.ome.zarr"), help="Where to write the dataset."),  # noqa: B008
    positions: int = typer.Option(3, min=1, help="Stage positions."),
    timepoints: int = typer.Option(4, "--t", min=1, help="Time points."),
    channels: int = typer.Option(2, "--c", min=1, max=4, help="Channels (up to 4)."),
    planes: int = typer.Option(5, "--z", min=1, help="Z planes."),
    size: int = typer.Option(512, min=1, help="Frame edge in pixels."),
    compression: str = typer.Option(
        "blosc-zstd", help="blosc-zstd, blosc-lz4, zstd, gzip or none."
    ),
    version: str = typer.Option("0.5", help="OME-Zarr version: 0.5 (Zarr v3) or 0.4 (Zarr v2)."),
    overwrite: bool = flag(True, help="Replace an existing dataset at PATH."),
) -> None:
    """Stream a synthetic multi-position time-lapse to OME-Zarr and summarise it.

    Example: omestream demo demo.ome.zarr --positions 2 --t 3 --z 5
    """
    console = Console()
    dims: list[Dimension | PositionDimension] = [
        Dimension(name="t", count=timepoints, type="time", unit="s", scale=30.0),
        PositionDimension(positions=[f"Pos{i}" for i in range(positions)]),
        Dimension(name="c", count=channels, type="channel",
                  coords=_NAMES[:channels]),
        Dimension(name="z", count=planes, type="space", unit="um", scale=2.0),
        Dimension(name="y", count=size, type="space", unit="um", scale=0.325),
        Dimension(name="x", count=size, type="space", unit="um", scale=0.325),
    ]  # fmt: skip
    settings = AcquisitionSettings(
        root_path=str(path),
        dimensions=dims,
        dtype="uint16",
        compression=None if compression.lower() == "none" else compression,
        format={"name": "ome-zarr", "version": version},
        overwrite=overwrite,
    )
    total = settings.total_frames or 0
    rng = np.random.default_rng(0)
    frame_bytes = size * size * 2
    start = time.perf_counter()
    making = 0.0  # time spent making synthetic frames, which a camera would not cost
    with (
        Progress(
            TextColumn("[bold]streaming"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} frames"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress,
        _stream(settings) as stream,
    ):
        task = progress.add_task("frames", total=total, rate="")
        n = 0
        for t in range(timepoints):
            for p in range(positions):
                for c in range(channels):
                    for z in range(planes):
                        t0 = time.perf_counter()
                        frame = synthetic_frame(rng, size, t, c, z, p)
                        making += time.perf_counter() - t0
                        stream.append(frame, metadata={"t": t, "p": p, "c": c, "z": z})
                        n += 1
                        dt = max(time.perf_counter() - start - making, 1e-9)
                        progress.update(
                            task,
                            advance=1,
                            rate=f"{n / dt:.0f} frames/s, {n * frame_bytes / dt / 1e6:.0f} MB/s",
                        )
    elapsed = time.perf_counter() - start
    writing = max(elapsed - making, 1e-9)
    console.print(
        f"wrote {total} frames ({total * frame_bytes / 1e6:.1f} MB) to "
        f"[bold]{settings.output_path}[/] in {elapsed:.2f} s: {writing:.2f} s in omestream "
        f"(create, append, durable close: {total * frame_bytes / writing / 1e6:.0f} MB/s), "
        f"{making:.2f} s making the synthetic frames"
    )
    from omestream.cli.info import render_info
    from omestream.summary import describe

    render_info(describe(settings.output_path), console)
