"""The automatic chunk/shard layout (pure planning: no disk)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omestream import AcquisitionSettings, Dimension, PositionDimension, WriterOptions
from omestream.plan import ArrayPlan, plan_storage
from omestream.plan.memory import open_units
from omestream.settings import Pyramid


def _levels(
    t: int | None, y: int, x: int, version: str = "0.5", pyramid: Pyramid | None = None, **dim: Any
) -> tuple[ArrayPlan, ...]:
    tkw = {k[2:]: v for k, v in dim.items() if k.startswith("t_")}
    ykw = {k[2:]: v for k, v in dim.items() if k.startswith("y_")}
    xkw = {k[2:]: v for k, v in dim.items() if k.startswith("x_")}
    settings = AcquisitionSettings(
        root_path="plan.ome.zarr",
        dimensions=[
            Dimension(name="t", count=t, type="time", **tkw),
            Dimension(name="y", count=y, type="space", **ykw),
            Dimension(name="x", count=x, type="space", **xkw),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
        pyramid=pyramid,
    )
    return plan_storage(settings).images[0].levels


def test_large_frames_get_512_chunks_in_one_shard_per_frame() -> None:
    (level,) = _levels(10, 2048, 2048)
    assert level.chunks == (1, 512, 512)
    assert level.shards == (1, 2048, 2048)


def test_small_frames_are_grouped_into_shards_of_about_8_mib() -> None:
    (level,) = _levels(1000, 512, 512)
    assert level.chunks == (1, 512, 512)
    assert level.shards == (16, 512, 512)  # 16 x 512 KiB frames


def test_frames_given_as_chunks_of_one_are_grouped_too() -> None:
    """ome-writers' settings give t, c and z chunks of 1 and y/x chunks: small frames
    still share shard files (of whole chunks), else a plate of small frames wrote one
    file per frame; a shard size given along any axis is kept as given."""
    (level,) = _levels(1000, 512, 512, t_chunk_size=1, y_chunk_size=512, x_chunk_size=512)
    assert level.chunks == (1, 512, 512) and level.shards == (16, 512, 512)
    (level,) = _levels(1000, 256, 256, t_chunk_size=4, y_chunk_size=128, x_chunk_size=128)
    assert level.chunks == (4, 128, 128) and level.shards == (64, 256, 256)
    (level,) = _levels(1000, 512, 512, t_chunk_size=1, t_shard_size_chunks=1)
    assert level.shards == (1, 512, 512)


def test_a_shard_of_one_chunk_is_left_out() -> None:
    # chunks given as whole frames: one chunk per shard, so no sharding at all
    (level,) = _levels(10, 2048, 2048, y_chunk_size=2048, x_chunk_size=2048)
    assert level.chunks == (1, 2048, 2048) and level.shards is None
    # many frames per chunk given along t: the same
    (level,) = _levels(500, 512, 512, t_chunk_size=64)
    assert level.chunks == (64, 512, 512) and level.shards is None


def test_shards_the_user_asks_for_are_kept_even_of_one_chunk() -> None:
    (level,) = _levels(10, 2048, 2048, y_chunk_size=2048, x_chunk_size=2048, y_shard_size_chunks=1)
    assert level.shards == (1, 2048, 2048)


def test_zarr_v2_is_never_sharded() -> None:
    (level,) = _levels(10, 4096, 4096, version="0.4")
    assert level.chunks == (1, 2048, 2048) and level.shards is None


def test_pyramid_levels_down_to_one_chunk_are_not_sharded() -> None:
    levels = _levels(4, 2048, 2048, pyramid=Pyramid(levels=4))
    assert [lv.shards for lv in levels] == [(1, 2048, 2048), (1, 1024, 1024), None, None]
    assert [lv.chunks for lv in levels][2:] == [(1, 512, 512), (1, 256, 256)]


@pytest.mark.filterwarnings("ignore:Pyramid")  # small frames: fewer levels, as warned
@given(
    t=st.one_of(st.none(), st.integers(1, 600)),
    y=st.integers(1, 5000),
    x=st.integers(1, 5000),
    levels=st.integers(1, 5),
)
def test_automatic_shards_hold_whole_chunks_and_more_than_one(
    t: int | None, y: int, x: int, levels: int
) -> None:
    pyramid = Pyramid(levels=levels) if levels > 1 else None
    for level in _levels(t, y, x, pyramid=pyramid):
        if level.shards is None:
            continue
        assert all(s % c == 0 for s, c in zip(level.shards, level.chunks, strict=True))
        assert level.shards != level.chunks


def test_no_level_repeats_one_pixel() -> None:
    """64x48 frames are 1x1 at level 6 (64, 32, 16, 8, 4, 2, 1): 10 asked, 7 written."""
    with pytest.warns(UserWarning, match=r"Pyramid\(levels=10\).*level 6; writing 7 levels"):
        levels = _levels(3, 64, 48, pyramid=Pyramid(levels=10))
    assert [lv.shape[1:] for lv in levels][-2:] == [(2, 2), (1, 1)]
    assert len(_levels(3, 64, 48, pyramid=Pyramid(levels=7))) == 7  # no warning needed
    assert len(_levels(3, 1, 64, pyramid=Pyramid(levels=4))) == 4  # one axis still shrinks


def _plan(dims: list[Any], **kw: Any) -> ArrayPlan:
    settings = AcquisitionSettings(root_path="m.ome.zarr", dimensions=dims, dtype="uint16", **kw)
    return plan_storage(settings).images[0].levels[0]


def _yx(n: int) -> list[Dimension]:
    return [Dimension(name=a, count=n, type="space") for a in "yx"]


def test_units_filling_at_once_are_counted() -> None:
    def settings(dims: list[Any]) -> AcquisitionSettings:
        return AcquisitionSettings(root_path="m.ome.zarr", dimensions=dims, dtype="uint16")

    t = Dimension(name="t", count=None, type="time")
    many = settings([t, PositionDimension(positions=[f"p{i}" for i in range(7)]), *_yx(64)])
    assert open_units(many, (16, 64, 64)) == 7  # every position's shard waits for its next t
    assert open_units(many, (1, 64, 64)) == 1  # a unit of one frame is done when it comes
    assert open_units(many, (4, 32, 32)) == 7 * 4  # and each frame has 2x2 tiles
    z_out = settings([Dimension(name="z", count=5, type="space"),
                      Dimension(name="t", count=9, type="time"), *_yx(64)])  # fmt: skip
    # stored t, z: acquiring z outside t opens one unit per t until z is complete
    assert z_out.storage_dimension_names == ("t", "z", "y", "x")
    assert open_units(z_out, (1, 5, 64, 64)) == 9
    assert open_units(z_out, (1, 1, 64, 64)) == 1


def test_automatic_shards_shrink_so_units_filling_at_once_fit_the_budget() -> None:
    positions = PositionDimension(positions=[f"p{i}" for i in range(100)])
    level = _plan([Dimension(name="t", count=None, type="time"), positions, *_yx(512)])
    assert level.chunks == (1, 512, 512) and level.shards is None  # 100 x 0.5 MB, not 100 x 8
    level = _plan([Dimension(name="t", count=None, type="time"), *_yx(512)])
    assert level.shards == (16, 512, 512)  # one position: the 8 MiB shard stays
    z_out = [Dimension(name="z", count=16, type="space"),
             Dimension(name="t", count=100, type="time"), *_yx(512)]  # fmt: skip
    assert _plan(z_out).shards is None  # 100 open z-stacks of one frame each, not of 16


def test_a_layout_given_that_cannot_fit_the_budget_is_named() -> None:
    t = Dimension(name="t", count=128, type="time", chunk_size=1, shard_size_chunks=64)
    with pytest.warns(UserWarning, match=r"16 write units of 32.0 MB.*512 MB"):
        level = _plan([t, *_yx(2048)])
    assert level.shards == (64, 512, 512)  # kept as given
    roomy = WriterOptions(memory_budget_mb=2048)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _plan([t, *_yx(2048)], writer=roomy)  # a budget that holds it: no warning


@given(unit=st.integers(1, 64), frames=st.integers(1, 5000))
def test_growth_never_passes_what_repair_assumes(unit: int, frames: int) -> None:
    """repair keeps extents past ``grown_extent(i, i + 1, unit)`` as added by someone
    else; a stream's own allocation while writing index i must stay within it."""
    from omestream.plan.growth import grown_extent

    allocated = 0
    for i in range(frames):
        if i >= allocated:
            allocated = grown_extent(allocated, i + 1, unit)
        assert i < allocated <= grown_extent(i, i + 1, unit)
        assert allocated % unit == 0
