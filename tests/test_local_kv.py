"""Local file writes (omestream.io.kv.LocalKV): whole or nothing, on a real disk.

Every chunk and metadata document is written to a file without a name
(``O_TMPFILE``) and linked into place, or, where that is not available, to a named
temporary renamed into place. Both ways are run here, and so is direct I/O for
large aligned chunks (checked with mincore: its pages never enter the page cache).
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import AcquisitionSettings, Dimension, WriterOptions, create_stream
from omestream.backends.buffers import aligned_empty
from omestream.errors import WriteError
from omestream.io import libc
from omestream.io.kv import TMP_PREFIX, LocalKV
from tests.checks import validate_ome_zarr
from tests.page_cache import require_droppable_cache, resident_pages
from tests.polling import wait_until

MB = 1 << 20


@pytest.fixture(params=["anonymous", "named-temporary"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> LocalKV:
    kv = LocalKV(tmp_path / "store")
    if request.param == "named-temporary":
        kv._anonymous_ok = False
    elif libc.open_anonymous(str(tmp_path)) is None:
        pytest.skip("this file system has no O_TMPFILE")
    return kv


def _leftovers(root: str) -> list[str]:
    return [f for _d, _s, files in os.walk(root) for f in files if f.startswith(TMP_PREFIX)]


def test_new_and_replaced_keys_read_back_without_leftovers(kv: LocalKV) -> None:
    kv.set_parts("0/c/0/0", [b"ab", memoryview(b"cd"), bytearray(b"")], durable=False)
    assert kv.get("0/c/0/0") == b"abcd"
    kv.set("0/c/0/0", b"replaced")  # the target exists now: linked, then renamed over it
    kv.set("zarr.json", b"{}", durable=True)
    assert kv.get("0/c/0/0") == b"replaced"
    assert kv.get("zarr.json") == b"{}"
    assert sorted(os.listdir(kv.path("0/c/0"))) == ["0"]
    assert _leftovers(kv.root) == []
    assert os.stat(kv.path("zarr.json")).st_mode & 0o777 == 0o644 & ~_umask()


def test_replaced_files_are_retired_until_the_stream_ends(kv: LocalKV) -> None:
    kv.retire_replaced(cap_bytes=2500)
    kv.set("zarr.json", b"v0" * 500)
    old_inode = os.stat(kv.path("zarr.json")).st_ino
    kv.set("zarr.json", b"v1" * 500)
    kv.set("zarr.json", b"v2" * 500)
    kv.set("new.json", b"{}")  # nothing replaced: nothing retired
    assert kv.get("zarr.json") == b"v2" * 500
    assert kv.list_dir("") == ["new.json", "zarr.json"]  # retired files stay hidden
    retired = _leftovers(kv.root)
    assert len(retired) == 2
    # the first version still has a link, so replacing it freed no blocks
    assert old_inode in {os.stat(os.path.join(kv.root, f)).st_ino for f in retired}
    kv.set("zarr.json", b"v3" * 500)  # a third 1000 bytes would pass the cap: removed first
    assert len(_leftovers(kv.root)) == 1
    kv.stop_retiring()
    assert _leftovers(kv.root) == []
    kv.set("zarr.json", b"v4")  # retiring stopped: replaced files are freed at once
    assert _leftovers(kv.root) == [] and kv.get("zarr.json") == b"v4"


def test_a_stream_leaves_no_retired_files(tmp_path: Path) -> None:
    s = AcquisitionSettings(
        root_path=str(tmp_path / "u.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1),
            Dimension(name="y", count=64, chunk_size=64),
            Dimension(name="x", count=64, chunk_size=64),
        ],
        dtype="uint16",
        writer=WriterOptions(metadata_interval_s=0.01),
    )
    frames = np.arange(40 * 64 * 64, dtype=np.uint16).reshape(40, 64, 64)
    with create_stream(s) as stream:
        for f in frames:
            stream.append(f, metadata={"n": 1})
        stream.flush()
        # the unbounded axis grew and the metadata was refreshed: old versions wait
        assert _leftovers(s.output_path)
    assert _leftovers(s.output_path) == []
    np.testing.assert_array_equal(zarr.open_array(s.output_path + "/0", mode="r")[...], frames)
    validate_ome_zarr(s.output_path)

    # a stream dropped without close() removes them when it is collected
    s2 = s.model_copy(update={"root_path": str(tmp_path / "dropped.ome.zarr")})
    stream = create_stream(s2)
    for f in frames[:10]:
        stream.append(f, metadata={"n": 1})
    stream.flush()
    assert _leftovers(s2.output_path)
    del stream
    gc.collect()
    # The idle-time refresh thread may hold the stream mid-refresh; the last reference,
    # and with it the clean-up, then goes when that refresh ends.
    assert wait_until(lambda: _leftovers(s2.output_path) == [])
    kept = zarr.open_array(s2.output_path + "/0", mode="r")
    np.testing.assert_array_equal(kept[:10], frames[:10])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_reader_never_sees_a_partial_file(kv: LocalKV) -> None:
    """Rewrite one key with 4 MB of 'a' or 'b' while another thread reads it."""
    contents = [b"a" * (4 * MB), b"b" * (4 * MB)]
    kv.set("key", contents[0], durable=False)
    stop = threading.Event()
    seen: list[bytes | None] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(kv.get("key"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            kv.set_parts("key", [contents[i % 2][: 2 * MB], contents[i % 2][2 * MB :]],
                         durable=False)  # fmt: skip
    finally:
        stop.set()
        reader.join()
    assert seen, "the reader never ran"
    torn = [s[:1] + s[-1:] for s in seen if s not in contents]
    assert torn == [], f"{len(torn)} of {len(seen)} reads saw a partial file"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root); it fills up for real."""
    target = tmp_path / "disk"
    target.mkdir()
    if os.geteuid() != 0 or os.environ.get("OMESTREAM_TEST_NO_MOUNT"):
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.parametrize("mode", ["anonymous", "named-temporary"])
def test_a_full_disk_keeps_the_old_file_and_frees_the_space(tiny_disk: Path, mode: str) -> None:
    kv = LocalKV(tiny_disk)
    if mode == "named-temporary":
        kv._anonymous_ok = False
    kv.set("0/c/0", b"old" * 1000)
    free = os.statvfs(tiny_disk).f_bavail
    with pytest.raises(WriteError, match="disk is full") as info:
        kv.set_parts("0/c/0", [b"x" * MB, b"y" * MB], durable=False)
    assert info.value.filename == kv.path("0/c/0")
    assert kv.get("0/c/0") == b"old" * 1000  # untouched
    assert _leftovers(kv.root) == []
    assert os.statvfs(tiny_disk).f_bavail == free  # the failed file's blocks are back
    kv.set("0/c/1", b"fits")  # and the disk is usable again
    assert kv.get("0/c/1") == b"fits"


