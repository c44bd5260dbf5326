"""Kill a real writer process with SIGKILL at random moments, then check what it left.

Every trial: a child streams frames (tests/crash_child.py) and reports each append;
the test kills it (no close, no finally), then

* the dataset as left must pass the independent validators and hold, pixel for pixel
  and with their metadata, every frame appended more than GRACE_S before the kill;
* ``repair`` must find at least those frames, trim the shapes to the data present,
  remove temporary files and leave a valid dataset; a second repair changes nothing;
* a resumed stream completes the acquisition, and the result is checked again.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from omestream import StoreFormatError, create_stream
from omestream.plan.storage import plan_storage
from omestream.repair import RepairReport, repair
from tests.cases import frame_for
from tests.checks import validate_ome_zarr
from tests.crash_child import KINDS, build_settings, frame_metadata
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[1]
#: metadata cadence (the 1 s default) plus time for the last writes to land on a busy machine
GRACE_S = 1.5
RESUME_SUPPORTED = "resume" in inspect.signature(create_stream).parameters


@pytest.fixture(scope="module")
def zygote() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", "serve"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


# -- what the child was asked to do, computed here without omestream's router ----------
def _counts(kind: str) -> dict[str, int | None]:
    return dict(KINDS[kind]["dims"])


def _where(kind: str, n: int) -> tuple[str, tuple[int, ...]]:
    """Image path and index over the outer axes of frame ``n`` (acquisition = storage order)."""
    counts = _counts(kind)
    outer = [k for k in counts if k not in ("y", "x")]
    digits = []
    rest = n
    for k in reversed(outer[1:]):  # mixed radix, the first (time) axis is the slowest
        rest, d = divmod(rest, counts[k])  # type: ignore[arg-type]
        digits.append(d)
    idx = [rest, *reversed(digits)]
    named = dict(zip(outer, idx, strict=True))
    image = ""
    if "p" in named:  # the image's group: the plan's path of that position
        plan = plan_storage(build_settings(kind, "crash.ome.zarr"))
        image = plan.images[named.pop("p")].path
    return image, tuple(named.values())


def _total(kind: str) -> int | None:
    counts = _counts(kind)
    return (
        None if counts["t"] is None else math.prod(c for k, c in counts.items() if k not in "yx")
    )  # type: ignore[misc]


def _per_t(kind: str) -> int:
    return math.prod(c for k, c in _counts(kind).items() if k not in ("t", "y", "x"))  # type: ignore[misc]


def _frame_records(root: str, image: str) -> dict[int, dict[str, Any]]:
    group = zarr.open_group(f"{root}/{image}" if image else root, mode="r")
    own = group.attrs.asdict().get("omestream", {})
    return {r["frame"]: r for r in own.get("frame_metadata", [])}


def check_frames(root: str, kind: str, frames: list[int], with_metadata: list[int]) -> None:
    """``frames`` read back as appended (skipped ones as 0); ``with_metadata`` have records."""
    skip = set(KINDS[kind].get("skip", []))
    settings = build_settings(kind, root)
    shape, dtype = settings.frame_shape, settings.dtype
    arrays: dict[str, Any] = {}
    records: dict[str, dict[int, dict[str, Any]]] = {}
    for n in frames:
        image, index = _where(kind, n)
        arr = arrays.get(image)
        if arr is None:
            arr = arrays[image] = zarr.open_array(
                f"{root}/{image}/0" if image else f"{root}/0", mode="r"
            )
        assert all(i < s for i, s in zip(index, arr.shape, strict=False)), (
            f"frame {n} at {index} is outside array {image or '.'}/0 of shape {arr.shape}"
        )
        expected = np.zeros(shape, dtype) if n in skip else frame_for(n, shape, dtype)
        np.testing.assert_array_equal(arr[index], expected, err_msg=f"frame {n} ({image}{index})")
    for n in with_metadata:
        if n in skip:
            continue
        image, _ = _where(kind, n)
        if image not in records:
            records[image] = _frame_records(root, image)
        rec = records[image].get(n)
        assert rec is not None, f"frame {n}: no per-frame metadata in {image or 'the root'}"
        assert {k: rec[k] for k in frame_metadata(n)} == frame_metadata(n)


# -- running and killing a trial --------------------------------------------------------
def _progress(path: Path) -> tuple[dict[str, float], list[tuple[int, float]]]:
    events: dict[str, float] = {}
    appended: list[tuple[int, float]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            word, _, when = line.partition(" ")
            try:
                appended.append((int(word), float(when)))
            except ValueError:
                events[word] = float(when)
    return events, appended


def kill_at(zygote: subprocess.Popen[str], trial: dict[str, Any], after_s: float) -> float:
    """Start a trial, SIGKILL it ``after_s`` seconds later; returns the kill time."""
    assert zygote.stdin is not None and zygote.stdout is not None
    zygote.stdin.write(json.dumps(trial) + "\n")
    zygote.stdin.flush()
    word, pid = zygote.stdout.readline().split()
    assert word == "pid"
    time.sleep(after_s)
    killed = time.monotonic()
    os.kill(int(pid), signal.SIGKILL)  # not reaped yet, so this pid is still our child's
    zygote.stdin.write("reap\n")
    zygote.stdin.flush()
    done = zygote.stdout.readline().split()
    assert done[:2] == ["done", pid], done
    assert int(done[2]) in (0, signal.SIGKILL), (
        f"the writer failed (status {done[2]}); see its stderr"
    )
    return killed


def series(root: str) -> list[str]:
    """The image paths a bioformats2raw root lists in ``OME/``, in order."""
    attrs = zarr.open_group(f"{root}/OME", mode="r").attrs.asdict()
    return list(attrs.get("ome", attrs)["series"])


def validate(root: str, extents: list[int] | None = None) -> None:
    """validate_ome_zarr; an image that received no frame is trimmed to an empty array
    (as a closed stream leaves it), and the ome-zarr reader cannot load a plane of it, so
    then the models and yaozarrs still validate the whole store."""
    if extents is None or min(extents) > 0:
        validate_ome_zarr(root)
        return
    import ome_zarr_models
    import yaozarrs

    paths = series(root) if os.path.isdir(f"{root}/OME") else [""]  # one image: the root
    for path, extent in zip(paths, extents, strict=True):
        group = zarr.open_group(f"{root}/{path}" if path else root, mode="r")
        ome_zarr_models.open_ome_zarr(group)
        assert group["0"].shape[0] == extent
    yaozarrs.validate_zarr_store(root)


def tmp_files(root: str) -> list[str]:
    return [f for _d, _s, files in os.walk(root) for f in files if f.startswith(".omestream-tmp-")]


def after_kill(root: str, kind: str, killed: float, progress: Path) -> RepairReport | None:
    events, appended = _progress(progress)
    must = [n for n, t in appended if t < killed - GRACE_S]
    if "ready" not in events:
        # killed while the dataset was being created: repair explains, or makes it valid
        try:
            report = repair(root, force=True)
        except (StoreFormatError, FileNotFoundError):
            return None
        validate(root, report.extents)
        return report
    # 1. as the kill left it
    validate_ome_zarr(root)
    check_frames(root, kind, must, with_metadata=must)
    # 2. repaired, at once: the killed stream's lock is free, no need to wait or force
    report = repair(root)
    assert report.interrupted == ("closed" not in events)
    assert report.resume_at >= len(must), (report.summary(), must[-5:])
    assert report.frames_present >= len(must)
    validate(root, report.extents)
    assert tmp_files(root) == []
    check_frames(root, kind, list(range(report.resume_at)), with_metadata=must)
    if _total(kind) is None:
        assert report.extents is not None
        paths = series(root) if "p" in _counts(kind) else [""]
        for image, extent in zip(paths, report.extents, strict=True):
            arr = zarr.open_array(f"{root}/{image}/0" if image else f"{root}/0", mode="r")
            assert arr.shape[0] == extent
            assert extent >= report.resume_at // _per_t(kind)
    again = repair(root)  # its own writes a moment ago do not make it look busy
    assert again.changes == [] and again.resume_at == report.resume_at, again.summary()
    return report


def resume_and_finish(root: str, kind: str, report: RepairReport) -> None:
    total = _total(kind)
    end = total if total is not None else report.resume_at + 2 * _per_t(kind) + 1
    settings = build_settings(kind, root)
    skip = set(KINDS[kind].get("skip", []))
    images = series(root) if "p" in _counts(kind) else [""]
    kept = sorted(n for image in images for n in _frame_records(root, image))  # after repair
    with report.resume() as stream:
        assert stream.frames_written == report.resume_at
        for n in range(report.resume_at, end):
            if n in skip:
                stream.skip()
            else:
                stream.append(
                    frame_for(n, settings.frame_shape, settings.dtype), metadata=frame_metadata(n)
                )
    validate_ome_zarr(root)
    # frames whose metadata never reached the disk before the kill stay without it
    check_frames(
        root, kind, list(range(end)), with_metadata=[*kept, *range(report.resume_at, end)]
    )
    record = zarr.open_group(root, mode="r").attrs.asdict()["omestream"]
    assert record["frames"] == end
    assert record["complete"] is True  # closed normally after the resume


#: more seeds for a longer soak: OMESTREAM_CRASH_SEEDS=20 pytest tests/test_crash.py
SEEDS = int(os.environ.get("OMESTREAM_CRASH_SEEDS", "3"))
TRIALS = [(kind, seed) for seed in range(SEEDS) for kind in KINDS]


@pytest.mark.parametrize(("kind", "seed"), TRIALS, ids=[f"{k}-{s}" for k, s in TRIALS])
def test_sigkill_at_a_random_moment(
    zygote: subprocess.Popen[str], tmp_path: Path, kind: str, seed: int
) -> None:
    rng = random.Random(f"{kind}-{seed}")
    root = str(tmp_path / "crash.ome.zarr")
    progress = tmp_path / "progress.txt"
    bounded = _total(kind) is not None
    trial = {
        "kind": kind, "root": root, "progress": str(progress), "seed": seed,
        "sleep_s": 0.03 if bounded else 0.008, "pause_p": 0.03,
    }  # fmt: skip
    killed = kill_at(zygote, trial, rng.uniform(0.05, 3.2))
    report = after_kill(root, kind, killed, progress)
    if report is None or not RESUME_SUPPORTED:
        return
    resume_and_finish(root, kind, report)


def test_sigkill_of_a_fresh_interpreter(tmp_path: Path) -> None:
    """The same, without the fork server: a new Python process killed while it starts up
    or has just started writing."""
    root = str(tmp_path / "fresh.ome.zarr")
    progress = tmp_path / "progress.txt"
    trial = {
        "kind": "positions-unbounded-zstd",
        "root": root,
        "progress": str(progress),
        "seed": 7,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", "run", json.dumps(trial)], cwd=REPO
    )
    wait_until(lambda: "ready" in _progress(progress)[0], timeout=30)
    time.sleep(GRACE_S + 0.5)
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _events, appended = _progress(progress)
    assert any(t < killed - GRACE_S for _n, t in appended), "the child appended nothing in time"
    report = after_kill(root, "positions-unbounded-zstd", killed, progress)
    assert report is not None and report.frames_present > 0
