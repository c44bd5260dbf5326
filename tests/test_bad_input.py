"""Bad input is refused with a clear message, and what was written stays intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from omestream import (
    AcquisitionSettings,
    Dimension,
    FrameCountError,
    FrameDtypeError,
    FrameError,
    FrameShapeError,
    PositionDimension,
    SettingsError,
    StoreExistsError,
    StoreFormatError,
    StreamClosedError,
    WriteError,
    create_stream,
)
from tests.checks import validate_ome_zarr


def settings(tmp_path: Path, **kw: object) -> AcquisitionSettings:
    base: dict[str, object] = {
        "root_path": str(tmp_path / "x.ome.zarr"),
        "dimensions": [
            Dimension(name="t", count=3),
            Dimension(name="y", count=8),
            Dimension(name="x", count=6),
        ],
        "dtype": "uint16",
    }
    base.update(kw)
    return AcquisitionSettings(**base)  # type: ignore[arg-type]


def frame(v: int = 1, shape: tuple[int, int] = (8, 6), dtype: str = "uint16") -> np.ndarray:
    return np.full(shape, v, dtype=dtype)


def test_wrong_shape_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        stream.append(frame(1))
        with pytest.raises(
            FrameShapeError,
            match=r"frame 1 has shape \(8, 5\); this stream expects \(8, 6\) \(dims y, x\)",
        ):
            stream.append(frame(2, (8, 5)))
        assert stream.frames_written == 1
        stream.append(frame(3))
    data = zarr.open_array(s.output_path + "/0")[...]
    np.testing.assert_array_equal(data[:, 0, 0], [1, 3, 0])
    validate_ome_zarr(s.output_path)


@pytest.mark.parametrize("dtype", ["float64", "uint8", "int16", "uint32"])
def test_wrong_dtype_is_never_cast(tmp_path: Path, dtype: str) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        with pytest.raises(
            FrameDtypeError, match=f"frame 0 has dtype {dtype}; this stream expects uint16"
        ):
            stream.append(frame(70000 if dtype == "uint32" else 1, dtype=dtype))
        assert stream.frames_written == 0
    assert not zarr.open_array(s.output_path + "/0")[...].any()


def test_lists_are_not_silently_converted(tmp_path: Path) -> None:
    with create_stream(settings(tmp_path)) as stream, pytest.raises(FrameDtypeError):
        stream.append([[1] * 6] * 8)  # type: ignore[arg-type]


def test_too_many_frames(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        for v in (1, 2, 3):
            stream.append(frame(v))
        with pytest.raises(
            FrameCountError, match="frame 3 is beyond the acquisition: it holds 3 frames"
        ):
            stream.append(frame(4))
        with pytest.raises(FrameCountError):
            stream.skip(frames=1)
    data = zarr.open_array(s.output_path + "/0")[...]
    np.testing.assert_array_equal(data[:, 0, 0], [1, 2, 3])


def test_skip_more_than_left_writes_nothing(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        stream.append(frame(1))
        with pytest.raises(FrameCountError, match=r"holds 3 frames, 2 remain; nothing was skip"):
            stream.skip(frames=5)
        assert stream.frames_written == 1
        stream.skip(frames=2)
    assert zarr.open_array(s.output_path + "/0")[...][:, 0, 0].tolist() == [1, 0, 0]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, np.int64(0)])
def test_skip_needs_positive_count(tmp_path: Path, bad: object) -> None:
    with create_stream(settings(tmp_path)) as stream, pytest.raises(ValueError, match="positive"):
        stream.skip(frames=bad)  # type: ignore[arg-type]


def test_skip_takes_numpy_integers(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        stream.append(frame(1))
        stream.skip(frames=np.int64(2))
        assert stream.frames_written == 3


@pytest.mark.parametrize("backend", ["omestream", "zarr-python"])
def test_frames_of_array_subclasses(tmp_path: Path, backend: str) -> None:
    # a matrix is stored as its values; a masked array is refused (its mask would be
    # lost) and the frames before it stay
    s = settings(tmp_path, format={"name": "ome-zarr", "backend": backend})
    with create_stream(s) as stream:
        stream.append(frame(1))
        masked = np.ma.masked_array(frame(2), mask=frame(2) > 5)
        with pytest.raises(FrameError, match="masked array"):
            stream.append(masked)
        with pytest.warns(PendingDeprecationWarning):  # numpy's, for making a matrix
            matrix = np.matrix(frame(2))
        stream.append(matrix)
        stream.append(frame(3))
    data = zarr.open_array(s.output_path + "/0", mode="r")[...]
    assert data[:, 0, 0].tolist() == [1, 2, 3] and isinstance(data, np.ndarray)
    validate_ome_zarr(s.output_path)


def test_metadata_keys_of_the_stream_record_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        with pytest.raises(FrameError, match=r"\['frame'\] are omestream's own"):
            stream.append(frame(1), metadata={"frame": 1234, "exposure_ms": 10})
        assert stream.frames_written == 0
        stream.append(frame(1), metadata={"camera_frame": 1234, "exposure_ms": 10})
    record = json.loads(Path(s.output_path, "zarr.json").read_text())["attributes"]["omestream"]
    assert record["frame_metadata"] == [
        {"frame": 0, "index": {"t": 0}, "camera_frame": 1234, "exposure_ms": 10}
    ]


def test_metadata_must_be_json(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        with pytest.raises(FrameError, match="JSON-serialisable"):
            stream.append(frame(1), metadata={"obj": object()})
        assert stream.frames_written == 0
        stream.append(frame(1), frame_metadata={"exposure": np.float32(10.0), "ok": np.int64(3)})
    record = json.loads(Path(s.output_path, "zarr.json").read_text())["attributes"]["omestream"]
    assert record["frame_metadata"][0]["exposure"] == 10.0


def test_non_finite_metadata_is_stored_as_null_and_the_frame_kept(tmp_path: Path) -> None:
    """A sensor reading NaN must not cost the frame: the value becomes null (JSON has no
    NaN), with one warning per stream."""
    s = settings(tmp_path)
    with create_stream(s) as stream:
        with pytest.warns(UserWarning, match=r"focus\.z, temps\[1\] is not a finite number"):
            stream.append(
                frame(1), metadata={"focus": {"z": np.float64("nan")}, "temps": [20.5, np.inf]}
            )
        stream.append(frame(2), metadata={"x": float("-inf"), "y": 1.5})  # warned already
        assert stream.frames_written == 2
    text = Path(s.output_path, "zarr.json").read_text()
    record = json.loads(text)["attributes"]["omestream"]["frame_metadata"]
    assert record[0]["focus"] == {"z": None} and record[0]["temps"] == [20.5, None]
    assert record[1]["x"] is None and record[1]["y"] == 1.5
    assert "NaN" not in text and "Infinity" not in text
    validate_ome_zarr(s.output_path)
    assert np.array_equal(
        zarr.open_array(s.output_path + "/0", mode="r")[:2], [frame(1), frame(2)]
    )


def test_frames_in_the_other_byte_order_are_stored_as_their_values(tmp_path: Path) -> None:
    s = settings(tmp_path)
    swapped = np.arange(48, dtype=">u2").reshape(8, 6) * 300
    with create_stream(s) as stream:
        stream.append(swapped)
        with pytest.raises(FrameDtypeError, match="int16"):
            stream.append(frame(1, dtype=">i2"))  # byte order aside, still the wrong type
    stored = zarr.open_array(s.output_path + "/0", mode="r")[0]
    assert stored.dtype == np.uint16 and np.array_equal(stored, swapped)


def test_both_metadata_spellings_is_an_error(tmp_path: Path) -> None:
    with create_stream(settings(tmp_path)) as stream, pytest.raises(TypeError, match="not both"):
        stream.append(frame(), metadata={}, frame_metadata={})


def test_closed_stream(tmp_path: Path) -> None:
    stream = create_stream(settings(tmp_path))
    stream.append(frame())
    stream.close()
    stream.close()  # idempotent
    assert stream.closed
    with pytest.raises(StreamClosedError, match="closed"):
        stream.append(frame())


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with create_stream(s) as stream:
        stream.append(frame(7))
    with pytest.raises(StoreExistsError, match="already exists; pass overwrite=True"):
        create_stream(s)
    assert zarr.open_array(s.output_path + "/0")[0, 0, 0] == 7  # untouched
    with create_stream(s.replace(overwrite=True)) as stream:
        stream.append(frame(9))
    assert zarr.open_array(s.output_path + "/0")[0, 0, 0] == 9


def test_overwrite_never_deletes_a_folder_that_is_not_zarr(tmp_path: Path) -> None:
    out = tmp_path / "x.ome.zarr"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(StoreFormatError, match="not a Zarr store"):
        create_stream(settings(tmp_path, overwrite=True))
    assert (out / "precious.txt").read_text() == "keep me"


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.ome.zarr").write_text("a file")
    with pytest.raises(StoreExistsError, match="is a file"):
        create_stream(settings(tmp_path, overwrite=True))


def test_location_that_cannot_be_written(tmp_path: Path) -> None:
    # /proc refuses new entries even for root, so this holds wherever the suite runs
    s = settings(tmp_path, root_path="/proc/omestream-test.ome.zarr")
    with pytest.raises(WriteError, match=r"cannot create '/proc/omestream-test\.ome\.zarr'"):
        create_stream(s)


def test_duplicate_names_and_units_fail_when_settings_are_made(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unique"):
        settings(tmp_path, dimensions=[Dimension(name="y", count=2), Dimension(name="y", count=2)])
    with pytest.raises(SettingsError, match="duplicate position name"):
        PositionDimension(positions=["p", "p"])
    with pytest.raises(SettingsError, match="unknown unit"):
        Dimension(name="z", count=2, unit="leagues")
    with pytest.raises(SettingsError, match="cannot be written"):
        settings(tmp_path, compression="lzw")
    assert not (tmp_path / "x.ome.zarr").exists()


def test_reused_frame_buffer_does_not_change_stored_data(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        dimensions=[
            Dimension(name="t", count=64),
            Dimension(name="y", count=8),
            Dimension(name="x", count=6),
        ],
    )
    buf = np.zeros((8, 6), np.uint16)
    with create_stream(s) as stream:
        for v in range(64):
            buf[:] = v
            stream.append(buf)
            buf[:] = 9999  # the caller scribbles on its buffer right after append
    data = zarr.open_array(s.output_path + "/0")[...]
    np.testing.assert_array_equal(data[:, 3, 2], np.arange(64))


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_reused_frame_buffer_ome_tiff(tmp_path: Path, compression: str | None) -> None:
    """The TIFF engine reuses its own frame copies too; no page may see a later frame."""
    import tifffile

    s = AcquisitionSettings(
        root_path=str(tmp_path / "r.ome.tiff"),
        dimensions=[
            Dimension(name="t", count=300),
            Dimension(name="y", count=64),
            Dimension(name="x", count=48),
        ],
        dtype="uint16",
        compression=compression,
        writer={"memory_budget_mb": 16},
    )
    buf = np.zeros((64, 48), np.uint16)
    with create_stream(s) as stream:
        for v in range(300):
            buf[:] = v
            buf[v % 64, :] = 7  # each frame differs in more than its value
            stream.append(buf)
            buf[:] = 9999
    with tifffile.TiffFile(s.output_path) as tif:
        data = tif.series[0].asarray()
    assert data.shape == (300, 64, 48)
    for v in range(300):
        want = np.full((64, 48), v, np.uint16)
        want[v % 64, :] = 7
        np.testing.assert_array_equal(data[v], want)


def test_exception_in_acquisition_loop_still_finalises(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(RuntimeError, match="camera"), create_stream(s) as stream:
        stream.append(frame(5))
        raise RuntimeError("camera died")
    assert zarr.open_array(s.output_path + "/0")[0, 0, 0] == 5
    validate_ome_zarr(s.output_path)


def test_non_finite_metadata_in_ome_tiff_is_kept_as_null(tmp_path: Path) -> None:
    """OME-TIFF keeps the keys too: the plane's MapAnnotation says null, as the warning
    does (a key that is a Plane attribute, such as delta_t, is left out instead)."""
    import ome_types
    import tifffile

    s = settings(tmp_path, root_path=str(tmp_path / "x.ome.tiff"))
    with create_stream(s) as stream, pytest.warns(UserWarning, match="is not a finite number"):
        stream.append(frame(1), metadata={"focus": np.float64("nan"), "note": None})
    with tifffile.TiffFile(s.output_path) as tif:
        ome = ome_types.from_xml(tif.ome_metadata, validate=True)
        assert np.array_equal(tif.asarray()[0], frame(1))
    [plane] = ome.images[0].pixels.planes
    [ref] = plane.annotation_refs
    [note] = [a for a in ome.structured_annotations.map_annotations if a.id == ref.id]
    assert {m.k: m.value for m in note.value.ms} == {"focus": "null", "note": "null"}
