"""A disk that fills up or turns read-only in the middle of a stream.

The test mounts its own small tmpfs (root is needed; otherwise the storage layer
gets an injected OSError instead). ``append``/``close`` must raise a WriteError that
names the path, and what was written before must still read back.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

import omestream
from omestream import AcquisitionSettings, Dimension, StoreExistsError, WriteError, create_stream
from omestream.io import kv as kv_module
from tests.cases import frame_for
from tests.checks import validate_ome_zarr

SHAPE = (256, 256)  # 128 KiB per uint16 frame: a 4 MiB disk fills after ~30 frames


def _mount(target: Path, options: str) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


def _remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, bool]]:
    """A 4 MiB file system; the bool says whether it is a real mount."""
    target = tmp_path / "disk"
    target.mkdir()
    allowed = os.geteuid() == 0 and not os.environ.get("OMESTREAM_TEST_NO_MOUNT")
    mounted = allowed and _mount(target, "size=4m")
    if not mounted:
        _inject_enospc(monkeypatch, limit=4 * 2**20)
    try:
        yield target, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)


def _inject_enospc(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Fallback: the storage layer fails with ENOSPC after ``limit`` bytes."""
    written = [0]
    original = kv_module.LocalKV.set_parts

    def set_parts(self, key, parts, **kw):  # type: ignore[no-untyped-def]
        parts = list(parts)  # documents may come as pieces made while written
        written[0] += sum(len(memoryview(p).cast("B")) for p in parts)
        if written[0] > limit:
            raise kv_module._write_error(
                OSError(errno.ENOSPC, "No space left on device"), self.path(key)
            )
        return original(self, key, parts, **kw)

    monkeypatch.setattr(kv_module.LocalKV, "set_parts", set_parts)


def _settings(root: Path, **kw: object) -> AcquisitionSettings:
    dims = [Dimension(name="t", count=None), Dimension(name="y", count=SHAPE[0]),
            Dimension(name="x", count=SHAPE[1])]  # fmt: skip
    return AcquisitionSettings(root_path=str(root), dimensions=dims, dtype="uint16", **kw)


def test_disk_full_mid_stream(small_disk: tuple[Path, bool]) -> None:
    disk, mounted = small_disk
    s = _settings(disk / "full.ome.zarr")
    stream = create_stream(s)
    flushed = 0  # frames known to be on disk
    error: WriteError | None = None
    try:
        for n in range(200):
            stream.append(frame_for(n, SHAPE, "uint16"), metadata={"n": n})
            if n % 4 == 3:
                stream.flush()
                stream._backend.flush(wait=True)  # type: ignore[attr-defined]
                flushed = n + 1
    except WriteError as exc:
        error = exc
    try:
        stream.close()
    except WriteError as exc:
        error = error or exc
    assert error is not None, "the disk never filled up"
    assert error.errno == errno.ENOSPC
    assert "disk is full" in str(error) and str(disk) in str(error), str(error)
    assert flushed >= 8
    # everything written before the error reads back, in readers we did not write
    validate_ome_zarr(s.output_path)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    assert arr.shape[0] >= flushed
    for n in range(flushed):
        np.testing.assert_array_equal(arr[n], frame_for(n, SHAPE, "uint16"))
    if not mounted:
        return
    # space is freed: repair, then resume and finish the acquisition
    _remount(disk, "size=64m")
    report = omestream.repair(s.output_path, force=True)
    assert report.resume_at >= flushed
    with report.resume() as resumed:
        for n in range(report.resume_at, report.resume_at + 5):
            resumed.append(frame_for(n, SHAPE, "uint16"), metadata={"n": n})
    validate_ome_zarr(s.output_path)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    assert arr.shape[0] == report.resume_at + 5
    np.testing.assert_array_equal(arr[-1], frame_for(report.resume_at + 4, SHAPE, "uint16"))


def test_disk_turns_read_only_mid_stream(small_disk: tuple[Path, bool]) -> None:
    disk, mounted = small_disk
    if not mounted:
        pytest.skip("needs a mount of its own (run as root)")
    _remount(disk, "size=64m")
    s = _settings(disk / "ro.ome.zarr")
    stream = create_stream(s)
    for n in range(6):
        stream.append(frame_for(n, SHAPE, "uint16"))
    stream.flush()
    stream._backend.flush(wait=True)  # type: ignore[attr-defined]
    _remount(disk, "ro")
    with pytest.raises(WriteError) as info:
        for n in range(6, 200):
            stream.append(frame_for(n, SHAPE, "uint16"))
        stream.close()
    with pytest.raises(WriteError):
        stream.close()  # reports again, never hangs
    assert info.value.errno == errno.EROFS and "read-only" in str(info.value)
    assert str(disk) in str(info.value)
    validate_ome_zarr(s.output_path)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    for n in range(6):
        np.testing.assert_array_equal(arr[n], frame_for(n, SHAPE, "uint16"))


def test_read_only_location_is_refused_and_untouched(small_disk: tuple[Path, bool]) -> None:
    disk, mounted = small_disk
    if not mounted:
        pytest.skip("needs a mount of its own (run as root)")
    _remount(disk, "ro")
    with pytest.raises(WriteError, match=r"(?i)read-only") as info:
        create_stream(_settings(disk / "new.ome.zarr"))
    assert str(disk / "new.ome.zarr") in str(info.value)
    assert os.listdir(disk) == []


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken.ome.zarr"
    target.write_bytes(b"not a store")
    with pytest.raises(StoreExistsError, match="is a file"):
        create_stream(_settings(target, overwrite=True))
    assert target.read_bytes() == b"not a store"
