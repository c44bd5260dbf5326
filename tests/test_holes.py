"""Hole queries on real files: what recovery of direct-written OME-TIFF pages needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omestream.io import holes


@pytest.fixture(params=["unnamed", "named"])
def scratch_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Probe with an unnamed file (O_TMPFILE) or, as where that is missing, a named one."""
    if request.param == "named":
        monkeypatch.setattr(holes, "open_anonymous", lambda directory: None)
    return str(request.param)


def test_the_probe_agrees_with_a_sparse_file_and_leaves_nothing(
    tmp_path: Path, scratch_kind: str
) -> None:
    (tmp_path / "keep.txt").write_text("x")
    reported = holes.reports_holes(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as fh:
        fh.seek(4 << 20)
        fh.write(b"\1" * 4096)
    fd = os.open(sparse, os.O_RDONLY)
    try:
        # the written block is data wherever the question can be asked at all
        assert holes.has_data(fd, 4 << 20)
        # the never-written start is a hole exactly where the probe said holes show
        assert holes.has_data(fd, 0) is not reported
    finally:
        os.close(fd)


def test_past_the_end_is_not_data(tmp_path: Path) -> None:
    if not holes.reports_holes(str(tmp_path)):
        pytest.skip("this file system does not report holes")
    path = tmp_path / "short.bin"
    path.write_bytes(b"\1" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert holes.has_data(fd, 0)
        assert not holes.has_data(fd, 8192)  # ENXIO: nothing at or after it
    finally:
        os.close(fd)


def test_a_directory_that_cannot_hold_the_probe_reports_no_holes(tmp_path: Path) -> None:
    assert holes.reports_holes(str(tmp_path / "missing")) is False
