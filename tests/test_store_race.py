"""Many writers at once, and writers killed mid-append (real processes, real locks)."""

from __future__ import annotations

import multiprocessing as mp
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

from omestream import open_store
from tests.checks import validate_ome_zarr
from tests.store_fixtures import C, X, Y, pixels, write_plate

N_WORKERS = 8
N_APPEND = 2  # own time points appended per writer, one at a time
N_SHARED = 1  # time points each writer appends to each of the two shared images
T0 = 2 + N_WORKERS * N_SHARED - N_APPEND  # so every image ends equally long (readers tile)
ROWS = "CDEFGHIJ"


def _worker(root: str, i: int, barrier: mp.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    plate = open_store(root, mode="r+")
    like = plate["A/1/0"]
    barrier.wait()  # everybody changes the plate at the same moment
    img = plate.add_position(
        ROWS[i], str(i + 3), "0", like=like, data=pixels(100 + i, (T0, C, Y, X))
    )
    for k in range(N_APPEND):
        img.append(np.full((C, Y, X), 1000 * i + k, "uint16"), axis="t")
    # all writers also append to the same two images: same chunks, same metadata
    shared = np.full((N_SHARED, C, Y, X), 50000 + i, "uint16")
    plate["A/1/0"].append(shared)
    plate["B/2/0"].append(shared)


def _t(path: Path) -> np.ndarray:
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    return zarr.open_array(f"{path}/{ms['datasets'][0]['path']}", mode="r")[...]


def test_eight_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")  # zarr resets its event loop in forked children
    for round_, version in enumerate(["0.4", "0.5", "0.4"]):
        root = tmp_path / f"race{round_}.ome.zarr"
        base = write_plate(root, version, "ome-zarr-py")  # one chunk spans both time points
        barrier = ctx.Barrier(N_WORKERS)
        procs = [
            ctx.Process(target=_worker, args=(str(root), i, barrier)) for i in range(N_WORKERS)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0, f"worker failed with exit code {p.exitcode}"
        plate = open_store(root)
        wells = {"A/1", "B/2"} | {f"{ROWS[i]}/{i + 3}" for i in range(N_WORKERS)}
        assert set(plate.wells) == wells and len(plate.wells) == len(wells)
        for i in range(N_WORKERS):
            got = _t(root / f"{ROWS[i]}/{i + 3}/0")
            np.testing.assert_array_equal(got[:T0], pixels(100 + i, (T0, C, Y, X)))
            assert got.shape[0] == T0 + N_APPEND
            for k in range(N_APPEND):
                assert (got[T0 + k] == 1000 * i + k).all()
        for path in ("A/1/0", "B/2/0"):
            got = _t(root / path)
            np.testing.assert_array_equal(got[:2], base[path])
            tail = got[2:]
            assert tail.shape[0] == N_WORKERS * N_SHARED  # every append landed
            values = sorted(int(v) for v in tail[:, 0, 0, 0])
            assert values == sorted([50000 + i for i in range(N_WORKERS)] * N_SHARED)
            for block in tail:  # each appended block whole, never mixed with another
                assert (block == block.flat[0]).all()
        validate_ome_zarr(root)


_CHILD = """
import sys, numpy as np
from omestream import open_store
img = open_store(sys.argv[1], mode="r+")
t = img.shape[0]
while True:
    img.append(np.full(img.shape[1:], t % 60000, "uint16"), axis="t")
    t += 1
    print(t, flush=True)
"""


def test_killed_mid_append_leaves_a_valid_store(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    from omestream import AcquisitionSettings, Dimension, Pyramid, create_stream

    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=1, type="time"),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=256, type="space"),
            Dimension(name="x", count=256, type="space"),
        ],
        dtype="uint16",
        pyramid=Pyramid(levels=3),
    )
    with create_stream(settings) as s:
        for _ in range(2):
            s.append(np.zeros((256, 256), "uint16"))
    rng = random.Random(4)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(3):
            proc.stdout.readline()
        time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next append
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        validate_ome_zarr(root)
        data = _t(root)
        for t in range(1, data.shape[0]):  # every visible time point is complete
            assert (data[t] == t % 60000).all(), t
        img = open_store(root, mode="r+")
        img.repair()  # levels a killed writer grew beyond level 0 are brought back
        assert img.check() == []
        validate_ome_zarr(root)
        np.testing.assert_array_equal(_t(root), data)


def _slow_channel_adder(root: str, ready: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    """Adds channel 'Cy5', pausing between its pixels and its omero entry (a slow disk)."""
    from omestream.store import Image

    update = Image._update_omero

    def slow(self: Image, *args: object, **kwargs: object) -> None:
        ready.set()
        time.sleep(1.0)
        update(self, *args, **kwargs)  # type: ignore[arg-type]

    Image._update_omero = slow  # type: ignore[method-assign]
    img = open_store(root, mode="r+")["A/1/0"]
    img.append_channel("Cy5", np.full(img.shape[:1] + img.shape[2:], 7, img.dtype))


def test_channel_changes_from_two_processes_keep_names_on_their_pixels(tmp_path: Path) -> None:
    root = tmp_path / "chan.ome.zarr"
    write_plate(root, "0.5", "omestream")
    img = open_store(root, mode="r+")["A/1/0"]
    names = img.channel_names
    assert len(names) == C >= 2
    first = img.read()
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_slow_channel_adder, args=(str(root), ready))
    child.start()
    try:
        assert ready.wait(30)
        img.delete_channel(names[0])  # waits for the other process's channel change
    finally:
        child.join(60)
    assert child.exitcode == 0
    img.refresh()
    assert img.channel_names == [*names[1:], "Cy5"]
    data = img.read()
    np.testing.assert_array_equal(data[:, : C - 1], first[:, 1:])
    assert (data[:, C - 1] == 7).all()
    validate_ome_zarr(root)
