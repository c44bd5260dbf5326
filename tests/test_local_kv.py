"""Local file writes (omestream.io.kv.LocalKV): whole or nothing, on a real disk.

Every chunk and metadata document is written to a file without a name
(``O_TMPFILE``) and linked into place, or, where that is not available, to a named
temporary renamed into place. Both ways are run here.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from omestream.errors import WriteError
from omestream.io import libc
from omestream.io.kv import TMP_PREFIX, LocalKV

MB = 1 << 20


@pytest.fixture(params=["anonymous", "named-temporary"])
def kv(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalKV:
    if request.param == "named-temporary":
        monkeypatch.setattr(libc, "_anonymous_ok", [False])
    elif libc.open_anonymous(str(tmp_path)) is None:
        pytest.skip("this file system has no O_TMPFILE")
    return LocalKV(tmp_path / "store")


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
def test_a_full_disk_keeps_the_old_file_and_frees_the_space(
    tiny_disk: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if mode == "named-temporary":
        monkeypatch.setattr(libc, "_anonymous_ok", [False])
    kv = LocalKV(tiny_disk)
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
