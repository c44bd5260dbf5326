"""OME-TIFF streaming: every case of the shared table, read back with tifffile and
validated with ome-types against the OME schema; compression, dtypes, layouts,
pyramids, per-frame metadata and existing outputs."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile

from omestream import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    Pyramid,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
    WriterOptions,
    create_stream,
)
from tests.cases import CASE_IDS, CASES, Case, frame_for
from tests.streaming import expected_images, stream_case, time_series

LETTER = {"time": "T", "channel": "C", "space": "Z"}


def tiff_files(settings: AcquisitionSettings) -> list[str]:
    out = settings.output_path
    if os.path.isfile(out):
        return [out]
    return sorted(os.path.join(out, n) for n in os.listdir(out))


def read_ome(path: str) -> ome_types.OME:
    """The first page's OME-XML, validated against the OME schema by ome-types."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.pages.first.description
    return ome_types.from_xml(xml, validate=True)


def planes_in(ome: ome_types.OME) -> int:
    return sum(im.pixels.size_z * im.pixels.size_c * im.pixels.size_t for im in ome.images)


def check_dataset(settings: AcquisitionSettings, expected: list[np.ndarray]) -> ome_types.OME:
    """Pixels, declared order, schema validity and plane/page counts of every file."""
    files = tiff_files(settings)
    pages = 0
    for path in files:
        with tifffile.TiffFile(path) as tif:
            assert tif.is_ome and tif.is_bigtiff, path
            pages += len(tif.pages)
            # any file of the dataset finds every image
            assert len(tif.series) == len(expected), path
        ome = read_ome(path)
        assert len(ome.images) == len(expected)
    assert planes_in(ome) == pages
    tiffdata = sum(td.plane_count or 1 for im in ome.images for td in im.pixels.tiff_data_blocks)
    assert tiffdata == pages
    with tifffile.TiffFile(files[0]) as tif:
        for i, (series, want) in enumerate(zip(tif.series, expected, strict=True)):
            got = series.asarray()
            assert got.dtype == want.dtype
            assert got.size == want.size, (i, got.shape, want.shape)
            # tifffile orders planes by the declared DimensionOrder: flat plane order
            # must equal the storage order
            np.testing.assert_array_equal(
                got.reshape(-1, *want.shape[-2:]), want.reshape(-1, *want.shape[-2:])
            )
            px = ome.images[i].pixels
            sizes = {"T": px.size_t, "C": px.size_c, "Z": px.size_z}
            dims = {d.name: d for d in settings.array_dimensions}
            outer = settings.storage_dimension_names[:-2]
            letters = [LETTER.get(dims[n].type or "", "") for n in outer]
            known = [x for x in letters if x]
            # DimensionOrder lists the stored axes fastest first
            order = px.dimension_order.value
            assert order[2:][: len(known)] == "".join(reversed(known)), (order, outer)
            for n, x, size in zip(outer, letters, want.shape[:-2], strict=True):
                if x:
                    assert sizes[x] == size, (n, sizes, want.shape)
    return ome


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_round_trip(case: Case, tmp_path: Path) -> None:
    settings = case.settings(str(tmp_path / "data.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    expected = expected_images(case, settings)
    ome = check_dataset(settings, expected)
    assert ome.images[0].acquisition_date is not None
    if len(settings.positions) > 1:
        files = [os.path.basename(f) for f in tiff_files(settings)]
        assert len(files) == len(settings.positions)
        # multi-file: every TiffData names its file by UUID
        blocks = [td for im in ome.images for td in im.pixels.tiff_data_blocks]
        assert all(td.uuid is not None and td.uuid.file_name in files for td in blocks)
        # each file's own document carries the UUID the others use for it, and no other
        named = {td.uuid.file_name: td.uuid.value for td in blocks if td.uuid is not None}
        own = {os.path.basename(f): read_ome(f).uuid for f in tiff_files(settings)}
        assert own == named
        assert len(set(own.values())) == len(files)
    if case.metadata:
        planes = ome.images[0].pixels.planes
        assert len(planes) == case.n_frames
        assert [p.delta_t for p in planes] == pytest.approx([n * 0.1 for n in range(7)])
        notes = {a.id: a for a in ome.structured_annotations.map_annotations}
        first = notes[planes[3].annotation_refs[0].id]
        assert {m.k: m.value for m in first.value.ms}["n"] == "3"


def test_channels_units_and_order(tmp_path: Path) -> None:
    case = CASES[0]
    settings = case.settings(str(tmp_path / "a.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    px = read_ome(settings.output_path).images[0].pixels
    assert px.dimension_order.value == "XYZCT"
    assert (px.size_t, px.size_c, px.size_z) == (2, 3, 4)
    assert px.physical_size_x == pytest.approx(0.1)
    assert px.physical_size_x_unit.value == "µm"
    assert px.physical_size_z == pytest.approx(0.5)
    assert px.time_increment == pytest.approx(2.0)
    assert [c.name for c in px.channels] == ["DAPI", "GFP", "mCherry"]
    assert px.channels[0].color.as_rgb_tuple()[:3] == (0, 0, 255)
    assert px.channels[0].excitation_wavelength == 405
    assert px.channels[1].emission_wavelength == 510


@pytest.mark.parametrize(("scale", "increment"), [(1.0, 1.0), (None, None)])
def test_time_increment_only_when_the_interval_was_given(
    tmp_path: Path, scale: float | None, increment: float | None
) -> None:
    """An explicit 1 s interval is written; t's default unit alone claims none."""
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "t.ome.tiff"),
        dimensions=[
            Dimension(name="t", count=2, type="time", unit="second", scale=scale),
            Dimension(name="y", count=8, type="space"),
            Dimension(name="x", count=8, type="space"),
        ],
        dtype="uint8",
    )
    with create_stream(settings) as stream:
        for _ in range(2):
            stream.append(np.zeros((8, 8), np.uint8))
    px = read_ome(settings.output_path).images[0].pixels
    assert px.time_increment == increment


def test_plate_and_file_names(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "plate")
    settings = case.settings(str(tmp_path / "plate.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    names = sorted(os.listdir(settings.output_path))
    assert names == [
        "A1_fov0.ome.tiff", "A2_fov0.ome.tiff", "C4_fov0.ome.tiff", "C4_fov1.ome.tiff"
    ]  # fmt: skip
    ome = read_ome(os.path.join(settings.output_path, names[0]))
    (plate,) = ome.plates
    assert plate.name == "Example Plate" and (plate.rows, plate.columns) == (4, 8)
    wells = {(w.row, w.column): [s.image_ref.id for s in w.well_samples] for w in plate.wells}
    assert wells == {(0, 0): ["Image:0"], (0, 1): ["Image:1"], (2, 3): ["Image:2", "Image:3"]}


def test_single_file_multi_series(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "multi-position")
    settings = case.settings(
        str(tmp_path / "all.ome.tiff"), "ome-tiff", writer={"tiff_single_file": True}
    )
    assert settings.output_path.endswith("all.ome.tiff")
    stream_case(case, settings)
    assert os.path.isfile(settings.output_path)
    check_dataset(settings, expected_images(case, settings))


@pytest.mark.parametrize("compression", ["zstd", "gzip", "lzw", None])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_compression(compression: str | None, dtype: str, tmp_path: Path) -> None:
    case = Case("c", CASES[0].dims, dtype=dtype)
    settings = case.settings(str(tmp_path / "c.ome.tiff"), "ome-tiff", compression=compression)
    stream_case(case, settings)
    check_dataset(settings, expected_images(case, settings))
    with tifffile.TiffFile(settings.output_path) as tif:
        page = tif.pages.first
        want = {None: 1, "zstd": 50000, "gzip": 8, "lzw": 5}[compression]
        assert page.compression == want
        predictor = 2 if compression and dtype == "uint16" else 1
        assert page.predictor == predictor


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"]
)
def test_dtypes(dtype: str, tmp_path: Path) -> None:
    case = Case("d", CASES[-1].dims, dtype=dtype, n_frames=3)
    settings = case.settings(str(tmp_path / "d.ome.tiff"), "ome-tiff", compression="zstd")
    stream_case(case, settings)
    ome = check_dataset(settings, expected_images(case, settings))
    want = {"float32": "float", "float64": "double"}.get(dtype, dtype)
    assert ome.images[0].pixels.type.value == want


def test_pyramid_sub_ifds(tmp_path: Path) -> None:
    dims = [
        Dimension(name="t", count=3, type="time"),
        Dimension(name="y", count=64, type="space"),
        Dimension(name="x", count=48, type="space"),
    ]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "p.ome.tiff"), dimensions=dims, dtype="uint16",
        compression="zstd", pyramid=Pyramid(levels=3, method="stride"),
    )  # fmt: skip
    frames = [frame_for(n, (64, 48), "uint16") for n in range(3)]
    frames[1] = np.zeros_like(frames[1])
    with create_stream(settings) as stream:
        stream.append(frames[0])
        stream.skip()  # every level of a skipped plane holds fill
        stream.append(frames[2])
    with tifffile.TiffFile(settings.output_path) as tif:
        assert len(tif.pages) == 3  # reduced levels are SubIFDs, not pages
        (series,) = tif.series
        assert [lv.shape for lv in series.levels] == [(3, 64, 48), (3, 32, 24), (3, 16, 12)]
        np.testing.assert_array_equal(series.levels[0].asarray(), np.stack(frames))
        np.testing.assert_array_equal(series.levels[1].asarray(), np.stack(frames)[:, ::2, ::2])
        np.testing.assert_array_equal(series.levels[2].asarray(), np.stack(frames)[:, ::4, ::4])
    read_ome(settings.output_path)
    z_levels = settings.model_copy(
        update={"pyramid": Pyramid(levels=2, factors={"y": 2, "x": 2, "t": 2})}
    )
    with pytest.raises(SettingsError, match="SubIFDs"):
        create_stream(z_levels.model_copy(update={"overwrite": True}))


def test_unbounded_partial_last_time_point(tmp_path: Path) -> None:
    """7 frames of t x c(3): the last time point holds one frame; the rest is fill and
    the XML declares 3 whole time points, one page each."""
    dims = [
        Dimension(name="t", count=None, type="time"),
        Dimension(name="c", count=3, type="channel"),
        Dimension(name="y", count=16, type="space"),
        Dimension(name="x", count=16, type="space"),
    ]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "u.ome.tiff"), dimensions=dims, dtype="uint8"
    )
    with create_stream(settings) as stream:
        for n in range(7):
            stream.append(frame_for(n, (16, 16), "uint8"), metadata={"exposure_time": 0.01})
    want = np.zeros((3, 3, 16, 16), "uint8")
    for n in range(7):
        want[n // 3, n % 3] = frame_for(n, (16, 16), "uint8")
    ome = check_dataset(settings, [want])
    assert ome.images[0].pixels.size_t == 3
    assert len(ome.images[0].pixels.planes) == 7
    assert ome.images[0].pixels.planes[0].exposure_time == pytest.approx(0.01)


def test_a_backlog_of_pages_is_written_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages queued behind a slow disk share tifffile calls; when a batch is written,
    every page of it is complete (IFD linked), and pixels, order and skipped planes
    are what one call per page would have written."""
    from omestream.backends import tiff as engine
    from omestream.tiff.ifd import complete_pages

    entered, gate = threading.Event(), threading.Event()
    write_page = engine.TiffBackend._write

    def slow_first_page(self: engine.TiffBackend, page: object) -> None:
        if not entered.is_set():
            entered.set()
            gate.wait(10)
        write_page(self, page)  # type: ignore[arg-type]

    calls: list[object] = []
    tiff_write = tifffile.TiffWriter.write

    def counted(self: tifffile.TiffWriter, *args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("shape"))
        return tiff_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.TiffBackend, "_write", slow_first_page)
    monkeypatch.setattr(tifffile.TiffWriter, "write", counted)
    dims = [
        Dimension(name="t", count=30, type="time"),
        Dimension(name="c", count=2, type="channel"),
        Dimension(name="y", count=24, type="space"),
        Dimension(name="x", count=40, type="space"),
    ]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "b.ome.tiff"), dimensions=dims, dtype="uint16"
    )
    want = np.zeros((30, 2, 24, 40), "uint16")
    with create_stream(settings) as stream:
        stream.append(frame_for(0, (24, 40), "uint16"))
        assert entered.wait(10)  # the writer holds page 0; the rest queue up
        for n in range(1, 50):
            if n == 20:
                stream.skip(frames=3)
                continue
            if 20 < n < 23:
                continue
            stream.append(frame_for(n, (24, 40), "uint16"))
        gate.set()
        stream.flush()
        # everything written so far is linked into the IFD chain: none waits for a
        # later write to get its IFD
        assert complete_pages(settings.output_path, repair=False).pages == 50
        for n in range(50, 60):
            stream.append(frame_for(n, (24, 40), "uint16"))
    for n in range(60):
        if not 20 <= n < 23:
            want[n // 2, n % 2] = frame_for(n, (24, 40), "uint16")
    check_dataset(settings, [want])
    batches = [shape for shape in calls if isinstance(shape, tuple) and len(shape) == 3]
    assert batches, calls
    assert len(calls) < 20  # 60 pages


def test_stage_positions(tmp_path: Path) -> None:
    dims = [
        PositionDimension(positions=[{"name": "left", "x_coord": 10.5, "y_coord": -3.0}]),
        Dimension(name="y", count=16, type="space"),
        Dimension(name="x", count=16, type="space"),
    ]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "s.ome.tiff"), dimensions=dims, dtype="uint16"
    )
    with create_stream(settings) as stream:
        stream.append(np.ones((16, 16), "uint16"))
    label = read_ome(settings.output_path).images[0].stage_label
    assert (label.name, label.x, label.y) == ("left", 10.5, -3.0)


def test_non_finite_metadata_leaves_plane_attributes_out_and_notes_null(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "n.ome.tiff"),
        dimensions=[Dimension(name="t", count=2, type="time"),
                    Dimension(name="y", count=16, type="space"),
                    Dimension(name="x", count=16, type="space")],
        dtype="uint16",
    )  # fmt: skip
    with create_stream(settings) as stream, pytest.warns(UserWarning, match="not a finite"):
        stream.append(np.ones((16, 16), "uint16"), metadata={"delta_t": np.nan, "gain": 2})
        stream.append(np.ones((16, 16), "uint16"), metadata={"delta_t": 0.5, "gain": np.inf})
    ome = read_ome(settings.output_path)  # schema-valid
    assert [p.delta_t for p in ome.images[0].pixels.planes] == [None, 0.5]
    notes = [
        {m.k: m.value for m in a.value.ms} for a in ome.structured_annotations.map_annotations
    ]
    assert notes == [{"gain": "2"}, {"gain": "null"}]


def test_existing_output(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "int8")
    settings = case.settings(str(tmp_path / "e.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    before = Path(settings.output_path).read_bytes()
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        create_stream(settings)
    assert Path(settings.output_path).read_bytes() == before
    stream_case(case, settings.model_copy(update={"overwrite": True}))
    check_dataset(settings, expected_images(case, settings))
    # something that is not a TIFF is never replaced
    other = tmp_path / "notes.ome.tiff"
    other.write_text("keep me")
    bad = case.settings(str(other), "ome-tiff", overwrite=True)
    with pytest.raises(StoreFormatError, match="not a TIFF"):
        create_stream(bad)
    assert other.read_text() == "keep me"


def test_existing_folder_of_positions(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "unbounded")
    settings = case.settings(str(tmp_path / "f.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    with pytest.raises(StoreExistsError):
        create_stream(settings)
    (Path(settings.output_path) / "readme.txt").write_text("x")
    with pytest.raises(StoreFormatError, match="not TIFF"):
        create_stream(case.settings(str(tmp_path / "f.ome.tiff"), "ome-tiff", overwrite=True))
    assert (Path(settings.output_path) / "readme.txt").exists()


def test_no_warnings_reading_back(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "explicit-order")
    settings = case.settings(str(tmp_path / "w.ome.tiff"), "ome-tiff")
    stream_case(case, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tifffile.imread(settings.output_path)


@pytest.fixture
def small_direct_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 64 KiB and more take the direct path (by default only 2 MiB and more
    do), so the tests of that path stay small."""
    from omestream.backends import tiff as engine

    monkeypatch.setattr(engine, "_DIRECT_MIN_BYTES", 64 << 10)


def _long_settings(
    path: Path, frames: int, shape: tuple[int, int] = (512, 512), **writer: object
) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(path),
        dimensions=[
            Dimension(name="t", count=frames, type="time"),
            Dimension(name="y", count=shape[0], type="space"),
            Dimension(name="x", count=shape[1], type="space"),
        ],
        dtype="uint16",
        writer=writer,
    )