def _page_aligned(nbytes: int) -> np.ndarray:
    return aligned_empty((nbytes,), np.uint8)


def test_direct_io_writes_around_the_page_cache(kv: LocalKV) -> None:
    require_droppable_cache(kv.root if os.path.exists(kv.root) else os.path.dirname(kv.root))
    body = _page_aligned(MB)
    body[:] = np.arange(MB, dtype=np.uint64).astype(np.uint8)
    tail = b"index-after-the-aligned-part"
    kv.set_parts("direct", [body, tail], durable=False, direct=True)
    kv.set_parts("cached", [body, tail], durable=False, direct=False)
    # Read through mincore before any read brings pages in.
    direct_pages = resident_pages(kv.path("direct"), 0, MB)
    cached_pages = resident_pages(kv.path("cached"), 0, MB)
    assert direct_pages == 0, "the aligned part went through the page cache"
    assert cached_pages == MB // 4096
    assert kv.get("direct") == body.tobytes() + tail == kv.get("cached")
    assert _leftovers(kv.root) == []


def test_unaligned_parts_fall_back_to_the_page_cache(kv: LocalKV) -> None:
    body = _page_aligned(MB + 4096)[1 : MB + 1]  # one byte off the page boundary
    body[:] = 7
    kv.set_parts("odd", [body], durable=False, direct=True)
    kv.set_parts("short", [_page_aligned(MB)[:1000]], durable=False, direct=True)
    assert kv.get("odd") == bytes([7]) * MB
    assert len(kv.get("short") or b"") == 1000


def test_file_systems_without_direct_io_are_written_normally(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no tmpfs to write to")
    root = Path(tempfile.mkdtemp(dir=shm))
    try:
        kv = LocalKV(root)
        body = _page_aligned(MB)
        body[:] = 3
        for i in range(2):  # tmpfs refuses O_DIRECT: the first write notices, both land
            kv.set_parts(f"c/{i}", [body], durable=False, direct=True)
            assert kv.get(f"c/{i}") == bytes([3]) * MB
    finally:
        shutil.rmtree(root)


def test_an_uncompressed_stream_bypasses_the_page_cache(tmp_path: Path) -> None:
    require_droppable_cache(tmp_path)
    frames = np.random.default_rng(0).integers(0, 60000, (6, 512, 512), dtype=np.uint16)
    roots = {}
    for direct in (True, False):
        root = tmp_path / f"direct-{direct}.ome.zarr"
        # a shard per frame (of one chunk), so that each frame is a file of its own
        dims = [Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=1),
                Dimension(name="y", count=512), Dimension(name="x", count=512)]  # fmt: skip
        settings = AcquisitionSettings(root_path=str(root), dimensions=dims, dtype="uint16",
                                       writer=WriterOptions(direct_io=direct))  # fmt: skip
        with create_stream(settings) as stream:
            for f in frames:
                stream.append(f)
        roots[direct] = root
    for direct, root in roots.items():
        chunks = sorted((root / "0" / "c").rglob("*"))
        files = [c for c in chunks if c.is_file()]
        assert len(files) == len(frames)
        # The chunk bytes only: a shard's small index after them is written normally.
        resident = sum(resident_pages(f, 0, frames[0].nbytes) for f in files)
        if direct:
            assert resident == 0
        else:
            assert resident > 0
        np.testing.assert_array_equal(zarr.open_array(root / "0")[:], frames)
        validate_ome_zarr(root)
