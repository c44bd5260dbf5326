"""The background sync of streamed files (omestream.io.durability), on real files."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omestream.io import durability
from omestream.io.durability import BackgroundSync, drop_cached, settle_and_drop, syncfs
from tests.page_cache import require_droppable_cache, resident_pages
from tests.polling import wait_until

MB = 1 << 20


def test_syncs_once_enough_bytes_are_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = durability._syncfs_fd

    def counting(fd: int) -> bool:
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(durability, "_syncfs_fd", counting)
    root = tmp_path / "later"  # does not exist yet when the syncer starts
    syncer = BackgroundSync(str(root), threshold=1 << 20, interval=60, warmup=0)
    root.mkdir()
    (root / "a").write_bytes(b"x" * (1 << 20))
    syncer.note(1 << 20, str(root / "a"))
    assert wait_until(lambda: len(calls) == 1)
    syncer.note(10)  # below the threshold and long before the interval: no sync yet
    time.sleep(0.1)
    assert len(calls) == 1
    syncer.close()
    assert not syncer._thread.is_alive()


def test_pending_bytes_are_synced_after_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(durability, "_syncfs_fd", lambda fd: calls.append(fd) or True)
    syncer = BackgroundSync(str(tmp_path), threshold=1 << 30, interval=0.05, warmup=0)
    syncer.note(1)
    assert wait_until(lambda: len(calls) >= 1)
    syncer.close()


def test_a_short_burst_is_left_to_the_final_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(durability, "_syncfs_fd", lambda fd: calls.append(fd) or True)
    syncer = BackgroundSync(str(tmp_path), threshold=1, interval=0.01, warmup=1.0)
    syncer.note(100)
    time.sleep(0.1)
    assert calls == []  # still warming up
    assert wait_until(lambda: len(calls) == 1)  # then the pending bytes are synced
    syncer.close()


def test_without_syncfs_the_noted_files_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durability, "_have_syncfs", lambda: False)
    synced: list[str] = []
    real = durability._fsync_quietly
    monkeypatch.setattr(durability, "_fsync_quietly", lambda p: (synced.append(p), real(p)))
    syncer = BackgroundSync(str(tmp_path), threshold=1, interval=60, warmup=0)
    files = [tmp_path / f"f{i}" for i in range(3)]
    for f in files:
        f.write_bytes(b"data")
        syncer.note(4, str(f))
    (tmp_path / "gone").write_bytes(b"x")
    syncer.note(1, str(tmp_path / "gone"))
    os.unlink(tmp_path / "gone")  # replaced or removed before its turn: skipped quietly
    assert wait_until(lambda: len(synced) == 4)
    syncer.close()
    assert sorted(synced) == sorted([*map(str, files), str(tmp_path / "gone")])


def test_syncfs_of_a_missing_path_still_syncs(tmp_path: Path) -> None:
    syncfs(str(tmp_path / "missing"))  # falls back to a whole-system sync, no error
    syncfs(str(tmp_path))


def _pattern(nbytes: int) -> bytes:
    return bytes(range(256)) * (nbytes // 256)


@contextlib.contextmanager
def _written(path: Path, data: bytes) -> Iterator[int]:
    """An open descriptor of ``path`` just after ``data`` was written to it."""
    require_droppable_cache(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        yield fd
    finally:
        os.close(fd)


def test_drop_cached_frees_the_pages_of_a_synced_file(tmp_path: Path) -> None:
    path, data = tmp_path / "synced", _pattern(8 * MB)
    with _written(path, data) as fd:
        os.fsync(fd)
        assert resident_pages(path) > 0  # just written: cached
        drop_cached(fd)
    assert resident_pages(path) == 0
    assert path.read_bytes() == data  # read back from the disk


def test_settle_and_drop_frees_only_the_range_behind(tmp_path: Path) -> None:
    """A growing file: the range far behind its end is settled and dropped, the
    recent bytes stay cached (and dirty) for the writer."""
    path, data = tmp_path / "growing", _pattern(12 * MB)
    with _written(path, data) as fd:
        settle_and_drop(fd, 0, 8 * MB)  # no fsync before: it waits for writeback itself
        settle_and_drop(fd, 8 * MB, 8 * MB)  # an empty range does nothing
        assert resident_pages(path, 0, 8 * MB) == 0
        assert resident_pages(path, 8 * MB) == 4 * MB // os.sysconf("SC_PAGE_SIZE")
        os.write(fd, b"tail")
    assert path.read_bytes() == data + b"tail"