def _stream_frames(settings: AcquisitionSettings, frames: int) -> np.ndarray:
    """Append frames 0 .. frames-1 of the settings' frame shape; return them stacked."""
    shape = settings.frame_shape
    with create_stream(settings) as stream:
        for n in range(frames):
            stream.append(frame_for(n, shape, "uint16"))
    return np.stack([frame_for(n, shape, "uint16") for n in range(frames)])


def test_a_long_stream_leaves_the_page_cache_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync on, bytes far behind the end of a long file are dropped from the
    page cache once on disk (drop-behind); the file still reads back exactly."""
    from omestream.backends import tiff as engine
    from tests.page_cache import require_droppable_cache, resident_pages

    require_droppable_cache(tmp_path)
    monkeypatch.setattr(engine, "_DROP_AFTER", 16 << 20)  # "long" without 256 MB of test data
    frames = 120  # 512 KB each: 60 MB, well past the drop distance
    # pages through the page cache, as without O_DIRECT
    settings = _long_settings(tmp_path / "long.ome.tiff", frames, direct_io=False)
    want = _stream_frames(settings, frames)
    dropped_to = (60 << 20) - engine._DROP_LAG - engine._WRITEBACK_BYTES
    # the first MB holds page 0, whose OME-XML close() rewrote; the rest is gone
    assert resident_pages(settings.output_path, 1 << 20, dropped_to) == 0
    check_dataset(settings, [want])


@pytest.mark.usefixtures("small_direct_pages")
@pytest.mark.parametrize("shape", [(512, 512), (300, 500)], ids=["whole-blocks", "odd-size"])
def test_plain_pages_go_around_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int]
) -> None:
    """Uncompressed pages of the direct size are written with direct I/O (pages of whole
    4 KiB blocks several per call, others one per call): after the stream, almost
    none of their bytes sit in the page cache, and every page reads back."""
    from omestream.backends import tiff as engine
    from tests.page_cache import require_direct_io, require_droppable_cache, resident_pages

    require_droppable_cache(tmp_path)
    require_direct_io(tmp_path)
    monkeypatch.setattr(engine, "_SHORT_BURST_BYTES", 1 << 20)  # 20 MB counts as long
    frames = 40
    settings = _long_settings(tmp_path / "direct.ome.tiff", frames, shape)
    want = _stream_frames(settings, frames)
    # Before anything reads the file (reading IFDs reads ahead into the pixels): of
    # each page's blocks, about one is in the cache, the IFD's and the last one of each
    # write (beside tifffile's end-of-reservation byte); close() also reads page 0.
    cached = resident_pages(settings.output_path)
    nbytes = shape[0] * shape[1] * 2
    assert cached <= 3 * frames, (cached, frames * -(-nbytes // 4096))
    with tifffile.TiffFile(settings.output_path) as tif:
        offsets = [p.dataoffsets[0] for p in tif.pages]
    assert all(o % 4096 == 0 for o in offsets)
    check_dataset(settings, [want])


@pytest.mark.usefixtures("small_direct_pages")
@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded"])
def test_a_short_acquisition_stays_in_the_page_cache(tmp_path: Path, bounded: bool) -> None:
    """A short bounded acquisition goes through the page cache (the fsync at close
    writes it back at once); an unbounded one, whose length nobody knows, is written
    with direct I/O from its first page."""
    from tests.page_cache import require_direct_io, require_droppable_cache, resident_pages

    require_droppable_cache(tmp_path)
    require_direct_io(tmp_path)
    frames = 40  # 20 MB
    settings = _long_settings(tmp_path / "short.ome.tiff", frames)
    if not bounded:
        t, *rest = settings.dimensions
        settings = settings.model_copy(
            update={"dimensions": (t.model_copy(update={"count": None}), *rest)}
        )
    want = _stream_frames(settings, frames)
    blocks = frames * (512 * 512 * 2 // 4096)
    cached = resident_pages(settings.output_path)
    if bounded:
        assert cached >= blocks, (cached, blocks)
    else:
        assert cached <= 3 * frames, (cached, blocks)
    check_dataset(settings, [want])


@pytest.mark.parametrize(
    ("positions", "frames", "width", "direct"),
    [
        (1, 100, 1024, False),
        (1, 150, 1024, True),
        (2, 75, 1024, True),
        (2, 50, 1024, False),
        (1, 1200, 256, False),
    ],
    ids=["200MB", "300MB", "2x150MB", "2x100MB", "300MB-of-256KiB-pages"],
)
def test_the_burst_size_counts_every_file(
    tmp_path: Path, positions: int, frames: int, width: int, direct: bool
) -> None:
    """The 256 MB line is for the whole acquisition: positions written to files of
    their own add up (2 MiB pages here); pages under 2 MiB stay with the page cache
    however long the acquisition. Nothing is written by building the engine."""
    from omestream.backends.tiff import TiffBackend
    from omestream.plan.storage import plan_storage

    dims: list[Dimension | PositionDimension] = [Dimension(name="t", count=frames)]
    if positions > 1:
        dims.append(PositionDimension(positions=[f"P{i}" for i in range(positions)]))
    dims += [Dimension(name="y", count=1024), Dimension(name="x", count=width)]
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "b.ome.tiff"), dimensions=dims, dtype="uint16"
    )
    engine = TiffBackend.from_settings(settings, plan_storage(settings))
    assert engine._direct_io is direct
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("small_direct_pages")
def test_refused_direct_writes_fall_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that opens files for direct I/O but refuses the writes (EINVAL)
    gets the same bytes through the page cache; nothing is lost or misplaced."""
    import errno

    from omestream.backends import tiff as engine
    from tests.page_cache import require_direct_io

    require_direct_io(tmp_path)
    real = engine.pwrite_all
    refused: list[int] = []

    def refuse_direct(fd: int, parts: list[np.ndarray], offset: int) -> None:
        import fcntl

        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd, parts, offset)

    monkeypatch.setattr(engine, "pwrite_all", refuse_direct)
    monkeypatch.setattr(engine, "_SHORT_BURST_BYTES", 0)  # direct even for a short burst
    frames = 12
    settings = _long_settings(tmp_path / "refused.ome.tiff", frames)
    want = _stream_frames(settings, frames)
    assert len(refused) == 1  # tried once, then the file stays with the page cache
    check_dataset(settings, [want])


