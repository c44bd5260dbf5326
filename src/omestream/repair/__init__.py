"""Find out what an interrupted acquisition left on disk and make it whole again.

``repair(path)`` reports the frames present and the last complete time point, trims
shapes to the data present, folds journaled frame metadata back into the attributes
and removes temporary files; ``report.resume()`` then continues the acquisition.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from omestream.errors import StoreFormatError
from omestream.io.locks import check_no_stream
from omestream.io.paths import missing
from omestream.repair.report import RepairReport
from omestream.repair.zarr import DEFAULT_IDLE_S, repair_zarr
from omestream.summary import is_tiff

__all__ = ["RepairReport", "repair"]


def _tiff_recovery() -> Any | None:
    """The OME-TIFF recovery function, when the OME-TIFF writer provides one."""
    try:
        module = importlib.import_module("omestream.tiff.recover")
    except ImportError:
        return None
    return getattr(module, "recover", None)


def repair(
    path: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    force: bool = False,
    idle_s: float = DEFAULT_IDLE_S,
    **options: Any,
) -> RepairReport:
    """Inspect an OME-Zarr or OME-TIFF dataset and repair what an interrupted writer left.

    ``dry_run`` only reports. A dataset an open stream holds is refused. One written to
    within the last ``idle_s`` seconds is refused too (its writer may still be running)
    unless ``force`` is given, or the stream that wrote it is known to be gone (its
    lock is free): a killed acquisition can be repaired at once.
    """
    location = os.fspath(path)
    if "://" not in location:
        if not os.path.exists(location):
            raise missing(location)
        # a running stream is no interrupted one, whatever --force says
        if not dry_run and check_no_stream(location, "repair it"):
            idle_s = 0.0
    if is_tiff(location):
        recover = _tiff_recovery()
        if recover is None:
            raise StoreFormatError(
                f"{location} is OME-TIFF, and this installation has no OME-TIFF recovery "
                "(omestream.tiff.recover)"
            )
        result = recover(location, dry_run=dry_run, **options)
        return (
            result if isinstance(result, RepairReport) else _from_tiff(location, result, dry_run)
        )
    if options:
        raise TypeError(f"unexpected options for OME-Zarr repair: {sorted(options)}")
    return repair_zarr(location, dry_run=dry_run, force=force, idle_s=idle_s)


def _from_tiff(path: str, result: Any, dry_run: bool) -> RepairReport:
    """Adapt a recovery result that is not a RepairReport (a mapping or an object)."""

    def get(name: str, default: Any = None) -> Any:
        if isinstance(result, dict):
            return result.get(name, default)
        return getattr(result, name, default)

    present = int(get("frames_present", get("frames", 0)) or 0)
    padded = int(get("padded", 0) or 0)
    final = bool(get("already_final", not get("interrupted", True)))
    changes = list(get("changes", []) or [])
    wrote, rewrote = ("write", "rewrite") if dry_run else ("wrote", "rewrote")
    if padded:
        changes.append(f"{wrote} {padded} fill plane(s) to complete the last time point")
    if not final:
        changes.append(f"{rewrote} the OME-XML to describe the planes present")
    return RepairReport(
        path=path,
        format="ome-tiff",
        interrupted=bool(get("interrupted", not final)),
        frames_expected=get("frames_expected"),
        frames_present=present,
        resume_at=int(get("resume_at", present) or 0),
        time_points_complete=int(get("time_points_complete", 0) or 0),
        metadata_records=int(get("metadata_records", 0) or 0),
        changes=changes,
        dry_run=dry_run,
        settings=get("settings"),
        details={"tiff": result},
    )
