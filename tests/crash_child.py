"""A writer process for the crash tests: streams frames and reports each append.

``python -m tests.crash_child run '<trial json>'`` runs one trial in this process.
``python -m tests.crash_child serve`` imports omestream once, then for every trial
read from stdin forks a fresh child that runs it, prints ``pid <pid>``, and after the
test sends ``reap``, reaps the child (usually killed by the test with SIGKILL) and prints
``done <pid> <status>``.
Forking saves the import time of a new interpreter per trial; the zygote itself never
starts a stream, so it has no threads when it forks.

A trial appends frames with per-frame metadata, sleeping a little between frames and
now and then pausing longer (as a time-lapse waits for its next time point). After
each append (or skip) it writes ``<frame> <monotonic time>`` to the progress file,
unbuffered, so the test knows what was appended before the kill.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream
from tests.cases import frame_for

# name -> (dimensions, dtype, compression, format, skipped frames); acquisition order is
# also the storage order in each of them, which keeps the test's expectations simple.
KINDS: dict[str, dict[str, Any]] = {
    "unbounded-zstd": {
        "dims": [("t", None), ("c", 2), ("y", 24), ("x", 20)],
        "dtype": "uint16", "compression": "zstd", "format": "ome-zarr",
    },
    "bounded-raw": {
        "dims": [("t", 40), ("z", 3), ("y", 16), ("x", 16)],
        "dtype": "uint8", "compression": None, "format": "ome-zarr", "skip": [7, 8, 50],
    },
    "positions-unbounded-zstd": {
        "dims": [("t", None), ("p", 2), ("c", 2), ("y", 16), ("x", 24)],
        "dtype": "uint16", "compression": "zstd", "format": "ome-zarr",
    },
    "positions-bounded-v04": {
        "dims": [("t", 30), ("p", 3), ("y", 16), ("x", 16)],
        "dtype": "uint16", "compression": None, "format": {"name": "ome-zarr", "version": "0.4"},
    },
    "unbounded-v04-blosc": {
        "dims": [("t", None), ("y", 12), ("x", 16)],
        "dtype": "float32", "compression": "blosc-lz4", "format": {"name": "ome-zarr", "version": "0.4"},
    },
}  # fmt: skip


def build_settings(kind: str, root: str, **kw: Any) -> AcquisitionSettings:
    spec = KINDS[kind]
    dims: list[Dimension | PositionDimension] = []
    for name, count in spec["dims"]:
        if name == "p":
            dims.append(PositionDimension(positions=[f"fov{i}" for i in range(count)]))
        else:
            dims.append(Dimension(name=name, count=count))
    return AcquisitionSettings(
        root_path=root,
        dimensions=dims,
        dtype=spec["dtype"],
        compression=spec["compression"],
        format=spec["format"],
        **kw,
    )


def frame_metadata(n: int) -> dict[str, Any]:
    return {"n": n, "exposure_ms": 10 + n % 7, "label": f"frame {n}"}


def run_trial(trial: dict[str, Any]) -> None:
    rng = random.Random(trial["seed"])
    fd = os.open(trial["progress"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def report(text: str) -> None:
        os.write(fd, f"{text} {time.monotonic():.6f}\n".encode())

    report("start")
    settings = build_settings(trial["kind"], trial["root"])
    skip = set(KINDS[trial["kind"]].get("skip", []))
    total = settings.total_frames or trial.get("frames", 10**6)
    shape, dtype = settings.frame_shape, settings.dtype
    stream = create_stream(settings)
    report("ready")
    for n in range(total):
        if n in skip:
            stream.skip()
        else:
            stream.append(frame_for(n, shape, dtype), metadata=frame_metadata(n))
        report(str(n))
        if rng.random() < trial.get("pause_p", 0.02):
            time.sleep(rng.uniform(0.3, 1.4))
        else:
            time.sleep(rng.uniform(0.0, trial.get("sleep_s", 0.006)))
    stream.close()
    report("closed")


def serve() -> None:
    for line in sys.stdin:
        trial = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                run_trial(trial)
            except BaseException:
                import traceback

                traceback.print_exc()
                status = 1
            os._exit(status)
        print(f"pid {pid}", flush=True)
        sys.stdin.readline()  # "reap": until then an ended child stays a zombie, so its
        _, status = os.waitpid(pid, 0)  # pid cannot be reused before the test killed it
        print(f"done {pid} {status}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        run_trial(json.loads(sys.argv[2]))
