"""Measurement helpers: RSS sampling, durability (fsync) and output size."""

from __future__ import annotations

import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def maxrss_bytes() -> int:
    """Peak RSS of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._proc = psutil.Process()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self._proc.memory_info().rss))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path, workers: int = 8) -> int:
    """fsync every file and directory below ``root``; returns the file count.

    Part of the timed region, so that every writer is measured until its data
    is durable whether or not it fsyncs by itself (already-synced files cost
    little).
    """
    files: list[str] = []
    dirs: list[str] = []
    for dirpath, _, names in os.walk(root):
        dirs.append(dirpath)
        files.extend(os.path.join(dirpath, n) for n in names)
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(_fsync_path, files))
    for d in reversed(dirs):
        _fsync_path(d, directory=True)
    _fsync_path(str(root.parent), directory=True)
    return len(files)


def tree_size(root: Path) -> tuple[int, int, int]:
    """(number of files, sum of file sizes, allocated bytes) below ``root``."""
    n = size = alloc = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            n += 1
            size += st.st_size
            alloc += st.st_blocks * 512
    return n, size, alloc
