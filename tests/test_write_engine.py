"""Mechanisms of the built-in write engine: buffer safety, backpressure, errors, close.

A "slow" or "failing" store here is the real local store with a delay or an error
added to its chunk writes, so the engine's threads meet real files.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Any

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

    def set_parts(self, key, parts, **kw):  # type: ignore[no-untyped-def]
        if "/c/" in f"/{key}":
            time.sleep(self.delay)
            with self._count_lock:
                self.chunk_writes += 1
        super().set_parts(key, parts, **kw)


class FailingKV(LocalKV):
    """Local storage that runs out of space after ``ok`` chunk writes."""

    def __init__(self, root: str, ok: int) -> None:
        super().__init__(root)
        self.ok = ok
        self._n = 0
        self._count_lock = threading.Lock()

    def set_parts(self, key, parts, **kw):  # type: ignore[no-untyped-def]
        if "/c/" in f"/{key}":
            with self._count_lock:
                self._n += 1
                fail = self._n > self.ok
            if fail:
                from omestream.io.kv import _write_error

                raise _write_error(
                    OSError(errno.ENOSPC, "No space left on device"), self.path(key)
                )
        super().set_parts(key, parts, **kw)


def _settings(
    tmp_path: Path, n: int | None, size: int = 512, **writer: object
) -> AcquisitionSettings:
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
    before = set(threading.enumerate())
    stream = create_stream(s, store=kv)
    for v in range(12):
        stream.append(_frame(v, 256))
    stream.close()
    # every frame is on disk the moment close() returns
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 1, 1], np.arange(12))
    engine_threads = ("omestream-encode", "omestream-io", "omestream-sync")
    left = set(threading.enumerate()) - before
    assert not [t for t in left if t.name.startswith(engine_threads)]
    validate_ome_zarr(s.output_path)


def test_ctrl_c_while_close_waits_for_the_store_is_not_swallowed(tmp_path: Path) -> None:
    """A KeyboardInterrupt that arrives while close() waits for chunk writes stops the
    close (the record stays incomplete); it is not taken for a write's own failure."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    s = _settings(tmp_path, 12, size=256, threads=1)
    kv = SlowKV(s.output_path, delay=1.0)  # the one shard's write takes a second
    stream = create_stream(s, store=kv)
    for v in range(12):
        stream.append(_frame(v, 256))
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # while close waits for the writes
        with pytest.raises(KeyboardInterrupt):
            stream.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    record = zarr.open_group(s.output_path, mode="r").attrs["omestream"]
    assert record["complete"] is False


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


def test_a_partial_shard_still_being_written_is_not_queued_again(tmp_path: Path) -> None:
    # A shard spanning many frames is written whole at each partial flush; a second
    # copy queued behind the first would hold another shard of memory.
    # compressed: the encoded bytes of a partial write count against the budget
    s = _settings(tmp_path, 128, size=256, metadata_interval_s=1000.0).replace(
        compression="blosc-zstd"
    )
    kv = SlowKV(s.output_path, delay=0.5)
    with create_stream(s, store=kv) as stream:
        backend: Any = stream._backend
        stream.append(_frame(0, 256))
        backend.flush()
        one_copy = backend.bytes_in_flight
        assert one_copy > 0
        stream.append(_frame(1, 256))
        backend.flush()  # the first partial write is still in flight: not queued again
        assert backend.bytes_in_flight == one_copy
        backend.flush(wait=True)  # an explicit flush still writes the newest frames
        on_disk = zarr.open_array(s.output_path + "/0", mode="r")
        np.testing.assert_array_equal(on_disk[:2, 0, 0], [0, 1])
        assert kv.chunk_writes == 2
        for v in range(2, 128):
            stream.append(_frame(v, 256))
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 0, 0], np.arange(128))


