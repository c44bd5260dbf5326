"""A real OME-TIFF writer process killed with SIGKILL before close(), then recovered;
and a writer whose disk writes fail, which must raise rather than drop frames.

The child side runs this module as a script: ``python -m tests.test_tiff_crash MODE ROOT``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile

from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream
from omestream.repair import repair
from omestream.tiff import recover
from omestream.validate import validate_store
from tests.cases import frame_for

REPO = Path(__file__).resolve().parents[1]
SHAPE = (24, 32)
# pages written with direct I/O where the file system allows: whole 4 KiB blocks, or not
BIG = {"direct-stalled": (256, 256), "direct-stalled-odd": (200, 300)}


def crash_settings(mode: str, root: str) -> AcquisitionSettings:
    if mode == "flushed":  # one file per position, compressed
        dims: list[Dimension | PositionDimension] = [
            Dimension(name="t", count=None, type="time"),
            PositionDimension(positions=["A", "B"]),
            Dimension(name="c", count=2, type="channel"),
        ]
        compression: str | None = "zstd"
    else:  # one file, uncompressed, killed while frames keep coming
        dims = [Dimension(name="t", count=None, type="time"), Dimension(name="c", count=3)]
        compression = None
    shape = BIG.get(mode, SHAPE)
    dims += [
        Dimension(name="y", count=shape[0], type="space"),
        Dimension(name="x", count=shape[1], type="space"),
    ]
    return AcquisitionSettings(
        root_path=root, dimensions=dims, dtype="uint16", compression=compression,
        format="ome-tiff", writer={"metadata_interval_s": 0.02},
    )  # fmt: skip


def child(mode: str, root: str) -> None:
    settings = crash_settings(mode, root)
    if mode == "disk-full":
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        try:
            with create_stream(settings) as stream:
                for n in range(200):
                    stream.append(frame_for(n, SHAPE, "uint16"))
        except OSError as exc:
            print(f"raised {type(exc).__name__} errno={exc.errno}", flush=True)
            return
        print("no error", flush=True)
        return
    shape = BIG.get(mode, SHAPE)
    if mode in BIG:
        _stall_direct_writes(after=2)
    stream = create_stream(settings)
    n = 0
    while True:
        stream.append(frame_for(n, shape, "uint16"), metadata={"delta_t": n * 0.5})
        n += 1
        if n == 9:
            stream.flush()  # every page so far is in the file
            _say("flushed")
            if mode == "flushed":
                time.sleep(600)  # killed here
        _say(str(n))
        time.sleep(0.005)


def _say(line: str) -> None:
    """One whole line per write: lines from two threads never run into each other."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _stall_direct_writes(after: int) -> None:
    """From the ``after``-th direct write on, the disk never answers: the pages of
    that batch and the next one have IFDs in the file but no pixels yet."""
    import fcntl

    from omestream.backends import tiff as engine

    engine._DIRECT_MIN_BYTES = 64 << 10  # these small pages take the direct path too
    real = engine.pwrite_all
    calls = [0]

    def stalling(fd: int, parts: list[np.ndarray], offset: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            calls[0] += 1
            if calls[0] > after:
                _say("stalled")
                time.sleep(600)  # killed here
        real(fd, parts, offset)

    engine.pwrite_all = stalling


def run_and_kill(mode: str, root: str, wait_for: str) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.test_tiff_crash", mode, root],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    watchdog = threading.Timer(120, proc.kill)  # a child that never says it: no hang
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if lines[-1] == wait_for:
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert wait_for in lines, lines
    return lines


def read_all(path: str) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [s.asarray() for s in tif.series]


def check_recovered(settings: AcquisitionSettings, files: list[str], frames: int) -> None:
    """Every file validates; pages equal declared planes; pixels are frames 0..frames-1
    where they belong and fill after them."""
    pages = 0
    for f in files:
        with tifffile.TiffFile(f) as tif:
            pages += len(tif.pages)
            ome = ome_types.from_xml(tif.pages.first.description, validate=True)
    planes = sum(i.pixels.size_z * i.pixels.size_c * i.pixels.size_t for i in ome.images)
    assert planes == pages
    n_pos = max(1, len(settings.positions))
    n_c = 2 if n_pos > 1 else 3
    per_t = n_pos * n_c
    shape = (settings.dimensions[-2].count, settings.dimensions[-1].count)
    got = read_all(files[0])
    for p, image in enumerate(got):
        n_t = -(-(frames - p * n_c) // per_t)  # time points this position received
        assert image.size == n_t * n_c * shape[0] * shape[1], (p, image.shape)
        image = image.reshape(n_t, n_c, *shape)
        for t in range(n_t):
            for c in range(n_c):
                n = t * per_t + p * n_c + c
                want = frame_for(n, shape, "uint16") if n < frames else np.zeros(shape, "uint16")
                np.testing.assert_array_equal(image[t, c], want, err_msg=f"frame {n}")
    # per-frame metadata kept by the last refresh of the OME-XML before the kill
    for image, px in enumerate(i.pixels for i in ome.images):
        for pl in px.planes:
            n = pl.the_t * per_t + image * n_c + pl.the_c
            assert pl.delta_t == pytest.approx(n * 0.5)


def test_killed_after_flush_multi_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("flushed", root, "flushed")
    settings = crash_settings("flushed", root)
    files = sorted(str(p) for p in Path(settings.output_path).iterdir())
    assert [os.path.basename(f) for f in files] == ["A.ome.tiff", "B.ome.tiff"]
    # readers open the killed files without an exception
    with caplog.at_level(logging.ERROR, logger="tifffile"):
        for f in files:
            assert read_all(f)
    # validate says what is wrong with the killed files, before repair
    before = validate_store(settings.output_path)
    assert any("did not close it (" in w.message for w in before.warnings), before.to_dict()
    killed = {f: Path(f).read_bytes() for f in files}
    dry = repair(settings.output_path, dry_run=True)  # reports the same, writes nothing
    assert {f: Path(f).read_bytes() for f in files} == killed
    assert (dry.frames_present, dry.details["tiff"].padded, dry.dry_run) == (9, 1, True)
    assert "would change:" in dry.summary() and "write 1 fill plane(s)" in dry.summary()
    report = repair(settings.output_path)
    assert report.frames_present == 9 and report.interrupted
    # each position keeps the time points it received: A's t=2 gets a fill plane for c=1,
    # B never reached t=2
    assert report.details["tiff"].padded == 1
    # 2 positions x 2 channels per time point; unbounded
    assert report.frames_expected is None and report.last_complete_time_point == 1
    assert report.resume_at == 9
    assert report.settings == settings.model_copy(update={"root_path": report.settings.root_path})
    with tifffile.TiffFile(files[0]) as tif:
        ome = ome_types.from_xml(tif.pages.first.description)
    # every frame's: the files had not grown enough for a refresh of the XML, and the
    # records come from the stream's metadata journal
    assert report.metadata_records == sum(len(im.pixels.planes) for im in ome.images) == 9
    assert f"frame metadata records: {report.metadata_records}" in report.summary()
    check_recovered(settings, files, 9)
    after = validate_store(settings.output_path)
    assert after.ok and not after.warnings, after.to_dict()
    again = recover(files[1])
    assert again.already_final and again.padded == 0 and again.interrupted
    assert (again.frames, again.time_points_complete) == (9, 2)
    assert "interrupted" in repair(files[1]).summary().splitlines()[0]
    assert again.metadata_records == report.metadata_records
    check_recovered(settings, files, 9)


def test_killed_while_appending(tmp_path: Path) -> None:
    root = str(tmp_path / "run.ome.tiff")
    lines = run_and_kill("running", root, "40")
    appended = max(int(x) for x in lines if x.isdigit())
    settings = crash_settings("running", root)
    for _ in range(2):  # reading the killed file never raises
        assert read_all(settings.output_path)
    report = recover(settings.output_path)
    assert 9 <= report.frames <= appended + 1
    check_recovered(settings, [settings.output_path], report.frames)
    with tifffile.TiffFile(settings.output_path) as tif:
        ome = ome_types.from_xml(tif.pages.first.description)
    assert ome.images[0].pixels.planes, "no refresh of the OME-XML happened while streaming"
    assert report.metadata_records == len(ome.images[0].pixels.planes)
    assert report.time_points_complete == report.frames // 3  # three channels per time point


@pytest.mark.parametrize("mode", list(BIG))
def test_killed_with_direct_writes_in_flight(tmp_path: Path, mode: str) -> None:
    """Pages whose IFDs were written but whose pixels never reached the file (direct
    writes still pending when the process died) are not taken for frames."""
    from tests.page_cache import require_direct_io

    require_direct_io(tmp_path)
    root = str(tmp_path / "run.ome.tiff")
    lines = run_and_kill(mode, root, "stalled")
    appended = max(int(x) for x in lines if x.isdigit())
    settings = crash_settings(mode, root)
    with tifffile.TiffFile(settings.output_path) as tif:
        linked = len(tif.pages)
    report = recover(settings.output_path)
    assert 1 <= report.frames < linked, (report.frames, linked, appended)
    check_recovered(settings, [settings.output_path], report.frames)


def test_failed_writes_raise(tmp_path: Path) -> None:
    root = str(tmp_path / "full.ome.tiff")
    out = subprocess.run(
        [sys.executable, "-m", "tests.test_tiff_crash", "disk-full", root],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"raised WriteError errno={27}" in out.stdout, (out.stdout, out.stderr[-2000:])


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
