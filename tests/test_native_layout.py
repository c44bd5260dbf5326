"""The built-in engine's presence bookkeeping per chunk (pure layout, no disk)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from omestream.backends.native_layout import Geometry


def _geometry(grid_outer: tuple[int, ...], chunk_outer: tuple[int, ...]) -> Geometry:
    unit = tuple(g * c for g, c in zip(grid_outer, chunk_outer, strict=True))
    return Geometry(
        level=None,  # type: ignore[arg-type]  # not used by the presence methods
        unit_outer=unit,
        chunk_outer=chunk_outer,
        grid_outer=grid_outer,
        tiles=(1, 1),
        grid_yx=(2, 1),
        chunk_yx=(4, 4),
        frame=(8, 4),
        padded=(8, 4),
        sharded=True,
    )


@st.composite
def _layouts(draw: Any) -> tuple[Geometry, np.ndarray]:
    axes = draw(st.integers(1, 2))
    grid = tuple(draw(st.integers(1, 3)) for _ in range(axes))
    chunk = tuple(draw(st.integers(1, 3)) for _ in range(axes))
    g = _geometry(grid, chunk)
    flat = draw(st.lists(st.booleans(), min_size=int(np.prod(g.unit_outer)),
                         max_size=int(np.prod(g.unit_outer))))  # fmt: skip
    return g, np.array(flat, dtype=bool).reshape(g.unit_outer)


def _frames_of_each_chunk(g: Geometry, present: np.ndarray) -> list[np.ndarray]:
    """Brute force: the presence of each chunk's frames, chunks in C order."""
    out = []
    for idx in itertools.product(*(range(n) for n in g.grid_outer)):
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, g.chunk_outer, strict=True))
        out.append(present[sl])
    return out


@given(_layouts())
def test_presence_per_chunk_matches_the_frames_of_each_chunk(layout: Any) -> None:
    g, present = layout
    chunks = _frames_of_each_chunk(g, present)
    assert g.whole_chunks(present) == all(c.all() or not c.any() for c in chunks)
    per_chunk = g.chunk_presence(present).reshape(*g.grid_outer, *g.grid_yx)
    for idx, c in zip(itertools.product(*(range(n) for n in g.grid_outer)), chunks, strict=True):
        assert (per_chunk[idx] == c.any()).all()  # every y/x chunk of those frames
