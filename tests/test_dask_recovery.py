"""A worker process killed mid-run: the run (or its rerun) completes with the right data.

Tasks are idempotent (each rewrites the same whole chunks), so whatever a dead worker
left half-written is simply written again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import omestream.dask as odask  # noqa: E402
from tests.checks import validate_ome_zarr  # noqa: E402
from tests.polling import wait_until  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _kill_one_worker(client: Any) -> int:
    """SIGKILL one worker process (its nanny starts a new one); return its PID."""
    pids = client.run(os.getpid)
    pid = sorted(pids.values())[0]
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def _slow(block: np.ndarray) -> np.ndarray:
    time.sleep(0.3)
    return block + 1


def _n_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _kill_after_first_chunk(client: Any, chunks_dir: Path, killed: list[int]) -> None:
    """Kill a worker once the first shard is written; record how many were written then."""
    if wait_until(lambda: _n_files(chunks_dir) > 0, timeout=30):
        _kill_one_worker(client)
        killed.append(_n_files(chunks_dir))


def test_kill_worker_during_process_positions(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = [rng.integers(0, 1000, size=(2, 2, 64, 64), dtype="uint16") for _ in range(6)]
    src = str(tmp_path / "src.ome.zarr")
    odask.write_positions([da.from_array(d) for d in data], src, dims="czyx", client=client)
    dst = str(tmp_path / "dst.ome.zarr")

    def fn(x: np.ndarray) -> np.ndarray:
        time.sleep(0.6)
        return x * 3

    killed: list[int] = []

    def progress(done: int, total: int, path: str, error: BaseException | None) -> None:
        if done == 1 and not killed:  # both workers hold running tasks now
            killed.append(_kill_one_worker(client))

    first = odask.process_positions(src, dst, fn, client=client, progress=progress)
    assert killed
    # the scheduler reruns the dead worker's task elsewhere; whatever did not finish,
    # a rerun into the existing store finishes it
    rerun = odask.process_positions(src, dst, fn, client=client, progress=False)
    assert rerun.ok, f"{first}\n{rerun}"
    validate_ome_zarr(dst)
    for i, d in enumerate(data):
        np.testing.assert_array_equal(zarr.open_array(f"{dst}/Pos{i}/0", mode="r")[...], d * 3)


def test_kill_worker_during_dask_write(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    source = rng.integers(0, 1000, size=(2, 4, 64, 64), dtype="uint16")
    arr = da.from_array(source, chunks=(1, 1, 64, 64)).map_blocks(_slow, dtype="uint16")
    plan = odask.write_image(
        arr, str(tmp_path / "img.ome.zarr"), dims="tzyx", chunks={"y": 32, "x": 32},
        shards={"y": 2, "x": 2}, compute=False,
    )  # fmt: skip
    assert isinstance(plan, odask.WritePlan)
    killed: list[int] = []
    chunks_dir = Path(plan.url) / "0" / "c"
    killer = threading.Thread(target=_kill_after_first_chunk, args=(client, chunks_dir, killed))
    killer.start()
    try:
        plan.compute(client)
    except Exception:
        pass
    finally:
        killer.join()
    assert killed, "no worker was killed"
    assert killed[0] < 8  # the kill happened mid-run
    report = plan.compute(client)
    assert report.tasks == 8
    out = plan.url
    validate_ome_zarr(out)
    np.testing.assert_array_equal(zarr.open_array(f"{out}/0", mode="r")[...], source + 1)
    assert zarr.open_group(out, mode="r").attrs["omestream"]["complete"] is True
