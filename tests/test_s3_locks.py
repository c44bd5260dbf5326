"""Several writers on one dataset in an object store: a real S3-compatible server (moto)
on 127.0.0.1, real processes. Locks there are lease objects made with conditional
writes; a killed writer's lease runs out by the store's clock."""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from omestream import ConcurrentModificationError, create_stream, open_store
from omestream.io.object_locks import ObjectLock, ObjectLockTimeout
from tests import s3_server as _s3
from tests.cases import frame_for
from tests.checks import validate_ome_zarr
from tests.s3_server import S3Server
from tests.store_fixtures import C, X, Y, pixels, write_plate

s3_server = _s3.s3_server
s3_bucket = _s3.s3_bucket

N_WORKERS = 4
ROWS = "CDEF"
T_END = 2 + N_WORKERS  # every field ends this long (the ome-zarr reader tiles them)
REPO = Path(__file__).resolve().parents[1]


def _fs(server: S3Server) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**server.storage_options)


def _upload(server: S3Server, local: Path, bucket: str) -> str:
    _fs(server).put(str(local), f"{bucket}/{local.name}", recursive=True)
    return f"s3://{bucket}/{local.name}"


def _worker(url: str, options: dict[str, Any], i: int, barrier: Any) -> None:
    plate = open_store(url, mode="r+", storage_options=options)
    like = plate["A/1/0"]
    barrier.wait()  # every writer changes the plate at the same moment
    plate.add_position(ROWS[i], str(i + 3), "0", like=like, data=pixels(100 + i, (T_END, C, Y, X)))
    # and all append to the two first images: the same documents and the same chunks
    for field in ("A/1/0", "B/2/0"):
        plate[field].append(np.full((1, C, Y, X), 50000 + i, "uint16"))


