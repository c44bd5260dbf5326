"""Locks for datasets in S3-compatible object stores, made of conditional writes.

A lock is a small object beside the dataset (``<parent>/.<name>.locks/<lock>``, as on a
local disk) that a writer creates with ``If-None-Match: *``: of several writers asking
at once, the store lets exactly one create it. The holder renews it every third of the
lease with a write conditional on its ETag (``If-Match``) and deletes it, again
conditionally, when done. A writer that dies stops renewing; once the object is older
than its lease by the store's own clock (the ``Date`` of the very response that read
it, so no client's clock matters), a waiting writer takes it over with ``If-Match``,
which again lets only one of them succeed.

Stores without conditional writes (most other fsspec file systems) get no lock: one
writer is assumed there, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["DEFAULT_LEASE_S", "ObjectLock", "ObjectLockTimeout", "supports_object_locks"]

DEFAULT_LEASE_S = 30.0
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
# what stores without conditional writes answer to If-None-Match / If-Match
_UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501"}


class ObjectLockTimeout(Exception):
    """The lock stayed held by another writer for the whole timeout."""


def supports_object_locks(fs: Any) -> bool:
    """Whether ``fs`` is an S3 file system (s3fs), whose stores take conditional writes."""
    return hasattr(fs, "call_s3") and hasattr(fs, "split_path")


def _code(exc: BaseException) -> str | None:
    """The S3 error code behind a failed request (s3fs keeps botocore's error as cause)."""
    for e in (exc, exc.__cause__, exc.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
    return None


def _conflict(exc: BaseException) -> bool:
    """Whether a failed request was refused for its condition (another writer won)."""
    # FileExistsError: s3fs's name for a failed If-None-Match
    return _code(exc) in _CONFLICT or isinstance(exc, FileExistsError)


class ObjectLock:
    """One lock object; re-entrant within a thread, exclusive between threads,
    processes and machines (the same interface as ``filelock.FileLock``)."""

    def __init__(self, fs: Any, path: str, lease_s: float | None = None) -> None:
        self._fs = fs
        self._bucket, self._key = fs.split_path(path)[:2]
        self.path = path
        self.lease_s = lease_s if lease_s is not None else DEFAULT_LEASE_S
        self._local = threading.Lock()  # threads of this process queue here first
        self._owner: int | None = None
        self._depth = 0
        self._etag: str | None = None
        self._token = uuid.uuid4().hex
        self._lost = False
        self._renewed = 0.0  # monotonic time of the last lease write that succeeded
        self._lease_io = threading.Lock()  # one renewal or check of the lease at a time
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: the store refused conditional writes: no lock there, one writer assumed
        self.unsupported = False

    def _call(self, method: str, **kw: Any) -> Any:
        return self._fs.call_s3(method, Bucket=self._bucket, Key=self._key, **kw)

    def _body(self) -> bytes:
        # The token makes each holding's ETag (the MD5 of the body) its own: two holders
        # in one process would otherwise write equal bodies, and If-Match could not
        # tell a lease taken over from one's own.
        who = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lease_s": self.lease_s,
            "token": self._token,
        }
        return json.dumps(who).encode()

    @property
    def lost(self) -> bool:
        """Whether another writer took the lock over while this one held it (its
        renewals failed for a whole lease: a network outage, a suspended process).

        Free while renewals are on time. Once the last one that succeeded is older
        than two thirds of the lease (the renewer could not reach the store, or the
        whole process was suspended), the lease is renewed here and now before the
        answer, so a writer never goes on for up to a renewal period on a dataset
        another writer may already have taken over."""
        held = self._owner is not None and not (self._lost or self.unsupported)
        if held and time.monotonic() - self._renewed > self.lease_s * 2 / 3:
            self._renew_once()
        return self._lost

    def state(self) -> str:
        """``"free"`` (no lock object), ``"held"`` (a lease still running) or ``"stale"``
        (left by a writer that stopped renewing it)."""
        head = self._head()
        if head is None:
            return "free"
        return "stale" if self._expired(head) else "held"

    def _head(self) -> dict[str, Any] | None:
        try:
            return self._call("head_object")  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def _expired(self, head: dict[str, Any]) -> bool:
        now = parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        return (now - head["LastModified"]).total_seconds() > self.lease_s

    # -- taking and giving back ----------------------------------------------------------
    def acquire(self, timeout: float) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        deadline = time.monotonic() + timeout
        if not self._local.acquire(timeout=max(0.0, timeout)):
            raise ObjectLockTimeout(self.path)
        try:
            delay = 0.02
            self._token = uuid.uuid4().hex  # a new holding
            while not self._try_take():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ObjectLockTimeout(self.path)
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
        except BaseException:
            self._local.release()
            raise
        self._owner, self._depth, self._lost = me, 1, False
        self._renewed = time.monotonic()
        if self.unsupported:
            return
        self._stop.clear()
        self._renewer = threading.Thread(
            target=self._renew, name="omestream-lock-lease", daemon=True
        )
        self._renewer.start()

    def _try_take(self) -> bool:
        if self.unsupported:
            return True
        try:
            self._etag = self._call("put_object", Body=self._body(), IfNoneMatch="*")["ETag"]
            return True
        except OSError as exc:
            if _code(exc) in _UNSUPPORTED:
                self.unsupported = True
                warnings.warn(
                    f"{self.path}: this object store does not take conditional writes "
                    f"({_code(exc)}), so it holds no lock; changes to this dataset assume "
                    "one writer at a time",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return True
            if not _conflict(exc):
                raise
        head = self._head()  # held: is it stale by the store's clock?
        if head is None or not self._expired(head):
            return False  # (released meanwhile: tried again after the pause)
        try:  # its writer stopped renewing: take it over, one writer only
            self._etag = self._call("put_object", Body=self._body(), IfMatch=head["ETag"])["ETag"]
            return True
        except OSError as exc:  # FileNotFoundError: released meanwhile
            if isinstance(exc, FileNotFoundError) or _conflict(exc):
                return False
            raise

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            if not self._renew_once():
                return

    def _renew_once(self) -> bool:
        """Write the lease again, conditional on it being ours; False once it is not."""
        with self._lease_io:
            if self._lost or self._etag is None:
                return not self._lost
            try:
                put = self._call("put_object", Body=self._body(), IfMatch=self._etag)
                self._etag, self._renewed = put["ETag"], time.monotonic()
            except Exception:  # a network error: the next renewal may pass
                with contextlib.suppress(Exception):
                    head = self._head()
                    # replaced, or taken over and given back: either way not ours
                    if head is None or head["ETag"] != self._etag:
                        self._lost = True
            return not self._lost

    def release(self) -> None:
        """Give the lock back (a stream may close on another thread than it opened on)."""
        if self._owner is None:
            raise RuntimeError(f"{self.path}: released but not held")
        self._depth -= 1
        if self._depth:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        try:
            if not (self._lost or self.unsupported):
                with contextlib.suppress(FileNotFoundError):
                    self._call("delete_object", IfMatch=self._etag)
        except OSError as exc:
            # The change made under the lock is done either way: a lock object left
            # behind only makes the next writer wait for its lease to run out.
            if not _conflict(exc):  # (a conflict: taken over already, not ours to delete)
                warnings.warn(
                    f"{self.path}: the lock could not be given back ({exc}); other writers "
                    f"wait until its lease runs out ({self.lease_s:g} s)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        finally:
            self._owner, self._etag = None, None
            self._local.release()
