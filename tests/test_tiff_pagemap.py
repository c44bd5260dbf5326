"""The OME-TIFF engine's compact page bookkeeping (omestream.tiff.pagemap): runs of
pages and bitmaps of planes give the same TiffData, extents and padding as a list of
(image, index) per page and a set of planes did; TiffData and planes made as text read
as ome-types writes them."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import numpy as np
import ome_types
import pytest
import tifffile
from ome_types import model as m

from omestream import (
    AcquisitionSettings,
    Dimension,
    PositionDimension,
    WriterOptions,
    create_stream,
)
from omestream.metadata.ome_xml import (
    build_ome,
    frame_planes,
    plane_index,
    render_pieces,
    render_xml,
    tiff_data_blocks,
    tiff_data_text,
)
from omestream.plan import FrameRouter, plan_storage
from omestream.tiff.ifd import read_description, replace_description
from omestream.tiff.layout import arrival_pages, first_outer_axis, tiff_layout
from omestream.tiff.pagemap import PageMap, PlaneBits, PlaneKeys, plane_keys

Y = Dimension(name="y", count=4, type="space")
X = Dimension(name="x", count=4, type="space")


def _reference_blocks(
    plan, shapes, pages: Sequence[Sequence[tuple[int, tuple[int, ...]]]], image: int
) -> list[tuple[int, int, int, int]]:
    """TiffData blocks as they were made from a list of pages per file."""
    by_plane: dict[int, tuple[int, int]] = {}
    shape = shapes[image]
    for f, file_pages in enumerate(pages):
        for ifd, (img, index) in enumerate(file_pages):
            if img == image and all(i < s for i, s in zip(index, shape[:-2], strict=True)):
                by_plane[plane_index(plan.images[image], shape, index)] = (f, ifd)
    out: list[list[int]] = []
    for plane in sorted(by_plane):
        f, ifd = by_plane[plane]
        last = out[-1] if out else None
        if last and plane == last[0] + last[3] and f == last[1] and ifd == last[2] + last[3]:
            last[3] += 1
        else:
            out.append([plane, f, ifd, 1])
    return [(a, b, c, d) for a, b, c, d in out]


def _replay(settings: AcquisitionSettings, n: int, shuffle: bool = False):
    """The page map and the plain page lists of ``n`` frames in arrival order."""
    plan = plan_storage(settings)
    layout = tiff_layout(settings, plan)
    router = FrameRouter(settings)
    keys = plane_keys(plan, first_outer_axis(settings))
    routes = [router.route(i) for i in range(n)]
    if shuffle:
        random.Random(1).shuffle(routes)
    pages = PageMap(keys, len(layout.files))
    plain: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in layout.files]
    for r in routes:
        f = layout.image_file[r.image]
        pages.add(f, r.image, r.index)
        plain[f].append((r.image, r.index))
    return plan, layout, keys, pages, plain


def _declared(plan, settings, pages: PageMap, full: bool) -> list[list[int]]:
    first = first_outer_axis(settings)
    shapes = []
    for i, im in enumerate(plan.images):
        shape = list(im.levels[0].shape)
        if first is not None and (not full or plan.unbounded_axis is not None):
            shape[first] = max(pages.extent(i), 1)
        shapes.append(shape)
    return shapes


def _settings(dims, **kw) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path="pagemap.ome.tiff", dimensions=dims, dtype="uint16", format="ome-tiff", **kw
    )


T = Dimension(name="t", count=5, type="time")
C = Dimension(name="c", count=3, type="channel")
Z = Dimension(name="z", count=2, type="space")
P = PositionDimension(name="p", positions=["A", "B"])
UNBOUNDED = Dimension(name="t", count=None, type="time")
SINGLE = WriterOptions(tiff_single_file=True)
LAYOUTS = {
    "in order": (_settings([T, C, Z, Y, X]), 30, 1),
    "channels inside, stored outside": (
        _settings([T, Z, C, Y, X], storage_order=["c", "t", "z", "y", "x"]),
        30,
        None,
    ),
    "time stored innermost": (
        _settings([T, Z, C, Y, X], storage_order=["z", "c", "t", "y", "x"]),
        27,
        None,
    ),
    "positions, a file each": (_settings([T, P, C, Y, X]), 30, 1),
    # a run per position and time point (its channels, in consecutive IFDs)
    "positions in one file": (_settings([T, P, C, Y, X], writer=SINGLE), 30, 10),
    "positions in one file, one plane each": (_settings([T, P, Y, X], writer=SINGLE), 10, 2),
    "unbounded": (_settings([UNBOUNDED, C, Y, X]), 11, 1),
    "unbounded, stored inside": (
        _settings([UNBOUNDED, C, Y, X], storage_order=["c", "t", "y", "x"]),
        11,
        None,
    ),
    "a lone frame": (_settings([Y, X]), 1, 1),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("full", [False, True])
def test_blocks_match_a_list_of_pages(name: str, full: bool) -> None:
    settings, n, runs_per_file = LAYOUTS[name]
    plan, layout, _, pages, plain = _replay(settings, n)
    shapes = _declared(plan, settings, pages, full)
    for i in range(len(plan.images)):
        got = list(pages.blocks(i, shapes[i]))
        assert got == _reference_blocks(plan, shapes, plain, i), name
    for f in range(len(layout.files)):
        assert pages.pages(f) == len(plain[f])
        assert list(pages.file_pages(f)) == plain[f]
        if runs_per_file is not None:  # acquisitions in order: a run per image in a file
            assert len(pages.runs(f)) == runs_per_file
    assert len(pages) == n


def test_pages_in_any_order() -> None:
    settings = _settings([T, C, Z, Y, X])
    plan, _, _, pages, plain = _replay(settings, 30, shuffle=True)
    shapes = _declared(plan, settings, pages, True)
    assert list(pages.blocks(0, shapes[0])) == _reference_blocks(plan, shapes, plain, 0)
    assert list(pages.file_pages(0)) == plain[0]


def test_a_long_acquisition_in_order_is_one_run() -> None:
    keys = PlaneKeys((0, 3), first_axis=0)  # unbounded time, 3 channels
    pages = PageMap([keys], 1)
    for t in range(20_000):
        for c in range(3):
            pages.add(0, 0, (t, c))
    assert pages.runs(0) == [(0, 0, 0, 60_000, 1)]
    assert pages.extent(0) == 20_000
    assert list(pages.blocks(0, [20_000, 3, 4, 4])) == [(0, 0, 0, 60_000)]
    assert list(pages.blocks(0, [100, 3, 4, 4])) == [(0, 0, 0, 300)]  # declared shorter


def test_skipped_and_padded_planes_keep_their_runs() -> None:
    """Skipped frames are pages too; pages padded at close come after the rest."""
    keys = PlaneKeys((4, 3), first_axis=0)
    pages = PageMap([keys], 1)
    written = [(t, c) for t in range(4) for c in range(3)][:10]  # closed early
    for index in written:
        pages.add(0, 0, index)
    queued = PlaneBits(keys)
    for index in written:
        queued.add(index)
    missing = [ix for ix in itertools.product(range(4), range(3)) if ix not in queued]
    assert missing == [(3, 1), (3, 2)]
    for index in missing:
        pages.add(0, 0, index)
    assert list(pages.blocks(0, [4, 3, 4, 4])) == [(0, 0, 0, 12)]
    assert len(queued) == 10


def test_plane_bits() -> None:
    keys = PlaneKeys((0, 2, 3), first_axis=0)
    bits = PlaneBits(keys)
    added = {(t, c, z) for t in range(50) for c in range(2) for z in range(3) if (t + c + z) % 3}
    for index in added:
        bits.add(index)
    for index in itertools.product(range(60), range(2), range(3)):
        assert (index in bits) == (index in added)
    assert len(bits) == len(added)


def test_plane_keys_put_the_first_axis_outermost() -> None:
    keys = PlaneKeys((2, 0, 3), first_axis=1)  # c, t (unbounded), z
    seen = set()
    for t in range(4):
        for c in range(2):
            for z in range(3):
                key = keys.key((c, t, z))
                assert keys.index(key) == (c, t, z)
                assert keys.step(key) == t
                seen.add(key)
    assert seen == set(range(24))


def test_arrival_pages_after_a_crash() -> None:
    settings = _settings([T, P, C, Y, X])
    plan = plan_storage(settings)
    layout = tiff_layout(settings, plan)
    keys = plane_keys(plan, first_outer_axis(settings))
    pages, frames = arrival_pages(FrameRouter(settings), layout, keys, None, [7, 5])
    assert (pages.pages(0), pages.pages(1), frames) == (6, 5, 11)  # file 0's 7th page is cut off


@pytest.mark.parametrize("multi_file", [False, True])
def test_tiff_data_text_is_what_ome_types_writes(multi_file: bool) -> None:
    settings = _settings([T, Z, C, Y, X], storage_order=["c", "t", "z", "y", "x"])
    plan = plan_storage(settings)
    shape = list(plan.images[0].levels[0].shape)
    rng = random.Random(2)
    blocks = []
    plane = 0
    while plane < 30:
        count = rng.randint(1, 4)
        blocks.append((plane, rng.randint(0, 1), rng.randint(0, 99), min(count, 30 - plane)))
        plane += count
    files = [("a.ome.tiff", f"urn:uuid:{'1' * 8}-1111-1111-1111-{'1' * 12}"),
             ("b.ome.tiff", f"urn:uuid:{'2' * 8}-2222-2222-2222-{'2' * 12}")]  # fmt: skip
    named = files if multi_file else None
    as_model = build_ome(plan, [shape], metadata_only=False)
    as_model.images[0].pixels.tiff_data_blocks = tiff_data_blocks(
        plan.images[0], shape, blocks, named
    )
    as_text = build_ome(plan, [shape], metadata_only=False)
    text = tiff_data_text(plan.images[0], shape, blocks, named)
    assert render_xml(as_text, tiff_data=[text]) == as_model.to_xml(
        exclude_unset=False, exclude_defaults=True
    )
    assert as_text.images[0].pixels.tiff_data_blocks == []  # the model is left as it was


def test_planes_out_of_order_are_sorted_in_chunks() -> None:
    """Records that come out of T, C, Z order are sorted; in chunks or one by one the
    document is the same text."""
    settings = _settings([T, Z, C, Y, X])
    plan = plan_storage(settings)
    shape = list(plan.images[0].levels[0].shape)
    router = FrameRouter(settings)
    records = []
    for n in range(30):
        r = router.route(n)
        records.append({"frame": n, "index": r.acquisition, "exposure_ms": n, "note": f"n{n}"})
    ome = build_ome(plan, [shape], metadata_only=False)
    one_by_one = frame_planes(plan.images[0], shape, records)
    joined = frame_planes(plan.images[0], shape, records, joined=True)
    assert len(one_by_one.planes) == one_by_one.n_planes == joined.n_planes == 30
    assert len(joined.planes) == 1 and joined.n_notes == 30
    xml = render_xml(ome, [one_by_one])
    assert render_xml(ome, [joined]) == xml
    assert "".join(render_pieces(ome, [joined])) == xml
    planes = ome_types.from_xml(xml).images[0].pixels.planes
    assert [(p.the_t, p.the_c, p.the_z) for p in planes] == sorted(
        (p.the_t, p.the_c, p.the_z) for p in planes
    )


def test_description_written_in_pieces(tmp_path) -> None:
    path = str(tmp_path / "a.tif")
    tifffile.imwrite(path, np.zeros((2, 4, 4), "uint8"), bigtiff=True, description="old")
    pieces = ["<a>", "é" * 3, "</a>"]
    size = replace_description(path, pieces, durable=False)
    assert size == len("".join(pieces).encode()) + 1
    assert read_description(path) == "".join(pieces)
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), np.zeros((2, 4, 4), "uint8"))


def test_stream_of_positions_in_one_file_reads_back(tmp_path) -> None:
    settings = AcquisitionSettings(
        root_path=str(tmp_path / "p.ome.tiff"),
        dimensions=[T, P, C, Y, X],
        dtype="uint16",
        format="ome-tiff",
        writer=SINGLE,
    )
    with create_stream(settings) as stream:
        for n in range(27):  # closed early: the rest is padded
            stream.append(np.full((4, 4), n, "uint16"), metadata={"exposure_ms": n})
    with tifffile.TiffFile(settings.output_path) as tif:
        ome = ome_types.from_xml(tif.pages.first.description, validate=True)
        assert len(tif.pages) == 30
        got = [s.asarray() for s in tif.series]
    assert all(sum(td.plane_count for td in im.pixels.tiff_data_blocks) == 15 for im in ome.images)
    router = FrameRouter(settings)
    for n in range(27):
        r = router.route(n)
        assert (got[r.image][r.index] == n).all()
    assert isinstance(ome.images[0].pixels.tiff_data_blocks[0], m.TiffData)
