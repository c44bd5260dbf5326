"""Machine description: CPU, RAM, target filesystem, Python and packages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

PACKAGES = (
    "numpy",
    "numcodecs",
    "zarr",
    "tensorstore",
    "acquire-zarr",
    "tifffile",
    "imagecodecs",
    "psutil",
    "rich",
    "ome-writers",
    "omestream",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _filesystem(path: Path) -> dict[str, Any]:
    path = path.resolve()
    best = None
    for part in psutil.disk_partitions(all=True):
        mp = Path(part.mountpoint)
        if (path == mp or mp in path.parents) and (
            best is None or len(part.mountpoint) > len(best.mountpoint)
        ):
            best = part
    usage = psutil.disk_usage(str(path))
    info: dict[str, Any] = {"path": str(path), "free_gb": usage.free / 1e9}
    if best is not None:
        info |= {
            "mountpoint": best.mountpoint,
            "device": best.device,
            "fstype": best.fstype,
            "opts": best.opts,
        }
    return info


def _git_rev(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    rev = out.stdout.strip() or "no commits"
    return rev + (" (dirty)" if dirty.stdout.strip() else "")


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def describe(target: Path, repo: Path) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": vm.total / 1e9,
        "ram_available_gb": vm.available / 1e9,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "filesystem": _filesystem(target),
        "packages": {p: _version(p) for p in PACKAGES},
        "git": _git_rev(repo),
    }


def one_line(m: dict[str, Any]) -> str:
    fs = m["filesystem"]
    return (
        f"{m['cpu_model']} | {m['logical_cores']} logical / {m['physical_cores']} "
        f"physical cores | {m['ram_gb']:.1f} GB RAM | {fs.get('fstype', '?')} on "
        f"{fs.get('device', '?')} ({fs['path']}) | Linux {m['kernel']} | "
        f"Python {m['python']}"
    )
