"""Resuming OME-TIFF acquisitions: killed writer processes, closed and repaired
datasets continued with ``create_stream(settings, resume=True)``, checked with
tifffile (pixels), ome-types (schema-validated OME-XML) and ``validate_store``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile

from omestream import AcquisitionSettings, Dimension, create_stream
from omestream.errors import (
    ConcurrentModificationError,
    FrameCountError,
    SettingsError,
    StoreFormatError,
)
from omestream.io.locks import lock_dir
from omestream.repair import repair
from omestream.validate import validate_store
from tests.cases import frame_for
from tests.test_tiff_crash import BIG, crash_settings, run_and_kill


def _ome(path: str) -> ome_types.OME:
    with tifffile.TiffFile(path) as tif:
        return ome_types.from_xml(tif.pages.first.description, validate=True)


def _files(settings: AcquisitionSettings) -> list[str]:
    out = settings.output_path
    return sorted(str(p) for p in Path(out).iterdir()) if os.path.isdir(out) else [out]


def _check_frames(
    settings: AcquisitionSettings, frames: int, n_c: int, shape: tuple[int, int]
) -> None:
    """Every file is valid OME-TIFF with one page per declared plane; image p holds the
    frames of position p (t, c order), equal to ``frame_for(n)``; validate is clean."""
    n_pos = max(1, len(settings.positions))
    per_t = n_pos * n_c
    files = _files(settings)
    pages = 0
    for f in files:
        with tifffile.TiffFile(f) as tif:
            pages += len(tif.pages)
        ome = _ome(f)
    planes = sum(i.pixels.size_z * i.pixels.size_c * i.pixels.size_t for i in ome.images)
    assert planes == pages
    with tifffile.TiffFile(files[0]) as tif:
        images = [s.asarray() for s in tif.series]
    assert len(images) == n_pos
    for p, image in enumerate(images):
        n_t = -(-(frames - p * n_c) // per_t)
        image = image.reshape(-1, n_c, *shape)
        assert image.shape[0] == n_t, (p, image.shape)
        for t in range(n_t):
            for c in range(n_c):
                n = t * per_t + p * n_c + c
                want = frame_for(n, shape, "uint16") if n < frames else np.zeros(shape, "uint16")
                np.testing.assert_array_equal(image[t, c], want, err_msg=f"frame {n}")
    report = validate_store(settings.output_path)
    assert report.ok and not report.warnings, report.to_dict()


def _continue(settings: AcquisitionSettings, until: int, shape: tuple[int, int]) -> int:
    with create_stream(settings, resume=True) as stream:
        start = stream.frames_written
        for n in range(start, until):
            stream.append(frame_for(n, shape, "uint16"), metadata={"delta_t": n * 0.5})
    return start


def test_killed_multi_file_stream_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Two positions, one file each, compressed; killed after 9 frames were flushed:
    the resumed stream starts at frame 9, and a second kill-free close leaves every
    frame in place and the dataset valid."""
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("flushed", root, "flushed")
    settings = crash_settings("flushed", root)
    assert _continue(settings, 22, (24, 32)) == 9
    _check_frames(settings, 22, 2, (24, 32))
    # every frame's metadata is in every file's document: the killed run's from its
    # journal (its last OME-XML refresh came before any records), the rest as written
    for f in _files(settings):
        ome = _ome(f)
        for p, px in enumerate(i.pixels for i in ome.images):
            got = {(pl.the_t, pl.the_c): pl.delta_t for pl in px.planes}
            for t in range(6):
                for c in range(2):
                    n = t * 4 + p * 2 + c
                    if n < 22:
                        assert got[(t, c)] == pytest.approx(n * 0.5), (f, n)
    assert not list(Path(lock_dir(settings.output_path)).glob("*.jsonl"))  # journal gone


def test_killed_single_file_keeps_refreshed_metadata(tmp_path: Path) -> None:
    """Killed while frames kept coming: the resumed stream continues after the last
    complete page, and the per-frame metadata the last refresh kept survives the
    resume next to the new frames'."""
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("running", root, "40")
    settings = crash_settings("running", root)
    before = {(p.the_t, p.the_c) for p in _ome(settings.output_path).images[0].pixels.planes}
    assert before, "no refresh of the OME-XML happened while streaming"
    start = _continue(settings, 60, (24, 32))
    assert 9 <= start <= 41  # flushed at 9; the writer may lag the appends
    _check_frames(settings, 60, 3, (24, 32))
    planes = {
        (p.the_t, p.the_c): p.delta_t for p in _ome(settings.output_path).images[0].pixels.planes
    }
    for t, c in before | {divmod(n, 3) for n in range(start, 60)}:
        assert planes[(t, c)] == pytest.approx((t * 3 + c) * 0.5)


