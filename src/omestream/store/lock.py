"""Inter-process locks for changing one dataset, kept outside the Zarr hierarchy.

Lock files live in a hidden folder next to the dataset: ``<parent>/.<name>.locks/``
(for ``plates/p1.ome.zarr`` that is ``plates/.p1.ome.zarr.locks/``). Keeping them out
of the store means readers and validators never see them, copying or uploading the
dataset does not carry stale locks along, and deleting the dataset does not delete a
lock another process holds.

Three kinds of lock:

* ``metadata()`` serialises every read-modify-write of group metadata,
* ``image(path)`` serialises every pixel write into one image (so two writers never
  rewrite the same chunk or shard from stale copies), and
* the stream lock, held by an open stream for its whole life (see
  :mod:`omestream.io.locks`): a second stream, ``overwrite=True`` included, and every
  change through ``open_store`` or ``repair`` are refused while it is held.

Lock order: metadata first, then an image. The metadata lock may be held while an
image lock is taken (adding, renaming or deleting a field, changing channels), never
taken while only an image lock is held: a change that may need the metadata lock
takes it (or finishes with it, see ``StoreContext.changing``) before the image lock.
Two processes then never each hold the lock the other waits for. Taking the metadata
lock under an image lock raises RuntimeError, so a path breaking the order fails at
once instead of deadlocking until the timeout.

Locks are ``filelock`` (``flock``) locks: released by the kernel when a process dies;
re-entrant within one thread, exclusive between threads and processes. In S3-compatible
object stores the same locks are lease objects made with conditional writes (see
:mod:`omestream.io.object_locks`), so writers on several machines take turns there too;
a killed writer's lease runs out. Other remote stores have no shared lock; changes
there assume one writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from omestream.errors import ConcurrentModificationError
from omestream.io.kv import KVStore
from omestream.io.locks import lock_dir, remote_locks
from omestream.io.object_locks import ObjectLock, ObjectLockTimeout

__all__ = ["DEFAULT_TIMEOUT_S", "StoreLocks", "lock_dir"]

DEFAULT_TIMEOUT_S = 120.0
_METADATA = "metadata.lock"


class StoreLocks:
    """Locks for one dataset: ``root`` a local one's folder, ``remote`` (file system,
    lock folder) one in an object store; neither: locks are no-ops (one writer)."""

    def __init__(
        self,
        root: str | None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        remote: tuple[Any, str] | None = None,
        url: str | None = None,
    ) -> None:
        self.root = root
        self.remote = remote
        self.timeout_s = timeout_s
        self._where = url or root or "the dataset"  # named in errors
        self._locks: dict[str, object] = {}
        self._local = threading.local()  # names of the locks this thread holds, with repeats

    @classmethod
    def of(cls, kv: KVStore, timeout_s: float = DEFAULT_TIMEOUT_S) -> StoreLocks:
        """The locks of the dataset ``kv`` holds, wherever it is."""
        if kv.is_local:
            return cls(kv.root, timeout_s)  # type: ignore[attr-defined]
        return cls(None, timeout_s, remote_locks(kv), kv.url)

    def _held_here(self) -> list[str]:
        held: list[str] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return held

    def _check_order(self, name: str) -> None:
        """Refuse the metadata lock under an image lock (unless it is held already)."""
        held = self._held_here()
        if name == _METADATA and _METADATA not in held and held:
            raise RuntimeError(
                f"{self._where}: the metadata lock was asked for while an image lock is held; "
                "the lock order is metadata, then image (see omestream.store.lock)"
            )

    def _lock(self, name: str) -> object:
        from filelock import FileLock

        lock = self._locks.get(name)
        if lock is None and self.remote is not None:
            fs, folder = self.remote
            lock = self._locks[name] = ObjectLock(fs, f"{folder}/{name}")
        if lock is None:
            assert self.root is not None
            directory = lock_dir(self.root)
            os.makedirs(directory, exist_ok=True)
            lock = self._locks[name] = FileLock(os.path.join(directory, name))
        return lock

    @contextlib.contextmanager
    def _held(self, name: str, what: str) -> Iterator[None]:
        if self.root is None and self.remote is None:
            yield
            return
        from filelock import Timeout

        self._check_order(name)
        lock = self._lock(name)
        try:
            lock.acquire(timeout=self.timeout_s)  # type: ignore[attr-defined]
        except (Timeout, ObjectLockTimeout):
            folder = lock_dir(self.root) if self.root is not None else self.remote[1]  # type: ignore[index]
            raise ConcurrentModificationError(
                f"{self._where}: another writer has held the {what} lock for more than "
                f"{self.timeout_s:g} s ({folder}/{name}); nothing was changed"
            ) from None
        held = self._held_here()
        held.append(name)
        try:
            yield
        finally:
            held.pop()
            lock.release()  # type: ignore[attr-defined]

    def metadata(self) -> contextlib.AbstractContextManager[None]:
        """Held around each read-modify-write of group metadata."""
        return self._held(_METADATA, "metadata")

    def image(self, path: str) -> contextlib.AbstractContextManager[None]:
        """Held around pixel writes into the image at group ``path``."""
        digest = hashlib.sha1(path.encode()).hexdigest()[:16]
        return self._held(f"image-{digest}.lock", f"image {path or '.'!r}")
