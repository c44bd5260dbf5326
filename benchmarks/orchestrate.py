"""Parent process: pools, pre-touch, round-robin rounds of child processes."""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cases import CaseInfo
from benchmarks.workloads import Workload

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"


@dataclass
class Plan:
    workloads: list[Workload]
    cases: list[CaseInfo]
    rounds: int
    root: Path  # scratch dir (pools + per-case outputs), removed at the end
    pretouch_gb: float = 3.0
    timeout: float = 900.0
    seed: int = 0  # of the case order (see case_order)


def child_env() -> dict[str, str]:
    """Environment for children: the work tree's ``src`` goes on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(REPO)]
    if (SRC / "omestream").is_dir():
        paths.insert(0, str(SRC))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _python(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=REPO,
        check=False,
    )


def pretouch(gb: float) -> dict[str, Any]:
    if gb <= 0:
        return {}
    proc = _python(["-m", "benchmarks.pretouch", str(gb)], timeout=300)
    return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-500:]}


def settle(path: Path) -> None:
    """Untimed: flush the deletion of the last output (journal, discards) so it
    does not slow down the next case.  Uses syncfs() on the scratch filesystem."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


def make_pools(plan: Plan) -> dict[str, Any]:
    """Generate each distinct frame pool once, in a child; return its stats."""
    stats: dict[str, Any] = {}
    for w in plan.workloads:
        key = f"{w.height}x{w.width}x{w.pool_size}"
        if key not in stats:
            args = [str(plan.root), str(w.height), str(w.width), str(w.pool_size)]
            proc = _python(["-m", "benchmarks.frames", *args], timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"frame pool generation failed:\n{proc.stderr}")
            stats[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return stats


def run_one(plan: Plan, case: CaseInfo, w: Workload, rnd: int) -> dict[str, Any]:
    out = plan.root / f"r{rnd}-{w.name}-{case.name}"
    result_path = plan.root / f"r{rnd}-{w.name}-{case.name}.json"
    spec = {
        "case": case.name,
        "workload": w.to_dict(),
        "out": str(out),
        "pool_dir": str(plan.root),
        "result": str(result_path),
    }
    touch = pretouch(plan.pretouch_gb)
    t0 = time.perf_counter()
    try:
        proc = _python(["-m", "benchmarks.run_case", json.dumps(spec)], plan.timeout)
        if result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            tail = (proc.stderr or proc.stdout)[-2000:]
            result = {"status": "error", "reason": f"child exited {proc.returncode}: {tail}"}
    except subprocess.TimeoutExpired:
        result = {"status": "error", "reason": f"timeout after {plan.timeout:.0f} s"}
    finally:
        shutil.rmtree(out, ignore_errors=True)
        result_path.unlink(missing_ok=True)
        settle(plan.root)
    result["child_seconds"] = time.perf_counter() - t0
    result["pretouch"] = touch
    return result


def run_plan(plan: Plan, on_result: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Every round runs each (workload, case) once, in the order of :func:`case_order`."""
    results: list[dict[str, Any]] = []
    skipped: dict[tuple[str, str], str] = {}
    for rnd in range(plan.rounds):
        for w in plan.workloads:
            for case in case_order(plan.cases, rnd, w.name, plan.seed):
                base: dict[str, Any] = {
                    "round": rnd,
                    "workload": w.name,
                    "case": case.name,
                    "group": case.group,
                }
                reason = (
                    skipped.get((w.name, case.name))
                    or skipped.get(("*", case.name))
                    or case.skip_reason(w)
                )
                if reason:
                    skipped[(w.name, case.name)] = reason
                    if rnd == 0:
                        on_result(base | {"status": "skip", "reason": reason})
                        results.append(base | {"status": "skip", "reason": reason})
                    continue
                res = base | run_one(plan, case, w, rnd)
                if res["status"] == "skip":
                    scope = "*" if res.get("all_workloads") else w.name
                    skipped[(scope, case.name)] = res["reason"]
                results.append(res)
                on_result(res)
    return results


def case_order(cases: list[CaseInfo], rnd: int, workload: str, seed: int = 0) -> list[CaseInfo]:
    """The cases of one round of one workload, shuffled by ``seed``, the round and
    the workload (the same seed gives the same order).

    Why not rotate the list by one per round: every case then follows the same
    neighbour in every round, and a neighbour that leaves the machine in a worse
    state (a large deleted output, memory handed back to the host) would bias the
    same case in every round, so the rounds would not be independent samples. Why a
    new seed per run: with a fixed one, every run repeated the same orders, so such
    a bias would also repeat from run to run.
    """
    order = list(cases)
    random.Random(f"{seed}:{rnd}:{workload}").shuffle(order)
    return order


def make_root(parent: str | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="omestream-bench-", dir=parent))
    spread_outputs(root)
    return root


# ext4's "top directory" attribute (chattr +T): the inode allocator then places each
# new subdirectory, i.e. each case's output, in a block group of its own choosing
# rather than next to the last one.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def spread_outputs(root: Path) -> bool:
    """Ask the file system to put each case's output away from the previous one's.

    Why: without a journal (this VM's ext4 has none), ext4 does not reuse an inode
    freed in the last minutes, and checks every such inode it passes while looking
    for a free one. Each case's output is deleted right before the next case runs, so
    a case creating hundreds of files and directories (every Zarr writer) scanned
    past all the inodes of the previous case: ~0.2-0.4 s of kernel time per
    200-frame stream, growing with every case, against ~0.1 s in a fresh area.
    The cases that write one file, and the codec limit, never paid it. With the
    attribute, each output goes to a block group where nothing was just freed.
    Best effort: elsewhere (other file systems, no permission) nothing changes.
    """
    try:
        import array
        import fcntl

        fd = os.open(root, os.O_RDONLY)
    except (ImportError, OSError):
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] |= _FS_TOPDIR_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
