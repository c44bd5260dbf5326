"""Check an OME-Zarr store or OME-TIFF dataset: omestream's structural checks plus
installed independent validators."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omestream.errors import StoreFormatError
from omestream.summary.nodes import read_tree
from omestream.validate.external import (
    TIFF_VALIDATORS,
    VALIDATORS,
    ValidatorResult,
    run_validators,
)
from omestream.validate.structure import Problem, check_structure
from omestream.validate.tiff import check_tiff

__all__ = [
    "TIFF_VALIDATORS",
    "VALIDATORS",
    "Problem",
    "ValidationReport",
    "ValidatorResult",
    "check_structure",
    "check_tiff",
    "run_validators",
    "validate_store",
]


@dataclass
class ValidationReport:
    path: str
    problems: list[Problem] = field(default_factory=list)
    validators: list[ValidatorResult] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No structural error and no failed validator (warnings do not count)."""
        return not self.errors and all(v.status != "failed" for v in self.validators)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "problems": [
                {"where": p.where, "message": p.message, "check": p.check, "severity": p.severity}
                for p in self.problems
            ],
            "validators": [
                {
                    "name": v.name,
                    "status": v.status,
                    "detail": v.detail,
                    "seconds": round(v.seconds, 3),
                }
                for v in self.validators
            ],
        }


def validate_store(
    location: str | os.PathLike[str],
    external: bool = True,
    on_step: Callable[[str], object] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ValidationReport:
    """Run the structural checks and (``external=True``) every installed validator.

    An OME-TIFF file (or folder of them, one per position) gets the checks of
    :mod:`omestream.validate.tiff` and the TIFF validators. Nothing raises: a location
    that is neither is a finding in the report. ``on_step`` is told what runs next:
    ``"structure"``, then each validator's name (they may take a minute on a plate of
    thousands of fields). ``storage_options`` (credentials, endpoint) for fsspec URLs
    such as ``s3://...``; without them the usual ``AWS_*`` variables apply.
    """
    from omestream.summary import is_tiff

    loc = os.fspath(location)
    report = ValidationReport(loc)
    if on_step is not None:
        on_step("structure")
    if is_tiff(loc):
        report.problems = check_tiff(loc)
        if external:
            report.validators = run_validators(loc, on_start=on_step, validators=TIFF_VALIDATORS)
        return report
    try:
        root = read_tree(loc, storage_options)
    except StoreFormatError as exc:
        report.problems.append(Problem(".", str(exc)))
        return report
    report.problems = check_structure(root)
    if external:
        report.validators = run_validators(loc, on_start=on_step, storage_options=storage_options)
    return report
