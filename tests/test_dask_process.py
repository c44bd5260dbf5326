"""Dask writers in several processes creating or replacing the same dataset.

Of writers creating one new path at once exactly one may go on: the others are told
it exists before they write anything. Replacing (``overwrite=True``) a dataset that
another writer is still writing is refused. Checked with real processes started
together at a barrier, and deterministically within one process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

da = pytest.importorskip("dask.array")

import omestream.dask as odask  # noqa: E402
from omestream import (  # noqa: E402
    AcquisitionSettings,
    ConcurrentModificationError,
    Dimension,
    Pyramid,
    StoreExistsError,
    create_stream,
)
from omestream.io.kv import open_kv  # noqa: E402
from omestream.stream.stream import _prepare_location  # noqa: E402
from tests.checks import validate_ome_zarr  # noqa: E402

ROUNDS = 3
SHAPE = (2, 200, 200)


def _write(path: str, k: int, overwrite: bool) -> None:
    odask.write_image(
        np.full(SHAPE, k, np.uint16), path, dims="cyx", chunks={"y": 32, "x": 32},
        pyramid=Pyramid(levels=2), overwrite=overwrite,
    )  # fmt: skip


def _racer(k: int, paths: list[str], overwrite: bool, barrier: Any, results: Any) -> None:
    """One writer process: writes value ``k`` to each path, in step with the others."""
    for path in paths:
        barrier.wait(timeout=60)
        try:
            _write(path, k, overwrite)
            results.put((path, k, "ok"))
        except Exception as exc:
            results.put((path, k, type(exc).__name__))


def _race(paths: list[str], overwrite: bool) -> dict[str, dict[int, str]]:
    ctx = mp.get_context("spawn")  # no threads of this process carried into the writers
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(k, paths, overwrite, barrier, results)) for k in (1, 2)
    ]
    for p in procs:
        p.start()
    outcome: dict[str, dict[int, str]] = {path: {} for path in paths}
    try:
        for _ in range(2 * len(paths)):
            path, k, what = results.get(timeout=120)
            outcome[path][k] = what
    except queue.Empty:
        pytest.fail(f"the writers did not report: {outcome}")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return outcome


def _written_by(path: str) -> int:
    """The one writer whose value every level holds (fails on mixed data)."""
    level0 = zarr.open_array(f"{path}/0", mode="r")[...]
    level1 = zarr.open_array(f"{path}/1", mode="r")[...]
    values = set(np.unique(level0).tolist()) | set(np.unique(level1).tolist())
    assert len(values) == 1, f"{path} mixes the data of writers {sorted(values)}"
    assert zarr.open_group(path, mode="r").attrs["omestream"]["complete"] is True
    return int(values.pop())


def test_two_processes_creating_one_dataset_one_wins(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"new{r}.ome.zarr") for r in range(ROUNDS)]
    for path, outcome in _race(paths, overwrite=False).items():
        winners = [k for k, what in outcome.items() if what == "ok"]
        assert len(winners) == 1, f"{path}: {outcome}"
        loser = 3 - winners[0]
        assert outcome[loser] == "StoreExistsError", f"{path}: {outcome}"
        assert _written_by(path) == winners[0]
        validate_ome_zarr(path)


def test_two_processes_replacing_one_dataset_never_mix(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"old{r}.ome.zarr") for r in range(ROUNDS)]
    for path in paths:
        _write(path, 7, overwrite=False)
    for path, outcome in _race(paths, overwrite=True).items():
        # a writer that finished before the other started may be replaced by it; one
        # still writing is not: the other is refused, and nothing mixes
        assert set(outcome.values()) <= {"ok", "ConcurrentModificationError", "StoreExistsError"}
        assert "ok" in outcome.values(), f"{path}: {outcome}"
        assert _written_by(path) in {k for k, what in outcome.items() if what == "ok"}


def test_the_root_is_created_exclusively(tmp_path: Path) -> None:
    # Another writer makes the folder between the existence check and the creation:
    # the creation step itself refuses, and leaves that writer's files alone.
    path = tmp_path / "taken.ome.zarr"
    settings = AcquisitionSettings(
        root_path=str(path),
        dimensions=[
            Dimension(name="y", count=8, type="space"),
            Dimension(name="x", count=8, type="space"),
        ],
        dtype="uint16",
    )
    kv = open_kv(str(path))
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    kv.root_exists = lambda: False  # type: ignore[method-assign]  # the check ran first
    with pytest.raises(StoreExistsError, match="created by another writer"):
        _prepare_location(settings, kv)
    assert (path / "zarr.json").read_text() == "{}"
    # a stream to a new path creates its root the same way
    with create_stream(settings.replace(root_path=str(tmp_path / "s.ome.zarr"))) as stream:
        stream.append(np.ones((8, 8), np.uint16))
    assert zarr.open_array(str(tmp_path / "s.ome.zarr/0"), mode="r")[...].sum() == 64


def test_a_dask_write_not_yet_finished_is_not_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "pending.ome.zarr")
    data = np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)
    plan = odask.write_image(
        da.from_array(data, chunks=(1, 32, 32)), path, dims="cyx", compute=False
    )
    assert isinstance(plan, odask.WritePlan)
    # a second writer, overwrite=True included, is refused while the plan is pending
    with pytest.raises(ConcurrentModificationError, match="Dask write not yet finished"):
        _write(path, 3, overwrite=True)
    with pytest.raises(StoreExistsError):
        _write(path, 3, overwrite=False)
    plan.compute()
    np.testing.assert_array_equal(zarr.open_array(f"{path}/0", mode="r")[...], data)
    assert not os.path.exists(os.path.join(tmp_path, ".pending.ome.zarr.locks", "stream.lock"))
    # finished: now it may be replaced
    _write(path, 3, overwrite=True)
    assert _written_by(path) == 3