@pytest.mark.usefixtures("small_direct_pages")
def test_where_holes_do_not_show_pages_are_written_with_their_ifds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct writes link pages before their pixels land, which recovery tells apart
    only by their holes: a file system that reports none gets the page-cache path,
    pixels and IFDs written together, and every page reads back."""
    from omestream.backends import tiff as engine
    from omestream.io.holes import reports_holes
    from tests.page_cache import require_direct_io

    require_direct_io(tmp_path)
    if not reports_holes(str(tmp_path)):
        pytest.skip("this file system does not report holes: no direct path to compare")
    opened: list[str] = []
    real_open = engine.open_direct

    def spy(path: str) -> int | None:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(engine, "open_direct", spy)
    monkeypatch.setattr(engine, "_SHORT_BURST_BYTES", 0)  # direct even for a short burst
    frames = 12
    direct = _long_settings(tmp_path / "direct.ome.tiff", frames)
    check_dataset(direct, [_stream_frames(direct, frames)])
    assert len(opened) == 1  # holes show here: the direct path

    monkeypatch.setattr(engine, "reports_holes", lambda directory: False)
    cached = _long_settings(tmp_path / "cached.ome.tiff", frames)
    check_dataset(cached, [_stream_frames(cached, frames)])
    assert len(opened) == 1  # no direct descriptor for the second file


def test_closing_document_describes_frames_after_the_last_refresh(tmp_path: Path) -> None:
    """The closing OME-XML describes every frame and its metadata, also those appended
    after the stream's last metadata refresh (it once described the refresh's copy of
    the state: a long stream's last time points were in the file but not in its
    series)."""
    settings = time_series(
        str(tmp_path / "late.ome.tiff"), 32, "uint16",
        writer=WriterOptions(metadata_interval_s=0.05),
    )  # fmt: skip
    with create_stream(settings) as stream:
        for n in range(40):
            stream.append(frame_for(n, (32, 32), "uint16"), metadata={"delta_t": n * 0.5})
        time.sleep(0.5)  # the stream refreshes its metadata meanwhile
        for n in range(40, 45):
            stream.append(frame_for(n, (32, 32), "uint16"), metadata={"delta_t": n * 0.5})
    with tifffile.TiffFile(settings.output_path) as tif:
        data = tif.series[0].asarray()
    assert data.shape == (45, 32, 32)
    np.testing.assert_array_equal(data[44], frame_for(44, (32, 32), "uint16"))
    ome = read_ome(settings.output_path)
    planes = ome.images[0].pixels.planes
    assert [p.delta_t for p in planes] == pytest.approx([n * 0.5 for n in range(45)])
    record = json.loads(next(c.value for c in ome.structured_annotations.comment_annotations))
    assert record["frames"] == 45 and record["complete"] is True


def test_metadata_xml_cannot_hold_does_not_cost_the_close(tmp_path: Path) -> None:
    """A control character in frame metadata (a serial device's raw reply) once failed
    the close with lxml's ValueError; it is stored as U+FFFD in the OME-XML."""
    settings = time_series(str(tmp_path / "ctrl.ome.tiff"), 8, "uint8")
    with create_stream(settings) as stream:
        stream.append(np.zeros((8, 8), "uint8"), metadata={"reply": "OK\x01\x1b"})
        stream.append(np.ones((8, 8), "uint8"), metadata={"reply": "fine"})
    ome = read_ome(settings.output_path)
    values = [m.value for a in ome.structured_annotations.map_annotations for m in a.value.ms]
    assert values == ["OK\ufffd\ufffd", "fine"]
    with tifffile.TiffFile(settings.output_path) as tif:
        assert tif.series[0].asarray()[1].max() == 1
