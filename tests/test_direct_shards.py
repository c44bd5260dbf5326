"""Compressed shards written around the page cache (direct I/O).

The built-in engine encodes each chunk into a page-aligned slot, pads it with zeros
to whole disk blocks and writes the shard (chunks, then zeros and the index, whole
pages long) in one direct write. The sharding spec allows unused bytes between
chunks; readers we did not write (zarr-python, tensorstore, ome-zarr) must agree.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import AcquisitionSettings, Dimension, WriterOptions, create_stream
from omestream.backends.native_layout import EMPTY, shard_index
from omestream.io import kv as kv_module
from omestream.io.kv import LocalKV
from tests.checks import read_with_ome_zarr, validate_ome_zarr
from tests.page_cache import require_direct_io, require_droppable_cache, resident_pages

PAGE = 4096


def _frames(n: int) -> np.ndarray:
    """Camera-like frames: a smooth background and noise (chunks compress ~2:1, to
    sizes that are not whole blocks)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:192, :256]
    base = (400 + 3 * yy + 2 * xx).astype(np.float64)
    return np.stack([rng.poisson(base + 50 * t) for t in range(n)]).astype(np.uint16)


def _settings(
    root: Path,
    t_shard: int = 1,
    direct_io: bool = True,
    count: int = 10,
    shape: tuple[int, int] = (192, 256),
    chunk: int = 64,
    **writer: int,
) -> AcquisitionSettings:
    """Compressed frames in chunks of ``chunk`` pixels, one shard per frame in y/x
    (and ``t_shard`` frames per shard along t)."""
    lead = {"shard_size_chunks": t_shard} if t_shard > 1 else {}
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=count, chunk_size=1, **lead),  # type: ignore[arg-type]
            Dimension(
                name="y", count=shape[0], chunk_size=chunk, shard_size_chunks=shape[0] // chunk
            ),
            Dimension(
                name="x", count=shape[1], chunk_size=chunk, shard_size_chunks=shape[1] // chunk
            ),
        ],
        dtype="uint16",
        compression="blosc-zstd",
        writer=WriterOptions(direct_io=direct_io, **writer),  # type: ignore[arg-type]
    )


def _shard_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "0" / "c").rglob("*") if p.is_file())


def _index(path: Path, chunks: int) -> np.ndarray:
    raw = path.read_bytes()[-(16 * chunks + 4) : -4]  # little-endian uint64 pairs, crc32c
    return np.frombuffer(raw, "<u8").reshape(chunks, 2)


def _read_tensorstore(path: Path) -> np.ndarray | None:
    try:
        import tensorstore as ts
    except ImportError:
        return None
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path) + "/"}}
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())


# t_shard 1: each frame completes its shard (encoded straight from the caller's frame);
# 4: shards collect 4 frames in a slab, and the last one (frames 8-9) is partial.
@pytest.mark.parametrize("t_shard", [1, 4])
def test_compressed_shards_skip_the_cache_and_read_back_everywhere(
    tmp_path: Path, t_shard: int
) -> None:
    require_droppable_cache(tmp_path)
    require_direct_io(tmp_path)
    frames = _frames(10)
    root = tmp_path / "d.ome.zarr"
    with create_stream(_settings(root, t_shard)) as stream:
        for f in frames:
            stream.append(f)

    files = _shard_files(root)
    assert len(files) == (10 if t_shard == 1 else 3)
    chunks = t_shard * 3 * 4
    for f in files:
        size = f.stat().st_size
        assert size % PAGE == 0, f"{f} is {size} bytes"
        assert resident_pages(f) == 0, f"{f} went through the page cache"
        index = _index(f, chunks)
        stored = index[index[:, 0] != EMPTY]
        assert (stored[:, 0] % 512 == 0).all()  # every chunk starts on a block
        assert (stored[:, 1] % 512 != 0).any()  # sizes are exact, not padded
        assert (stored[:, 0] + stored[:, 1] <= size - (16 * chunks + 4)).all()
    if t_shard == 4:  # frames 10 and 11 of the last shard were never written
        assert (_index(files[-1], chunks)[-2 * 12 :, 0] == EMPTY).all()

    np.testing.assert_array_equal(zarr.open_array(root / "0", mode="r")[...], frames)
    got = _read_tensorstore(root / "0")
    if got is not None:
        np.testing.assert_array_equal(got, frames)
    validate_ome_zarr(root)
    read_with_ome_zarr(str(root))


