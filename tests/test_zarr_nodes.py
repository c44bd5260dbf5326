"""Array creation (omestream.io.zarr_nodes.create_array): the documents zarr-python
itself writes, made once in memory and written by omestream's store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream.backends.codecs import codec_choice
from omestream.io import zarr_nodes
from omestream.io.kv import LocalKV
from omestream.plan import ArrayPlan

LEVEL = ArrayPlan(
    path="0",
    shape=(0, 3, 64, 64),
    chunks=(1, 1, 32, 32),
    shards=(1, 1, 64, 64),
    scale=(1.0,) * 4,
    translation=(0.0,) * 4,
)
NAMES = ("t", "c", "y", "x")


@pytest.mark.parametrize("compression", [None, "blosc-zstd"])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_documents_are_zarr_pythons_own(
    tmp_path: Path, zarr_format: int, compression: str | None
) -> None:
    level = LEVEL if zarr_format == 3 else ArrayPlan(**{**LEVEL.__dict__, "shards": None})
    codec = codec_choice(compression)
    ours = LocalKV(str(tmp_path / "ours"))
    zarr_nodes.create_array(ours, "A/1/0/0", level, "uint16", codec, zarr_format, NAMES, 7)

    theirs = tmp_path / "theirs"
    kwargs = {"compressors": codec.zarr_v3("uint16")} if zarr_format == 3 else {}
    if zarr_format == 3:
        kwargs |= {"shards": level.shards, "dimension_names": list(NAMES)}
        kwargs["chunk_key_encoding"] = {"name": "default", "separator": "/"}
    else:
        kwargs |= {"compressors": codec.zarr_v2("uint16")}
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    zarr.create_array(
        store=str(theirs), name="A/1/0/0", shape=level.shape, chunks=level.chunks,
        dtype="uint16", fill_value=7, zarr_format=zarr_format, **kwargs,
    )  # fmt: skip
    ours_dir, theirs_dir = tmp_path / "ours/A/1/0/0", theirs / "A/1/0/0"
    assert sorted(p.name for p in ours_dir.iterdir()) == sorted(
        p.name for p in theirs_dir.iterdir()
    )
    for doc in theirs_dir.iterdir():
        assert (ours_dir / doc.name).read_bytes() == doc.read_bytes(), doc.name

    # the array works: resized and written through zarr-python, read back
    arr = zarr.open_array(str(tmp_path / "ours"), path="A/1/0/0", mode="r+")
    arr.resize((2, 3, 64, 64))
    arr[1, 2] = np.arange(64 * 64, dtype="uint16").reshape(64, 64)
    back = zarr.open_array(str(tmp_path / "ours"), path="A/1/0/0", mode="r")
    np.testing.assert_array_equal(back[1, 2], np.arange(64 * 64).reshape(64, 64))
    assert int(back[0, 0, 0, 0]) == 7


def test_create_replaces_what_was_there(tmp_path: Path) -> None:
    kv = LocalKV(str(tmp_path / "d"))
    flat = ArrayPlan(
        path="0", shape=(4, 8), chunks=(2, 8), shards=None, scale=(1, 1), translation=(0, 0)
    )
    zarr_nodes.create_array(kv, "0", flat, "uint8", codec_choice(None), 3, ("y", "x"))
    zarr.open_array(str(tmp_path / "d"), path="0", mode="r+")[:] = 5
    zarr_nodes.create_array(kv, "0", flat, "uint8", codec_choice(None), 3, ("y", "x"))
    assert not (tmp_path / "d/0/c").exists()  # the old chunks went with the old array
    assert (zarr.open_array(str(tmp_path / "d"), path="0", mode="r")[:] == 0).all()
