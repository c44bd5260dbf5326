"""A small key/value view of a storage location: local folders and fsspec URLs.

Keys are '/'-separated paths relative to the dataset root (``"0/zarr.json"``).
Local writes go to a file without a name (``O_TMPFILE``; a named temporary where
that does not exist) that is fsynced when durable and then linked or renamed into
place, so a reader or a crash never sees a half-written document or chunk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from omestream.errors import WriteError
from omestream.io.direct import direct_fits, drop_written
from omestream.io.durability import start_writeback
from omestream.io.libc import (
    ANONYMOUS_FILES,
    link_anonymous,
    open_anonymous,
    set_direct,
)

__all__ = ["FsspecKV", "KVStore", "LocalKV", "join_key", "open_kv"]

TMP_PREFIX = ".omestream-tmp-"


def join_key(*parts: str) -> str:
    """A store key from group and array paths; empty parts ("" is the root) drop out."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class KVStore(ABC):
    """The storage operations omestream needs, and nothing more."""

    url: str

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, data: bytes | memoryview, *, durable: bool = True) -> None: ...

    def set_stream(self, key: str, parts: Iterable[bytes], *, durable: bool = True) -> None:
        """Like :meth:`set`, from pieces made as they are written (a large document
        need not be one string in memory where the store can write in pieces)."""
        self.set(key, b"".join(parts), durable=durable)

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def list_dir(self, prefix: str) -> list[str]:
        """Names directly below ``prefix`` (files and folders)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def zarr_store(self, read_only: bool = False) -> Any:
        """A zarr-python store over the same location."""

    def root_exists(self) -> bool:
        return self.exists("")

    @property
    def is_local(self) -> bool:
        return False


class LocalKV(KVStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.url = self.root
        self._made: set[str] = set()
        # Per store (one file system): what it refused once is not tried again.
        self._anonymous_ok = ANONYMOUS_FILES
        self._direct_ok = True
        self._direct_all_ok = True  # aligned parts written whole with direct I/O
        self._retire_cap: int | None = None  # see retire_replaced()
        self._retired: list[str] = []
        self._retired_bytes = 0
        self._retire_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return True

    def path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/")) if key else self.root

    def get(self, key: str) -> bytes | None:
        try:
            with open(self.path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._made:
            os.makedirs(directory, exist_ok=True)
            self._made.add(directory)

    def set(self, key: str, data: bytes | memoryview, *, durable: bool = True) -> None:
        self.set_parts(key, [data], durable=durable)

    def set_stream(self, key: str, parts: Iterable[bytes], *, durable: bool = True) -> None:
        self.set_parts(key, parts, durable=durable)

    def retire_replaced(self, cap_bytes: int = 256 << 20) -> None:
        """Keep the files that writes replace, as hidden links, until :meth:`stop_retiring`.

        Replacing a file frees the old one's blocks, and on a file system mounted with
        ``discard`` (and no journal to batch it) that waits for the disk: renaming a
        metadata document over its old version stalled 0.35-1.5 s while frames streamed
        with direct I/O, and so did the frame writes waiting on it. A file that still
        has a link frees nothing. Past ``cap_bytes`` of retired files they are removed
        at once; leftovers of a crash are hidden temporaries that ``repair`` removes.
        """
        with self._retire_lock:
            self._retire_cap = cap_bytes

    def stop_retiring(self) -> None:
        """Remove the retired files (when the disk is idle again) and stop retiring."""
        with self._retire_lock:
            self._retire_cap = None
        self._purge_retired()

    def _purge_retired(self) -> None:
        with self._retire_lock:
            names, self._retired, self._retired_bytes = self._retired, [], 0
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _retire(self, target: str) -> None:
        """Link ``target`` under a hidden name before it is replaced (when retiring)."""
        cap = self._retire_cap
        if cap is None:
            return
        try:
            size = os.stat(target).st_size
        except OSError:
            return  # nothing to replace
        if self._retired_bytes + size > cap:
            self._purge_retired()
        name = _tmp_name(os.path.dirname(target))
        try:
            os.link(target, name)
        except OSError:
            return  # no hard links here: the replace frees it now
        with self._retire_lock:
            self._retired.append(name)
            self._retired_bytes += size

    def set_parts(
        self,
        key: str,
        parts: list[bytes | memoryview] | Iterable[bytes],
        *,
        durable: bool = True,
        writeback: bool = False,
        direct: bool | Literal["all"] = False,
    ) -> None:
        """Write the concatenation of ``parts`` (one writev, no joined copy).

        ``parts`` other than a list are written as they come (never direct).

        ``durable`` waits until the bytes are on disk; ``writeback`` only starts
        writing them out now, so a later sync finds little left to do. ``direct``
        writes the first part around the page cache (``O_DIRECT``) when it is
        page-aligned and whole pages long and the file system allows it: large
        uncompressed chunks then skip a copy and the cost of fresh cache pages.
        ``direct="all"`` writes every part that way (each aligned in address and
        length, such as a padded shard); a refusal writes them through the cache.
        """
        target = self.path(key)
        directory = os.path.dirname(target)
        if not isinstance(parts, list):
            direct = False
        elif direct == "all":
            direct = "all" if self._direct_all_ok else False
        else:
            direct = direct and self._direct_ok and direct_fits(parts[0] if parts else b"")
        try:
            self._ensure_dir(directory)
            fd = open_anonymous(directory) if self._anonymous_ok else None
            if fd is None:
                self._anonymous_ok = False
                self._retire(target)
                wrote_direct = _set_via_rename(target, parts, durable, writeback, direct)
            else:
                try:
                    wrote_direct = _write_parts(fd, parts, durable, writeback, direct)
                    try:
                        link_anonymous(fd, target)
                    except FileExistsError:
                        # Links never replace: name it, then rename that over the target.
                        tmp = _tmp_name(directory)
                        link_anonymous(fd, tmp)
                        self._retire(target)
                        _replace(tmp, target)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _write_error(exc, target) from exc
        if direct == "all" and not wrote_direct:
            self._direct_all_ok = False
        elif direct and not wrote_direct:
            self._direct_ok = False

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        p = self.path(prefix)
        if os.path.isdir(p):
            shutil.rmtree(p)
            # folders this store made there are gone: make them again when written to
            self._made = {d for d in self._made if d != p and not d.startswith(p + os.sep)}
        elif os.path.exists(p):
            os.unlink(p)

    def list_dir(self, prefix: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.path(prefix)) if not n.startswith(TMP_PREFIX))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def sync_dir(self, key: str = "") -> None:
        """fsync a directory so renames inside it survive a power cut."""
        with contextlib.suppress(OSError):
            fd = os.open(self.path(key), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def walk_tmp(self) -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                if f.startswith(TMP_PREFIX):
                    yield os.path.join(dirpath, f)

    def zarr_store(self, read_only: bool = False) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.root, read_only=read_only)


class FsspecKV(KVStore):
    """Object stores and other fsspec URLs (``s3://bucket/data.ome.zarr``)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root = self.root.rstrip("/")

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def get(self, key: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self.path(key))
            return data
        except (FileNotFoundError, IsADirectoryError):
            return None

    def set(self, key: str, data: bytes | memoryview, *, durable: bool = True) -> None:
        # Object stores replace a whole object per PUT: no torn writes to guard against.
        try:
            self.fs.pipe_file(self.path(key), bytes(data))
        except OSError as exc:
            raise _write_error(exc, f"{self.url}/{key}") from exc

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(prefix), recursive=True)

    def list_dir(self, prefix: str) -> list[str]:
        try:
            entries = self.fs.ls(self.path(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def exists(self, key: str) -> bool:
        # not every filesystem caches, so failing to invalidate is harmless
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.path(key))
        return bool(self.fs.exists(self.path(key)))

    def root_exists(self) -> bool:
        return bool(self.list_dir(""))

    def zarr_store(self, read_only: bool = False) -> Any:
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )


