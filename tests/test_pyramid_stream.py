"""Pyramid levels written while streaming: every level equals an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from omestream import AcquisitionSettings, Dimension, Pyramid, SettingsError, create_stream
from omestream.plan import plan_storage
from omestream.pyramid import StreamPyramid, downsample
from tests.cases import CASES, frame_for
from tests.checks import validate_ome_zarr
from tests.pyramid_refs import assert_level_equal, ref_pyramid
from tests.streaming import expected_images, stream_case


def _image_paths(settings: AcquisitionSettings, n: int) -> list[str]:
    plan = plan_storage(settings)
    return [im.path for im in plan.images][:n]


def _check_levels(
    root: str, image: str, full: np.ndarray, f: tuple[int, ...], method: str, n: int
) -> None:
    refs = ref_pyramid(full, f, method, n)
    for k in range(n):
        got = zarr.open_array(root, path="/".join(p for p in (image, str(k)) if p), mode="r")[...]
        assert_level_equal(got, refs[k], method, f"{root}/{image} level {k}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_case_streams_mean_levels(tmp_path, case) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "a.ome.zarr")
    settings = case.settings(root, "ome-zarr", pyramid=Pyramid(levels=3, method="mean"))
    stream_case(case, settings)
    images = expected_images(case, settings)
    for path, full in zip(_image_paths(settings, len(images)), images, strict=True):
        f = (1,) * (full.ndim - 2) + (2, 2)
        _check_levels(root, path, full, f, "mean", 3)


def _zstack_dims(nz: int = 5, ny: int = 37, nx: int = 29) -> list[Dimension]:
    # acquisition order t, z, c: channels arrive inner to z, so z groups interleave
    return [
        Dimension(name="t", count=2, type="time"),
        Dimension(name="z", count=nz, type="space", scale=2.0, unit="um"),
        Dimension(name="c", count=2, type="channel"),
        Dimension(name="y", count=ny, type="space", scale=0.5, unit="um", chunk_size=min(16, ny)),
        Dimension(name="x", count=nx, type="space", scale=0.5, unit="um", chunk_size=min(16, nx)),
    ]


def _frames(shape: tuple[int, ...], method: str, dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(7)
    high = 5 if method == "mode" else 60000
    return rng.integers(0, high, shape).astype(dtype)


Z_RUNS = [
    ("mean", "0.5", "ome"),
    ("mean", "0.4", "acquisition"),
    ("stride", "0.4", "ome"),
    ("gaussian", "0.5", "ome"),
    ("gaussian", "0.5", "acquisition"),
    ("mode", "0.4", "ome"),
    ("mode", "0.5", "acquisition"),
]


@pytest.mark.filterwarnings("ignore:storage_order")
@pytest.mark.parametrize(("method", "version", "order"), Z_RUNS)
def test_z_factor_odd_sizes_any_plane_order(
    tmp_path, method: str, version: str, order: str
) -> None:  # type: ignore[no-untyped-def]
    """Frames come t, z, c: planes of one z group interleave with other channels' planes,
    whether storage keeps c inner to z ("acquisition") or outer ("ome")."""
    root = str(tmp_path / "z.ome.zarr")
    settings = AcquisitionSettings(
        root_path=root,
        dimensions=_zstack_dims(),
        dtype="uint16",
        storage_order=order,
        format={"name": "ome-zarr", "version": version},
        pyramid=Pyramid(levels=3, factors={"z": 2, "y": 2, "x": 2}, method=method),
    )
    acq = _frames((2, 5, 2, 37, 29), method)
    skipped = {(0, 1, 0), (1, 4, 1), (1, 0, 0), (1, 1, 0)}  # incl. a whole z group of one channel
    with create_stream(settings) as stream:
        for t, z, c in np.ndindex(2, 5, 2):
            if (t, z, c) in skipped:
                acq[t, z, c] = 0
                stream.skip()
            else:
                stream.append(acq[t, z, c])
    if order == "acquisition":  # storage t, z, c, y, x
        _check_levels(root, "", acq, (1, 2, 1, 2, 2), method, 3)
    else:  # storage t, c, z, y, x
        _check_levels(root, "", acq.transpose(0, 2, 1, 3, 4), (1, 1, 2, 2, 2), method, 3)
        validate_ome_zarr(root)


def test_stream_closed_early_finishes_partial_groups(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "early.ome.zarr")
    settings = AcquisitionSettings(
        root_path=root,
        dimensions=_zstack_dims(nz=6, ny=20, nx=20),
        dtype="uint16",
        format="ome-zarr",
        pyramid=Pyramid(levels=3, factors={"z": 2, "y": 2, "x": 2}),
    )
    acq = _frames((2, 6, 2, 20, 20), "mean")
    stop = 2 * 6 * 2 - 7  # the last time point ends after 5 of its 12 frames
    with create_stream(settings) as stream:
        for n, (t, z, c) in enumerate(np.ndindex(2, 6, 2)):
            if n >= stop:
                acq[t, z, c] = 0
            else:
                stream.append(acq[t, z, c])
    full = acq.transpose(0, 2, 1, 3, 4)  # storage order t, c, z, y, x
    _check_levels(root, "", full, (1, 1, 2, 2, 2), "mean", 3)


def test_reader_sees_levels_and_transforms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    root = str(tmp_path / "r.ome.zarr")
    dims = _zstack_dims(nz=4, ny=64, nx=48)
    settings = AcquisitionSettings(
        root_path=root,
        dimensions=dims,
        dtype="uint16",
        format="ome-zarr",
        pyramid=Pyramid(levels=4, method="mean"),
    )
    with create_stream(settings) as stream:
        for n in range(2 * 4 * 2):
            stream.append(frame_for(n, (64, 48), "uint16"))
    validate_ome_zarr(root)
    node = next(iter(Reader(parse_url(root))()))
    shapes = [tuple(d.shape) for d in node.data]
    assert shapes == [(2, 2, 4, 64 // 2**k, 48 // 2**k) for k in range(4)]
    ms = zarr.open_group(root, mode="r").attrs["ome"]["multiscales"][0]
    assert ms["type"] == "mean"
    for k, ds in enumerate(ms["datasets"]):
        tf = {t["type"]: t for t in ds["coordinateTransformations"]}
        assert tf["scale"]["scale"] == [1.0, 1.0, 2.0, 0.5 * 2**k, 0.5 * 2**k]
        # a block of 2^k pixels has its centre (2^k - 1) / 2 pixels after its start
        shift = 0.5 * (2**k - 1) / 2
        assert tf.get("translation", {"translation": [0.0] * 5})["translation"] == [
            0.0,
            0.0,
            0.0,
            shift,
            shift,
        ]


def test_stride_levels_have_no_translation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "s.ome.zarr")
    settings = AcquisitionSettings(
        root_path=root,
        dimensions=_zstack_dims(nz=2, ny=16, nx=16),
        dtype="uint8",
        format={"name": "ome-zarr", "version": "0.4"},
        pyramid=Pyramid(levels=2, method="stride"),
    )
    with create_stream(settings) as stream:
        for n in range(8):
            stream.append(frame_for(n, (16, 16), "uint8"))
    ms = zarr.open_group(root, mode="r").attrs["multiscales"][0]
    assert ms["version"] == "0.4" and ms["type"] == "stride"
    assert [t["type"] for t in ms["datasets"][1]["coordinateTransformations"]] == ["scale"]
    validate_ome_zarr(root)


def test_z_buffers_hold_only_needed_planes() -> None:
    settings = AcquisitionSettings(
        root_path="unused.ome.zarr",
        dimensions=_zstack_dims(nz=8, ny=8, nx=8),
        dtype="uint16",
        storage_order="acquisition",
        format="ome-zarr",
        pyramid=Pyramid(levels=3, factors={"z": 2, "y": 2, "x": 2}),
    )
    plan = plan_storage(settings)
    pyr = StreamPyramid(plan, "mean")
    most = 0
    emitted = []
    for t, z, c in np.ndindex(2, 8, 2):
        emitted += list(pyr.feed((t, z, c), np.full((8, 8), z, np.uint16)))
        most = max(most, pyr.buffered_planes)
    # level 1 waits for 2 planes per channel, level 2 for 2 level-1 planes per channel
    assert most <= 2 * 2
    assert pyr.buffered_planes == 0
    assert list(pyr.finish()) == []
    assert sorted((lv, idx) for lv, idx, _ in emitted) == sorted(
        [(1, (t, z, c)) for t in range(2) for z in range(4) for c in range(2)]
        + [(2, (t, z, c)) for t in range(2) for z in range(2) for c in range(2)]
    )


def test_downsampling_the_unbounded_axis_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dims = [
        Dimension(name="z", count=None, type="space"),
        Dimension(name="y", count=8, type="space"),
        Dimension(name="x", count=8, type="space"),
    ]
    root = tmp_path / "u.ome.zarr"
    with pytest.raises(SettingsError, match="build_pyramid"):
        create_stream(
            AcquisitionSettings(
                root_path=str(root),
                dimensions=dims,
                dtype="uint8",
                format="ome-zarr",
                pyramid=Pyramid(levels=2, factors={"z": 2, "y": 2, "x": 2}),
            )
        )


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 7), st.integers(1, 19), st.integers(1, 19)),
    fz=st.integers(1, 3),
    method=st.sampled_from(["mean", "stride", "mode", "gaussian"]),
    dtype=st.sampled_from(["uint8", "int16", "uint16", "float32"]),
)
def test_kernels_match_references(shape, fz, method, dtype) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(-50 if dtype == "int16" else 0, 4 if method == "mode" else 200, shape)
    a = a.astype(dtype)
    f = (fz, 2, 2)
    refs = ref_pyramid(a, f, method, 3)
    prev = a
    for k in (1, 2):
        prev = downsample(prev, f, method)
        if method == "gaussian" and dtype != "float32":
            # skimage vs scipy float rounding can differ at exact .5; allow one step
            assert prev.shape == refs[k].shape
            assert np.abs(prev.astype(float) - refs[k].astype(float)).max(initial=0) <= 1
        else:
            assert_level_equal(prev, refs[k], method, f"{method} {shape} level {k}")
