"""NGFF labels: `labels` groups and `image-label` images, NGFF 0.4 and 0.5, written by
ome-zarr-py and by hand; validated, and given the image's levels by build_pyramid."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import omestream.cli.convert
import omestream.cli.info
import omestream.cli.pyramid
import omestream.cli.validate  # noqa: F401  (the commands register on import)
from omestream import (
    AcquisitionSettings,
    Dimension,
    OmeStreamError,
    PositionDimension,
    SettingsError,
    StoreFormatError,
    build_pyramid,
    create_stream,
)
from omestream.cli.app import app
from omestream.convert import ConvertOptions, convert
from omestream.metadata.parse import ParsedImage, ParsedLabels, parse_group
from omestream.store import Image
from omestream.summary import describe
from omestream.validate import validate_store
from tests.checks import validate_ome_zarr
from tests.cli_data import write_ome_zarr_py_plate

runner = CliRunner()
IMAGE_YX = (45, 38)  # odd sizes: the last block of every level is partial
COLORS = [{"label-value": v, "rgba": [40 * v, 255 - 40 * v, 0, 255]} for v in range(1, 5)]
PROPERTIES = [{"label-value": v, "class": f"cell {v}"} for v in range(1, 5)]


# -- writing stores --------------------------------------------------------------------


def _labels_data(shape: tuple[int, ...] = IMAGE_YX, seed: int = 3) -> np.ndarray:
    """Blobs of labels 1..4 on background 0, with single-pixel noise (ties in blocks)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 5, (-(-shape[0] // 6), -(-shape[1] // 6)))
    data = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[: shape[0], : shape[1]]
    noise = rng.random(shape) < 0.15
    data[noise] = rng.integers(0, 5, int(noise.sum()))
    return data.astype(np.uint8)


def _add_labels_version(root: Path) -> None:
    """ome-zarr-py leaves ome.version out of a 0.5 labels group; a valid dataset has it."""
    doc_path = root / "labels" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    doc["attributes"]["ome"].setdefault("version", "0.5")
    doc_path.write_text(json.dumps(doc))


def _ome_zarr_py(root: Path, version: str) -> np.ndarray:
    """An image (c, y, x; 5 levels) with one label image 'cells' (y, x) by ome-zarr-py."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_labels

    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(root), mode="w", zarr_format=2 if version == "0.4" else 3)
    labels = _labels_data()
    image = np.stack([labels.astype(np.uint16) * 100, np.full(IMAGE_YX, 7, np.uint16)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(image, group, axes="cyx", fmt=fmt)
        write_labels(
            labels, group, name="cells", axes="yx", fmt=fmt,
            label_metadata={"colors": COLORS, "properties": PROPERTIES},
        )  # fmt: skip
    if version == "0.5":
        _add_labels_version(root)
    return labels


def _ours(root: Path, version: str, axes: str = "cyx") -> None:
    """A one-level image written by omestream (level path '0')."""
    sizes = {"c": 2, "z": 4, "y": IMAGE_YX[0], "x": IMAGE_YX[1]}
    dims = [
        Dimension(name="c", count=2, type="channel")
        if a == "c"
        else Dimension(name=a, count=sizes[a], type="space", scale=0.5, unit="micrometer")
        for a in axes
    ]
    settings = AcquisitionSettings(
        root_path=str(root),
        dimensions=dims,
        dtype="uint16",
        format={"name": "ome-zarr", "version": version},
    )
    with create_stream(settings) as stream:
        for k in range(int(np.prod([sizes[a] for a in axes[:-2]]))):
            stream.append(np.full(IMAGE_YX, k, np.uint16))


def _attrs(version: str, content: dict[str, Any]) -> dict[str, Any]:
    if version == "0.5":
        return {"ome": {"version": "0.5", **content}}
    out = copy.deepcopy(content)
    for m in out.get("multiscales", []):
        m["version"] = "0.4"
    return out


def _hand_labels(
    root: Path,
    version: str,
    data: np.ndarray,
    name: str = "nuclei",
    level0: str = "L0",
    listed: Any = None,
) -> None:
    """A labels group and one single-level label image (y, x), with plain zarr calls."""
    zf: Literal[2, 3] = 2 if version == "0.4" else 3
    labels = zarr.open_group(str(root / "labels"), mode="a", zarr_format=zf)
    labels.attrs.put(_attrs(version, {"labels": [name] if listed is None else listed}))
    label = zarr.open_group(str(root / "labels" / name), mode="w", zarr_format=zf)
    multiscale = {
        "name": name,
        "axes": [
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": [
            {"path": level0, "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.5]}]}
        ],
    }
    il: dict[str, Any] = {"colors": COLORS[:2], "source": {"image": "../../"}}
    if version == "0.4":
        il["version"] = "0.4"
    label.attrs.put(_attrs(version, {"multiscales": [multiscale], "image-label": il}))
    kwargs: dict[str, Any] = (
        {"dimension_names": ["y", "x"]}
        if zf == 3
        else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    )
    arr = zarr.create_array(
        str(root / "labels" / name), name=level0, shape=data.shape, chunks=(16, 16),
        dtype=data.dtype, zarr_format=zf, fill_value=0, **kwargs,
    )  # fmt: skip
    arr[...] = data


def _ms(path: Path) -> dict[str, Any]:
    attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)
    return dict(attrs.get("ome", attrs)["multiscales"][0])


def _snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


# -- an independent mode reference -------------------------------------------------------


def _ref_mode(a: np.ndarray, factors: tuple[int, int]) -> np.ndarray:
    """Most frequent value of each block (edge blocks: only the pixels there are);
    ties go to the smallest value."""
    fy, fx = factors
    out = np.empty((-(-a.shape[0] // fy), -(-a.shape[1] // fx)), dtype=a.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            values, counts = np.unique(
                a[i * fy : (i + 1) * fy, j * fx : (j + 1) * fx], return_counts=True
            )
            out[i, j] = values[np.argmax(counts)]
    return out


def _check_label_levels(label: Path, level0: np.ndarray, paths: list[str]) -> None:
    """Each level read with plain zarr: the mode of the level above, values from level 0."""
    ms = _ms(label)
    assert [d["path"] for d in ms["datasets"]] == paths
    assert ms.get("type") == "mode"
    got = [np.asarray(zarr.open_array(str(label / p), mode="r")[...]) for p in paths]
    np.testing.assert_array_equal(got[0], level0)  # level 0 is only read
    allowed = set(np.unique(level0).tolist())
    for k in range(1, len(paths)):
        np.testing.assert_array_equal(got[k], _ref_mode(got[k - 1], (2, 2)), err_msg=paths[k])
        assert got[k].dtype == level0.dtype
        assert set(np.unique(got[k]).tolist()) <= allowed, f"{paths[k]} invents label values"


def _cli_validate(path: Path, *extra: str) -> Any:
    return runner.invoke(app, ["validate", str(path), *extra])


# -- parsing ----------------------------------------------------------------------------


def test_parse_labels_group_and_image_label(ngff_version: str) -> None:
    version = ngff_version
    parsed = parse_group(_attrs(version, {"labels": ["cells", "sub/nuclei"]}), "x.zarr/labels")
    assert isinstance(parsed, ParsedLabels)
    assert parsed.labels == ("cells", "sub/nuclei") and parsed.version == version
    multiscale = {
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}],
    }  # fmt: skip
    il = {"colors": COLORS, "properties": PROPERTIES, "source": {"image": "../../"}}
    image = parse_group(_attrs(version, {"multiscales": [multiscale], "image-label": il}))
    assert isinstance(image, ParsedImage) and image.is_label
    assert image.image_label is not None
    assert [c.value for c in image.image_label.colors] == [1, 2, 3, 4]
    assert image.image_label.colors[0].rgba == (40, 215, 0, 255)
    assert image.image_label.property_values == (1, 2, 3, 4)
    assert image.image_label.source_image == "../../"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"omero": {"channels": []}}, "'omero' needs 'multiscales'"),
        ({"image-label": {"colors": []}}, "'image-label' needs 'multiscales'"),
        ({"foo": 1}, "expected one of 'multiscales', 'plate', 'well', 'labels'"),
    ],
)
def test_groups_that_are_no_node_say_what_was_found_and_expected(
    content: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreFormatError, match=message) as info:
        parse_group({"ome": {"version": "0.5", **content}}, "x.zarr/g")
    if "omero" not in content:
        assert "omero" not in str(info.value)  # not blamed on a key that is not there


# -- ome-zarr-py stores --------------------------------------------------------------------


def test_ome_zarr_py_image_with_labels_validates(tmp_path: Path, ngff_version: str) -> None:
    root = tmp_path / "img.ome.zarr"
    _ome_zarr_py(root, ngff_version)
    validate_ome_zarr(root)  # the reference tools accept it: so must we
    result = _cli_validate(root)
    assert result.exit_code == 0, result.output
    assert "structure  consistent" in result.output
    assert "ome-zarr-models  passed" in result.output and "yaozarrs  passed" in result.output


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_build_pyramid_rebuilds_labels_by_mode(tmp_path: Path, ngff_version: str) -> None:
    root = tmp_path / "img.ome.zarr"
    level0 = _ome_zarr_py(root, ngff_version)
    with warnings.catch_warnings():  # zarr warns that v3 does not specify it yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(root))  # other tools write it; it must not go stale
    assert len(_ms(root / "labels" / "cells")["datasets"]) == 5

    results = build_pyramid(root, levels=2)  # the image's default method is mean

    assert [(r.image, r.method) for r in results] == [("", "mean"), ("labels/cells", "mode")]
    assert results[1].shapes == (IMAGE_YX, (23, 19))
    assert len(_ms(root)["datasets"]) == 2
    _check_label_levels(root / "labels" / "cells", level0, ["s0", "s1"])
    on_disk = sorted(p.name for p in (root / "labels" / "cells").iterdir() if p.is_dir())
    assert on_disk == ["s0", "s1"]  # the old levels 2..4 are gone
    consolidated = zarr.open_group(str(root), mode="r", use_consolidated=True)
    cattrs: dict[str, Any] = dict(consolidated["labels/cells"].attrs)
    assert len(cattrs.get("ome", cattrs)["multiscales"][0]["datasets"]) == 2
    validate_ome_zarr(root)  # ome-zarr-models checks label and image level counts
    result = _cli_validate(root)
    assert result.exit_code == 0, result.output


def test_pyramid_command_lists_labels_with_their_method(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    _ome_zarr_py(root, "0.5")
    result = runner.invoke(app, ["pyramid", str(root), "--levels", "3", "--method", "gaussian"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert ".: 3 levels (gaussian)" in out and "labels/cells: 3 levels (mode)" in out


def test_label_levels_that_differ_from_the_image_are_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "img.ome.zarr"
    _ome_zarr_py(root, "0.5")
    doc_path = root / "labels" / "cells" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    doc["attributes"]["ome"]["multiscales"][0]["datasets"].pop()  # 4 levels beside the image's 5
    doc_path.write_text(json.dumps(doc))
    shutil.rmtree(root / "labels" / "cells" / "s4")
    report = validate_store(root, external=False)
    assert not report.ok
    assert [(p.where, p.severity) for p in report.problems] == [("labels/cells", "error")]
    assert "label image has 4 resolution level(s) but the image it labels (.) has 5" in (
        report.problems[0].message
    )
    result = _cli_validate(root)
    assert result.exit_code == 1
    assert "ome-zarr-models  failed" in result.output  # the reference says so too
    build_pyramid(root, levels=3)  # and the pyramid build mends it
    assert _cli_validate(root).exit_code == 0


# -- stores made by hand -------------------------------------------------------------------


def test_hand_made_labels_get_the_image_levels(tmp_path: Path, ngff_version: str) -> None:
    """omestream's image (level '0') and a label by hand named like 'L0': each keeps its
    own level naming."""
    root = tmp_path / "ours.ome.zarr"
    _ours(root, ngff_version)
    data = _labels_data(seed=8).astype(np.uint16)
    _hand_labels(root, ngff_version, data)
    assert _cli_validate(root, "--structure-only").exit_code == 0
    validate_ome_zarr(root)

    results = build_pyramid(root, levels=3, method="nearest")

    assert [r.paths for r in results] == [("0", "1", "2"), ("L0", "L1", "L2")]
    assert [r.method for r in results] == ["nearest", "mode"]
    _check_label_levels(root / "labels" / "nuclei", data, ["L0", "L1", "L2"])
    scales = [
        d["coordinateTransformations"][0]["scale"]
        for d in _ms(root / "labels" / "nuclei")["datasets"]
    ]
    assert scales == [[0.5, 0.5], [1.0, 1.0], [2.0, 2.0]]
    validate_ome_zarr(root)
    result = _cli_validate(root)
    assert result.exit_code == 0, result.output


def test_a_label_image_built_directly_is_never_averaged(tmp_path: Path) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, "0.5")
    data = _labels_data(seed=5)
    _hand_labels(root, "0.5", data)
    [result] = build_pyramid(root / "labels" / "nuclei", levels=2, method="mean")
    assert result.method == "mode"
    _check_label_levels(root / "labels" / "nuclei", data, ["L0", "L1"])


@pytest.mark.parametrize(
    ("axes", "label_shape", "factors", "error", "message"),
    [
        ("cyx", (40, 38), None, StoreFormatError, "label image has 40 pixels along axis 'y'"),
        ("zyx", IMAGE_YX, {"z": 2, "y": 2, "x": 2}, SettingsError, "cannot get the levels"),
    ],
    ids=["shape-differs", "axis-missing"],
)
def test_a_label_that_cannot_follow_is_refused_before_any_write(
    tmp_path: Path,
    axes: str,
    label_shape: tuple[int, int],
    factors: dict[str, int] | None,
    error: type[Exception],
    message: str,
) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, "0.5", axes)
    _hand_labels(root, "0.5", _labels_data(label_shape))
    before = _snapshot(root)
    with pytest.raises(error, match=message) as info:
        build_pyramid(root, levels=2, factors=factors)
    assert "labels/nuclei" in str(info.value)
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    ("listed", "where", "message"),
    [
        ("nuclei", "labels", "attribute 'ome.labels' must be a list, found 'nuclei'"),
        ([3], "labels", "'ome.labels[0]' must be a non-empty string, found 3"),
        ([""], "labels", "'ome.labels[0]' must be a non-empty string"),
        (["../nuclei"], "labels", "must be a relative path inside the labels group"),
        (["nuclei", "nuclei"], "labels", "repeats the label image 'nuclei'"),
        (["cells"], "labels/cells", "label image listed in labels[0] is not on disk"),
    ],
    ids=["not-a-list", "not-a-string", "empty", "outside", "repeated", "missing"],
)
def test_a_malformed_labels_list_is_a_clear_problem(
    tmp_path: Path, listed: Any, where: str, message: str
) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, "0.5")
    _hand_labels(root, "0.5", _labels_data(), listed=listed)
    report = validate_store(root, external=False)
    assert any(p.where == where and message in p.message for p in report.errors), report.to_dict()
    result = _cli_validate(root, "--structure-only", "--json")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # an answer, not a crash
    doc = json.loads(result.output)
    assert any(message in p["message"] for p in doc["problems"])
    before = _snapshot(root)
    with pytest.raises(OmeStreamError, match="labels"):
        build_pyramid(root, levels=2)
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    ("image_label", "message"),
    [
        ({"colors": [{"label-value": 1, "rgba": [300, 0, 0, 255]}]}, "image-label.colors[0].rgba' must be 4 integers from 0 to 255"),
        ({"colors": [{"label-value": 1, "rgba": [0, 0, 255]}]}, "image-label.colors[0].rgba'"),
        ({"colors": [{"label-value": "1"}]}, "image-label.colors[0].label-value' must be an integer"),
        ({"colors": [{"label-value": 1}, {"label-value": 1}]}, "image-label.colors[1].label-value' repeats 1"),
        ({"colors": {"label-value": 1}}, "image-label.colors' must be a list"),
        ({"properties": [{"class": "cell"}]}, "image-label.properties[0].label-value' must be an integer"),
        ({"source": {"image": 5}}, "image-label.source.image' must be a non-empty string"),
        ("red", "image-label' must be a JSON object"),
    ],
)  # fmt: skip
def test_image_label_content_is_checked(
    tmp_path: Path, ngff_version: str, image_label: Any, message: str
) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, ngff_version)
    _hand_labels(root, ngff_version, _labels_data())
    doc_path = root / "labels" / "nuclei" / ("zarr.json" if ngff_version == "0.5" else ".zattrs")
    doc = json.loads(doc_path.read_text())
    (doc["attributes"]["ome"] if ngff_version == "0.5" else doc)["image-label"] = image_label
    doc_path.write_text(json.dumps(doc))
    if ngff_version == "0.5":
        message = message.replace("image-label", "ome.image-label", 1)
    report = validate_store(root, external=False)
    found = [(p.where, p.message) for p in report.errors]
    assert any(w == "labels/nuclei" and message in m for w, m in found), found


def test_label_pixels_must_be_integers_and_listing_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, "0.5")
    _hand_labels(root, "0.5", _labels_data().astype(np.float32))
    _hand_labels(root, "0.5", _labels_data(), name="unlisted", listed=["nuclei"])
    report = validate_store(root, external=False)
    errors = [(p.where, p.message) for p in report.errors]
    assert errors == [
        (
            "labels/nuclei/L0",
            "label pixels must be integers (uint8, int8, uint16, int16, uint32, int32, "
            "uint64, int64), found float32",
        )
    ]
    assert [(p.where, "not listed" in p.message) for p in report.warnings] == [
        ("labels/unlisted", True)
    ]


def test_labels_outside_an_image_are_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "ours.ome.zarr"
    _ours(root, "0.5")
    _hand_labels(root, "0.5", _labels_data())
    shutil.move(root / "labels", root / "segmentation")
    report = validate_store(root, external=False)
    assert [p.where for p in report.errors] == ["segmentation"]
    assert "belongs to a group named 'labels' inside an image group" in report.errors[0].message


_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.text(max_size=3),
    st.lists(st.one_of(st.integers(-1, 300), st.text(max_size=2)), max_size=5),
    st.dictionaries(st.sampled_from(["label-value", "rgba", "image", "x"]), st.integers(-1, 300), max_size=2),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from(["0.4", "0.5"]),
    key=st.sampled_from(["labels", "colors", "properties", "source", "rgba", "label-value"]),
    value=_JUNK,
)
def test_malformed_label_documents_only_raise_store_format_error(
    version: str, key: str, value: Any
) -> None:
    multiscale = {
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}],
    }  # fmt: skip
    il: dict[str, Any] = {"colors": copy.deepcopy(COLORS), "properties": copy.deepcopy(PROPERTIES)}
    if key in ("colors", "properties", "source"):
        il[key] = value
    elif key != "labels":
        il["colors"][1][key] = value
    docs = [
        _attrs(version, {"labels": value if key == "labels" else ["cells"]}),
        _attrs(version, {"multiscales": [multiscale], "image-label": il}),
    ]
    for doc in docs:
        with contextlib.suppress(StoreFormatError):  # any other exception type fails the test
            parse_group(doc, "fuzz.zarr")


# -- converted with their images ---------------------------------------------------------


def _label_image(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)
    content = attrs.get("ome", attrs)
    level0 = content["multiscales"][0]["datasets"][0]["path"]
    return content, np.asarray(zarr.open_array(str(path / level0), mode="r")[...])


def _levels(path: Path) -> list[np.ndarray]:
    return [
        np.asarray(zarr.open_array(str(path / d["path"]), mode="r")[...])
        for d in _ms(path)["datasets"]
    ]


@pytest.mark.parametrize("out_version", ["0.4", "0.5"])
def test_convert_carries_labels_with_their_levels(
    tmp_path: Path, ngff_version: str, out_version: str
) -> None:
    src = tmp_path / "src.ome.zarr"
    level0 = _ome_zarr_py(src, ngff_version)
    out = tmp_path / "out.ome.zarr"

    convert(src, out, ConvertOptions(version=out_version))

    validate_ome_zarr(out)  # ome-zarr-models checks the label and image level counts
    assert _cli_validate(out).exit_code == 0
    label = out / "labels" / "cells"
    # every level of the image and of its label, pixel for pixel as the source has them
    for a, b in ((out, src), (label, src / "labels" / "cells")):
        got, want = _levels(a), _levels(b)
        assert len(got) == len(want) == 5
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_array_equal(g, w, err_msg=f"{a.name} level {k}")
        steps = [d["coordinateTransformations"][0]["scale"] for d in _ms(a)["datasets"]]
        assert steps == [d["coordinateTransformations"][0]["scale"] for d in _ms(b)["datasets"]]
    content, got0 = _label_image(label)
    np.testing.assert_array_equal(got0, level0)  # plain zarr reads the source's pixels
    assert content["image-label"]["colors"] == COLORS
    assert content["image-label"]["properties"] == PROPERTIES
    assert ("version" in content["image-label"]) == (out_version == "0.4")
    is_v3 = (label / "zarr.json").exists()
    assert is_v3 == (out_version == "0.5") and (label / ".zattrs").exists() != is_v3
    assert describe(str(out)).images[0].labels == ("cells",)
    shown = runner.invoke(app, ["info", str(out)])
    assert shown.exit_code == 0 and "labels: cells" in shown.output


def test_labels_get_levels_built_with_the_image_when_others_are_asked(tmp_path: Path) -> None:
    src = tmp_path / "src.ome.zarr"
    level0 = _ome_zarr_py(src, "0.4")
    out = tmp_path / "out.ome.zarr"

    result = runner.invoke(app, ["convert", str(src), str(out), "--pyramid-levels", "3"])

    assert result.exit_code == 0, result.output
    # what runs once the frames are written is said, not left as a silent wait
    assert "copying 1 label image, building the levels of images and labels" in result.output
    validate_ome_zarr(out)
    assert len(_ms(out)["datasets"]) == 3 and _ms(out)["type"] == "mean"
    _check_label_levels(out / "labels" / "cells", level0, ["s0", "s1", "s2"])


def test_labels_follow_their_position_into_renamed_series(tmp_path: Path) -> None:
    """NGFF 0.4 numbers the series ('0', '1') that 0.5 names by position: the labels of
    position 'b' land in series '1', and position 'a' gets none."""
    src = tmp_path / "src.ome.zarr"
    dims = [
        PositionDimension(positions=["a", "b"]),
        Dimension(name="y", count=IMAGE_YX[0], type="space"),
        Dimension(name="x", count=IMAGE_YX[1], type="space"),
    ]
    with create_stream(
        AcquisitionSettings(root_path=str(src), dimensions=dims, dtype="uint16")
    ) as stream:
        for k in range(2):
            stream.append(np.full(IMAGE_YX, k + 1, np.uint16))
    data = _labels_data(seed=5).astype(np.uint32)
    _hand_labels(src / "b", "0.5", data)
    out = tmp_path / "out.ome.zarr"

    convert(src, out, ConvertOptions(version="0.4", pyramid_levels=2))

    validate_ome_zarr(out)
    assert not (out / "0" / "labels").exists()
    content, got = _label_image(out / "1" / "labels" / "nuclei")
    np.testing.assert_array_equal(got, data)
    assert got.dtype == np.uint32
    assert content["image-label"]["source"] == {"image": "../../"}
    _check_label_levels(out / "1" / "labels" / "nuclei", data, ["L0", "L1"])
    assert [d["path"] for d in _ms(out / "1")["datasets"]] == ["0", "1"]
    assert zarr.open_array(str(out / "1" / "1"), mode="r")[0, 0] == 2


def test_labels_an_output_cannot_hold_are_named_in_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "src.ome.zarr"
    _ome_zarr_py(src, "0.5")
    with pytest.warns(UserWarning, match=r"1 label image\(s\) left out .*OME-TIFF has no label"):
        convert(src, tmp_path / "out.ome.tiff")
    assert (tmp_path / "out.ome.tiff").stat().st_size > 0


def test_a_label_that_cannot_be_copied_is_refused_before_any_write(tmp_path: Path) -> None:
    src = tmp_path / "src.ome.zarr"
    _ours(src, "0.5")
    _hand_labels(src, "0.5", _labels_data().astype(np.float32))  # labels must be integers
    before = _snapshot(src)
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(StoreFormatError, match=r"labels/nuclei/L0: label pixels must be integers"):
        convert(src, out)
    assert not out.exists()
    assert _snapshot(src) == before


def test_plate_field_labels_convert_with_their_field(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_labels

    src, _ = write_ome_zarr_py_plate(tmp_path / "plate.zarr")
    cells = _labels_data((16, 16), seed=11)
    field = zarr.open_group(f"{src}/B/2/0", mode="a", zarr_format=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_labels(cells, field, name="cells", axes="yx", fmt=FormatV04(), scale_factors=())
    out = tmp_path / "plate5.ome.zarr"

    convert(src, out, ConvertOptions(version="0.5"))

    validate_ome_zarr(out)
    assert not (out / "A" / "1" / "0" / "labels").exists()
    _, got = _label_image(out / "B" / "2" / "0" / "labels" / "cells")
    np.testing.assert_array_equal(got, cells)
    assert _cli_validate(out).exit_code == 0


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
@pytest.mark.filterwarnings("ignore:.*do not name a downsampling method:UserWarning")
def test_labels_grow_with_their_image_along_time(tmp_path: Path, ngff_version: str) -> None:
    """Time points appended to an image extend its label images that have a time axis
    of the same extent (new time points hold background, every level); labels without
    that axis, or of another extent, are left as they were."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_labels

    from omestream import open_store

    root = tmp_path / "t.ome.zarr"
    fmt = FormatV04() if ngff_version == "0.4" else FormatV05()
    group = zarr.open_group(str(root), mode="w", zarr_format=2 if ngff_version == "0.4" else 3)
    cells = np.stack([_labels_data(seed=s) for s in range(3)])  # t, y, x
    image = cells.astype(np.uint16) * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(image, group, axes="tyx", fmt=fmt)
        write_labels(cells, group, name="cells", axes="tyx", fmt=fmt)
        write_labels(cells[:1], group, name="first", axes="tyx", fmt=fmt)
        write_labels(cells[0], group, name="flat", axes="yx", fmt=fmt)
    if ngff_version == "0.5":
        _add_labels_version(root)
    before = {
        name: [
            np.asarray(a) for _, a in sorted(zarr.open_group(str(root / "labels" / name)).arrays())
        ]
        for name in ("cells", "first", "flat")
    }
    more = np.full((2, *IMAGE_YX), 9, np.uint16)
    store = open_store(str(root), "r+")
    assert isinstance(store, Image)
    store.append(more, "t")

    for name, old in before.items():
        now = [
            np.asarray(a) for _, a in sorted(zarr.open_group(str(root / "labels" / name)).arrays())
        ]
        assert len(now) == len(old) == 5
        for lv, (o, n) in enumerate(zip(old, now, strict=True)):
            if name == "cells":
                assert n.shape == (5, *o.shape[1:]), (lv, n.shape)
                np.testing.assert_array_equal(n[:3], o)
                assert not n[3:].any()
            else:
                np.testing.assert_array_equal(n, o)
    image0 = store.refresh().read(0)
    assert image0.shape == (5, *IMAGE_YX) and (image0[3:] == 9).all()
    validate_ome_zarr(root)
    assert validate_store(str(root)).ok
