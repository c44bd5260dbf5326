"""Display windows (omero window start/end) measured from the streamed frames."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omestream import AcquisitionSettings, Dimension, create_stream
from omestream.metadata.display import (
    SAMPLE_EVERY,
    SAMPLE_FIRST,
    apply_windows,
    frame_window,
    merge_windows,
    samples_frame,
)
from omestream.metadata.ngff import channel_window
from tests.checks import validate_ome_zarr

REPO = Path(__file__).resolve().parents[1]


# -- the pure part ---------------------------------------------------------------------
def test_first_frames_then_one_in_every_few_are_looked_at() -> None:
    looked = [n for n in range(SAMPLE_FIRST + 3 * SAMPLE_EVERY) if samples_frame(n)]
    assert looked[:SAMPLE_FIRST] == list(range(SAMPLE_FIRST))
    later = looked[SAMPLE_FIRST:]
    assert len(later) == 3 and all(b - a == SAMPLE_EVERY for a, b in itertools.pairwise(later))


def test_a_hot_pixel_does_not_set_the_window() -> None:
    frame = np.tile(np.arange(100, 1100, dtype=np.uint16), (1000, 1))  # 1000 x 1000 ramp
    frame[::97, ::89] = 65535  # hot pixels, ~0.01% of the frame
    lo, hi = frame_window(frame)  # type: ignore[misc]
    assert 100 <= lo <= 110 and 1090 <= hi <= 1100


def test_float_frames_ignore_nan_and_inf() -> None:
    frame = np.linspace(-1.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    frame[0, :8] = np.nan
    frame[1, :8] = np.inf
    lo, hi = frame_window(frame)  # type: ignore[misc]
    assert -1.0 <= lo < -0.99 and 0.99 < hi <= 1.0
    assert frame_window(np.full((4, 4), np.nan, np.float32)) is None


def test_apply_windows_rounds_clamps_and_widens() -> None:
    omero = {"channels": [{"window": channel_window("uint16")} for _ in range(4)], "x": 1}
    windows = {0: (100.4, 999.2), 1: (500.0, 500.0), 2: (65535.0, 65535.0)}
    out = apply_windows(omero, windows, "uint16")
    wins = [ch["window"] for ch in out["channels"]]
    assert (wins[0]["start"], wins[0]["end"]) == (100.0, 1000.0)  # whole numbers, outward
    assert (wins[1]["start"], wins[1]["end"]) == (500.0, 501.0)  # a constant channel
    assert (wins[2]["start"], wins[2]["end"]) == (0.0, 65535.0)  # cannot widen: unchanged
    assert wins[3] == channel_window("uint16")  # never looked at
    assert out["x"] == 1 and omero["channels"][0]["window"]["start"] == 0.0  # a copy


def test_float_ranges_widen_to_hold_the_window() -> None:
    omero = {"channels": [{"window": channel_window("float32")} for _ in range(3)]}
    windows = {0: (104.5, 3996.0), 1: (-300.0, 300.0), 2: (0.25, 0.5)}
    wins = [ch["window"] for ch in apply_windows(omero, windows, "float32")["channels"]]
    assert wins[0] == {"min": 0.0, "max": 3996.0, "start": 104.5, "end": 3996.0}
    assert wins[1] == {"min": -300.0, "max": 300.0, "start": -300.0, "end": 300.0}
    assert wins[2] == {"min": 0.0, "max": 1.0, "start": 0.25, "end": 0.5}  # inside 0..1


def test_a_float_stream_opens_with_its_data_window(tmp_path: Path) -> None:
    s = AcquisitionSettings(
        root_path=str(tmp_path / "f.ome.zarr"),
        dimensions=[Dimension(name="c", count=1, type="channel")]
        + [Dimension(name=n, count=64, type="space") for n in "yx"],
        dtype="float32",
    )
    with create_stream(s) as stream:
        stream.append(np.linspace(100, 4000, 64 * 64, dtype=np.float32).reshape(64, 64))
    validate_ome_zarr(s.output_path)
    (win,) = [ch["window"] for ch in _omero(Path(s.output_path), "0.5")["channels"]]
    assert 100 <= win["start"] <= 110 and 3990 <= win["end"] <= 4000  # not 0..1
    assert win["min"] <= win["start"] < win["end"] <= win["max"]


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=300),
    ),
    hnp.arrays(np.uint16, (7, 5)),
)
def test_windows_lie_within_the_data_and_merging_covers_both(
    frame: np.ndarray, other: np.ndarray
) -> None:
    win = frame_window(frame)
    finite = frame[np.isfinite(frame)] if frame.dtype.kind == "f" else frame
    if finite.size == 0:
        assert win is None
        return
    assert win is not None
    assert finite.min() <= win[0] <= win[1] <= finite.max()
    both = merge_windows(win, frame_window(other))
    assert both is not None
    other_win = frame_window(other)
    assert other_win is not None
    assert both[0] == min(win[0], other_win[0]) and both[1] == max(win[1], other_win[1])


# -- streamed ----------------------------------------------------------------------------
def _settings(root: Path, version: str = "0.5", t: int = 40) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=t, chunk_size=1, type="time"),
            Dimension(name="c", count=3, type="channel", coords=["DAPI", "GFP", "Cy5"]),
            Dimension(name="y", count=256, chunk_size=128, type="space"),
            Dimension(name="x", count=192, chunk_size=96, type="space"),
        ],
        dtype="uint16",
        compression="blosc-zstd",
        format={"name": "ome-zarr", "version": version},
    )


def _frame(t: int, c: int, base: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:256, :192]
    if c == 0:  # a 12-bit ramp from 100 to ~1100, drifting up by 2 per time point
        return (base + 100 + (yy * 192 + xx) * 1000 // (256 * 192) + 2 * t).astype(np.uint16)
    if c == 1:  # 2000-4000 with one saturated pixel per frame
        f = (base + 2000 + (xx * 2000) // 192).astype(np.uint16)
        f[t % 256, 7] = 65535
        return f
    return np.full((256, 192), base + 500, np.uint16)  # a constant channel


def _omero(root: Path, version: str) -> dict[str, Any]:
    if version == "0.5":
        return json.loads((root / "zarr.json").read_text())["attributes"]["ome"]["omero"]  # type: ignore[no-any-return]
    return json.loads((root / ".zattrs").read_text())["omero"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_stream_writes_the_windows_it_measured(tmp_path: Path, version: str) -> None:
    s = _settings(tmp_path / "w.ome.zarr", version)
    with create_stream(s) as stream:
        for t in range(40):
            for c in range(3):
                stream.append(_frame(t, c))
    validate_ome_zarr(s.output_path)
    wins = [ch["window"] for ch in _omero(Path(s.output_path), version)["channels"]]
    assert all((w["min"], w["max"]) == (0.0, 65535.0) for w in wins)
    # the ramp's last looked-at frame is t=35 (4 first, then one in 16): ends near 1170
    assert 100 <= wins[0]["start"] <= 105 and 1150 <= wins[0]["end"] <= 1170
    assert 2000 <= wins[1]["start"] <= 2010 and 3980 <= wins[1]["end"] <= 4000  # no 65535
    assert (wins[2]["start"], wins[2]["end"]) == (500.0, 501.0)


_CHILD = """
import os, signal, sys
import numpy as np
from omestream import AcquisitionSettings, create_stream
settings = AcquisitionSettings.model_validate_json(sys.argv[1])
stream = create_stream(settings)
for t in range(2):
    for c in range(3):
        stream.append(np.full(settings.frame_shape, 100 + 10 * c, np.uint16), metadata={"t": t})
stream.flush()  # the image's metadata, with its windows so far, reaches the disk
os.kill(os.getpid(), signal.SIGKILL)  # no close(): a crash
"""


def test_a_resumed_stream_keeps_the_windows_measured_before(tmp_path: Path) -> None:
    s = _settings(tmp_path / "r.ome.zarr", t=4)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, s.model_dump_json()],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=False,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    with create_stream(s, resume=True) as stream:
        assert stream.frames_written == 6
        for _ in range(2):
            for c in range(3):
                stream.append(np.full(s.frame_shape, 1000 + 10 * c, np.uint16))
    wins = [ch["window"] for ch in _omero(Path(s.output_path), "0.5")["channels"]]
    # before the crash 100/110/120, after it 1000/1010/1020: each window holds both
    assert [(w["start"], w["end"]) for w in wins] == [
        (100.0, 1000.0),
        (110.0, 1010.0),
        (120.0, 1020.0),
    ]