@pytest.mark.parametrize("compression", [None, "blosc-zstd"])
@pytest.mark.parametrize("chunk_t", [1, 4])
def test_partial_writes_keep_appends_and_fill_apart(
    tmp_path: Path, compression: str | None, chunk_t: int
) -> None:
    # A partial write reads a slab in place when every chunk is complete or not begun
    # (chunk_t=1), else a copy with the fill value for the frames to come (chunk_t=4):
    # either way what is on disk after each flush is the frames appended so far, and
    # the appends made while it is written land whole.
    s = AcquisitionSettings(
        root_path=str(tmp_path / "x.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=64, chunk_size=chunk_t, shard_size_chunks=32 // chunk_t),
            Dimension(name="y", count=64),
            Dimension(name="x", count=64),
        ],
        dtype="uint16",
        compression=compression,
        writer=WriterOptions(metadata_interval_s=1000.0),
    )
    kv = SlowKV(s.output_path, delay=0.05)
    with create_stream(s, store=kv) as stream:
        backend: Any = stream._backend
        for v in range(1, 65):  # two shards: the second's buffer held the first's frames
            stream.append(_frame(v, 64))
            if v in (3, 6, 8, 13, 21, 35, 38, 40, 45):
                backend.flush()  # in flight while the next frames are appended
            if v in (6, 8, 21, 38, 40):
                backend.flush(wait=True)
                on_disk = zarr.open_array(s.output_path + "/0", mode="r")[:, :, :]
                expected = np.broadcast_to(np.arange(1, v + 1)[:, None, None], (v, 64, 64))
                np.testing.assert_array_equal(on_disk[:v], expected)
                assert not on_disk[v:].any()  # the fill value, nothing from a later frame
    on_disk = zarr.open_array(s.output_path + "/0", mode="r")[:, :, :]
    np.testing.assert_array_equal(
        on_disk, np.broadcast_to(np.arange(1, 65)[:, None, None], (64, 64, 64))
    )


@pytest.fixture(params=["c-blosc2", "c-blosc"])
def blosc_build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Blosc build the engine encodes with: C-Blosc2 (``omestream[blosc2]``), or
    imagecodecs' c-blosc 1, which a core install uses ("any": whichever is there)."""
    from omestream.backends import blosc_c

    if request.param == "any":  # not a Blosc codec
        return "any"
    if request.param == "c-blosc":
        monkeypatch.setattr(blosc_c, "blosc1_encoder", lambda *args: None)
    elif blosc_c._library() is None:
        pytest.skip("no blosc2 with a Blosc 1 writer installed")
    return str(request.param)


_CODECS_AND_BUILDS = [
    (None, "any"),
    ("blosc-zstd", "c-blosc2"),
    ("blosc-zstd", "c-blosc"),
    ("blosc-lz4", "c-blosc2"),
    ("blosc-lz4", "c-blosc"),
    ("zstd", "any"),
    ("gzip", "any"),
]