def _tmp_name(directory: str) -> str:
    return os.path.join(directory, f"{TMP_PREFIX}{uuid.uuid4().hex}")


def _set_via_rename(
    target: str,
    parts: list[bytes | memoryview] | Iterable[bytes],
    durable: bool,
    writeback: bool,
    direct: bool | Literal["all"],
) -> bool:
    """Where files without a name do not exist: a named temporary renamed into place.

    Returns whether the first part was written with direct I/O (see ``_write_parts``).
    """
    tmp = _tmp_name(os.path.dirname(target))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        wrote_direct = _write_parts(fd, parts, durable, writeback, direct)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    _replace(tmp, target)
    return wrote_direct


def _write_direct(fd: int, views: list[memoryview]) -> bool:
    """Write ``views`` (consumed) from the start of ``fd`` with direct I/O, each
    aligned in address and length; False if refused, with nothing written."""
    if not set_direct(fd, True):
        return False
    written = 0
    try:
        while views:
            n = os.writev(fd, views[:1024])
            written += n
            drop_written(views, n)
    except OSError as exc:
        if exc.errno != errno.EINVAL or written:
            raise
        return False  # stricter alignment than the file system takes: nothing written
    finally:
        set_direct(fd, False)
    return True


def _write_parts(
    fd: int,
    parts: list[bytes | memoryview] | Iterable[bytes],
    durable: bool,
    writeback: bool,
    direct: bool | Literal["all"] = False,
) -> bool:
    """One writev of all parts (no joined copy), then fsync or start writeback.

    With ``direct`` the first part goes around the page cache, with ``"all"`` every
    part (each aligned in address and length); returns whether it did. Parts other
    than a list are written a few megabytes at a time, as they are made.
    """
    if not isinstance(parts, list):
        _write_stream(fd, parts)
        _finish(fd, durable, writeback)
        return False
    views = [v for v in (memoryview(p).cast("B") for p in parts) if len(v)]
    if direct == "all" and _write_direct(fd, views):
        if durable:
            os.fsync(fd)
        return True
    wrote_direct = direct is True and _write_direct(fd, [views[0]])
    if wrote_direct:
        views.pop(0)
    while views:
        drop_written(views, os.writev(fd, views[:1024]))
    _finish(fd, durable, writeback)
    return wrote_direct


def _write_stream(fd: int, parts: Iterable[bytes], batch: int = 4 << 20) -> None:
    views: list[memoryview] = []

    def write_held() -> None:
        while views:  # writev takes at most IOV_MAX (1024) buffers
            drop_written(views, os.writev(fd, views[:1024]))

    held = 0
    for p in parts:
        if p:
            views.append(memoryview(p).cast("B"))
            held += len(p)
        if held >= batch or len(views) >= 1024:
            write_held()
            held = 0
    write_held()


def _finish(fd: int, durable: bool, writeback: bool) -> None:
    if durable:
        os.fsync(fd)
    elif writeback:
        start_writeback(fd)


def _replace(tmp: str, target: str) -> None:
    try:
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_error(exc: OSError, where: str) -> WriteError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    err = WriteError(exc.errno or 0, f"cannot write {where}: {reason}")
    err.filename = where
    return err


def open_kv(
    location: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> KVStore:
    """A KVStore for a local path or an fsspec URL."""
    loc = os.fspath(location)
    if "://" in loc and not loc.startswith("file://"):
        return FsspecKV(loc, storage_options)
    return LocalKV(loc.removeprefix("file://"))
