"""Parallel writes, per-position processing and lazy reads on a real LocalCluster.

One cluster of two worker processes serves the whole module. Every written dataset is
compared pixel for pixel with its source and checked by the independent validators;
the write graphs are checked so that no chunk or shard belongs to two tasks.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import omestream.dask as odask  # noqa: E402
from omestream import (  # noqa: E402
    AcquisitionSettings,
    Dimension,
    FrameDtypeError,
    FrameShapeError,
    PositionDimension,
    Pyramid,
    SettingsError,
    StoreFormatError,
    create_stream,
)
from omestream.dask.write import WRITE_PREFIX  # noqa: E402
from tests.cases import CASES  # noqa: E402
from tests.checks import validate_ome_zarr  # noqa: E402
from tests.streaming import expected_images, stream_case  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def assert_one_task_per_unit(plan: odask.WritePlan) -> int:
    """From the task graph: every write unit of every array is written by exactly one task."""
    owner: dict[tuple[str, tuple[int, ...]], Any] = {}
    n_tasks = 0
    for key, task in plan.graph().items():
        name = key[0] if isinstance(key, tuple) else key
        if not str(name).startswith(WRITE_PREFIX):
            continue
        jobs = [a for a in task.args if isinstance(a, odask.UnitWrite)]
        assert len(jobs) == 1, f"task {key} carries {len(jobs)} write jobs"
        n_tasks += 1
        for unit in jobs[0].units():
            where = (jobs[0].array.path, unit)
            assert where not in owner, f"unit {where} is written by {owner[where]} and {key}"
            owner[where] = key
    expected = set()
    for im in plan.dataset.plan.images:
        for level in im.levels:
            path = "/".join(p for p in (im.path, level.path) if p)
            grid = [math.ceil(s / u) for s, u in zip(level.shape, level.write_unit, strict=True)]
            expected |= {(path, idx) for idx in np.ndindex(*grid)}
    assert set(owner) == expected
    assert n_tasks == len(plan.tasks)
    return n_tasks


def _mean2(a: np.ndarray) -> np.ndarray:
    """2x2 y/x area mean (even sizes), integers rounded to nearest, in plain numpy."""
    *outer, y, x = a.shape
    m = a.reshape(*outer, y // 2, 2, x // 2, 2).astype(np.float64).mean(axis=(-3, -1))
    return (np.rint(m) if a.dtype.kind in "ui" else m).astype(a.dtype)


def test_write_tczyx_array_in_parallel(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    source = rng.integers(0, 5000, size=(2, 3, 4, 64, 48), dtype="uint16")
    source += np.array([0, 10000, 20000], "uint16")[:, None, None, None]  # per channel
    # dask chunks that cut across the stored grid: they must be rechunked to it
    arr = da.from_array(source, chunks=(1, 2, 3, 20, 17))
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "tczyx.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="z", count=4, chunk_size=2, type="space", scale=0.5, unit="um"),
            Dimension(name="y", count=64, chunk_size=16, shard_size_chunks=2, type="space"),
            Dimension(name="x", count=48, chunk_size=16, shard_size_chunks=2, type="space"),
        ],
        dtype="uint16",
        compression="blosc-zstd",
        pyramid=Pyramid(levels=2),
    )
    plan = odask.write_image(arr, settings, compute=False)
    assert isinstance(plan, odask.WritePlan)
    n_tasks = assert_one_task_per_unit(plan)
    assert n_tasks > 8
    report = plan.compute(client)
    assert report.tasks == n_tasks
    out = settings.output_path
    validate_ome_zarr(out)
    np.testing.assert_array_equal(zarr.open_array(f"{out}/0", mode="r")[...], source)
    np.testing.assert_array_equal(zarr.open_array(f"{out}/1", mode="r")[...], _mean2(source))
    # the root record says the write completed
    record = zarr.open_group(out, mode="r").attrs["omestream"]
    assert record["complete"] is True
    # display windows measured by the tasks from the blocks they wrote
    omero = zarr.open_group(out, mode="r").attrs["ome"]["omero"]
    for c, ch in enumerate(omero["channels"]):
        lo, hi = ch["window"]["start"], ch["window"]["end"]
        assert c * 10000 <= lo <= c * 10000 + 50 and c * 10000 + 4950 <= hi <= c * 10000 + 5000
    # lazy reads: one block per shard, same pixels
    levels = odask.to_dask(out)[""]
    assert [lv.shape for lv in levels] == [source.shape, (2, 3, 4, 32, 24)]
    assert levels[0].chunks[-2:] == ((32, 32), (32, 16))
    np.testing.assert_array_equal(client.compute(levels[0]).result(), source)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_gaussian_levels_written_in_parallel_match_the_whole_image(
    client: Any, tmp_path: Path, version: str
) -> None:
    # each task filters its block with the neighbours' pixels the kernel reaches, so the
    # levels are what the after-the-fact builder makes from the same level 0
    from omestream.pyramid import build_pyramid

    rng = np.random.default_rng(4)
    source = rng.integers(0, 4000, size=(5, 70, 52), dtype="uint16")  # odd, uneven edges
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "g.ome.zarr"),
        dimensions=[
            Dimension(name="z", count=5, chunk_size=1, type="space"),
            Dimension(name="y", count=70, chunk_size=16, type="space"),
            Dimension(name="x", count=52, chunk_size=16, type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
        pyramid=Pyramid(levels=3, method="gaussian", factors={"z": 2, "y": 2, "x": 2}),
    )
    odask.write_image(da.from_array(source, chunks=(2, 30, 30)), settings, client=client)
    out = settings.output_path
    validate_ome_zarr(out)
    rebuilt = tmp_path / "rebuilt.ome.zarr"
    shutil.copytree(out, rebuilt)
    build_pyramid(str(rebuilt), levels=3, method="gaussian", factors={"z": 2, "y": 2, "x": 2})
    for level in ("1", "2"):
        got = zarr.open_array(f"{out}/{level}", mode="r")[...]
        want = zarr.open_array(f"{rebuilt}/{level}", mode="r")[...]
        np.testing.assert_array_equal(got, want, err_msg=f"level {level}")


def test_write_2x2_plate_in_parallel(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    wells = {
        f"{r}/{c}": rng.integers(0, 255, size=(2, 3, 40, 36), dtype="uint8")
        for r in "AB" for c in ("1", "2")
    }  # fmt: skip
    out = tmp_path / "plate.ome.zarr"
    plan = odask.write_plate(
        {k: da.from_array(v, chunks=(1, 1, 13, 36)) for k, v in wells.items()},
        str(out),
        dims="czyx",
        chunks={"y": 16, "x": 16},
        compute=False,
    )
    assert isinstance(plan, odask.WritePlan)
    assert_one_task_per_unit(plan)
    plan.compute(client)
    validate_ome_zarr(out)
    root = zarr.open_group(str(out), mode="r").attrs["ome"]["plate"]
    assert [w["path"] for w in root["wells"]] == ["A/1", "A/2", "B/1", "B/2"]
    read = odask.to_dask(str(out))
    assert sorted(read) == [f"{k}/0" for k in sorted(wells)]
    for key, data in wells.items():
        np.testing.assert_array_equal(zarr.open_array(f"{out}/{key}/0/0", mode="r")[...], data)
        np.testing.assert_array_equal(read[f"{key}/0"][0].compute(), data)


def test_write_positions_from_acquisition_order(client: Any, tmp_path: Path) -> None:
    """Arrays in acquisition order (t, z, c, y, x) land in NGFF storage order (t, c, z)."""
    rng = np.random.default_rng(3)
    data = [rng.integers(0, 1000, size=(2, 3, 2, 32, 32), dtype="uint16") for _ in range(3)]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "multi.ome.zarr"),
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            PositionDimension(positions=["a", "b", "c"]),
            Dimension(name="z", count=3, chunk_size=1, type="space"),
            Dimension(name="c", count=2, chunk_size=1, type="channel"),
            Dimension(name="y", count=32, chunk_size=16, type="space"),
            Dimension(name="x", count=32, chunk_size=16, type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "version": "0.4"},
    )
    plan = odask.write_positions([da.from_array(d) for d in data], settings, compute=False)
    assert isinstance(plan, odask.WritePlan)
    assert_one_task_per_unit(plan)
    plan.compute(client, retries=1)
    validate_ome_zarr(settings.output_path)
    for i, d in enumerate(data):
        got = zarr.open_array(f"{settings.output_path}/{i}/0", mode="r")[...]
        np.testing.assert_array_equal(got, d.transpose(0, 2, 1, 3, 4))


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    arr = da.zeros((2, 32, 32), dtype="uint16")
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "bad.ome.zarr"),
        dimensions=[
            Dimension(name="z", count=3, type="space"),
            Dimension(name="y", count=32, type="space"),
            Dimension(name="x", count=32, type="space"),
        ],
        dtype="uint16",
    )
    with pytest.raises(FrameShapeError, match=r"shape \(2, 32, 32\).*expect \(3, 32, 32\)"):
        odask.write_image(arr, settings)
    with pytest.raises(FrameDtypeError, match="float32"):
        odask.write_image(da.zeros((3, 32, 32), dtype="float32"), settings)
    assert not os.path.exists(settings.output_path)


def test_axis_naming_mistakes_are_named(tmp_path: Path) -> None:
    arr = da.zeros((3, 16, 16), dtype="uint16")
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(SettingsError, match=r"default for 3-D arrays\); pass dims="):
        odask.write_image(arr, str(out), chunks={"t": 1})
    with pytest.raises(SettingsError, match="'yyx' name an axis twice"):
        odask.write_image(arr, str(out), dims="yyx")
    assert not out.exists()
    odask.write_image(arr, str(out), dims="tyx", chunks={"t": 1})
    assert zarr.open_array(str(out / "0"), mode="r").chunks[0] == 1


def _double(x: np.ndarray) -> np.ndarray:
    return x * 2


def test_process_positions(client: Any, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "multi-position")
    src = case.settings(str(tmp_path / "src.ome.zarr"), "ome-zarr")
    stream_case(case, src)
    expected = expected_images(case, src)
    seen: list[tuple[int, int, str]] = []
    dst = str(tmp_path / "dst.ome.zarr")
    summary = odask.process_positions(
        src.output_path, dst, _double, client=client,
        progress=lambda done, total, path, err: seen.append((done, total, path)),
    )  # fmt: skip
    assert summary.ok, str(summary)
    assert summary.done == ["Pos0", "Pos1", "Pos2"]
    assert sorted(p for _, _, p in seen) == ["Pos0", "Pos1", "Pos2"]
    assert [d for d, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    validate_ome_zarr(dst)
    for i, exp in enumerate(expected):
        np.testing.assert_array_equal(zarr.open_array(f"{dst}/Pos{i}/0", mode="r")[...], exp * 2)

    # into the existing store: results replace what is there; failures are summarised
    def fail_on_pos1(x: np.ndarray) -> np.ndarray:
        if x[0, 0, 0, 0, 0] == expected[1][0, 0, 0, 0, 0]:
            raise RuntimeError("bad position")
        return x + 1

    summary = odask.process_positions(
        src.output_path, dst, fail_on_pos1, client=client, retries=1, progress=False
    )
    assert summary.done == ["Pos0", "Pos2"]
    assert list(summary.failed) == ["Pos1"]
    assert "RuntimeError: bad position" in summary.failed["Pos1"]
    assert "1 failed" in str(summary)
    got = [zarr.open_array(f"{dst}/Pos{i}/0", mode="r")[...] for i in range(3)]
    np.testing.assert_array_equal(got[0], expected[0] + 1)
    np.testing.assert_array_equal(got[1], expected[1] * 2)  # untouched
    np.testing.assert_array_equal(got[2], expected[2] + 1)


def test_process_positions_refuses_a_source_its_stream_did_not_close(
    client: Any, tmp_path: Path
) -> None:
    # an unbounded stream's time axis is stored grown ahead of its frames until close
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "live.ome.zarr"),
        dimensions=[Dimension(name="t", count=None, chunk_size=1),
                    Dimension(name="y", count=16), Dimension(name="x", count=16)],
        dtype="uint16",
    )  # fmt: skip
    dst = tmp_path / "out.ome.zarr"
    with create_stream(settings) as stream:
        for t in range(3):
            stream.append(np.full((16, 16), t, np.uint16))
        stream.flush()
        with pytest.raises(StoreFormatError, match=r"did not close it.*omestream repair"):
            odask.process_positions(settings.output_path, str(dst), _double, client=client)
        assert not dst.exists()
    summary = odask.process_positions(
        settings.output_path, str(dst), _double, client=client, progress=False
    )
    assert summary.ok, str(summary)
    got = zarr.open_array(str(dst / "0"), mode="r")[...]
    np.testing.assert_array_equal(got[:, 0, 0], [0, 2, 4])


def test_process_plate_to_new_dtype(client: Any, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "plate")
    src = case.settings(str(tmp_path / "plate.ome.zarr"), "ome-zarr", pyramid=Pyramid(levels=2))
    stream_case(case, src)
    expected = expected_images(case, src)
    dst = str(tmp_path / "as_float.ome.zarr")
    summary = odask.process_positions(
        src.output_path, dst, lambda x: x.astype("float32") / 2, client=client,
        dtype="float32", progress=False,
    )  # fmt: skip
    assert summary.ok, str(summary)
    assert summary.done == ["A/1/fov0", "A/2/fov0", "C/4/fov0", "C/4/fov1"]
    validate_ome_zarr(dst)
    for path, exp in zip(summary.done, expected, strict=True):
        got = zarr.open_array(f"{dst}/{path}/0", mode="r")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got[...], exp.astype("float32") / 2)
        low = zarr.open_array(f"{dst}/{path}/1", mode="r")[...]
        np.testing.assert_allclose(low, _mean2(exp.astype("float32") / 2))


def test_import_omestream_does_not_import_dask() -> None:
    code = (
        "import sys, omestream; "
        "bad = [m for m in ('dask', 'distributed') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_process_foreign_dataset(client: Any, tmp_path: Path) -> None:
    """A source written by another tool (ome-zarr-py): into a new path, and into an output
    described by settings."""
    from ome_zarr.writer import write_image

    from omestream import SettingsError

    data = np.arange(2 * 3 * 64 * 64, dtype="uint16").reshape(2, 3, 64, 64)
    src = str(tmp_path / "foreign.ome.zarr")
    write_image(image=data, group=zarr.open_group(src, mode="w"), axes="czyx")
    # into a new path: the output is laid out like the source as it is on disk
    like = str(tmp_path / "x.ome.zarr")
    summary = odask.process_positions(src, like, _double, client=client, progress=False)
    assert summary.ok, str(summary)
    validate_ome_zarr(like)
    np.testing.assert_array_equal(zarr.open_array(f"{like}/0", mode="r")[...], data * 2)
    assert zarr.open_array(f"{like}/0", mode="r").chunks == (2, 3, 64, 64)  # as the source
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "out.ome.zarr"),
        dimensions=[
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="z", count=3, type="space"),
            Dimension(name="y", count=64, chunk_size=32, type="space"),
            Dimension(name="x", count=64, chunk_size=32, type="space"),
        ],
        dtype="uint16",
        pyramid=Pyramid(levels=2),
    )
    summary = odask.process_positions(src, settings, _double, client=client, progress=False)
    assert summary.ok, str(summary)
    validate_ome_zarr(settings.output_path)
    out = odask.to_dask(settings.output_path)[""]
    np.testing.assert_array_equal(out[0].compute(), data * 2)
    np.testing.assert_array_equal(out[1].compute(), _mean2(data * 2))
    # a function returning the wrong shape fails that position, with a clear reason
    summary = odask.process_positions(
        src, settings.output_path, lambda x: x[:, :, :10], client=client, retries=0,
        progress=False,
    )  # fmt: skip
    assert "FrameShapeError" in summary.failed[""] and "(2, 3, 10, 64)" in summary.failed[""]
    with pytest.raises(SettingsError, match="no level 7"):
        odask.process_positions(src, settings.output_path, _double, client=client, level=7)


def test_write_unit_geometry() -> None:
    from omestream.dask.regions import aligned_chunks, block_selections, units_covered

    # aligned axes keep their (multi-unit) blocks; others are cut into units
    assert aligned_chunks(((2, 2), (20, 20, 8)), (1, 16)) == ((2, 2), (16, 16, 16))
    assert aligned_chunks(((32, 16),), (16,)) == ((32, 16),)
    sels = [s for _, s in block_selections(((2, 1), (16, 16)))]
    assert sels[1] == (slice(0, 2), slice(16, 32)) and len(sels) == 4
    assert units_covered((slice(0, 2), slice(16, 48)), (1, 16)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert units_covered((slice(15, 17),), (16,)) == [(0,), (1,)]


def _plus_one(x: np.ndarray) -> np.ndarray:
    return x + 1


def test_a_source_is_never_its_own_destination(client: Any, tmp_path: Path) -> None:
    from omestream import SettingsError

    src = str(tmp_path / "src.ome.zarr")
    odask.write_positions([np.full((2, 32, 32), 5, np.uint16)] * 2, src, dims="cyx")
    alias = tmp_path / "alias.ome.zarr"
    alias.symlink_to(src)  # the same dataset under another name
    # the same dataset: by path, through a link, by a path inside it, without its suffix
    for dst in (src, str(alias), f"{src}/Pos0", str(tmp_path / "src")):
        for overwrite in (True, False):
            with pytest.raises(SettingsError, match="is the source"):
                odask.process_positions(
                    src, dst, _plus_one, client=client, overwrite=overwrite, progress=False
                )
    # Dask arrays that read the destination: refused before it is replaced
    image = str(tmp_path / "image.ome.zarr")
    odask.write_image(np.full((2, 32, 32), 5, np.uint16), image, dims="cyx")
    lazy = odask.to_dask(image)[""][0]
    with pytest.raises(SettingsError, match="inside the destination"):
        odask.write_image(lazy + 1, image, dims="cyx", overwrite=True)
    positions = odask.to_dask(src)
    with pytest.raises(SettingsError, match=r"array 1 reads .*inside the destination"):
        odask.write_positions(
            [da.zeros((2, 32, 32), dtype="uint16"), positions["Pos1"][0] * 2], str(alias),
            dims="cyx", overwrite=True,
        )  # fmt: skip
    for path in (src, image):
        for level0 in ("Pos0/0", "Pos1/0") if path == src else ("0",):
            np.testing.assert_array_equal(zarr.open_array(f"{path}/{level0}", mode="r")[...], 5)
    validate_ome_zarr(src)
    # written somewhere else, then it is fine
    odask.write_image(lazy + 1, str(tmp_path / "plus.ome.zarr"), dims="cyx")
    np.testing.assert_array_equal(zarr.open_array(f"{tmp_path}/plus.ome.zarr/0")[...], 6)


@pytest.mark.filterwarnings("ignore:.* now has shape .*field:UserWarning")  # on purpose
def test_process_a_plate_changed_since_it_was_written(client: Any, tmp_path: Path) -> None:
    """The output follows the source as it is on disk, not the settings recorded when
    it was written: more time points, a renamed well, an added field."""
    import omestream

    src = str(tmp_path / "plate.ome.zarr")
    wells = {
        "A/1": np.full((2, 2, 40, 30), 1, np.uint16),
        "B/2": np.full((2, 2, 40, 30), 2, np.uint16),
    }
    odask.write_plate(
        wells, src, dims="tcyx", chunks={"y": 16, "x": 16}, pyramid=Pyramid(levels=2)
    )
    plate = omestream.open_store(src, "r+")
    for _, image in plate.images():
        image.append(np.full((3, 2, 40, 30), 9, np.uint16), "t")
    plate.rename_well("B/2", "C/3")
    plate.add_position("A", "1", "1", data=np.full((5, 2, 40, 30), 4, np.uint16))
    expected = {
        path: zarr.open_array(f"{src}/{path}/0", mode="r")[...]
        for path in ("A/1/0", "A/1/1", "C/3/0")
    }  # fmt: skip
    dst = str(tmp_path / "out.ome.zarr")
    summary = odask.process_positions(src, dst, _plus_one, client=client, progress=False)
    assert summary.ok, str(summary)
    assert summary.done == ["A/1/0", "A/1/1", "C/3/0"]
    validate_ome_zarr(dst)
    out = zarr.open_group(dst, mode="r").attrs["ome"]["plate"]
    assert [w["path"] for w in out["wells"]] == ["A/1", "C/3"]
    for path, data in expected.items():
        assert data.shape == (5, 2, 40, 30)
        np.testing.assert_array_equal(zarr.open_array(f"{dst}/{path}/0", mode="r")[...], data + 1)
        low = zarr.open_array(f"{dst}/{path}/1", mode="r")
        assert low.shape == (5, 2, 20, 15)
        np.testing.assert_array_equal(low[...], _mean2(data + 1))
    assert zarr.open_array(f"{dst}/A/1/0/0", mode="r").chunks == (1, 1, 16, 16)
    # images that no longer match each other: refused before anything is created
    plate.well("C", "3")["0"].append(np.full((1, 2, 40, 30), 9, np.uint16), "t")
    with pytest.raises(omestream.StoreFormatError, match="convert images of different shapes"):
        odask.process_positions(src, str(tmp_path / "no.ome.zarr"), _plus_one, client=client)
    assert not (tmp_path / "no.ome.zarr").exists()


def _fail_on_three(x: np.ndarray) -> np.ndarray:
    if x[0, 0, 0] == 3000:
        raise RuntimeError("bad position")
    return x * 10


def _times_ten(x: np.ndarray) -> np.ndarray:
    return x * 10


def _assert_measured_windows(path: str, data: np.ndarray) -> None:
    """Each channel's omero window spans (nearly) its data, not the dtype's range."""
    omero = zarr.open_group(path, mode="r").attrs["ome"]["omero"]
    for ch, plane in zip(omero["channels"], data, strict=True):
        lo, hi = ch["window"]["start"], ch["window"]["end"]
        assert plane.min() <= lo < hi <= plane.max(), (lo, hi, plane.min(), plane.max())
        assert hi - lo >= 0.95 * (int(plane.max()) - int(plane.min()))


def test_a_clean_rerun_completes_the_output(client: Any, tmp_path: Path) -> None:
    src = str(tmp_path / "src.ome.zarr")
    ramp = np.arange(24 * 24).reshape(24, 24) % 100
    # position k: channel 0 from k * 1000, channel 1 from k * 1000 + 500
    data = [np.stack([k * 1000 + ramp, k * 1000 + 500 + ramp]).astype("uint16") for k in range(4)]
    odask.write_positions(data, src, dims="cyx")
    dst = str(tmp_path / "dst.ome.zarr")
    first = odask.process_positions(src, dst, _fail_on_three, client=client, retries=0,
                                    progress=False)  # fmt: skip
    assert first.done == ["Pos0", "Pos1", "Pos2"] and list(first.failed) == ["Pos3"]
    assert zarr.open_group(dst, mode="r").attrs["omestream"]["complete"] is False
    # display windows measured from what the tasks wrote
    for k in range(3):
        _assert_measured_windows(f"{dst}/Pos{k}", data[k] * 10)
    rerun = odask.process_positions(src, dst, _times_ten, client=client, progress=False)
    assert rerun.ok and rerun.done == ["Pos0", "Pos1", "Pos2", "Pos3"]
    record = zarr.open_group(dst, mode="r").attrs["omestream"]
    assert record["complete"] is True and record["frames"] == 4 * 2
    for k, d in enumerate(data):
        np.testing.assert_array_equal(zarr.open_array(f"{dst}/Pos{k}/0", mode="r")[...], d * 10)
        _assert_measured_windows(f"{dst}/Pos{k}", d * 10)
    validate_ome_zarr(dst)


def test_arrays_of_unknown_size_are_refused(tmp_path: Path) -> None:
    arr = da.from_array(np.ones((4, 16, 16), np.uint16), chunks=(2, 16, 16))
    picked = arr[arr[:, 0, 0] > 0]  # shape (nan, 16, 16) until computed
    out = tmp_path / "unknown.ome.zarr"
    with pytest.raises(FrameShapeError, match=r"compute_chunk_sizes\(\)"):
        odask.write_image(picked, str(out), dims="zyx")
    with pytest.raises(FrameShapeError, match=r"array 1 .*compute_chunk_sizes"):
        odask.write_positions([arr, picked], str(out), dims="zyx")
    assert not out.exists()
    odask.write_image(picked.compute_chunk_sizes(), str(out), dims="zyx")
    np.testing.assert_array_equal(zarr.open_array(f"{out}/0", mode="r")[...], 1)
