"""The tensorstore engine: arrays created by omestream, chunks written by tensorstore.

Frames are written into a tensorstore transaction; when it holds about half the
memory budget (or at flush/close) it is committed asynchronously while the next one
fills, so tensorstore encodes many chunks in parallel and writes each shard once per
commit instead of once per frame. One commit is in flight at a time, which keeps two
commits from rewriting the same shard concurrently. Shape changes are written by
omestream (keeping its metadata intact) and the array is reopened so tensorstore's
cached metadata follows.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from omestream.backends.zarr_common import ZarrArrayBackend
from omestream.errors import WriteError
from omestream.io.kv import KVStore, LocalKV
from omestream.plan import StoragePlan
from omestream.settings import AcquisitionSettings, WriterOptions

__all__ = ["TensorstoreBackend"]


class TensorstoreBackend(ZarrArrayBackend):
    name = "tensorstore"

    def __init__(self, plan: StoragePlan, kv: KVStore, options: WriterOptions) -> None:
        import tensorstore as ts

        super().__init__(plan, kv, options)
        self._ts = ts
        spec: dict[str, Any] = {"cache_pool": {"total_bytes_limit": 0}}
        if options.threads:
            spec["data_copy_concurrency"] = {"limit": options.threads}
        self._context = ts.Context(spec)
        self._arrays: dict[tuple[int, int], Any] = {}
        self._txn: Any = None
        self._txn_bytes = 0
        self._commit_at = max(options.memory_budget_mb * 2**20 // 2, 1)
        self._committing: Any = None  # future of the commit in flight
        self._closed = False

    @classmethod
    def check(cls, settings: AcquisitionSettings) -> str | None:
        root = settings.root_path
        if "://" in root and not root.startswith("file://"):
            return (
                f"it writes to local folders only, not {root!r}; use backend 'omestream' or "
                "'zarr-python' for object stores"
            )
        return None

    # -- arrays -------------------------------------------------------------------------
    def _spec(self, image: int, level: int) -> dict[str, Any]:
        assert isinstance(self.kv, LocalKV)
        folder = os.path.join(self.kv.root, *self.path(image, level).split("/"))
        driver = "zarr3" if self.plan.zarr_format == 3 else "zarr"
        return {"driver": driver, "kvstore": {"driver": "file", "path": folder + os.sep}}

    def _open(self, image: int, level: int) -> Any:
        try:
            arr = self._ts.open(
                self._spec(image, level), context=self._context, open=True
            ).result()
        except Exception as exc:  # tensorstore raises ValueError for most failures
            raise WriteError(
                0, f"tensorstore cannot open {self.kv.url}/{self.path(image, level)}: {exc}"
            ) from exc
        self._arrays[(image, level)] = arr
        return arr

    def _array(self, image: int, level: int) -> Any:
        arr = self._arrays.get((image, level))
        return arr if arr is not None else self._open(image, level)

    def create_arrays(self) -> None:
        super().create_arrays()
        for i, lv in self.shapes:
            self._open(i, lv)

    def open_arrays(self) -> None:
        super().open_arrays()
        self._arrays.clear()

    def resize(self, image: int, level: int, shape: tuple[int, ...]) -> None:
        if self.shapes.get((image, level)) == tuple(shape):
            return
        super().resize(image, level, shape)
        # Writes already in the transaction stay valid (they lie inside the old shape);
        # later ones go through a handle that has read the new shape.
        self._arrays.pop((image, level), None)

    # -- frames -------------------------------------------------------------------------
    def write_frame(
        self, image: int, index: tuple[int, ...], frame: np.ndarray, level: int = 0
    ) -> None:
        if self._txn is None:
            self._txn = self._ts.Transaction()
        target = self._array(image, level).with_transaction(self._txn)
        try:
            # waiting for the copy lets the caller reuse ``frame`` at once
            target[index].write(frame).copy.result()
        except Exception as exc:
            raise WriteError(0, f"tensorstore failed writing to {self.kv.url}: {exc}") from exc
        self._txn_bytes += frame.nbytes
        if self._txn_bytes >= self._commit_at:
            self._commit()

    def write_region(
        self, image: int, level: int, selection: tuple[slice, ...], data: np.ndarray
    ) -> None:
        self.flush(wait=True)
        try:
            self._array(image, level)[selection].write(data).result()
        except Exception as exc:
            raise WriteError(0, f"tensorstore failed writing to {self.kv.url}: {exc}") from exc

    # -- commits ------------------------------------------------------------------------
    def _commit(self) -> None:
        txn, self._txn, self._txn_bytes = self._txn, None, 0
        if txn is None:
            return
        self._wait()
        self._committing = txn.commit_async()

    def _wait(self) -> None:
        pending, self._committing = self._committing, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception as exc:
            raise WriteError(0, f"tensorstore failed writing to {self.kv.url}: {exc}") from exc

    def flush(self, wait: bool = False) -> None:
        self._commit()
        if wait:
            self._wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.flush(wait=True)
        if self.options.fsync and isinstance(self.kv, LocalKV):
            from omestream.io.durability import syncfs

            syncfs(self.kv.root)

    def abort(self) -> None:
        self._closed = True
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
        with contextlib.suppress(WriteError):
            self._wait()