def test_writers_in_several_processes_take_turns(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    base = write_plate(tmp_path / "race.ome.zarr", "0.5", "omestream")
    url = _upload(s3_server, tmp_path / "race.ome.zarr", s3_bucket)
    ctx = mp.get_context("spawn")  # fresh interpreters: no event loop shared with this one
    barrier = ctx.Barrier(N_WORKERS)
    opts = s3_server.storage_options
    procs = [ctx.Process(target=_worker, args=(url, opts, i, barrier)) for i in range(N_WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, f"a writer failed with exit code {p.exitcode}"

    plate = open_store(url, storage_options=opts)
    wells = {"A/1", "B/2"} | {f"{ROWS[i]}/{i + 3}" for i in range(N_WORKERS)}
    assert set(plate.wells) == wells  # no writer's well lost to another's rewrite
    local = tmp_path / "back.ome.zarr"
    _fs(s3_server).get(url.removeprefix("s3://"), str(local), recursive=True)
    for i in range(N_WORKERS):
        got = zarr.open_array(str(local / f"{ROWS[i]}/{i + 3}/0/0"), mode="r")[...]
        np.testing.assert_array_equal(got, pixels(100 + i, (T_END, C, Y, X)))
    for field in ("A/1/0", "B/2/0"):
        shared = zarr.open_array(str(local / field / "0"), mode="r")[...]
        np.testing.assert_array_equal(shared[:2], base[field])
        assert shared.shape[0] == T_END  # every append landed, none over another
        values = sorted(int(b[0, 0, 0]) for b in shared[2:])
        assert values == [50000 + i for i in range(N_WORKERS)]
        assert all((b == b.flat[0]).all() for b in shared[2:])
    validate_ome_zarr(local)
    assert not _fs(s3_server).glob(f"{s3_bucket}/.race.ome.zarr.locks/*")  # all released


_HOLD_AND_DIE = """
import os, signal, sys
import s3fs
from omestream.io.object_locks import ObjectLock
fs = s3fs.S3FileSystem(key="testing-key", secret="testing-secret", endpoint_url=sys.argv[1],
                       client_kwargs={"region_name": "us-east-1"})
ObjectLock(fs, sys.argv[2], lease_s=float(sys.argv[3])).acquire(timeout=5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writers_lease_runs_out(s3_server: S3Server, s3_bucket: str) -> None:
    path = f"{s3_bucket}/.data.ome.zarr.locks/metadata.lock"
    lease = 2.0
    proc = subprocess.run(
        [sys.executable, "-c", _HOLD_AND_DIE, s3_server.endpoint, path, str(lease)],
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    lock = ObjectLock(_fs(s3_server), path, lease_s=lease)
    assert lock.state() == "held"
    with pytest.raises(ObjectLockTimeout):
        lock.acquire(timeout=0.2)  # the dead writer's lease still runs
    started = time.monotonic()
    lock.acquire(timeout=10 * lease)  # taken over once the lease ran out
    assert time.monotonic() - started < 5 * lease
    assert lock.state() == "held"
    other = ObjectLock(_fs(s3_server), path, lease_s=lease)
    with pytest.raises(ObjectLockTimeout):
        other.acquire(timeout=0.2)
    time.sleep(1.5 * lease)  # renewed meanwhile: still not stale
    assert other.state() == "held"
    lock.release()
    assert lock.state() == "free"
    other.acquire(timeout=1)
    other.release()


def test_a_stream_on_s3_holds_its_dataset(s3_server: S3Server, s3_bucket: str) -> None:
    """While a stream writes, a second stream and changes are refused with a clear
    error; after close they go ahead."""
    from omestream import AcquisitionSettings, Dimension

    url = f"s3://{s3_bucket}/live.ome.zarr"
    opts = s3_server.storage_options
    settings = AcquisitionSettings(
        root_path=url,
        dimensions=[
            Dimension(name="t", count=4, chunk_size=1, type="time"),
            Dimension(name="y", count=Y, type="space"),
            Dimension(name="x", count=X, type="space"),
        ],
        dtype="uint16",
    )
    stream = create_stream(settings, **opts)
    try:
        stream.append(frame_for(0, (Y, X), "uint16"))
        stream.flush()
        again = settings.model_copy(update={"overwrite": True})
        with pytest.raises(ConcurrentModificationError, match="another open stream"):
            create_stream(again, **opts)
        image = open_store(url, "r+", storage_options=opts)
        with pytest.raises(ConcurrentModificationError, match="being written by an open stream"):
            image.append(np.zeros((1, Y, X), "uint16"), "t")
        for n in range(1, 4):
            stream.append(frame_for(n, (Y, X), "uint16"))
    finally:
        stream.close()
    image = open_store(url, "r+", storage_options=opts)
    image.append(frame_for(4, (Y, X), "uint16")[None], "t")
    got = open_store(url, storage_options=opts)
    np.testing.assert_array_equal(
        got.read(), np.stack([frame_for(n, (Y, X), "uint16") for n in range(5)])
    )


class _Refusing:
    """A real S3 file system whose store refuses some requests, as some stores or
    credentials do: ``refuse(method, kwargs)`` gives the S3 error code, or None."""

    def __init__(self, fs: Any, refuse: Callable[[str, dict[str, Any]], str | None]) -> None:
        self._fs = fs
        self._refuse = refuse
        self.split_path = fs.split_path

    def call_s3(self, method: str, **kw: Any) -> Any:
        code = self._refuse(method, kw)
        if code is None:
            return self._fs.call_s3(method, **kw)
        from botocore.exceptions import ClientError

        error = ClientError({"Error": {"Code": code, "Message": code}}, method)
        raise (PermissionError if code == "AccessDenied" else OSError)(code) from error


def _no_conditions(method: str, kw: dict[str, Any]) -> str | None:
    return "NotImplemented" if "IfNoneMatch" in kw or "IfMatch" in kw else None


def _no_deletes(method: str, kw: dict[str, Any]) -> str | None:
    return "AccessDenied" if method == "delete_object" else None


def test_a_store_without_conditional_writes_gets_no_lock_and_a_warning(
    s3_server: S3Server, s3_bucket: str
) -> None:
    path = f"{s3_bucket}/.d.ome.zarr.locks/metadata.lock"
    lock = ObjectLock(_Refusing(_fs(s3_server), _no_conditions), path)
    with pytest.warns(RuntimeWarning, match="does not take conditional writes .NotImplemented."):
        lock.acquire(timeout=1)
    assert lock.unsupported and lock.state() == "free"  # nothing was written
    lock.acquire(timeout=1)  # re-entrant all the same
    lock.release()
    lock.release()
    with pytest.raises(RuntimeError, match="released but not held"):
        lock.release()


def test_a_lock_that_cannot_be_given_back_warns_and_expires(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The change under the lock is done: failing to delete the lock object is a
    warning, and the next writer takes the lock once its lease ran out."""
    path = f"{s3_bucket}/.d.ome.zarr.locks/metadata.lock"
    lock = ObjectLock(_Refusing(_fs(s3_server), _no_deletes), path, lease_s=1.0)
    lock.acquire(timeout=1)
    with pytest.warns(RuntimeWarning, match="could not be given back .*lease runs out"):
        lock.release()
    nxt = ObjectLock(_fs(s3_server), path, lease_s=1.0)
    assert nxt.state() == "held"
    nxt.acquire(timeout=10)
    nxt.release()
    assert nxt.state() == "free"


class _Partitioned:
    """A real S3 file system that this writer cannot reach while ``down`` (a network
    outage, or a suspended process, as the store sees it); counts requests by thread."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs
        self.split_path = fs.split_path
        self.down = False
        self.calls: dict[int, int] = {}

    def call_s3(self, method: str, **kw: Any) -> Any:
        me = threading.get_ident()
        self.calls[me] = self.calls.get(me, 0) + 1
        if self.down:
            raise ConnectionError(f"{method}: the store cannot be reached")
        return self._fs.call_s3(method, **kw)


def test_a_holder_cut_off_for_longer_than_its_lease_knows_at_once_that_it_lost_it(
    s3_server: S3Server, s3_bucket: str
) -> None:
    path = f"{s3_bucket}/.cut.ome.zarr.locks/stream.lock"
    lease = 1.5
    net = _Partitioned(_fs(s3_server))
    holder = ObjectLock(net, path, lease_s=lease)
    holder.acquire(timeout=1)
    me = threading.get_ident()
    asked = net.calls[me]
    assert not any(holder.lost for _ in range(1000))
    assert net.calls[me] == asked  # renewals on time: asking costs no request
    net.down = True
    other = ObjectLock(_fs(s3_server), path, lease_s=lease)
    other.acquire(timeout=10 * lease)  # the holder's lease ran out by the store's clock
    net.down = False
    # known on the first question, not at the renewer's next try up to lease/3 later
    assert holder.lost
    assert other.state() == "held" and not other.lost
    holder.release()  # deletes nothing: the lock is the other writer's now
    assert other.state() == "held"
    other.release()
    assert other.state() == "free"


def test_a_change_that_waits_too_long_is_refused_and_changes_nothing(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    write_plate(tmp_path / "busy.ome.zarr", "0.5", "omestream")
    url = _upload(s3_server, tmp_path / "busy.ome.zarr", s3_bucket)
    opts = s3_server.storage_options
    held = ObjectLock(_fs(s3_server), f"{s3_bucket}/.busy.ome.zarr.locks/metadata.lock")
    held.acquire(timeout=1)  # another writer in the middle of a change
    try:
        plate = open_store(url, "r+", storage_options=opts, lock_timeout=0.5)
        like = plate["A/1/0"]
        with pytest.raises(ConcurrentModificationError, match="held the metadata lock") as err:
            plate.add_position("C", "3", "0", like=like, data=pixels(5))
        assert url in str(err.value) and "nothing was changed" in str(err.value)
    finally:
        held.release()
    assert set(open_store(url, storage_options=opts).wells) == {"A/1", "B/2"}
    assert not _fs(s3_server).exists(f"{s3_bucket}/busy.ome.zarr/C")


def test_a_stream_that_loses_its_lease_stops_writing(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer took the dataset over (here: its lease object replaced, as a
    takeover after a long network outage does): the stream's next append says so, and
    close writes nothing more, its final metadata included."""
    from omestream import AcquisitionSettings, Dimension
    from omestream.io import object_locks

    monkeypatch.setattr(object_locks, "DEFAULT_LEASE_S", 1.5)  # renewed every 0.5 s
    url = f"s3://{s3_bucket}/lost.ome.zarr"
    opts = s3_server.storage_options
    settings = AcquisitionSettings(
        root_path=url,
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1, type="time"),
            Dimension(name="y", count=Y, type="space"),
            Dimension(name="x", count=X, type="space"),
        ],
        dtype="uint16",
    )
    fs = _fs(s3_server)
    stream = create_stream(settings, **opts)
    stream.append(frame_for(0, (Y, X), "uint16"))
    stream.flush()
    lease = f"{s3_bucket}/.lost.ome.zarr.locks/stream.lock"
    fs.pipe_file(lease, b'{"host": "elsewhere"}')  # the other writer's lease now
    deadline = time.monotonic() + 10
    with pytest.raises(ConcurrentModificationError, match="lost its lease"):
        for n in range(1, 100):  # until a renewal finds the lease gone
            assert time.monotonic() < deadline, "the stream never noticed"
            stream.append(frame_for(n, (Y, X), "uint16"))
            time.sleep(0.1)
    record = json.loads(fs.cat_file(f"{s3_bucket}/lost.ome.zarr/zarr.json"))
    with pytest.raises(ConcurrentModificationError, match="lost its lease"):
        stream.close()
    after = json.loads(fs.cat_file(f"{s3_bucket}/lost.ome.zarr/zarr.json"))
    assert after == record  # no final metadata over the other writer's
    assert after["attributes"]["omestream"]["complete"] is False
    assert fs.cat_file(lease) == b'{"host": "elsewhere"}'  # its lease left alone
