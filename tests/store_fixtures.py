"""Datasets to change, written by omestream, by ome-zarr-py and by hand (iohub style)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import zarr

from omestream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    create_stream,
)

WRITERS = ["omestream", "ome-zarr-py"]
T, C, Y, X = 2, 2, 32, 24


def snapshot(root: str | Path) -> dict[str, bytes]:
    """Every file below ``root`` and its bytes: to show that a refused call changed nothing."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def pixels(seed: int, shape: tuple[int, ...] = (T, C, Y, X), dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1000, size=shape).astype(dtype)


def _fmt(version: str):  # type: ignore[no-untyped-def]
    from ome_zarr.format import FormatV04, FormatV05

    return FormatV04() if version == "0.4" else FormatV05()


def _dims(positions: list[Position] | None = None) -> list[Dimension | PositionDimension]:
    dims: list[Dimension | PositionDimension] = [Dimension(name="t", count=T, type="time")]
    if positions:
        dims.append(PositionDimension(positions=positions))
    dims += [
        Dimension(name="c", count=C, type="channel", coords=["DAPI", "FITC"]),
        Dimension(name="y", count=Y, type="space"),
        Dimension(name="x", count=X, type="space"),
    ]
    return dims


def _stream(settings: AcquisitionSettings, images: list[np.ndarray]) -> None:
    """Append frames in acquisition order t, (p), c so image i holds images[i]."""
    with create_stream(settings) as s:
        for t in range(T):
            for img in images:
                for c in range(C):
                    s.append(img[t, c])


def write_image(root: Path, version: str, writer: str, seed: int = 0) -> np.ndarray:
    """A t,c,y,x image with two levels; returns its level-0 data."""
    data = pixels(seed)
    if writer == "omestream":
        from omestream import Pyramid

        settings = AcquisitionSettings(
            root_path=str(root),
            dimensions=_dims(),
            dtype="uint16",
            format={"name": "ome-zarr", "version": version},
            pyramid=Pyramid(levels=2),
        )
        _stream(settings, [data])
    else:
        from ome_zarr.writer import write_image as oz_write

        fmt = _fmt(version)
        group = zarr.open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
        oz_write(data, group, axes="tcyx", fmt=fmt, scale_factors=(2,))
    return data


def write_plate(root: Path, version: str, writer: str) -> dict[str, np.ndarray]:
    """Plate with wells A/1 and B/2, one field "0" each; returns data per image path."""
    wells = {"A/1": pixels(1), "B/2": pixels(2)}
    if writer == "omestream":
        positions = [
            Position(name="0", plate_row="A", plate_column="1"),
            Position(name="0", plate_row="B", plate_column="2"),
        ]
        settings = AcquisitionSettings(
            root_path=str(root),
            dimensions=_dims(positions),
            dtype="uint16",
            plate=Plate(row_names=["A", "B"], column_names=["1", "2"]),
            format={"name": "ome-zarr", "version": version},
        )
        _stream(settings, list(wells.values()))
    else:
        from ome_zarr.writer import write_image as oz_write
        from ome_zarr.writer import write_plate_metadata, write_well_metadata

        fmt = _fmt(version)
        group = zarr.open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
        write_plate_metadata(group, ["A", "B"], ["1", "2"], list(wells), fmt=fmt)
        for w, data in wells.items():
            r, c = w.split("/")
            wg = group.require_group(r).require_group(c)
            write_well_metadata(wg, ["0"], fmt=fmt)
            oz_write(data, wg.require_group("0"), axes="tcyx", fmt=fmt, scale_factors=(2,))
    return {f"{w}/0": d for w, d in wells.items()}


def write_iohub_plate(root: Path) -> dict[str, np.ndarray]:
    """An NGFF 0.4 plate laid out the way iohub writes one (by hand: no iohub needed):
    positions named "0", "1"; wells without "version"; omero with windows; v2 arrays
    with nested "/" chunk keys and one level "0"."""

    def put(path: Path, name: str, doc: dict) -> None:  # type: ignore[type-arg]
        path.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(json.dumps(doc))

    out = {}
    put(root, ".zgroup", {"zarr_format": 2})
    put(root, ".zattrs", {"plate": {
        "version": "0.4", "name": "iohub-plate",
        "rows": [{"name": "A"}], "columns": [{"name": "1"}, {"name": "2"}],
        "wells": [{"path": "A/1", "rowIndex": 0, "columnIndex": 0}],
        "acquisitions": [{"id": 0}], "field_count": 2,
    }})  # fmt: skip
    put(root / "A", ".zgroup", {"zarr_format": 2})
    put(root / "A" / "1", ".zgroup", {"zarr_format": 2})
    put(root / "A" / "1", ".zattrs", {"well": {"images": [
        {"path": "0", "acquisition": 0}, {"path": "1", "acquisition": 0}
    ]}})  # fmt: skip
    for i, fov in enumerate(["0", "1"]):
        data = pixels(10 + i, (T, C, 1, Y, X))
        g = root / "A" / "1" / fov
        put(g, ".zgroup", {"zarr_format": 2})
        put(g, ".zattrs", {
            "multiscales": [{
                "version": "0.4", "name": fov,
                "axes": [{"name": "T", "type": "time", "unit": "second"},
                         {"name": "C", "type": "channel"},
                         {"name": "Z", "type": "space", "unit": "micrometer"},
                         {"name": "Y", "type": "space", "unit": "micrometer"},
                         {"name": "X", "type": "space", "unit": "micrometer"}],
                "datasets": [{"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 1.0, 0.5, 0.5]}]}],
            }],
            "omero": {"version": "0.4", "id": 0, "name": fov, "channels": [
                {"label": n, "color": "FFFFFF", "active": True, "coefficient": 1.0,
                 "family": "linear", "inverted": False,
                 "window": {"start": 0.0, "end": 1000.0, "min": 0.0, "max": 65535.0}}
                for n in ("Phase3D", "GFP")], "rdefs": {"model": "color"}},
            "iohub": {"dataset": "test"},
        })  # fmt: skip
        z = zarr.create_array(
            zarr.storage.LocalStore(str(root)), name=f"A/1/{fov}/0", shape=data.shape,
            chunks=(1, 1, 1, Y, X), dtype="uint16", zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )  # fmt: skip
        z[...] = data
        out[f"A/1/{fov}"] = data
    assert os.path.isdir(root)
    return out
