"""CLI: ``python -m benchmarks [--quick] [--only NAME ...] [--rounds N] [--out FILE]``."""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.cases import CASES, CaseInfo
from benchmarks.machine import describe, one_line
from benchmarks.orchestrate import REPO, SRC, Plan, make_pools, make_root, run_plan
from benchmarks.report import annotate, print_tables, report_console, summarize
from benchmarks.targets import evaluate, print_targets
from benchmarks.workloads import WORKLOADS, Workload


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="~5x fewer frames, 1 round")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="case and/or workload names or globs (e.g. 'omestream*' big-zstd)",
    )
    p.add_argument(
        "--no-limits",
        action="store_true",
        help="with --only: do not add the raw/codec limit cases",
    )
    p.add_argument("--rounds", type=int, help="rounds (default 3, --quick 1)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "latest.json",
        help="JSON output (default benchmarks/results/latest.json)",
    )
    p.add_argument("--dir", help="parent of the scratch directory (default: system tmp)")
    p.add_argument(
        "--pretouch-gb",
        type=float,
        default=3.0,
        help="memory to pre-touch before every case (0 disables)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="per-case timeout, seconds")
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the case order in each round (default: a new one per run, printed)",
    )
    p.add_argument("--list", action="store_true", help="list cases and workloads, then exit")
    return p.parse_args(argv)


def _match(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def select(args: argparse.Namespace) -> tuple[list[Workload], list[CaseInfo]]:
    workloads = list(WORKLOADS.values())
    cases = list(CASES.values())
    if args.only:
        unknown = [p for p in args.only if not any(_match(n, [p]) for n in [*WORKLOADS, *CASES])]
        if unknown:
            raise SystemExit(f"unknown case/workload: {', '.join(unknown)} (see --list)")
        if any(_match(n, args.only) for n in WORKLOADS):
            workloads = [w for w in workloads if _match(w.name, args.only)]
        if any(_match(n, args.only) for n in CASES):
            cases = [
                c
                for c in cases
                if _match(c.name, args.only) or (c.group == "limit" and not args.no_limits)
            ]
    if args.quick:
        workloads = [w.quick() for w in workloads]
    return workloads, cases


def main(argv: list[str]) -> int:
    args = parse(argv)
    console = report_console()
    if args.list:
        for c in CASES.values():
            console.print(f"case     {c.name:24s} [{c.group}] {c.description}")
        for w in WORKLOADS.values():
            console.print(f"workload {w.name:24s} {w.description}")
        return 0
    if (SRC / "omestream").is_dir() and str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # lets find_spec() see the work tree's package
    workloads, cases = select(args)
    rounds = args.rounds or (1 if args.quick else 3)
    root = make_root(args.dir)
    machine = describe(root, REPO)
    console.print(f"[bold]machine[/]: {one_line(machine)}")
    pkgs = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    console.print(f"[bold]packages[/]: {pkgs}; git {machine['git']}")
    console.print(
        f"scratch: {root}; {rounds} round(s); {len(workloads)} workload(s) x "
        f"{len(cases)} case(s); pre-touch {args.pretouch_gb} GB before each case"
    )
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    console.print(f"case order seed: {seed} (--seed {seed} repeats this run's order)")
    plan = Plan(workloads, cases, rounds, root, args.pretouch_gb, args.timeout, seed)
    started = time.time()
    try:
        pools = make_pools(plan)
        console.print(f"frame pools (blosc ratios on a 512x512 tile): {pools}")
        results = run_plan(plan, lambda r: console.print(_progress(r)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    wmap = {w.name: w for w in workloads}
    limits = annotate(results, wmap)
    summary = summarize(results)
    print_tables(console, summary, limits, wmap)
    targets = evaluate(results, wmap)
    print_targets(console, targets, quick=args.quick)
    doc = {
        "started": started,
        "elapsed_s": time.time() - started,
        "argv": argv,
        "rounds": rounds,
        "seed": seed,
        "quick": args.quick,
        "machine": machine,
        "pools": pools,
        "workloads": {w.name: w.to_dict() for w in workloads},
        "cases": {
            c.name: {
                "group": c.group,
                "target": c.target,
                "options": c.options,
                "description": c.description,
            }
            for c in cases
        },
        "limits": limits,
        "summary": summary,
        "targets": targets,
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    console.print(f"raw results: {args.out} ({time.time() - started:.0f} s total)")
    return 0


def _progress(r: dict[str, Any]) -> str:
    head = f"r{r['round']} {r['workload']:14s} {r['case']:24s}"
    if r["status"] != "ok":
        color = "yellow" if r["status"] == "skip" else "red"
        return f"{head} [{color}]{r['status']}[/]: {r.get('reason', '')[:200]}"
    return (
        f"{head} {r['mb_s']:8.1f} MB/s {r['fps']:8.1f} fps  +RSS {r['peak_rss_mb']:6.0f} MB"
        f"  ({r['seconds']:.2f} s, child {r['child_seconds']:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
