"""Child process: ``python -m benchmarks.run_case '<json spec>'``.

Spec keys: ``case``, ``workload`` (dict), ``out`` (empty dir, this case's),
``pool_dir`` (frame cache) and ``result`` (path of the JSON result to write).

Sequence: imports -> load frame pool -> case setup -> gc -> baseline RSS ->
[timed: writes + close + fsync of every output file] -> sizes -> cleanup.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.cases import CASES
from benchmarks.context import CaseContext, RunFn, Skip
from benchmarks.frames import load_pool
from benchmarks.measure import RssSampler, maxrss_bytes, rss_bytes, sync_tree, tree_size
from benchmarks.workloads import Workload

MB = 1e6


def _resolve(target: str) -> Any:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _failure(e: BaseException) -> dict[str, Any]:
    if isinstance(e, Skip | NotImplementedError | ImportError):
        kind = "not implemented: " if isinstance(e, NotImplementedError) else ""
        reason = kind + (str(e) or type(e).__name__)
        # an import failure does not depend on the workload: skip everywhere
        return {"status": "skip", "reason": reason, "all_workloads": _is_import(e)}
    tb = traceback.format_exception(e)
    return {"status": "error", "reason": f"{type(e).__name__}: {e}", "traceback": "".join(tb)}


def _is_import(e: BaseException | None) -> bool:
    while e is not None:
        if isinstance(e, ImportError):
            return True
        e = e.__cause__ or e.__context__
    return False


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    info = CASES[spec["case"]]
    w = Workload.from_dict(spec["workload"])
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    pool = load_pool(Path(spec["pool_dir"]), w.height, w.width, w.pool_size)
    ctx = CaseContext(workload=w, pool=pool, out=out)
    try:
        run: RunFn = _resolve(info.target)(ctx, **info.options)
    except BaseException as e:
        return _failure(e)
    gc.collect()
    base_rss, base_max = rss_bytes(), maxrss_bytes()
    cpu0 = os.times()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        try:
            extra = run() or {}
            t_closed = time.perf_counter()
            n_synced = sync_tree(out)
        except BaseException as e:
            return _failure(e)
        t1 = time.perf_counter()
    cpu1 = os.times()
    seconds = t1 - t0
    n_files, size, alloc = tree_size(out)
    return {
        "status": "ok",
        "seconds": seconds,
        "close_seconds": t_closed - t0,
        "fsync_seconds": t1 - t_closed,
        "mb_s": w.total_bytes / MB / seconds,
        "fps": w.count / seconds,
        "bytes": w.total_bytes,
        "frames": w.count,
        "cpu_seconds": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "baseline_rss_mb": base_rss / MB,
        "peak_rss_mb": max(0, sampler.peak - base_rss) / MB,
        "maxrss_delta_mb": max(0, maxrss_bytes() - base_max) / MB,
        "rss_samples": sampler.samples,
        "files": n_files,
        "files_synced": n_synced,
        "bytes_on_disk": size,
        "allocated_on_disk": alloc,
        "extra": extra,
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        result = measure(spec)
    except BaseException as e:
        result = _failure(e)
    finally:
        shutil.rmtree(spec["out"], ignore_errors=True)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
