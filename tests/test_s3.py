"""OME-Zarr on object storage: a real S3-compatible server (moto) on 127.0.0.1, reached
through s3fs. Stream, append, pyramid levels, parallel writes and reads; every dataset
is downloaded and checked by the independent validators too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

pytest.importorskip("s3fs")
pytest.importorskip("moto")
da = pytest.importorskip("dask.array")

import omestream.dask as odask  # noqa: E402
from omestream import Pyramid, create_stream  # noqa: E402
from tests import s3_server as _s3  # noqa: E402
from tests.cases import CASES, frame_for  # noqa: E402
from tests.checks import validate_ome_zarr  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402
from tests.streaming import expected_images, stream_case  # noqa: E402

# the moto server (one per module) and a fresh bucket per test
s3_server = _s3.s3_server
s3_bucket = _s3.s3_bucket


def _case(case_id: str) -> Any:
    return next(c for c in CASES if c.id == case_id)


def _download(server: S3Server, url: str, to: Path) -> Path:
    """Copy a dataset out of the bucket, so local-only validators can check its bytes."""
    import s3fs

    fs = s3fs.S3FileSystem(**server.storage_options)
    fs.get(url.removeprefix("s3://"), str(to), recursive=True)
    return to


def _read(server: S3Server, url: str, path: str) -> np.ndarray:
    store = zarr.storage.FsspecStore.from_url(
        url, storage_options=server.storage_options, read_only=True
    )
    return np.asarray(zarr.open_array(store, path=path, mode="r")[...])


def _mean2(a: np.ndarray) -> np.ndarray:
    *outer, y, x = a.shape
    m = a.reshape(*outer, y // 2, 2, x // 2, 2).astype(np.float64).mean(axis=(-3, -1))
    return np.rint(m).astype(a.dtype)


def test_stream_with_pyramid_then_read(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    case = _case("multi-position")
    url = f"s3://{s3_bucket}/multi.ome.zarr"
    settings = case.settings(url, "ome-zarr", pyramid=Pyramid(levels=2))
    assert settings.output_path == url
    with create_stream(settings, **s3_server.storage_options) as stream:
        for n in range(settings.total_frames or 0):
            stream.append(frame_for(n, settings.frame_shape, case.dtype))
    expected = expected_images(case, settings)
    read = odask.to_dask(url, s3_server.storage_options)
    assert sorted(read) == ["Pos0", "Pos1", "Pos2"]
    for i, exp in enumerate(expected):
        levels = read[f"Pos{i}"]
        np.testing.assert_array_equal(levels[0].compute(), exp)
        np.testing.assert_array_equal(levels[1].compute(), _mean2(exp))
    local = _download(s3_server, url, tmp_path / "multi.ome.zarr")
    validate_ome_zarr(local)
    assert (local / "OME" / "METADATA.ome.xml").is_file()


def test_env_credentials_stream_and_append(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Credentials and endpoint from the usual AWS variables; unbounded time grows on S3."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    case = _case("unbounded")
    url = f"s3://{s3_bucket}/grow.ome.zarr"
    settings = case.settings(url, "ome-zarr")
    stream_case(case, settings)  # create_stream(settings): no storage options at all
    expected = expected_images(case, settings)
    for i, exp in enumerate(expected):
        np.testing.assert_array_equal(_read(s3_server, url, f"Pos{i}/0"), exp)

    from omestream.store import open_store

    dataset = open_store(url, "r+")
    more = np.stack([frame_for(100 + k, settings.frame_shape, case.dtype) for k in range(2)])
    image = dataset[0]
    image.append(more, "t")
    got = _read(s3_server, url, "Pos0/0")  # dataset[0]: the first series
    np.testing.assert_array_equal(got, np.concatenate([expected[0], more]))
    validate_ome_zarr(_download(s3_server, url, tmp_path / "grow.ome.zarr"))


def _plus_one(x: np.ndarray) -> np.ndarray:
    return x + 1


def test_dask_write_and_process_on_s3(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    data = [rng.integers(0, 1000, size=(2, 3, 40, 40), dtype="uint16") for _ in range(3)]
    src = f"s3://{s3_bucket}/src.ome.zarr"
    opts = s3_server.storage_options
    # Dask's default (threaded) scheduler, several writers into one bucket
    plan = odask.write_positions(
        [da.from_array(d, chunks=(1, 1, 20, 40)) for d in data], src, dims="czyx",
        chunks={"y": 16, "x": 16}, storage_options=opts, compute=False,
    )  # fmt: skip
    assert isinstance(plan, odask.WritePlan)
    plan.compute()
    read = odask.to_dask(src, opts)
    for i, d in enumerate(data):
        np.testing.assert_array_equal(read[f"Pos{i}"][0].compute(), d)
    # no client given: a LocalCluster of worker processes is started for the call
    dst = f"s3://{s3_bucket}/dst.ome.zarr"
    summary = odask.process_positions(src, dst, _plus_one, storage_options=opts, progress=False)
    assert summary.ok, str(summary)
    for i, d in enumerate(data):
        np.testing.assert_array_equal(_read(s3_server, dst, f"Pos{i}/0"), d + 1)
    validate_ome_zarr(_download(s3_server, dst, tmp_path / "dst.ome.zarr"))


def test_cli_commands_take_s3_urls(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """validate, repair and pyramid on a private bucket, credentials from AWS_* only;
    a root_path ending in '/' names the dataset, not a hidden key under it."""
    from typer.testing import CliRunner

    from omestream.cli.app import _register, app

    _register()  # the commands, as the console entry point registers them
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    case = _case("unbounded")
    settings = case.settings(f"s3://{s3_bucket}/run1/", "ome-zarr")
    url = f"s3://{s3_bucket}/run1.ome.zarr"
    assert settings.output_path == url
    stream_case(case, settings)
    runner = CliRunner()
    for args in (
        ["validate", url],
        ["repair", url, "--dry-run"],
        ["pyramid", url, "--levels", "2", "--quiet"],
        ["validate", url],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output[-2000:])
    assert "yaozarrs" in result.output and "failed" not in result.output
    for i, exp in enumerate(expected_images(case, settings)):
        np.testing.assert_array_equal(_read(s3_server, url, f"Pos{i}/0"), exp)
        np.testing.assert_array_equal(_read(s3_server, url, f"Pos{i}/1"), _mean2(exp))
    validate_ome_zarr(_download(s3_server, url, tmp_path / "run1.ome.zarr"))
