"""Pluggable case for omestream's public API (and the look-alike ome-writers).

    from omestream import AcquisitionSettings, Dimension, create_stream
    settings = AcquisitionSettings(
        root_path=str(path) + ".ome.zarr",           # or ".ome.tiff"
        dimensions=[
            Dimension(name="t", count=N or None, chunk_size=ct, type="time"),
            Dimension(name="y", count=H, chunk_size=cy, shard_size_chunks=sy),
            Dimension(name="x", count=W, chunk_size=cx, shard_size_chunks=sx),
        ],
        dtype="uint16",
        compression=None or "blosc-zstd",
        format={"name": "ome-zarr", "backend": BACKEND},  # or "ome-tiff"
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)

``shard_size_chunks`` is passed only for sharded zarr workloads (never for
OME-TIFF, whose compressed workloads ask for ``compression="zstd"``); the
leading dimension is ``z`` with ``type="space"`` for the z-stack workload.  Import
errors and ``NotImplementedError`` become skips; anything else is reported as
an error of this case only.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from types import ModuleType
from typing import Any

from benchmarks.context import CaseContext, RunFn, Skip
from benchmarks.workloads import Workload


def _dimensions(mod: ModuleType, w: Workload, sharded: bool) -> list[Any]:
    lead: dict[str, Any] = {
        "name": w.axis,
        "count": None if w.unbounded else w.count,
        "chunk_size": w.chunk[0],
        "type": "time" if w.axis == "t" else "space",
    }
    if sharded and w.shard_chunks and w.shard_chunks[0] != 1:
        lead["shard_size_chunks"] = w.shard_chunks[0]
    dims = [mod.Dimension(**lead)]
    for i, (name, size) in enumerate((("y", w.height), ("x", w.width)), start=1):
        kw: dict[str, Any] = {"name": name, "count": size, "chunk_size": w.chunk[i]}
        if sharded and w.shard_chunks:
            kw["shard_size_chunks"] = w.shard_chunks[i]
        dims.append(mod.Dimension(**kw))
    return dims


def omestream_case(
    ctx: CaseContext,
    module: str = "omestream",
    backend: str = "omestream",
    format: str = "ome-zarr",
    writer: dict[str, Any] | None = None,
    unbounded: bool = False,
) -> RunFn:
    try:
        mod = importlib.import_module(module)
        create_stream = mod.create_stream
    except (ImportError, AttributeError) as e:
        raise Skip(f"{module} API not available: {e}") from e
    w = replace(ctx.workload, unbounded=True) if unbounded else ctx.workload
    tiff = format == "ome-tiff"
    settings = mod.AcquisitionSettings(
        root_path=str(ctx.out / "data") + (".ome.tiff" if tiff else ".ome.zarr"),
        dimensions=_dimensions(mod, w, sharded=not tiff),
        dtype=w.dtype,
        compression=("zstd" if tiff else "blosc-zstd") if w.compressed else None,
        format="ome-tiff" if tiff else {"name": "ome-zarr", "backend": backend},
        overwrite=True,
        **({"writer": writer} if writer else {}),  # omestream WriterOptions knobs
    )
    # Like every other case, imports happen before timing: omestream imports zarr and
    # ome-types on first use (so `import omestream` stays fast); do that use now.
    # The same for the engine's own library (tensorstore's import alone takes ~0.5 s).
    engines = getattr(getattr(mod, "settings", None), "ENGINES", {})  # omestream's table
    engine = engines.get(backend)
    for lib in ("zarr", "ome_types", "tifffile", *([engine.module] if engine else [])):
        try:
            importlib.import_module(lib)
        except ImportError as e:
            raise Skip(f"engine {backend!r} needs {lib}, which is not installed") from e
    # omestream's own engine module is imported on first use too (27 ms for OME-TIFF's)
    try:
        registry = importlib.import_module(f"{module}.backends.registry")
    except ImportError:
        registry = None  # another package's API (ome-writers)
    if registry is not None:
        registry.load_engine("tifffile" if tiff else backend)
    info = {"module": module, "version": str(getattr(mod, "__version__", "?"))}
    info["file"] = str(getattr(mod, "__file__", "?"))

    def run() -> dict[str, Any]:
        with create_stream(settings) as stream:
            for frame in ctx.frames():
                stream.append(frame)
        return info

    return run
