"""Registry of benchmark cases.

Entries name their function as ``"module:function"`` so that the parent
process never imports the libraries under test; only the child does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, Literal

from benchmarks.workloads import Workload

Group = Literal["limit", "baseline", "omestream"]


@dataclass(frozen=True)
class CaseInfo:
    name: str
    target: str  # "benchmarks.cases.module:function"
    group: Group
    requires: tuple[str, ...] = ()
    compressed_only: bool = False
    uncompressed_only: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    workloads: tuple[str, ...] = ()  # only these workloads (all when empty)

    def skip_reason(self, workload: Workload) -> str | None:
        """Why this case cannot run (checked in the parent, no imports)."""
        if self.workloads and workload.name not in self.workloads:
            return f"only for {', '.join(self.workloads)}"
        if self.compressed_only and not workload.compressed:
            return "only for compressed workloads"
        if self.uncompressed_only and workload.compressed:
            return "only for uncompressed workloads"
        for mod in self.requires:
            try:
                found = find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"module {mod!r} is not importable"
        return None


_OME = "omestream_cases:omestream_case"
_TS = "ts_cases:tensorstore_case"
_ZP = "zarr_cases:zarr_python_case"
_CODEC = "codec:codec_limit"
_FILES = "raw:raw_direct_files"
_OW = {"module": "ome_writers", "backend": "tensorstore"}

# name, "module:function", group, required module, options, description
_TABLE: tuple[tuple[str, str, Group, str | None, dict[str, Any], str], ...] = (
    ("raw-buffered", "raw:raw_buffered", "limit", None, {}, "os.write + fsync, one file"),
    ("raw-direct", "raw:raw_direct", "limit", None, {}, "O_DIRECT from page-aligned buffers"),
    ("raw-direct-files4", _FILES, "limit", None, {}, "O_DIRECT, ~8 MiB files, 4 in flight"),
    ("codec-limit", _CODEC, "limit", "numcodecs", {"cname": "zstd"}, "blosc-zstd, all cores"),
    ("codec-limit-blosc2", _CODEC, "limit", "blosc2", {"impl": "blosc2"}, "C-Blosc2, all cores"),
    ("codec-limit-lz4", _CODEC, "limit", "numcodecs", {"cname": "lz4"}, "blosc-lz4, all cores"),
    ("codec-write", "codec:codec_write", "limit", "numcodecs", {}, "encode + O_DIRECT file/frame"),
    ("tensorstore-zarr3", _TS, "baseline", "tensorstore", {"zarr_format": 3}, "futures"),
    ("tensorstore-zarr2", _TS, "baseline", "tensorstore", {"zarr_format": 2}, "no sharding"),
    ("zarr-python", _ZP, "baseline", "zarr", {}, "create_array defaults"),
    ("zarr-python-wec", _ZP, "baseline", "zarr", {"write_empty_chunks": True}, "wec=True"),
    ("tifffile", "tiff_cases:tifffile_case", "baseline", "tifffile", {}, "BigTIFF pages"),
    ("acquire-zarr", "acquire_cases:acquire_zarr_case", "baseline", "acquire_zarr", {}, ""),
    ("ome-writers", _OME, "baseline", "ome_writers", _OW, "its tensorstore backend"),
    ("omestream", _OME, "omestream", "omestream", {"backend": "omestream"}, "native engine"),
    ("omestream-tensorstore", _OME, "omestream", "omestream", {"backend": "tensorstore"}, ""),
    ("omestream-zarr-python", _OME, "omestream", "omestream", {"backend": "zarr-python"}, ""),
    ("omestream-acquire-zarr", _OME, "omestream", "omestream", {"backend": "acquire-zarr"}, ""),
    ("omestream-tiff", _OME, "omestream", "omestream", {"format": "ome-tiff"}, "OME-TIFF"),
    ("omestream-unbounded", _OME, "omestream", "omestream", {"unbounded": True}, "t unbounded"),
)

# The unbounded-axis target compares this case with `omestream` on the same workload,
# so both run minutes closer together than the separate `big-unbounded` workload.
_ONLY_FOR = {"omestream-unbounded": ("big-raw",)}

CASES: dict[str, CaseInfo] = {
    name: CaseInfo(
        name,
        f"benchmarks.cases.{target}",
        group,
        (req,) if req else (),
        compressed_only=target.startswith("codec:"),
        uncompressed_only=target == _FILES,
        options=opts,
        description=desc,
        workloads=_ONLY_FOR.get(name, ()),
    )
    for name, target, group, req, opts, desc in _TABLE
}
