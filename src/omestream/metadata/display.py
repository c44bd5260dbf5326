"""Display windows (omero ``window.start``/``end``) measured from streamed frames.

Viewers open a channel with its omero window; the dtype's whole range shows 12-bit
camera data in a 16-bit array nearly black. A stream therefore looks at a few of each
channel's frames (its first :data:`SAMPLE_FIRST`, then one in :data:`SAMPLE_EVERY`),
at about :data:`SAMPLE_PIXELS` evenly strided pixels of each, and the window spans the
lowest low percentile and the highest high percentile seen. ``min``/``max`` stay the
dtype's range. The cost is a few microseconds per frame on average, nothing per pixel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE_EVERY",
    "SAMPLE_FIRST",
    "SAMPLE_PIXELS",
    "apply_windows",
    "channel_windows",
    "frame_window",
    "merge_windows",
    "samples_frame",
]

SAMPLE_FIRST = 4
SAMPLE_EVERY = 16
SAMPLE_PIXELS = 16384
# Percentiles, not the extremes: a hot pixel or a saturated speck would set the window.
LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9

Window = tuple[float, float]


def samples_frame(seen: int) -> bool:
    """Whether the channel's frame number ``seen`` (counting from 0) is looked at."""
    return seen < SAMPLE_FIRST or (seen - SAMPLE_FIRST) % SAMPLE_EVERY == SAMPLE_EVERY - 1


def frame_window(frame: np.ndarray) -> Window | None:
    """(low, high) percentiles of a strided sample of ``frame``; None without finite data."""
    if frame.size == 0:
        return None
    step = max(1, math.isqrt(frame.size // SAMPLE_PIXELS))
    sample = frame[..., ::step, ::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return None
    elif sample.dtype.kind == "b":
        sample = sample.astype(np.uint8)
    lo, hi = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return float(lo), float(hi)


def channel_windows(block: np.ndarray, axis: int, first: int = 0) -> dict[int, Window]:
    """The window of each channel of ``block`` along ``axis``, keyed by channel index
    (``first`` for the block's first channel); channels without finite data are left out."""
    out = {}
    for k in range(block.shape[axis]):
        win = frame_window(np.take(block, k, axis=axis))
        if win is not None:
            out[first + k] = win
    return out


def merge_windows(a: Window | None, b: Window | None) -> Window | None:
    """The window that holds both."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


def apply_windows(
    omero: dict[str, Any], windows: dict[int, Window], dtype: str | np.dtype
) -> dict[str, Any]:
    """A copy of an ``omero`` block with ``start``/``end`` of each measured channel set.

    Integer windows are widened to whole numbers and kept in the dtype's range; float
    ranges (``min``/``max``) widen to hold the window. A window with no width (a
    constant channel) is widened by one step so that viewers can scale by it.
    """
    dt = np.dtype(dtype)
    channels = []
    for c, ch in enumerate(omero.get("channels", [])):
        ch = dict(ch)
        win = windows.get(c)
        if win is not None:
            lo, hi = win
            if dt.kind in "uib":
                lo, hi = math.floor(lo), math.ceil(hi)
            if hi <= lo:
                hi = lo + 1
            window = dict(ch.get("window") or {})
            if dt.kind == "f":
                # floats have no fixed range (the 0..1 default only stands in until data
                # is seen): the range widens to hold what was measured
                window["min"] = float(min(lo, window.get("min", lo)))
                window["max"] = float(max(hi, window.get("max", hi)))
            lo = max(lo, window.get("min", lo))
            hi = min(hi, window.get("max", hi))
            if hi > lo:
                window.update(start=float(lo), end=float(hi))
                ch["window"] = window
        channels.append(ch)
    return {**omero, "channels": channels}
