"""`omestream convert`: OME-TIFF / TIFF stacks / OME-Zarr -> OME-Zarr 0.5/0.4 or OME-TIFF."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from omestream.cli.app import app, flag, in_cli_words
from omestream.convert import ConvertOptions, Source, convert
from omestream.errors import OmeStreamError, SettingsError
from omestream.settings import AcquisitionSettings

__all__ = ["convert_command", "parse_sizes"]


def parse_sizes(text: str | None, what: str) -> dict[str, int]:
    """``"z=1,y=256,x=256"`` -> dict; a bare number applies to y and x."""
    if not text:
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        name, _, value = part.rpartition("=")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise SettingsError(f"{what} {part!r}: expected NAME=SIZE with SIZE >= 1, e.g. y=256")
        for n in (name.strip().lower(),) if name else ("y", "x"):
            out[n] = size
    return out


# The Python API's advice, as this command's arguments and options say it
_CLI_WORDS = (
    ("use omestream.open_store(...) to change it", "choose another DST"),
    ("overwrite=True", "--overwrite"),
    ("root_path", "DST"),
    ("chunks=", "--chunk "),
    ("shards=", "--shard "),
    ("version=", "--version "),
)


@app.command("convert")
def convert_command(
    src: str = typer.Argument(
        ...,
        help="OME-TIFF (a file or a folder of them), TIFF stack or OME-Zarr (0.4/0.5) to read.",
    ),
    dst: str = typer.Argument(..., help="Output: *.ome.zarr (OME-Zarr) or *.ome.tiff (OME-TIFF)."),
    version: str | None = typer.Option(
        None, "--version", help="OME-Zarr version: 0.5 (default) or 0.4."
    ),
    chunk: str | None = typer.Option(
        None, "--chunk", help="Chunk sizes, e.g. 'z=1,y=256,x=256' or '256'."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="Chunks per shard (0.5), e.g. 'z=8,y=4,x=4'."
    ),
    compression: str = typer.Option(
        "auto",
        help="blosc-zstd, blosc-lz4, zstd, gzip, lzw (TIFF) or none; auto: blosc-zstd for "
        "OME-Zarr, zstd for OME-TIFF.",
    ),
    pyramid_levels: int | None = typer.Option(
        None,
        "--pyramid-levels",
        min=1,
        help="Resolution levels to compute anew (default: as in the source; an OME-Zarr source's levels are copied as they are into an OME-Zarr output).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Threads for reading and encoding."
    ),
    stack_axis: str = typer.Option(
        "z", "--stack-axis", help="What a plain TIFF page sequence is: z, t or c."
    ),
    overwrite: bool = flag(False, "--overwrite", help="Replace DST if it exists."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Convert a dataset chunk by chunk (bounded memory) with a live progress bar.

    Example: omestream convert stack.ome.tiff stack.ome.zarr --chunk z=1,y=512,x=512 --workers 4
    """
    if stack_axis not in ("z", "t", "c"):
        raise SettingsError(f"--stack-axis must be z, t or c, got {stack_axis!r}")
    opts = ConvertOptions(
        version=version,
        compression=None if compression.lower() == "none" else compression,
        chunks=parse_sizes(chunk, "--chunk"),
        shards=parse_sizes(shard, "--shard"),
        pyramid_levels=pyramid_levels,
        workers=workers,
        overwrite=overwrite,
        stack_axis=stack_axis,
    )
    console = Console(stderr=True, quiet=quiet)
    progress = Progress(
        TextColumn("[bold]converting"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    state: dict[str, float] = {"start": time.perf_counter()}
    # shown once the source is open and its frame count known
    task = progress.add_task("frames", total=None, rate="", visible=False)

    def on_start(source: Source, settings: AcquisitionSettings) -> None:
        progress.update(task, total=source.n_frames, visible=True)
        state["start"] = time.perf_counter()

    def on_frame(n: int, nbytes: int) -> None:
        if n % 8 and n != progress.tasks[0].total:
            return  # refreshing per frame costs more than small frames take
        dt = max(time.perf_counter() - state["start"], 1e-9)
        progress.update(
            task, completed=n, rate=f"{n / dt:.0f} frames/s, {nbytes / dt / 1e6:.0f} MB/s"
        )

    def on_stage(what: str) -> None:
        progress.console.print(f"{what} ...")

    try:
        with progress:
            settings = convert(
                src, dst, opts, progress=on_frame, on_start=on_start, on_stage=on_stage
            )
    except OmeStreamError as exc:
        in_cli_words(exc, _CLI_WORDS)
        raise
    elapsed = time.perf_counter() - state["start"]
    if not quiet:
        from omestream.cli.info import render_info
        from omestream.summary import describe

        console.print(f"wrote [bold]{settings.output_path}[/] in {elapsed:.2f} s")
        render_info(describe(settings.output_path), Console())
