"""Output formats and the engines that write them, as plain data.

The table here is what settings validation needs to know about each engine
(formats, versions, codecs, limitations) without importing any engine.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

from omestream.settings._base import FrozenModel

__all__ = [
    "COMPRESSIONS",
    "ENGINES",
    "EngineInfo",
    "FormatName",
    "FormatSpec",
    "engine_available",
    "format_from_suffix",
    "resolve_format",
    "strip_suffix",
]

FormatName = Literal["ome-zarr", "ome-tiff"]
NgffVersion = Literal["0.4", "0.5"]

COMPRESSIONS = ("blosc-zstd", "blosc-lz4", "zstd", "gzip", "lzw")
_COMPRESSION_ALIASES = {"zlib": "gzip", "deflate": "gzip", "none": None, "": None}


@dataclass(frozen=True)
class EngineInfo:
    name: str
    format: FormatName
    module: str  # the engine's own import, used for lazy availability checks
    extra: str | None  # the pip extra that installs it
    versions: tuple[str, ...]
    compressions: tuple[str | None, ...]
    reorders_frames: bool = True  # can write frames in any storage order
    description: str = ""


_ZARR_CODECS: tuple[str | None, ...] = ("blosc-zstd", "blosc-lz4", "zstd", "gzip", None)

ENGINES: dict[str, EngineInfo] = {
    e.name: e
    for e in (
        EngineInfo(
            "omestream", "ome-zarr", "numcodecs", None, ("0.5", "0.4"), _ZARR_CODECS,
            description="built-in engine: parallel encoding, direct chunk/shard writes",
        ),
        EngineInfo(
            "zarr-python", "ome-zarr", "zarr", None, ("0.5", "0.4"), _ZARR_CODECS,
            description="zarr-python's own array writes (any zarr store, e.g. s3://)",
        ),
        EngineInfo(
            "tensorstore", "ome-zarr", "tensorstore", "tensorstore", ("0.5", "0.4"),
            _ZARR_CODECS,
            description="Google tensorstore (zarr3 / zarr drivers)",
        ),
        EngineInfo(
            "acquire-zarr", "ome-zarr", "acquire_zarr", "acquire-zarr", ("0.5",),
            ("blosc-zstd", "blosc-lz4", "zstd", None), reorders_frames=False,
            description="acquire-zarr's C streaming writer (frames in storage order only)",
        ),
        EngineInfo(
            "tifffile", "ome-tiff", "tifffile", None, (), ("zstd", "gzip", "lzw", None),
            description="tifffile: BigTIFF pages with OME-XML",
        ),
    )
}  # fmt: skip

# Preference when the backend is "auto" or not given: the first available wins.
_AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "ome-zarr": ("omestream", "tensorstore", "zarr-python", "acquire-zarr"),
    "ome-tiff": ("tifffile",),
}
_FORMAT_ALIASES: dict[str, FormatName] = {
    "ome-zarr": "ome-zarr", "zarr": "ome-zarr", "omezarr": "ome-zarr",
    "ome-tiff": "ome-tiff", "tiff": "ome-tiff", "ome-tif": "ome-tiff", "tif": "ome-tiff",
}  # fmt: skip
_SUFFIXES: tuple[tuple[str, FormatName], ...] = (
    (".ome.zarr", "ome-zarr"),
    (".zarr", "ome-zarr"),
    (".ome.tiff", "ome-tiff"),
    (".ome.tif", "ome-tiff"),
    (".ome.btf", "ome-tiff"),
    (".tiff", "ome-tiff"),
    (".tif", "ome-tiff"),
)


def engine_available(name: str) -> bool:
    """Whether the engine's module can be imported (without importing it)."""
    return importlib.util.find_spec(ENGINES[name].module) is not None


def normalize_compression(value: str | None) -> str | None:
    if value is None:
        return None
    key = str(value).strip().lower()
    if key in _COMPRESSION_ALIASES:
        return _COMPRESSION_ALIASES[key]
    if key not in COMPRESSIONS:
        raise ValueError(
            f"unknown compression {value!r}: expected one of {', '.join(COMPRESSIONS)} or None"
        )
    return key


def format_from_suffix(path: str) -> FormatName | None:
    lower = path.lower().rstrip("/")
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    return None


def strip_suffix(path: str) -> str:
    """``path`` without its format suffix (``run.ome.tiff`` -> ``run``), if it has one."""
    lower = path.lower()
    for suffix, _ in _SUFFIXES:
        if lower.endswith(suffix):
            return path[: -len(suffix)]
    return path


class FormatSpec(FrozenModel):
    """A resolved output format: what to write and which engine writes it."""

    name: FormatName
    backend: str
    version: NgffVersion | None = None  # NGFF version, OME-Zarr only
    # the output's suffix (None: root_path's own, else .ome.zarr / .ome.tiff)
    suffix: str | None = None
    # OME-TIFF: one file for all positions ("always"), one file per position in a
    # folder ("never"), or one file for one position and a folder for several ("auto")
    prefer_single_file: Literal["auto", "always", "never"] = "auto"

    @property
    def zarr_format(self) -> int | None:
        if self.name != "ome-zarr":
            return None
        return 2 if self.version == "0.4" else 3


