"""Independent validators (tools omestream did not write), used when installed.

Each returns a :class:`ValidatorResult`; a validator that is not installed is
``skipped`` with the line that installs it, never a failure.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TIFF_VALIDATORS", "VALIDATORS", "ValidatorResult", "run_validators"]

Status = Literal["passed", "failed", "skipped"]
Check = Callable[[str, dict[str, Any] | None], Any]  # (location, storage options)


@dataclass(frozen=True)
class ValidatorResult:
    name: str
    status: Status
    detail: str = ""
    seconds: float = 0.0  # how long it ran (large plates: a minute and more)


def _short(exc: BaseException, limit: int = 6) -> str:
    """The first lines of a (often very long) validation error."""
    lines = [ln.rstrip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = "\n".join(lines[:limit])
    if len(lines) > limit:
        text += f"\n… ({len(lines) - limit} more lines)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_group(path: str, storage_options: dict[str, Any] | None) -> Any:
    """The dataset's root group, read-only; URLs with their credentials (a validator
    given only the URL would read a private bucket anonymously and fail)."""
    import zarr

    if "://" in path:
        return zarr.open_group(path, mode="r", storage_options=storage_options or {})
    return zarr.open_group(path, mode="r")


def _ome_zarr_models(path: str, storage_options: dict[str, Any] | None = None) -> None:
    import ome_zarr_models

    group = _open_group(path, storage_options)
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    if isinstance(ome, dict) and "bioformats2raw.layout" in ome and "plate" not in ome:
        # open_ome_zarr does not try this layout: the root with its own model, then
        # each series as an image.
        if "ome" in attrs:
            from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw as Layout05

            Layout05.from_zarr(group)
        else:
            from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw as Layout04

            Layout04.from_zarr(group)
        if "OME" in group:
            # untrusted JSON: a malformed series list fails this validator
            series: dict[str, Any] = dict(group["OME"].attrs)
            for s in series.get("ome", series).get("series", []):
                ome_zarr_models.open_ome_zarr(group[s])
        return
    ome_zarr_models.open_ome_zarr(group)


def _yaozarrs(path: str, storage_options: dict[str, Any] | None = None) -> None:
    import yaozarrs

    if "://" not in path:
        yaozarrs.validate_zarr_store(path)
        return
    # it reads s3:// anonymously unless told otherwise: a private bucket would fail
    options = dict(storage_options or {})
    if path.startswith("s3://"):
        options.setdefault("anon", False)
    yaozarrs.validate_zarr_store(yaozarrs.open_group(path, storage_options=options))


def _ome_schema(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Each file's OME-XML against the OME schema (ome-types, with lxml)."""
    import tifffile
    from ome_types import validate_xml

    from omestream.summary import tiff_files

    for file in tiff_files(path):
        with tifffile.TiffFile(file) as tif:
            xml = tif.ome_metadata
        if not xml:
            raise ValueError(f"{os.path.basename(file)} has no OME-XML")
        try:
            validate_xml(xml)
        except Exception as exc:
            raise ValueError(f"{os.path.basename(file)}: {exc}") from exc


def _tifffile(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """tifffile reads each file's OME series, and their first and last planes."""
    import tifffile

    from omestream.summary import tiff_files

    for file in tiff_files(path):
        name = os.path.basename(file)
        with tifffile.TiffFile(file) as tif:
            series = tif.series
            if not series or any(s.kind.lower() != "ome" for s in series):
                kinds = sorted({s.kind for s in series})
                raise ValueError(f"{name}: tifffile did not read OME series (got {kinds})")
            for s in series:
                pages = [p for p in s.pages if p is not None]
                for page in {id(p): p for p in (pages[0], pages[-1])}.values():
                    page.asarray()  # type: ignore[union-attr]  # TiffFrames decode too


# name -> (module to find, pip requirement, check)
VALIDATORS: dict[str, tuple[str, str, Check]] = {
    "ome-zarr-models": ("ome_zarr_models", "ome-zarr-models", _ome_zarr_models),
    "yaozarrs": ("yaozarrs", "yaozarrs[io]", _yaozarrs),
}
# The same for OME-TIFF: the OME schema needs lxml (or xmlschema) next to ome-types.
TIFF_VALIDATORS: dict[str, tuple[str, str, Check]] = {
    "ome-types (OME schema)": ("lxml", "lxml", _ome_schema),
    "tifffile": ("tifffile", "tifffile", _tifffile),
}


def run_validators(
    path: str,
    names: list[str] | None = None,
    on_start: Callable[[str], object] | None = None,
    validators: dict[str, tuple[str, str, Check]] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[ValidatorResult]:
    """Run each installed validator (default: the OME-Zarr ones) on the dataset at
    ``path`` (``storage_options`` for URLs); ``on_start`` is called with each one's
    name before it runs."""
    results = []
    for name, (module, requirement, check) in (validators or VALIDATORS).items():
        if names is not None and name not in names:
            continue
        if importlib.util.find_spec(module) is None:
            results.append(
                ValidatorResult(name, "skipped", f"not installed (pip install {requirement})")
            )
            continue
        if on_start is not None:
            on_start(name)
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(path, storage_options)
        except Exception as exc:
            status: Status = "failed"
            detail = _short(exc)
        else:
            status, detail = "passed", ""
        results.append(ValidatorResult(name, status, detail, time.perf_counter() - began))
    return results
