"""Mechanisms of the built-in write engine: buffer safety, backpressure, errors, close.

A "slow" or "failing" store here is the real local store with a delay or an error
added to its chunk writes, so the engine's threads meet real files.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import AcquisitionSettings, Dimension, WriteError, WriterOptions, create_stream
from omestream.io.kv import LocalKV
from tests.checks import validate_ome_zarr


class SlowKV(LocalKV):
    """Local storage whose chunk writes take ``delay`` seconds each."""

    def __init__(self, root: str, delay: float) -> None:
        super().__init__(root)
        self.delay = delay
        self.chunk_writes = 0
        self._count_lock = threading.Lock()

    def set_parts(self, key, parts, *, durable=True, writeback=False):  # type: ignore[no-untyped-def]
        if "/c/" in f"/{key}":
            time.sleep(self.delay)
            with self._count_lock:
                self.chunk_writes += 1
        super().set_parts(key, parts, durable=durable, writeback=writeback)


class FailingKV(LocalKV):
    """Local storage that runs out of space after ``ok`` chunk writes."""

    def __init__(self, root: str, ok: int) -> None:
        super().__init__(root)
        self.ok = ok
        self._n = 0
        self._count_lock = threading.Lock()

    def set_parts(self, key, parts, *, durable=True, writeback=False):  # type: ignore[no-untyped-def]
        if "/c/" in f"/{key}":
            with self._count_lock:
                self._n += 1
                fail = self._n > self.ok
            if fail:
                from omestream.io.kv import _write_error

                raise _write_error(
                    OSError(errno.ENOSPC, "No space left on device"), self.path(key)
                )
        super().set_parts(key, parts, durable=durable, writeback=writeback)


def _settings(tmp_path: Path, n: int, size: int = 512, **writer: object) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(tmp_path / "x.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=n),
            Dimension(name="y", count=size),
            Dimension(name="x", count=size),
        ],
        dtype="uint16",
        writer=WriterOptions(**writer),  # type: ignore[arg-type]
    )


def _frame(v: int, size: int = 512) -> np.ndarray:
    return np.full((size, size), v, dtype=np.uint16)


def test_backpressure_bounds_bytes_in_flight(tmp_path: Path) -> None:
    s = _settings(tmp_path, 40, memory_budget_mb=16, threads=2)
    kv = SlowKV(s.output_path, delay=0.02)
    frame_bytes = 512 * 512 * 2
    peak = 0
    with create_stream(s, store=kv) as stream:
        backend = stream._backend
        for v in range(40):
            stream.append(_frame(v))
            peak = max(peak, backend.bytes_in_flight)  # type: ignore[attr-defined]
    # the budget holds (one slab may be added when the queue had just drained)
    assert peak <= 16 * 2**20 + frame_bytes * 16
    assert peak > 0
    assert kv.chunk_writes >= 40 // 16  # 16 frames per 8 MiB shard
    data = zarr.open_array(s.output_path + "/0")[...]
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(40))


def test_append_blocks_instead_of_growing_memory(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    s = _settings(tmp_path, 120, size=1024, memory_budget_mb=16, threads=2)
    kv = SlowKV(s.output_path, delay=0.01)
    before = proc.memory_info().rss
    peak = before
    with create_stream(s, store=kv) as stream:
        for v in range(120):
            stream.append(np.full((1024, 1024), v, np.uint16))  # a fresh buffer every frame
            peak = max(peak, proc.memory_info().rss)
    grown_mb = (peak - before) / 2**20
    # 120 frames are 240 MiB; with a 16 MiB budget memory stays far below that
    assert grown_mb < 100, f"memory grew by {grown_mb:.0f} MiB"
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 5, 5], np.arange(120))


def test_close_waits_for_a_slow_store(tmp_path: Path) -> None:
    s = _settings(tmp_path, 12, size=256, threads=1)
    kv = SlowKV(s.output_path, delay=0.05)
    stream = create_stream(s, store=kv)
    for v in range(12):
        stream.append(_frame(v, 256))
    stream.close()
    # every frame is on disk the moment close() returns
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 1, 1], np.arange(12))
    assert not [t for t in threading.enumerate() if t.name.startswith("omestream-write")]
    validate_ome_zarr(s.output_path)


def test_worker_error_surfaces_from_append_or_close(tmp_path: Path) -> None:
    # 256x256 frames -> 8 MiB shards of 64 frames: 2 shards fit, the third fails
    s = _settings(tmp_path, 256, size=256, threads=2)
    kv = FailingKV(s.output_path, ok=2)
    stream = create_stream(s, store=kv)
    with pytest.raises(WriteError, match="the disk is full"):
        for v in range(256):
            stream.append(_frame(v, 256))
        stream.close()
    if not stream.closed:
        with pytest.raises(WriteError):
            stream.close()
    # the shards written before the error read back
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    np.testing.assert_array_equal(arr[:128, 3, 3], np.arange(128))


def test_partial_shards_are_written_on_the_metadata_cadence(tmp_path: Path) -> None:
    # 64 frames per shard; after a pause longer than the cadence the first frames are
    # on disk although their shard is not complete yet
    s = _settings(tmp_path, 128, size=256, metadata_interval_s=0.05)
    with create_stream(s) as stream:
        for v in range(10):
            stream.append(_frame(v, 256))
        time.sleep(0.1)
        stream.append(_frame(10, 256))  # triggers the cadence flush
        stream._backend.flush(wait=True)  # type: ignore[attr-defined]
        on_disk = zarr.open_array(s.output_path + "/0", mode="r")
        np.testing.assert_array_equal(on_disk[:11, 0, 0], np.arange(11))
        for v in range(11, 128):
            stream.append(_frame(v, 256))
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 0, 0], np.arange(128))


@pytest.mark.parametrize("compression", [None, "blosc-zstd", "blosc-lz4", "zstd", "gzip"])
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_codecs_read_back_with_zarr_python(
    tmp_path: Path, compression: str | None, version: str
) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 4096, size=(6, 100, 130), dtype=np.uint16)
    s = AcquisitionSettings(
        root_path=str(tmp_path / "x.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=None, chunk_size=2),
            Dimension(name="z", count=3),
            Dimension(name="y", count=100, chunk_size=32),
            Dimension(name="x", count=130, chunk_size=64),
        ],
        dtype="uint16",
        compression=compression,
        format={"name": "ome-zarr", "version": version},
    )
    with create_stream(s) as stream:
        for f in frames:
            stream.append(f)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    np.testing.assert_array_equal(arr[...], frames.reshape(2, 3, 100, 130))
    validate_ome_zarr(s.output_path)
