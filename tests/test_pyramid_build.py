"""Levels built after the fact, for our stores and other tools', chunk by chunk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

import omestream
from omestream import (
    AcquisitionSettings,
    Dimension,
    Pyramid,
    SettingsError,
    StoreFormatError,
    build_pyramid,
    create_stream,
)
from omestream.cli.app import main
from omestream.pyramid import build as build_mod
from tests.cases import CASES
from tests.checks import validate_ome_zarr
from tests.pyramid_refs import assert_level_equal, ref_pyramid
from tests.streaming import expected_images, stream_case


def _volume(method: str, shape: tuple[int, ...] = (2, 7, 45, 38)) -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.integers(0, 5 if method == "mode" else 60000, shape).astype(np.uint16)


def _write_ours(root: str, data: np.ndarray, version: str) -> None:
    c, z, y, x = data.shape
    settings = AcquisitionSettings(
        root_path=root,
        dimensions=[
            Dimension(name="c", count=c, type="channel"),
            Dimension(name="z", count=z, type="space", scale=1.5, unit="um"),
            Dimension(name="y", count=y, type="space", scale=0.25, unit="um", chunk_size=16),
            Dimension(name="x", count=x, type="space", scale=0.25, unit="um", chunk_size=16),
        ],
        dtype=str(data.dtype),
        format={"name": "ome-zarr", "version": version},
    )
    with create_stream(settings) as stream:
        for plane in data.reshape(-1, y, x):
            stream.append(plane)


def _write_ome_zarr_py(root: str, data: np.ndarray, version: str, levels: bool) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    store = parse_url(root, mode="w", fmt=fmt).store
    group = zarr.group(store=store, zarr_format=2 if version == "0.4" else 3)
    write_image(
        data,
        group,
        axes="czyx",
        fmt=fmt,
        scale_factors=[2, 4] if levels else [],
        storage_options={"chunks": (1, 2, 16, 16)},
    )


def _multiscale(root: str) -> dict:
    attrs = dict(zarr.open_group(root, mode="r").attrs)
    return attrs.get("ome", attrs)["multiscales"][0]


def _check(root: str, data: np.ndarray, f: tuple[int, ...], method: str, n: int) -> None:
    ms = _multiscale(root)
    paths = [d["path"] for d in ms["datasets"]]
    assert len(paths) == n
    refs = ref_pyramid(data, f, method, n)
    for k, p in enumerate(paths):
        got = zarr.open_array(root, path=p, mode="r")[...]
        assert_level_equal(got, refs[k], method, f"{root}/{p}")


@pytest.mark.parametrize("version", ["0.5", "0.4"])
@pytest.mark.parametrize("method", ["mean", "nearest", "gaussian", "mode"])
def test_build_on_our_store(tmp_path, method: str, version: str) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "ours.ome.zarr")
    data = _volume(method)
    _write_ours(root, data, version)
    results = build_pyramid(root, levels=4, method=method, factors={"z": 2, "y": 2, "x": 2})
    assert [r.shapes for r in results] == [
        ((2, 7, 45, 38), (2, 4, 23, 19), (2, 2, 12, 10), (2, 1, 6, 5))
    ]
    _check(root, data, (1, 2, 2, 2), method, 4)
    ms = _multiscale(root)
    assert ms["type"] == method
    for k, ds in enumerate(ms["datasets"]):
        tf = {t["type"]: t for t in ds["coordinateTransformations"]}
        assert tf["scale"]["scale"] == [1.0, 1.5 * 2**k, 0.25 * 2**k, 0.25 * 2**k]
        if method == "nearest" or k == 0:
            assert "translation" not in tf
        else:
            shift = (2**k - 1) / 2
            assert tf["translation"]["translation"] == [0, 1.5 * shift, 0.25 * shift, 0.25 * shift]
    validate_ome_zarr(root)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_build_on_ome_zarr_py_store_replaces_its_levels(tmp_path, version: str) -> None:  # type: ignore[no-untyped-def]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    root = str(tmp_path / "other.ome.zarr")
    data = _volume("mean", (2, 6, 64, 50))
    _write_ome_zarr_py(root, data, version, levels=True)
    build_pyramid(root, levels=4, method="mean")
    _check(root, data, (1, 1, 2, 2), "mean", 4)
    assert [d["path"] for d in _multiscale(root)["datasets"]] == ["s0", "s1", "s2", "s3"]
    validate_ome_zarr(root)
    node = next(iter(Reader(parse_url(root))()))
    assert [tuple(d.shape) for d in node.data] == [
        (2, 6, 64, 50),
        (2, 6, 32, 25),
        (2, 6, 16, 13),
        (2, 6, 8, 7),
    ]
    # and fewer levels than before: the extra arrays go away
    build_pyramid(root, levels=2, method="nearest")
    assert [d["path"] for d in _multiscale(root)["datasets"]] == ["s0", "s1"]
    assert not os.path.exists(os.path.join(root, "s2"))
    _check(root, data, (1, 1, 2, 2), "nearest", 2)
    validate_ome_zarr(root)


@pytest.mark.parametrize("method", ["mean", "gaussian"])
def test_many_small_blocks_equal_one_big_block(tmp_path, monkeypatch, method: str) -> None:  # type: ignore[no-untyped-def]
    """Images larger than the block budget: blocks of whole chunks, gaussian margins read
    across block borders, same pixels as computing the whole array at once."""
    root = str(tmp_path / "big.ome.zarr")
    data = _volume(method, (1, 9, 70, 61))
    _write_ome_zarr_py(root, data, "0.5", levels=False)
    monkeypatch.setattr(build_mod, "BLOCK_BYTES", 1)  # one write unit per block
    calls: list[tuple[int, int]] = []
    build_pyramid(
        root,
        levels=3,
        method=method,
        factors={"z": 2, "y": 2, "x": 2},
        threads=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    total = calls[-1][1]
    assert total > 20 and calls[-1] == (total, total) and calls[0] == (0, total)
    _check(root, data, (1, 2, 2, 2), method, 3)


def test_plate_root_builds_every_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    case = next(c for c in CASES if c.id == "plate")
    root = str(tmp_path / "plate.ome.zarr")
    settings = case.settings(root, "ome-zarr")
    stream_case(case, settings)
    results = build_pyramid(root, levels=3)
    images = expected_images(case, settings)
    assert [r.image for r in results] == ["A/1/fov0", "A/2/fov0", "C/4/fov0", "C/4/fov1"]
    for r, full in zip(results, images, strict=True):
        refs = ref_pyramid(full, (1, 1, 1, 2, 2), "mean", 3)
        for k, p in enumerate(r.paths):
            got = zarr.open_array(root, path=f"{r.image}/{p}", mode="r")[...]
            assert_level_equal(got, refs[k], "mean", f"{r.image}/{p}")
    validate_ome_zarr(root)


def test_cli_pyramid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "cli.ome.zarr")
    data = _volume("mean", (1, 3, 40, 40))
    _write_ours(root, data, "0.4")
    code = main(
        ["pyramid", root, "--levels", "3", "--method", "gaussian", "--factors", "y=2,x=2", "-q"]
    )
    assert code == 0
    _check(root, data, (1, 1, 2, 2), "gaussian", 3)
    assert main(["pyramid", root, "--factors", "y=two"]) == 1


def _snapshot(root: str) -> dict[str, str]:
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "median"}, SettingsError, "unknown downsampling method"),
        ({"levels": 0}, SettingsError, "levels"),
        ({"factors": {"q": 2}}, SettingsError, "axes"),
        ({"factors": {"c": 2}}, SettingsError, "type 'channel'"),
        ({"factors": {"y": 1, "x": 1}}, SettingsError, "downsample nothing"),
        ({"factors": {"y": 0}}, SettingsError, "whole number"),
    ],
)
def test_bad_input_changes_nothing(tmp_path, kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "bad.ome.zarr")
    _write_ome_zarr_py(root, _volume("mean", (1, 2, 16, 16)), "0.4", levels=True)
    before = _snapshot(root)
    with pytest.raises(error, match=match):
        build_pyramid(root, **kwargs)
    assert _snapshot(root) == before


def test_not_an_image_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "plain.zarr"
    zarr.create_array(str(plain), shape=(4, 4), dtype="uint8")
    before = _snapshot(str(plain))
    with pytest.raises(StoreFormatError):
        build_pyramid(plain)
    assert _snapshot(str(plain)) == before
    with pytest.raises(StoreFormatError, match="does not exist"):
        build_pyramid(tmp_path / "missing.zarr")


def test_exported() -> None:
    assert omestream.build_pyramid is build_pyramid
    assert "build_pyramid" in omestream.__all__


def test_levels_stop_at_one_pixel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """45x38 is 1x1 at level 6 (45, 23, 12, 6, 3, 2, 1): 10 asked, 7 built, warned."""
    root = str(tmp_path / "small.ome.zarr")
    data = _volume("mean")
    _write_ours(root, data, "0.5")
    with pytest.warns(UserWarning, match=r"levels=10.*\. \(7\)"):
        (result,) = build_pyramid(root, levels=10)
    assert len(result.paths) == 7 and result.shapes[-1][-2:] == (1, 1)
    _check(root, data, (1, 1, 2, 2), "mean", 7)
    validate_ome_zarr(root)


@pytest.mark.parametrize("dtype", ["uint64", "int64"])
def test_mean_of_64_bit_extremes_saturates_instead_of_wrapping(tmp_path: Path, dtype: str) -> None:
    """float64 cannot hold 2**64 - 1 or 2**63 - 1; the block mean of such pixels is the
    type's limit, in lower levels written while streaming and by downsample alike."""
    from omestream.pyramid import downsample

    info = np.iinfo(dtype)
    frame = np.full((8, 6), info.max, dtype)
    frame[:, 4:] = info.min  # a block of each extreme, and one edge-to-edge
    low = downsample(frame, (2, 2))
    np.testing.assert_array_equal(low[:, :2], info.max)
    np.testing.assert_array_equal(low[:, 2:], info.min)
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "wide.ome.zarr"),
        dimensions=[Dimension(name="t", count=1), Dimension(name="y", count=8),
                    Dimension(name="x", count=6)],
        dtype=dtype, pyramid=Pyramid(levels=2),
    )  # fmt: skip
    with omestream.create_stream(settings) as stream:
        stream.append(frame)
    stored = zarr.open_array(f"{settings.output_path}/1", mode="r")[0]
    np.testing.assert_array_equal(stored, low)
    validate_ome_zarr(settings.output_path)