def resolve_format(value: Any, root_path: str) -> tuple[FormatSpec, str | None]:
    """Resolve ``format`` (str, dict, FormatSpec or None) against the path's suffix.

    Returns the spec and a warning text when the format had to be guessed.
    """
    if isinstance(value, FormatSpec):
        return value, None
    if callable(getattr(value, "model_dump", None)):  # ome-writers' format models
        value = value.model_dump()
    name: str | None = None
    backend: str | None = None
    version: str | None = None
    layout: dict[str, Any] = {}
    if isinstance(value, dict):
        unknown = set(value).difference(_FORMAT_KEYS)
        if unknown:
            raise ValueError(
                f"format keys {sorted(unknown)} not understood: use {', '.join(_FORMAT_KEYS)}"
            )
        name, backend, version = value.get("name"), value.get("backend"), value.get("version")
        layout = _layout_keys(value)
        if isinstance(name, str) and name.lower() == "auto":
            name = None
        for key, item in (("name", name), ("backend", backend)):
            if item is not None and not isinstance(item, str):
                raise ValueError(f"format {key!r} must be a string, got {item!r}")
        if version is not None and not isinstance(version, str | float | int):
            raise ValueError(f"format 'version' must be '0.4' or '0.5', got {version!r}")
    elif isinstance(value, str):
        if value in ENGINES:
            backend = value  # shorthand: each engine writes one format
        elif value.lower() == "auto":
            pass
        else:
            name = value
    elif value is not None:
        raise ValueError(f"format must be a string or a dict, got {type(value).__name__}")

    warning = None
    fmt: FormatName | None = None
    if name is not None:
        fmt = _FORMAT_ALIASES.get(str(name).lower())
        if fmt is None:
            raise ValueError(f"unknown format {name!r}: expected 'ome-zarr' or 'ome-tiff'")
    if backend is not None and backend != "auto":
        if backend not in ENGINES:
            raise ValueError(
                f"unknown backend {backend!r}: expected one of {', '.join(ENGINES)} or 'auto'"
            )
        engine_fmt = ENGINES[backend].format
        if fmt is not None and fmt != engine_fmt:
            raise ValueError(f"backend {backend!r} writes {engine_fmt}, not {fmt}")
        fmt = engine_fmt
    suffix_fmt = format_from_suffix(root_path)
    if fmt is None:
        fmt = suffix_fmt
    elif suffix_fmt is not None and suffix_fmt != fmt:
        raise ValueError(
            f"root_path {root_path!r} has a {suffix_fmt} suffix but format asks for {fmt}"
        )
    if fmt is None:
        fmt = "ome-zarr"
    if backend in (None, "auto"):
        backend = next((b for b in _AUTO_ORDER[fmt] if engine_available(b)), _AUTO_ORDER[fmt][0])
        if name is None and suffix_fmt is None:  # no format asked for ("auto" included)
            warning = (
                # the opening words are the ones ome-writers users filter warnings on
                f"Output format could not be inferred from root_path {root_path!r}. Picking "
                f"the first available format/backend: {fmt!r}/{backend!r} (no format was "
                "given and the path has no known suffix). Set format='ome-zarr' or "
                "'ome-tiff', or use a suffix such as '.ome.zarr' or '.ome.tiff', to choose "
                "explicitly."
            )
    info = ENGINES[backend]
    if fmt == "ome-zarr":
        version = str(version) if version is not None else "0.5"
        if version not in ("0.4", "0.5"):
            raise ValueError(f"NGFF version {version!r} is not supported: use '0.5' or '0.4'")
        if version not in info.versions:
            raise ValueError(
                f"backend {backend!r} cannot write NGFF {version} "
                f"(it writes {', '.join(info.versions)})"
            )
    elif version is not None:
        raise ValueError("'version' applies to OME-Zarr only")
    suffix = layout.get("suffix")
    if suffix and format_from_suffix(suffix) not in (None, fmt):
        raise ValueError(f"format suffix {suffix!r} is not a suffix of {fmt}")
    if fmt != "ome-tiff" and layout.get("prefer_single_file", "auto") != "auto":
        raise ValueError("'prefer_single_file' applies to OME-TIFF only")
    spec = FormatSpec(name=fmt, backend=backend, version=version, **layout)  # type: ignore[arg-type]
    return spec, warning


# ome-writers' format fields; omestream writes complete OME-XML into every file of a
# multi-file OME-TIFF (its "redundant" arrangement), so companion_file is unused.
_FORMAT_KEYS = (
    "name", "backend", "version", "suffix", "prefer_single_file", "multi_file_metadata",
    "companion_file",
)  # fmt: skip


def _layout_keys(value: dict[str, Any]) -> dict[str, Any]:
    """The output-layout keys of a format dict, checked: suffix, prefer_single_file."""
    out: dict[str, Any] = {}
    suffix = value.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str) or (suffix and not suffix.startswith(".")):
            raise ValueError(
                f"format suffix must start with '.', e.g. '.ome.zarr'; got {suffix!r}"
            )
        out["suffix"] = suffix
    single = value.get("prefer_single_file", "auto")
    if isinstance(single, bool):  # ome-writers takes True / False too
        single = "always" if single else "never"
    if single not in ("auto", "always", "never"):
        raise ValueError(f"prefer_single_file must be 'auto', 'always' or 'never', got {single!r}")
    out["prefer_single_file"] = single
    arrangement = value.get("multi_file_metadata", "redundant")
    if arrangement != "redundant":
        raise ValueError(
            f"multi_file_metadata={arrangement!r} is not written: omestream puts the complete "
            "OME-XML into every file of a multi-file OME-TIFF ('redundant'); leave it out"
        )
    companion = value.get("companion_file")
    if companion is not None and not isinstance(companion, str):
        raise ValueError(f"companion_file must be a file name, got {companion!r}")
    return out
