"""The write engine's targets, checked against one run's results.

Every target compares two numbers *of the same round* (a case against that round's
limit, another writer, or the same writer on another workload), because the disk and
the host's CPU drift between rounds by more than many of the gaps measured. A target
is met when the median of those per-round ratios reaches its threshold; the range is
reported next to it. Peak memory is a bound, so there the worst round counts.

    python -m benchmarks.targets benchmarks/results/latest.json

re-evaluates a saved run (``python -m benchmarks`` prints the same table at its end).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from benchmarks.report import report_console, round_limits
from benchmarks.workloads import WORKLOADS, Workload

Against = str  # "disk", "codec", "case:<name>", "workload:<name>"


@dataclass(frozen=True)
class Target:
    label: str
    workload: str
    case: str
    against: Against = "disk"
    threshold: float = 1.0
    kind: Literal["ratio", "peak_rss_mb"] = "ratio"

    def describe(self) -> str:
        if self.kind == "peak_rss_mb":
            return f"peak RSS <= {self.threshold:.0f} MB"
        what, _, name = self.against.partition(":")
        if what == "case":
            other = name
        elif what == "workload":
            other = f"{self.case} on {name}"
        else:
            other = f"{what} limit"
        x = self.threshold
        return f">= {x:.1f}x {other}" if x == int(x) else f">= {x:g}x {other}"


TARGETS: tuple[Target, ...] = (
    Target("OME-Zarr, uncompressed", "big-raw", "omestream", "disk", 0.9),
    Target("OME-Zarr, uncompressed", "big-raw", "omestream", "case:tensorstore-zarr3"),
    Target("OME-Zarr, uncompressed", "big-raw", "omestream", "case:tensorstore-zarr2"),
    Target("OME-TIFF, uncompressed", "big-raw", "omestream-tiff", "disk", 0.95),
    Target("OME-Zarr, blosc-zstd", "big-zstd", "omestream", "codec", 0.8),
    Target("OME-Zarr, blosc-zstd", "big-zstd", "omestream", "case:tensorstore-zarr3", 1.3),
    Target("OME-Zarr, 512x512 frames", "small-fast", "omestream", "disk", 0.8),
    Target("OME-TIFF, 512x512 frames", "small-fast", "omestream-tiff", "disk", 0.95),
    Target("unbounded t, same workload", "big-raw", "omestream-unbounded", "case:omestream", 0.95),
    Target("unbounded t, own workload", "big-unbounded", "omestream", "workload:big-raw", 0.95),
    Target(
        "fresh buffer per frame", "fresh-buffers", "omestream", kind="peak_rss_mb", threshold=256
    ),
)


def evaluate(
    results: list[dict[str, Any]],
    workloads: dict[str, Workload],
    targets: tuple[Target, ...] = TARGETS,
) -> list[dict[str, Any]]:
    """One row per target: per-round values, their median and range, and a verdict.

    ``status`` is ``"met"``, ``"not met"`` or ``"not measured"`` (a case or workload
    the run did not include, or no round in which both sides succeeded).
    """
    ok = {(r["round"], r["workload"], r["case"]): r for r in results if r["status"] == "ok"}
    by_round: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_round[(r["round"], r["workload"])].append(r)
    rounds = sorted({r["round"] for r in results})
    out = []
    for t in targets:
        values: list[float] = []
        for rnd in rounds:
            mine = ok.get((rnd, t.workload, t.case))
            if mine is None:
                continue
            if t.kind == "peak_rss_mb":
                if mine.get("peak_rss_mb") is not None:
                    values.append(float(mine["peak_rss_mb"]))
                continue
            other = _reference(t, ok, by_round.get((rnd, t.workload), []), rnd, workloads)
            if other:
                values.append(mine["mb_s"] / other)
        row: dict[str, Any] = {
            "label": t.label,
            "workload": t.workload,
            "case": t.case,
            "kind": t.kind,
            "target": t.describe(),
            "threshold": t.threshold,
            "rounds": len(values),
            "values": values,
        }
        if not values:
            row |= {"value": None, "low": None, "high": None, "status": "not measured"}
        elif t.kind == "peak_rss_mb":
            worst = max(values)
            row |= {"value": worst, "low": min(values), "high": worst}
            row["status"] = "met" if worst <= t.threshold else "not met"
        else:
            mid = median(values)
            row |= {"value": mid, "low": min(values), "high": max(values)}
            row["status"] = "met" if mid >= t.threshold else "not met"
        out.append(row)
    return out


def _reference(
    t: Target,
    ok: dict[tuple[int, str, str], dict[str, Any]],
    round_rows: list[dict[str, Any]],
    rnd: int,
    workloads: dict[str, Workload],
) -> float | None:
    """What ``t``'s case is divided by in round ``rnd`` (None if not measured)."""
    what, _, name = t.against.partition(":")
    if what in ("disk", "codec"):
        w = workloads.get(t.workload)
        return round_limits(round_rows, w)[what] if w is not None and round_rows else None
    other = ok.get((rnd, t.workload, name) if what == "case" else (rnd, name, t.case))
    return other["mb_s"] if other else None


def print_targets(console: Console, rows: list[dict[str, Any]], quick: bool = False) -> None:
    """The measured targets as a table (targets this run did not cover are counted).

    A ``--quick`` run is a smoke test (a fifth of the frames, small enough for host
    caches to absorb): its rows are shown without a verdict.
    """
    measured = [r for r in rows if r["status"] != "not measured"]
    caption = "per-round ratios (same round, both sides): median and range; peak RSS: worst round"
    if quick:
        caption += "; --quick: no verdicts"
    if len(measured) < len(rows):
        caption += f"; {len(rows) - len(measured)} target(s) not covered by this run"
    table = Table(title="Targets", caption=caption, title_justify="left")
    for col in ("what", "workload", "case", "target", "median", "range", "rounds", "status"):
        table.add_column(col, justify="right" if col in ("median", "range", "rounds") else "left")
    for r in measured:
        fmt, unit = (".0f", " MB") if r["kind"] == "peak_rss_mb" else (_ratio_format(r), "x")
        color = "green" if r["status"] == "met" else "red"
        status = "[dim]quick run[/]" if quick else f"[{color}]{r['status']}[/]"
        table.add_row(
            r["label"],
            r["workload"],
            r["case"],
            r["target"],
            f"{r['value']:{fmt}}{unit}",
            f"{r['low']:{fmt}}-{r['high']:{fmt}}",
            str(r["rounds"]),
            status,
        )
    console.print(table)


def _ratio_format(row: dict[str, Any]) -> str:
    """Two decimals, or three where two would round the median onto the threshold
    (0.795x of a 0.8x target reads "0.80x", yet is not met)."""
    threshold = row.get("threshold")
    if threshold is not None and f"{row['value']:.2f}" == f"{threshold:.2f}":
        return ".3f"
    return ".2f"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.targets RESULTS.json", file=sys.stderr)
        return 2
    try:
        doc = json.loads(Path(argv[0]).read_text())
        runs = doc["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(
            f"{argv[0]}: not a results file of `python -m benchmarks` ({e!r}); "
            "pass the JSON written by --out",
            file=sys.stderr,
        )
        return 2
    rows = evaluate(runs, WORKLOADS)
    print_targets(report_console(), rows, quick=bool(doc.get("quick")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
