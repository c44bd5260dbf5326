"""How far a stream pre-sizes its unbounded axis ahead of the frames. Pure.

One rule for the stream that grows the axis and for ``repair``, which must tell the
room a killed stream made for itself from time points appended on purpose.
"""

from __future__ import annotations

import math

__all__ = ["GROWTH_FACTOR", "grown_extent"]

# Each growth adds a quarter of what is allocated: a few metadata rewrites for any
# acquisition length, at most a quarter of the axis reserved past the last frame.
GROWTH_FACTOR = 1.25


def grown_extent(allocated: int, needed: int, unit: int) -> int:
    """The extent a stream grows its axis to when a frame needs ``needed`` (index + 1)
    and ``allocated`` is too short: whole write units, never below ``needed``."""
    target = max(needed, math.ceil(allocated * GROWTH_FACTOR), unit)
    return math.ceil(target / unit) * unit
