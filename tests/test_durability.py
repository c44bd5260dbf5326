"""The background sync of streamed files (omestream.io.durability), on real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from omestream.io import durability
from omestream.io.durability import BackgroundSync, syncfs


def _wait_until(check: object, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


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
    assert _wait_until(lambda: len(calls) == 1)
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
    assert _wait_until(lambda: len(calls) >= 1)
    syncer.close()


def test_a_short_burst_is_left_to_the_final_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(durability, "_syncfs_fd", lambda fd: calls.append(fd) or True)
    syncer = BackgroundSync(str(tmp_path), threshold=1, interval=0.01, warmup=0.3)
    syncer.note(100)
    time.sleep(0.1)
    assert calls == []  # still warming up
    assert _wait_until(lambda: len(calls) == 1)  # then the pending bytes are synced
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
    assert _wait_until(lambda: len(synced) == 4)
    syncer.close()
    assert sorted(synced) == sorted([*map(str, files), str(tmp_path / "gone")])


def test_syncfs_of_a_missing_path_still_syncs(tmp_path: Path) -> None:
    syncfs(str(tmp_path / "missing"))  # falls back to a whole-system sync, no error
    syncfs(str(tmp_path))
