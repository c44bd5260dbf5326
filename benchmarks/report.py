"""Aggregation (per-round limits and ratios, medians) and rich tables."""

from __future__ import annotations

import sys
from collections import defaultdict
from statistics import median
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.workloads import Workload

DISK_CASES = ("raw-buffered", "raw-direct")
# the same Blosc codec from two builds; the limit is the faster (see cases/codec.py)
CODEC_CASES = ("codec-limit", "codec-limit-blosc2")


def report_console() -> Console:
    """A console for the tables: the terminal's width, or 150 columns into a file."""
    return Console(width=None if sys.stdout.isatty() else 150)


def round_limits(rows: list[dict[str, Any]], w: Workload) -> dict[str, float | None]:
    """Limits of one (round, workload) from that round's limit cases.

    disk = faster raw case; for compressed workloads also codec (blosc-zstd on
    all cores, the faster build), its ratio, and limit = min(codec, disk * ratio).
    """
    ok = {r["case"]: r for r in rows if r["status"] == "ok"}
    disk = max((ok[c]["mb_s"] for c in DISK_CASES if c in ok), default=None)
    lim: dict[str, float | None] = {"disk": disk, "codec": None, "ratio": None, "limit": disk}
    codecs = [ok[c] for c in CODEC_CASES if c in ok]
    if w.compressed and codecs:
        fastest = max(codecs, key=lambda r: r["mb_s"])
        codec = fastest["mb_s"]
        ratio = fastest["extra"]["compression_ratio"]
        lim |= {"codec": codec, "ratio": ratio}
        lim["limit"] = min(codec, disk * ratio) if disk else codec
    return lim


def annotate(results: list[dict[str, Any]], workloads: dict[str, Workload]) -> dict[str, Any]:
    """Add per-round ratios to each ok result; return per-round limits."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(r["round"], r["workload"])].append(r)
    limits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (rnd, wname), rows in sorted(groups.items()):
        lim = round_limits(rows, workloads[wname])
        limits[wname].append({"round": rnd} | lim)
        base = {
            r["case"]: r["mb_s"] for r in rows if r["status"] == "ok" and r["group"] == "baseline"
        }
        for r in rows:
            if r["status"] != "ok":
                continue
            if lim["limit"]:
                r["ratio_limit"] = r["mb_s"] / lim["limit"]
            others = {c: v for c, v in base.items() if c != r["case"]}
            if others and r["group"] != "limit":
                best = max(others, key=others.__getitem__)
                r["best_alt"] = best
                r["ratio_best_alt"] = r["mb_s"] / others[best]
    return dict(limits)


def _med(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return median(vals) if vals else None


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians over rounds per (workload, case)."""
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by[r["workload"]][r["case"]].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for wname, cases in by.items():
        out[wname] = {}
        for case, rows in cases.items():
            ok = [r for r in rows if r["status"] == "ok"]
            s: dict[str, Any] = {
                "group": rows[0]["group"],
                "ok_rounds": len(ok),
                "rounds": len(rows),
            }
            for key in (
                "mb_s",
                "fps",
                "peak_rss_mb",
                "maxrss_delta_mb",
                "cpu_seconds",
                "ratio_limit",
                "ratio_best_alt",
                "bytes_on_disk",
            ):
                s[key] = _med(ok, key)
            cores = [c for r in ok if (c := _cores(r)) is not None]
            s["cores"] = median(cores) if cores else None
            bad = [r for r in rows if r["status"] != "ok"]
            if bad:
                s["status"] = bad[-1]["status"]
                s["reason"] = bad[-1].get("reason", "")
            notes = {str(r.get("extra", {}).get("note", "")) for r in ok} - {""}
            s["note"] = "; ".join(sorted(notes))
            out[wname][case] = s
    return out


def _cores(r: dict[str, Any]) -> float | None:
    """Cores kept busy: the case process's CPU time over the timed wall time. On a
    CPU-bound workload it tells a writer that idles from one that does more work."""
    cpu, secs = r.get("cpu_seconds"), r.get("seconds")
    return cpu / secs if cpu is not None and secs else None


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def print_tables(
    console: Console,
    summary: dict[str, dict[str, dict[str, Any]]],
    limits: dict[str, list[dict[str, Any]]],
    workloads: dict[str, Workload],
) -> None:
    for wname, cases in summary.items():
        w = workloads[wname]
        lim = limits.get(wname, [])
        disk = _med(lim, "disk")
        title = f"{wname}: {w.count} x {w.height}x{w.width} u16, {w.total_bytes / 1e6:.0f} MB"
        cap = f"disk limit {_f(disk, '.0f')} MB/s"
        if w.compressed:
            cap += (
                f", codec limit {_f(_med(lim, 'codec'), '.0f')} MB/s at ratio "
                f"{_f(_med(lim, 'ratio'), '.2f')}, limit = min(codec, disk x ratio) "
                f"= {_f(_med(lim, 'limit'), '.0f')} MB/s"
            )
        t = Table(title=title, caption=cap + " (medians over rounds)", title_justify="left")
        for col in ("case", "MB/s", "frames/s", "peak RSS MB", "cores", "x limit", "x best alt"):
            t.add_column(col, justify="left" if col == "case" else "right")
        t.add_column("note", overflow="fold", max_width=60)
        for case, s in cases.items():
            if s["ok_rounds"] == 0:
                t.add_row(
                    case,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"{s['status']}: {s['reason'][:300]}",
                    style="dim" if s["status"] == "skip" else "red",
                )
                continue
            note = s["note"]
            if s.get("status"):
                note += f" [{s['status']} in some rounds: {s['reason'][:120]}]"
            t.add_row(
                case,
                _f(s["mb_s"], ".0f"),
                _f(s["fps"], ".1f"),
                _f(s["peak_rss_mb"], ".0f"),
                _f(s["cores"], ".2f"),
                _f(s["ratio_limit"], ".2f"),
                _f(s["ratio_best_alt"], ".2f"),
                note,
                style="bold" if s["group"] == "omestream" else None,
            )
        console.print(t)