def test_repaired_then_resumed_drops_the_fill_planes(tmp_path: Path) -> None:
    """``omestream repair`` padded the last time point with a fill plane; resuming (here
    through the repair report) cuts it off and writes the real frame in its place."""
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("flushed", root, "flushed")
    settings = crash_settings("flushed", root)
    report = repair(settings.output_path)
    assert report.details["tiff"].padded == 1 and report.resume_at == 9
    assert report.metadata_records == 9  # from the journal: no refresh had records
    with report.resume() as stream:
        assert stream.frames_written == 9
        for n in range(9, 16):
            stream.append(frame_for(n, (24, 32), "uint16"))
    _check_frames(settings, 16, 2, (24, 32))


@pytest.mark.parametrize("mode", list(BIG)[:1])
def test_killed_with_direct_writes_in_flight_resumes(tmp_path: Path, mode: str) -> None:
    """Pages linked but never given their pixels (direct writes in flight when the
    process died) are not taken for frames: the resumed stream rewrites them."""
    from tests.page_cache import require_direct_io

    require_direct_io(tmp_path)
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill(mode, root, "stalled")
    settings = crash_settings(mode, root)
    with tifffile.TiffFile(settings.output_path) as tif:
        linked = len(tif.pages)
    start = _continue(settings, linked + 6, BIG[mode])
    assert 1 <= start < linked
    _check_frames(settings, linked + 6, 3, BIG[mode])


def _settings(root: str, t: int | None, **kw: object) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=root,
        dimensions=[
            Dimension(name="t", count=t, type="time"),
            Dimension(name="c", count=2, type="channel"),
            Dimension(name="y", count=64, type="space"),
            Dimension(name="x", count=48, type="space"),
        ],
        dtype="uint16",
        format="ome-tiff",
        **kw,
    )


def test_closed_stream_resumes_with_pyramid_and_metadata(tmp_path: Path) -> None:
    """A bounded acquisition closed early (its missing planes padded) is finished
    later: fill planes are replaced, every level holds the right pixels, and per-frame
    metadata of both runs (Plane attributes and annotations) is in the document."""
    settings = _settings(
        str(tmp_path / "pyr.ome.tiff"), 5, pyramid={"levels": 2}, compression="zstd"
    )
    shape = (64, 48)

    def meta(n: int) -> dict[str, object]:
        return {"exposure_ms": 10.0 + n, "stage": f"s{n}", "temp": 20.5}

    with create_stream(settings) as stream:
        for n in range(3):
            stream.append(frame_for(n, shape, "uint16"), metadata=meta(n))
    with create_stream(settings, resume=True) as stream:
        assert stream.frames_written == 3
        for n in range(3, 10):
            stream.append(frame_for(n, shape, "uint16"), metadata=meta(n))
        with pytest.raises(FrameCountError):
            stream.append(frame_for(10, shape, "uint16"))
    _check_frames(settings, 10, 2, shape)
    with tifffile.TiffFile(settings.output_path) as tif:
        levels = tif.series[0].levels
        assert len(levels) == 2 and len(tif.pages) == 10
        half = levels[1].asarray().reshape(5, 2, 32, 24)
    for n in range(10):
        full = frame_for(n, shape, "uint16").astype(np.float64)
        want = full.reshape(32, 2, 24, 2).mean(axis=(1, 3))
        np.testing.assert_allclose(half[divmod(n, 2)], want, atol=1)
    ome = _ome(settings.output_path)
    notes = {
        a.id: {m.k: m.value for m in a.value.ms}
        for a in ome.structured_annotations.map_annotations
    }
    planes = sorted(ome.images[0].pixels.planes, key=lambda p: (p.the_t, p.the_c))
    assert len(planes) == 10
    for n, plane in enumerate(planes):
        assert plane.exposure_time == pytest.approx(10.0 + n)
        assert notes[plane.annotation_refs[0].id] == {"stage": f"s{n}", "temp": "20.5"}