def test_without_direct_io_the_same_shards_go_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that refuses direct I/O gets the padded shards written normally,
    and the store stops asking for direct I/O after the first refusal."""
    require_droppable_cache(tmp_path)
    refused: list[int] = []

    def refuse(fd: int, on: bool) -> bool:
        if on:
            refused.append(fd)
        return not on

    monkeypatch.setattr(kv_module, "set_direct", refuse)
    frames = _frames(10)
    root = tmp_path / "d.ome.zarr"
    with create_stream(_settings(root, 1)) as stream:
        for f in frames:
            stream.append(f)
        store = stream._backend.kv  # type: ignore[attr-defined]
    assert isinstance(store, LocalKV) and not store._direct_all_ok
    assert 0 < len(refused) < 10  # writes in flight may each be refused once, no more
    files = _shard_files(root)
    assert all(f.stat().st_size % PAGE == 0 for f in files)
    np.testing.assert_array_equal(zarr.open_array(root / "0", mode="r")[...], frames)
    validate_ome_zarr(root)


def test_direct_io_off_writes_exact_shards(tmp_path: Path) -> None:
    frames = _frames(10)
    root = tmp_path / "d.ome.zarr"
    with create_stream(_settings(root, direct_io=False)) as stream:
        for f in frames:
            stream.append(f)
    for f in _shard_files(root):
        index = _index(f, 12)
        # chunks follow each other without gaps, and the index follows the last one
        np.testing.assert_array_equal(index[1:, 0], np.cumsum(index[:-1, 1]))
        assert index[-1, 0] + index[-1, 1] == f.stat().st_size - (16 * 12 + 4)
    np.testing.assert_array_equal(zarr.open_array(root / "0", mode="r")[...], frames)


def test_shard_index_with_padded_spans() -> None:
    index = np.frombuffer(shard_index([3, None, 700], (3,), [512, 1024])[:-4], "<u8")
    np.testing.assert_array_equal(index.reshape(3, 2), [[0, 3], [EMPTY, EMPTY], [512, 700]])
    plain = np.frombuffer(shard_index([3, None, 700], (3,))[:-4], "<u8")
    np.testing.assert_array_equal(plain.reshape(3, 2), [[0, 3], [EMPTY, EMPTY], [3, 700]])


class _RecordingKV(LocalKV):
    """Local storage that notes how each shard was asked to be written, and can be
    slow (a disk behind the encoders)."""

    def __init__(self, root: str, delay: float) -> None:
        super().__init__(root)
        self.delay = delay
        self.modes: list[object] = []
        self._lock = threading.Lock()

    def set_parts(self, key, parts, **kw):  # type: ignore[no-untyped-def]
        if "/c/" in f"/{key}":
            with self._lock:
                self.modes.append(kw.get("direct"))
            time.sleep(self.delay)
        super().set_parts(key, parts, **kw)


# 0.1 s per shard caps four writers at ~40 shards/s, far below what the encoders make
# even on a loaded machine, so the writers fall behind whatever else runs.
@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_shards_go_through_the_cache_while_the_writer_is_behind(
    tmp_path: Path, delay: float
) -> None:
    """Direct writes while the writers keep up; once encoded shards pile up (a slow
    disk) the page cache takes them. Every shard reads back either way."""
    rng = np.random.default_rng(3)
    frames = rng.poisson(800, (60, 512, 512)).astype(np.uint16)
    s = _settings(
        tmp_path / "d.ome.zarr", count=60, shape=(512, 512), chunk=128, memory_budget_mb=16
    )
    store = _RecordingKV(s.output_path, delay)
    with create_stream(s, store=store) as stream:
        for f in frames:
            stream.append(f)
    assert len(store.modes) == 60
    if delay:  # ~0.6 MB of slots per frame: half the budget is 14 frames behind
        assert {"all", False} <= set(store.modes), store.modes
    else:
        assert set(store.modes) == {"all"}
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0", mode="r")[...], frames)
    validate_ome_zarr(s.output_path)


@pytest.mark.parametrize("direct_io", [True, False])
def test_inner_chunks_of_skipped_frames_stay_empty(tmp_path: Path, direct_io: bool) -> None:
    """In a shard of 4 frames, the inner chunks of frames that were skipped get empty
    index entries (no bytes) and read as the fill value; a shard of skipped frames only
    is no file at all."""
    frames = _frames(12)
    skipped = {1, 2, 4, 5, 6, 7}  # shard 0: frames 1-2; shard 1: all of it
    root = tmp_path / "d.ome.zarr"
    with create_stream(_settings(root, 4, direct_io=direct_io, count=12)) as stream:
        for t, f in enumerate(frames):
            if t in skipped:
                stream.skip()
            else:
                stream.append(f)
    files = _shard_files(root)
    assert [f.relative_to(root / "0" / "c").parts[0] for f in files] == ["0", "2"]
    index = _index(files[0], 4 * 12)
    per_frame = index.reshape(4, 12, 2)[:, :, 0] == EMPTY
    assert per_frame.all(axis=1).tolist() == [False, True, True, False]
    assert not per_frame.any(axis=1)[[0, 3]].any()
    want = frames.copy()
    want[sorted(skipped)] = 0
    np.testing.assert_array_equal(zarr.open_array(root / "0", mode="r")[...], want)
    got = _read_tensorstore(root / "0")
    if got is not None:
        np.testing.assert_array_equal(got, want)
    validate_ome_zarr(root)