@pytest.mark.parametrize(
    ("compression", "blosc_build"), _CODECS_AND_BUILDS, indirect=["blosc_build"]
)
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_codecs_read_back_with_zarr_python(
    tmp_path: Path, compression: str | None, version: str, blosc_build: str
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


@pytest.mark.parametrize("cname", ["blosc-zstd", "blosc-lz4"])
def test_encoding_into_a_reused_buffer_gives_the_same_bytes(cname: str, blosc_build: str) -> None:
    from numcodecs import Blosc

    from omestream.backends.codecs import codec_choice

    encoder = codec_choice(cname).encoder("uint16")
    if not hasattr(encoder, "encode_into"):
        pytest.skip("this encoder only returns new bytes")
    rng = np.random.default_rng(3)
    smooth = np.add.outer(np.arange(64), np.arange(96)).astype(np.uint16)
    noise = rng.integers(0, 2**16, (64, 96), dtype=np.uint16)  # grows by the header
    out = memoryview(bytearray(noise.nbytes + encoder.max_overhead))
    for data in (smooth, noise, smooth):  # the buffer still holds the previous encoding
        n = encoder.encode_into(data, out)
        assert bytes(out[:n]) == encoder.encode(data)
        decoded = np.frombuffer(Blosc().decode(bytes(out[:n])), np.uint16)
        np.testing.assert_array_equal(decoded.reshape(data.shape), data)


# -- compressed frames that complete their write units: encoded without a slab copy ----
def _direct_settings(
    tmp_path: Path, version: str, n: int | None = 12, **writer: object
) -> AcquisitionSettings:
    shard = {"shard_size_chunks": 2} if version == "0.5" else {}
    return AcquisitionSettings(
        root_path=str(tmp_path / "d.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=n, chunk_size=1),
            # not a multiple of the shard: the last row/column of shards is padded
            Dimension(name="y", count=300, chunk_size=64, **shard),  # type: ignore[arg-type]
            Dimension(name="x", count=200, chunk_size=64, **shard),  # type: ignore[arg-type]
        ],
        dtype="uint16",
        compression="blosc-zstd",
        format={"name": "ome-zarr", "version": version},
        writer=WriterOptions(**writer),  # type: ignore[arg-type]
    )


def _pattern(v: int) -> np.ndarray:
    yy, xx = np.mgrid[:300, :200]
    return ((yy * 7 + xx * 3 + v * 101) % 4096).astype(np.uint16)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_direct_encoding_reads_back_and_frees_the_callers_buffer(
    tmp_path: Path, version: str
) -> None:
    s = _direct_settings(tmp_path, version)
    buf = np.zeros((300, 200), np.uint16)
    with create_stream(s) as stream:
        assert all(stream._backend._direct.values())  # type: ignore[attr-defined]
        for v in range(12):
            if v == 5:
                stream.skip(frames=1)
                continue
            buf[:] = _pattern(v)
            stream.append(buf)
            buf[:] = 9999  # the caller scribbles on its buffer right after append
    data = zarr.open_array(s.output_path + "/0", mode="r")[...]
    for v in range(12):
        expected = np.zeros((300, 200), np.uint16) if v == 5 else _pattern(v)
        np.testing.assert_array_equal(data[v], expected)
    validate_ome_zarr(s.output_path)


def test_direct_encoding_keeps_encoded_bytes_under_the_budget(tmp_path: Path) -> None:
    s = AcquisitionSettings(
        root_path=str(tmp_path / "b.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=30, chunk_size=1),
            Dimension(name="y", count=1024, chunk_size=256, shard_size_chunks=2),
            Dimension(name="x", count=1024, chunk_size=256, shard_size_chunks=2),
        ],
        dtype="uint16",
        compression="blosc-lz4",
        writer=WriterOptions(memory_budget_mb=16, threads=2),
    )
    kv = SlowKV(s.output_path, delay=0.02)
    noise = np.random.default_rng(0).integers(0, 2**16, (30, 1024, 1024), dtype=np.uint16)
    peak = 0
    with create_stream(s, store=kv) as stream:
        backend = stream._backend
        assert all(backend._direct.values())  # type: ignore[attr-defined]
        for v in range(30):
            stream.append(noise[v])  # noise does not compress: ~2 MiB per frame
            peak = max(peak, backend.bytes_in_flight)  # type: ignore[attr-defined]
    # 60 MiB went through; one frame's shards may join a queue that had just drained
    assert 8 * 2**20 < peak <= 16 * 2**20 + 1024 * 1024 * 2 + 4096
    assert kv.chunk_writes == 30 * 4  # 2 x 2 shards per frame
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0", mode="r")[...], noise)


class _SlowEncoder:
    """Wraps the engine's chunk encoder: every chunk takes ``delay`` seconds, and the
    ``fail_at``-th chunk (counting from 1) raises."""

    def __init__(self, inner: Any, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.inner = inner
        self.delay = delay
        self.fail_at = fail_at
        self.max_overhead = inner.max_overhead
        self.calls = 0
        self._lock = threading.Lock()

    def _tick(self) -> None:
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        if n == self.fail_at:
            raise RuntimeError("the codec refused a chunk")

    def encode(self, data: np.ndarray) -> bytes:
        self._tick()
        return self.inner.encode(data)  # type: ignore[no-any-return]

    def encode_into(self, data: np.ndarray, out: memoryview) -> int:
        self._tick()
        return self.inner.encode_into(data, out)  # type: ignore[no-any-return]


def test_slow_encoding_finishes_with_the_callers_frame_before_append_returns(
    tmp_path: Path,
) -> None:
    # Chunks are encoded straight from the caller's buffer: with slow chunks, the
    # caller scribbling on it right after append must still change nothing stored.
    s = _direct_settings(tmp_path, "0.5", n=6, threads=2)
    buf = np.zeros((300, 200), np.uint16)
    with create_stream(s) as stream:
        backend = stream._backend
        slow = _SlowEncoder(backend._encoder, delay=0.05)  # type: ignore[attr-defined]
        backend._encoder = slow  # type: ignore[attr-defined]
        for v in range(6):
            buf[:] = _pattern(v)
            stream.append(buf)
            buf[:] = 9999
    assert slow.calls == 6 * 3 * 2 * 4  # every chunk went through the slow encoder
    data = zarr.open_array(s.output_path + "/0", mode="r")[...]
    for v in range(6):
        np.testing.assert_array_equal(data[v], _pattern(v))


@pytest.mark.parametrize("failure", ["disk", "codec"])
def test_direct_encoding_error_surfaces_and_keeps_earlier_frames(
    tmp_path: Path, failure: str
) -> None:
    s = _direct_settings(tmp_path, "0.5", n=40, threads=2)
    if failure == "disk":
        kv = FailingKV(s.output_path, ok=6 * 3)  # three frames of 6 shards each, then ENOSPC
        stream = create_stream(s, store=kv)
        match = "the disk is full"
    else:
        stream = create_stream(s)
        per_frame = 3 * 2 * 4  # 300x200: 3 x 2 shards of 2 x 2 chunks (64 pixels)
        stream._backend._encoder = _SlowEncoder(  # type: ignore[attr-defined]
            stream._backend._encoder,  # type: ignore[attr-defined]
            fail_at=3 * per_frame + 7,  # a chunk of the fourth frame
        )
        match = "the codec refused a chunk"
    with pytest.raises(WriteError, match=match):
        for v in range(40):
            stream.append(_pattern(v))
        stream.close()
    if not stream.closed:
        with pytest.raises(WriteError):
            stream.close()
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    for v in range(3):
        np.testing.assert_array_equal(arr[v], _pattern(v))


class GatedKV(LocalKV):
    """Local storage where, once armed, writing metadata document ``key`` waits for a
    gate (at most 10 s, so a failing test never hangs the suite), or fails once with
    a full disk."""

    def __init__(self, root: str, key: str = "zarr.json", fail: bool = False) -> None:
        super().__init__(root)
        self.key = key
        self.fail = fail
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def set_parts(self, key, parts, **kw):  # type: ignore[no-untyped-def]
        if self.armed and key == self.key:
            self.entered.set()
            if self.fail:
                self.armed = False
                from omestream.io.kv import _write_error

                raise _write_error(OSError(errno.ENOSPC, "No space left on device"), key)
            self.gate.wait(10)
        super().set_parts(key, parts, **kw)


def _append_until_stuck(stream: Any, kv: GatedKV, pause: float = 0.0) -> int:
    """Append frames 0, 1, ... until a metadata write is stuck in the gate."""
    kv.armed = True
    v = 0
    while not kv.entered.is_set() and v < 100:
        stream.append(_frame(v, 64))
        v += 1
        time.sleep(pause)
    assert kv.entered.wait(5)
    return v


def test_append_does_not_wait_for_a_metadata_refresh(tmp_path: Path) -> None:
    s = _settings(tmp_path, 200, size=64, metadata_interval_s=0.01)
    kv = GatedKV(s.output_path)
    with create_stream(s, store=kv) as stream:
        v = _append_until_stuck(stream, kv, pause=0.005)
        for w in range(v, 200):
            stream.append(_frame(w, 64))
        # every frame was appended while the refresh still waited
        assert not kv.gate.is_set()
        kv.gate.set()
    root = zarr.open_group(s.output_path, mode="r")
    assert root.attrs["omestream"]["frames"] == 200
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0")[:, 0, 0], np.arange(200))


def test_append_does_not_wait_for_an_unbounded_axis_to_grow(tmp_path: Path) -> None:
    s = _settings(tmp_path, None, size=64)  # unbounded t
    kv = GatedKV(s.output_path, key="0/zarr.json")
    with create_stream(s, store=kv) as stream:
        v = _append_until_stuck(stream, kv)  # a growth is stuck in the gate
        for w in range(v, 300):  # far past the extent the stuck growth writes
            stream.append(_frame(w, 64))
        assert not kv.gate.is_set()
        kv.gate.set()
        stream.flush()  # writes the latest growth: readers see every frame
        assert zarr.open_array(s.output_path + "/0", mode="r").shape[0] >= 300
    validate_ome_zarr(s.output_path)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    assert arr.shape == (300, 64, 64)
    np.testing.assert_array_equal(arr[:, 0, 0], np.arange(300))


def test_a_failed_growth_surfaces_at_the_next_append(tmp_path: Path) -> None:
    s = _settings(tmp_path, None, size=64)  # unbounded t
    kv = GatedKV(s.output_path, key="0/zarr.json", fail=True)
    stream = create_stream(s, store=kv)
    stream.append(_frame(0, 64))
    kv.armed = True
    appended = 1
    with pytest.raises(WriteError, match="the disk is full"):
        for v in range(1, 1000):
            stream.append(_frame(v, 64))
            appended += 1
            time.sleep(0.001)
    assert kv.entered.is_set()
    stream.close()  # the final shape is written again; nothing appended was lost
    validate_ome_zarr(s.output_path)
    arr = zarr.open_array(s.output_path + "/0", mode="r")
    assert arr.shape[0] == appended
    np.testing.assert_array_equal(arr[:, 0, 0], np.arange(appended))