def test_closed_unbounded_stream_takes_more_time_points(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "u.ome.tiff"), None)
    with create_stream(settings) as stream:
        for n in range(5):  # t=2 has c=0 only: c=1 is padded at close
            stream.append(frame_for(n, (64, 48), "uint16"))
    with tifffile.TiffFile(settings.output_path) as tif:
        assert len(tif.pages) == 6
    _continue(settings, 8, (64, 48))
    _check_frames(settings, 8, 2, (64, 48))
    # moved since: only root_path differs from the settings it was written with
    moved = _settings(str(tmp_path / "moved" / "u.ome.tiff"), None)
    os.makedirs(tmp_path / "moved")
    os.rename(settings.output_path, moved.output_path)
    assert _continue(moved, 11, (64, 48)) == 8
    _check_frames(moved, 11, 2, (64, 48))


def test_resume_refuses_and_changes_nothing(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "a.ome.tiff"), 4)
    with pytest.raises(StoreFormatError, match="nothing to resume"):
        create_stream(settings, resume=True)
    with create_stream(settings) as stream:
        for n in range(3):
            stream.append(frame_for(n, (64, 48), "uint16"))
    kept = Path(settings.output_path).read_bytes()
    with pytest.raises(SettingsError, match=r"different settings.*dtype"):
        create_stream(settings.model_copy(update={"dtype": "uint8"}), resume=True)
    assert Path(settings.output_path).read_bytes() == kept
    with create_stream(settings, resume=True) as stream:
        with pytest.raises(ConcurrentModificationError):
            create_stream(settings, resume=True)
        for n in range(3, 8):
            stream.append(frame_for(n, (64, 48), "uint16"))
    _check_frames(settings, 8, 2, (64, 48))
    foreign = str(tmp_path / "plain.ome.tiff")
    tifffile.imwrite(foreign, np.zeros((2, 64, 48), "uint16"))
    raw = Path(foreign).read_bytes()
    with pytest.raises(StoreFormatError, match="no OME-TIFF written by omestream"):
        create_stream(_settings(foreign, 4), resume=True)
    assert Path(foreign).read_bytes() == raw


def test_a_resume_that_fails_midway_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails while the fill pages of a closed acquisition are being cut off:
    the files still read as the frames written, and the next resume finishes the job."""
    import omestream.tiff.resume as resume_module

    settings = _settings(str(tmp_path / "f.ome.tiff"), 4)
    with create_stream(settings) as stream:
        for n in range(3):
            stream.append(frame_for(n, (64, 48), "uint16"))
    real = resume_module.complete_pages

    def failing(path: str, repair: bool = True, keep: int | None = None) -> object:
        if repair and keep is not None:
            raise OSError(28, "No space left on device")
        return real(path, repair=repair, keep=keep)

    monkeypatch.setattr(resume_module, "complete_pages", failing)
    with pytest.raises(OSError, match="No space left"):
        create_stream(settings, resume=True)
    monkeypatch.undo()
    with tifffile.TiffFile(settings.output_path) as tif:
        got = tif.series[0].asarray().reshape(-1, 2, 64, 48)
    for n in range(3):
        np.testing.assert_array_equal(got[divmod(n, 2)], frame_for(n, (64, 48), "uint16"))
    assert _continue(settings, 8, (64, 48)) == 3
    _check_frames(settings, 8, 2, (64, 48))


def test_an_overwritten_dataset_leaves_no_journal_to_the_new_one(tmp_path: Path) -> None:
    """A killed stream's journal stays beside its files; a new stream over them
    (overwrite=True) starts without it, so no stale record is folded into its data."""
    root = str(tmp_path / "run.ome.tiff")
    run_and_kill("flushed", root, "flushed")
    settings = crash_settings("flushed", root)
    journal = Path(lock_dir(settings.output_path)) / "frame-metadata.jsonl"
    assert journal.exists()
    assert '"record"' in journal.read_text()
    with create_stream(settings.model_copy(update={"overwrite": True})) as stream:
        for n in range(4):
            stream.append(frame_for(n, (24, 32), "uint16"))
        stream.flush()  # journals what the new stream has: no record, no old one
        assert journal.exists() and '"record"' not in journal.read_text()
    assert not journal.exists()
    for f in _files(settings):
        assert not any(im.pixels.planes for im in _ome(f).images)  # no metadata given
