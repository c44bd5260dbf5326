"""Where a local dataset's lock files live, and the lock an open stream holds.

Lock files sit in a hidden folder next to the dataset, ``<parent>/.<name>.locks/``,
never inside it (see :mod:`omestream.store.lock` for the locks of changes made through
``open_store``). An open stream holds ``stream.lock`` there for its whole life, so a
second stream on the same path (``overwrite=True`` included) and changes to a dataset
being streamed are refused instead of mixing two writers' bytes. ``flock`` locks: the
kernel releases them when a process dies, so a killed stream leaves nothing held.
Datasets in S3-compatible object stores get the same locks as lease objects made with
conditional writes (see :mod:`omestream.io.object_locks`): a killed stream's lease runs
out instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from omestream.errors import ConcurrentModificationError
from omestream.io.kv import KVStore, LocalKV
from omestream.io.object_locks import ObjectLock, ObjectLockTimeout, supports_object_locks

__all__ = ["check_no_stream", "hold_stream", "lock_dir", "remote_locks"]

_STREAM = "stream.lock"


def _nothing() -> None:
    pass


def _local_root(location: KVStore | str) -> str | None:
    """The folder of a local dataset; None for remote stores (whose locks, where the
    store takes conditional writes, are leases: see remote_locks)."""
    if isinstance(location, LocalKV):
        return location.root
    if isinstance(location, str) and "://" not in location:
        return location
    return None


def lock_dir(root: str) -> str:
    root = os.path.abspath(root).rstrip(os.sep)
    parent, name = os.path.split(root)
    return os.path.join(parent, f".{name}.locks")


def remote_locks(location: KVStore | str) -> tuple[Any, str] | None:
    """(file system, lock folder) of a dataset in an object store that takes conditional
    writes; None elsewhere (local datasets, and stores where one writer is assumed)."""
    fs = getattr(location, "fs", None)
    if isinstance(location, str | LocalKV) or fs is None or not supports_object_locks(fs):
        return None
    root = str(getattr(location, "root", "")).rstrip("/")
    parent, _, name = root.rpartition("/")
    # a dataset at the top of its bucket keeps its locks inside it
    return fs, f"{parent}/.{name}.locks" if parent else f"{root}/.omestream.locks"


class _Busy(Exception):
    """The lock is held by another open stream."""


def _try_lock(root: str) -> Callable[[], None]:
    """Lock ``stream.lock`` of ``root`` without waiting; returns the unlock. Raises
    _Busy when another holder has it, OSError when the lock file cannot be made."""
    directory = lock_dir(root)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, _STREAM)
    if fcntl is None:  # Windows: filelock's msvcrt lock
        from filelock import FileLock, Timeout

        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise _Busy from None
        return lock.release
    # flock through a read-only descriptor: a file held open for writing would keep
    # the file system from being remounted read-only under a running stream.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _Busy from None
    except BaseException:
        os.close(fd)
        raise
    return functools.partial(os.close, fd)  # closing the descriptor drops the lock


def hold_stream(location: KVStore | str) -> Callable[[], None]:
    """Take the stream lock of the local dataset at ``location`` (not waiting: a stream
    that is open there already is an error) and return the function that releases it."""
    root = _local_root(location)
    if root is None:
        return _hold_remote(location)
    try:
        unlock = _try_lock(root)
    except _Busy:
        raise ConcurrentModificationError(
            f"{root} is being written by another open stream (in this or another process, "
            "or a Dask write still running); close that stream first, or write to another "
            "root_path; nothing was changed"
        ) from None
    except OSError:
        # No lock folder can be made next to the dataset (a read-only parent): stream
        # without the guard; where the dataset cannot be written either, creating it
        # reports that.
        return _nothing

    released = False

    def release() -> None:
        nonlocal released
        if released:  # once: a second call must not unlink a later stream's lock file
            return
        released = True
        # Leave no lock folder behind each stream. A stream starting in the same
        # instant may lock the file about to go; that only misses one conflict check.
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(lock_dir(root), _STREAM))
        unlock()
        with contextlib.suppress(OSError):
            os.rmdir(lock_dir(root))

    return release


def _hold_remote(location: KVStore | str) -> Callable[[], None]:
    remote = remote_locks(location)
    if remote is None:
        return _nothing
    fs, folder = remote
    lock = ObjectLock(fs, f"{folder}/{_STREAM}")
    try:
        lock.acquire(timeout=0)
    except ObjectLockTimeout:
        raise ConcurrentModificationError(
            f"{getattr(location, 'url', location)} is being written by another open stream "
            f"(its lease {lock.path} is held; a stream that was killed frees it once its "
            f"{lock.lease_s:g} s lease runs out); close that stream first, or write to "
            "another root_path; nothing was changed"
        ) from None
    return _RemoteHold(lock)


class _RemoteHold:
    """Gives a stream's lease back once; says whether the stream lost it meanwhile."""

    def __init__(self, lock: ObjectLock) -> None:
        self._lock = lock
        self._released = False

    def __call__(self) -> None:
        if not self._released:
            self._released = True
            self._lock.release()

    def lost(self) -> bool:
        return self._lock.lost


def _check_remote(location: KVStore | str, action: str) -> bool:
    remote = remote_locks(location)
    if remote is None:
        return False
    fs, folder = remote
    lock = ObjectLock(fs, f"{folder}/{_STREAM}")
    state = lock.state()
    if state == "held":
        raise ConcurrentModificationError(
            f"{getattr(location, 'url', location)} is being written by an open stream (its "
            f"lease {lock.path} is held; a killed stream's runs out after {lock.lease_s:g} "
            f"s); cannot {action} until it is closed; nothing was changed"
        )
    return state == "stale"


def check_no_stream(location: KVStore | str, action: str) -> bool:
    """Raise if an open stream holds the stream lock of the local dataset at ``location``
    or of a dataset holding it (an image opened inside a plate being streamed).

    Returns whether the dataset itself has a stream lock that no process holds: a
    stream wrote it, and that stream's process has closed it or is gone.
    """
    root = _local_root(location)
    if root is None:
        return _check_remote(location, action)
    path = os.path.abspath(root)
    free = False
    while os.path.basename(path):  # up to, not including, the file system's root
        if os.path.exists(os.path.join(lock_dir(path), _STREAM)):  # else: never streamed
            try:
                _try_lock(path)()
            except _Busy:
                raise ConcurrentModificationError(
                    f"{path} is being written by an open stream; cannot {action} until it "
                    "is closed (a stream, or a Dask write still running); nothing was changed"
                ) from None
            except OSError:
                pass  # a lock file this user cannot open: not ours to judge
            else:
                free = free or path == os.path.abspath(root)
        path = os.path.dirname(path)
    return free
