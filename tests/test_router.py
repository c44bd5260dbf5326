"""The acquisition -> storage index mapping, checked against numpy transposes (no disk)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omestream import (
    AcquisitionSettings,
    Dimension,
    FrameCountError,
    PositionDimension,
)
from omestream.plan import FrameRouter, plan_storage

YX = [Dimension(name="y", count=4), Dimension(name="x", count=4)]
NAMES = ["t", "c", "z"]


@st.composite
def acquisitions(draw: st.DrawFn) -> tuple[AcquisitionSettings, list[str]]:
    names = draw(st.permutations(NAMES))
    n_outer = draw(st.integers(min_value=0, max_value=3))
    names = names[:n_outer]
    counts = [draw(st.integers(min_value=1, max_value=4)) for _ in names]
    dims: list[Dimension | PositionDimension] = [
        Dimension(name=n, count=c) for n, c in zip(names, counts, strict=True)
    ]
    if draw(st.booleans()):
        where = draw(st.integers(min_value=0, max_value=len(dims)))
        n_pos = draw(st.integers(min_value=1, max_value=3))
        dims.insert(where, PositionDimension(positions=[f"p{i}" for i in range(n_pos)]))
    order_kind = draw(st.sampled_from(["ome", "acquisition", "explicit"]))
    order: object = order_kind
    if order_kind == "explicit":
        order = list(draw(st.permutations(names)))
    fmt = draw(st.sampled_from(["ome-zarr", "ome-tiff"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = AcquisitionSettings(
            root_path="x", format=fmt, dimensions=[*dims, *YX], dtype="uint8", storage_order=order
        )
    return s, [d.name for d in dims]


@settings(max_examples=200, deadline=None)
@given(acquisitions())
def test_route_matches_numpy_transpose(case: tuple[AcquisitionSettings, list[str]]) -> None:
    s, acq_names = case
    outer = s.dimensions[:-2]
    counts = [d.count for d in outer]
    total = int(np.prod(counts)) if counts else 1
    numbers = np.arange(total).reshape(counts) if counts else np.arange(1)
    p_axis = next((i for i, d in enumerate(outer) if isinstance(d, PositionDimension)), None)
    storage = list(s.storage_dimension_names[:-2])
    router = FrameRouter(s)
    assert router.total == total
    for image in range(counts[p_axis] if p_axis is not None else 1):
        arr = numbers.take(image, axis=p_axis) if p_axis is not None else numbers
        names = [n for k, n in enumerate(acq_names) if k != p_axis]
        arr = arr.transpose([names.index(n) for n in storage]) if names else arr
        if not names:  # positions only (or a single frame): no outer array axes
            assert router.route(image).index == ()
            continue
        for idx in np.ndindex(arr.shape):
            n = int(arr[idx])
            route = router.route(n)
            assert route.image == image
            assert route.index == tuple(idx)
            assert router.frame_number(image, route.index) == n


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=0, max_value=60),
)
def test_unbounded_growth(c: int, p: int, n: int) -> None:
    s = AcquisitionSettings(
        root_path="x.ome.zarr",
        dimensions=[
            Dimension(name="t", count=None),
            PositionDimension(positions=[str(i) for i in range(p)]),
            Dimension(name="c", count=c),
            *YX,
        ],
        dtype="uint8",
    )
    router = FrameRouter(s)
    route = router.route(n)
    t, rest = divmod(n, p * c)
    assert route.index == (t, rest % c)
    assert route.image == rest // c
    assert route.acquisition == {"t": t, "p": rest // c, "c": rest % c}
    assert router.frame_number(route.image, route.index) == n


def test_too_many_frames() -> None:
    s = AcquisitionSettings(
        root_path="x.ome.zarr", dimensions=[Dimension(name="t", count=2), *YX], dtype="uint8"
    )
    router = FrameRouter(s)
    router.route(1)
    with pytest.raises(
        FrameCountError, match="frame 2 is beyond the acquisition: it holds 2 frames"
    ):
        router.route(2)


def test_plan_paths_per_layout() -> None:
    from tests.cases import CASES

    by_id = {c.id: c for c in CASES}
    plate = plan_storage(by_id["plate"].settings("p.ome.zarr", None))
    assert [im.path for im in plate.images] == ["A/1/fov0", "A/2/fov0", "C/4/fov0", "C/4/fov1"]
    assert plate.wells == (
        ("A", "1", ("fov0",)),
        ("A", "2", ("fov0",)),
        ("C", "4", ("fov0", "fov1")),
    )
    multi = plan_storage(by_id["multi-position"].settings("m.ome.zarr", None))
    assert [im.path for im in multi.images] == ["Pos0", "Pos1", "Pos2"]  # by name
    assert [im.name for im in multi.images] == ["Pos0", "Pos1", "Pos2"]
    v04 = plan_storage(
        by_id["multi-position"].settings("m.ome.zarr", {"name": "ome-zarr", "version": "0.4"})
    )
    assert [im.path for im in v04.images] == ["0", "1", "2"]  # 0.4: numbered
    single = plan_storage(by_id["single-5d"].settings("s.ome.zarr", None))
    assert [im.path for im in single.images] == [""]
    assert single.images[0].levels[0].shape == (2, 3, 4, 48, 40)


@pytest.mark.parametrize(
    ("names", "grid", "version", "paths"),
    [
        (["Pos0", "Pos1"], False, "0.5", ["Pos0", "Pos1"]),
        (["fov.1", "fov_2", "F-3"], False, "0.5", ["fov.1", "fov_2", "F-3"]),
        (["tile", "tile"], True, "0.5", ["tile_0_0", "tile_0_1"]),
        (["Pos0", "Pos1"], False, "0.4", ["0", "1"]),  # 0.4 roots carry no version
        (["pos 0", "pos1"], False, "0.5", ["0", "1"]),  # a space: not a portable name
        (["A", "a"], False, "0.5", ["0", "1"]),  # one folder on case-insensitive disks
        (["ome", "x"], False, "0.5", ["0", "1"]),  # the metadata group's name
        (["_x", "y"], False, "0.5", ["0", "1"]),  # a leading underscore
    ],
)
def test_series_are_named_after_their_positions(
    names: list[str], grid: bool, version: str, paths: list[str]
) -> None:
    from omestream.plan.storage import series_paths
    from omestream.settings import Position

    positions = [
        Position(name=n, **({"grid_row": 0, "grid_column": i} if grid else {}))
        for i, n in enumerate(names)
    ]
    assert series_paths(positions, version) == paths
