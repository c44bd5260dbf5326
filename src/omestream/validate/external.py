"""Independent validators (tools omestream did not write), used when installed.

Each returns a :class:`ValidatorResult`; a validator that is not installed is
``skipped`` with the line that installs it, never a failure.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["VALIDATORS", "ValidatorResult", "run_validators"]

Status = Literal["passed", "failed", "skipped"]


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


def _ome_zarr_models(path: str) -> None:
    import ome_zarr_models
    import zarr

    group = zarr.open_group(path, mode="r")
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


def _yaozarrs(path: str) -> None:
    import yaozarrs

    yaozarrs.validate_zarr_store(path)


# name -> (module to find, pip requirement, check)
VALIDATORS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "ome-zarr-models": ("ome_zarr_models", "ome-zarr-models", _ome_zarr_models),
    "yaozarrs": ("yaozarrs", "yaozarrs[io]", _yaozarrs),
}


def run_validators(
    path: str,
    names: list[str] | None = None,
    on_start: Callable[[str], object] | None = None,
) -> list[ValidatorResult]:
    """Run each installed validator on the OME-Zarr store at ``path``; ``on_start`` is
    called with each one's name before it runs."""
    results = []
    for name, (module, requirement, check) in VALIDATORS.items():
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
                check(path)
        except Exception as exc:
            status: Status = "failed"
            detail = _short(exc)
        else:
            status, detail = "passed", ""
        results.append(ValidatorResult(name, status, detail, time.perf_counter() - began))
    return results
