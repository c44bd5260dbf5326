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
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def skip_reason(self, workload: Workload) -> str | None:
        """Why this case cannot run (checked in the parent, no imports)."""
        if self.compressed_only and not workload.compressed:
            return "only for compressed workloads"
        for mod in self.requires:
            try:
                found = find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"module {mod!r} is not importable"
        return None


def _c(name: str, target: str, group: Group, *req: str, **kw: Any) -> CaseInfo:
    return CaseInfo(name, f"benchmarks.cases.{target}", group, tuple(req), **kw)


_OME = "omestream_cases:omestream_case"
CASES: dict[str, CaseInfo] = {
    c.name: c
    for c in (
        _c("raw-buffered", "raw:raw_buffered", "limit",
           description="os.write of the frame bytes to one file + fsync"),
        _c("raw-direct", "raw:raw_direct", "limit",
           description="O_DIRECT writes from page-aligned (mmap) buffers"),
        _c("codec-limit", "codec:codec_limit", "limit", "numcodecs",
           compressed_only=True, options={"cname": "zstd"},
           description="blosc-zstd encode of all chunks on all cores, no I/O"),
        _c("codec-limit-lz4", "codec:codec_limit", "limit", "numcodecs",
           compressed_only=True, options={"cname": "lz4"},
           description="blosc-lz4 encode of all chunks on all cores, no I/O"),
        _c("tensorstore-zarr3", "ts_cases:tensorstore_case", "baseline", "tensorstore",
           options={"zarr_format": 3}),
        _c("tensorstore-zarr2", "ts_cases:tensorstore_case", "baseline", "tensorstore",
           options={"zarr_format": 2}, description="zarr v2 has no sharding"),
        _c("zarr-python", "zarr_cases:zarr_python_case", "baseline", "zarr",
           options={"write_empty_chunks": None}),
        _c("zarr-python-wec", "zarr_cases:zarr_python_case", "baseline", "zarr",
           options={"write_empty_chunks": True},
           description='config={"write_empty_chunks": True}'),
        _c("tifffile", "tiff_cases:tifffile_case", "baseline", "tifffile"),
        _c("acquire-zarr", "acquire_cases:acquire_zarr_case", "baseline", "acquire_zarr"),
        _c("ome-writers", _OME, "baseline", "ome_writers",
           options={"module": "ome_writers", "backend": "tensorstore"}),
        _c("omestream", _OME, "omestream", "omestream", options={"backend": "omestream"}),
        _c("omestream-tensorstore", _OME, "omestream", "omestream",
           options={"backend": "tensorstore"}),
        _c("omestream-zarr-python", _OME, "omestream", "omestream",
           options={"backend": "zarr-python"}),
        _c("omestream-acquire-zarr", _OME, "omestream", "omestream",
           options={"backend": "acquire-zarr"}),
        _c("omestream-tiff", _OME, "omestream", "omestream", options={"format": "ome-tiff"}),
    )
}
