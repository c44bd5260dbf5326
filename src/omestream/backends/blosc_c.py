"""Blosc 1 chunks encoded by C-Blosc2, when the ``blosc2`` package provides it.

Zarr's ``blosc`` codec is the Blosc 1 chunk format, which every Blosc reader
decodes (numcodecs, tensorstore, imagecodecs). C-Blosc2 3.4 and later can write
that format from a compression context, and its shuffle and codecs run faster on
current CPUs than the c-blosc 1 builds in numcodecs' and imagecodecs' wheels:
chunks of the same size (zstd; lz4 within 0.5%), ~1.15x end to end on a
blosc-zstd stream here (see docs/performance.md).

python-blosc2 does not expose that switch, but its wheels ship C-Blosc2 as a
shared library with its headers (for plugins to link against). This module calls
the functions it needs through :mod:`ctypes`, one context per thread and chunk
size, and checks once per setting that numcodecs' c-blosc 1 decodes what it
wrote; any mismatch (another C-Blosc2 version, a different struct layout) means
the caller falls back to c-blosc 1 instead.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Blosc1Encoder", "blosc1_encoder"]

log = logging.getLogger(__name__)

_CODECS = {"blosclz": 0, "lz4": 1, "lz4hc": 2, "zlib": 4, "zstd": 5}
_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_FORWARD_COMPAT_SPLIT = 4  # split blocks as c-blosc 1 does
_MAX_FILTERS = 6
_MAX_OVERHEAD = 32  # BLOSC2_MAX_OVERHEAD: a destination this much larger always fits
_MAX_BUFFERSIZE = 2**31 - 1 - _MAX_OVERHEAD  # sizes are int32 in the Blosc 1 format
_SUPPORTED = ((3, 4), (4, 0))  # C-Blosc2 versions with the Blosc 1 writer, this layout
_CONTEXTS_PER_THREAD = 8


class _CParams(ctypes.Structure):
    """``blosc2_cparams`` as C-Blosc2 3.x declares it."""

    _fields_ = [
        ("compcode", ctypes.c_uint8),
        ("compcode_meta", ctypes.c_uint8),
        ("clevel", ctypes.c_uint8),
        ("use_dict", ctypes.c_int),
        ("typesize", ctypes.c_int32),
        ("nthreads", ctypes.c_int16),
        ("blocksize", ctypes.c_int32),
        ("splitmode", ctypes.c_int32),
        ("schunk", ctypes.c_void_p),
        ("filters", ctypes.c_uint8 * _MAX_FILTERS),
        ("filters_meta", ctypes.c_uint8 * _MAX_FILTERS),
        ("prefilter", ctypes.c_void_p),
        ("preparams", ctypes.c_void_p),
        ("tuner_params", ctypes.c_void_p),
        ("tuner_id", ctypes.c_int),
        ("instr_codec", ctypes.c_bool),
        ("codec_params", ctypes.c_void_p),
        ("filter_params", ctypes.c_void_p * _MAX_FILTERS),
    ]


def _library_file() -> Path | None:
    # find_spec locates the package without importing it (its import takes ~0.5 s)
    spec = importlib.util.find_spec("blosc2")
    if spec is None or spec.origin is None:
        return None
    name = {"darwin": "libblosc2.dylib", "win32": "libblosc2.dll"}.get(
        sys.platform, "libblosc2.so"
    )
    path = Path(spec.origin).parent / "lib" / name
    return path if path.is_file() else None


def _version(text: bytes) -> tuple[int, int]:
    major, minor = text.decode().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


@cache
def _library() -> Any:
    """The loaded C-Blosc2 with its signatures declared, or None."""
    path = _library_file()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        lib.blosc2_get_version_string.restype = ctypes.c_char_p
        version = _version(lib.blosc2_get_version_string())
        if not _SUPPORTED[0] <= version < _SUPPORTED[1]:
            log.debug("C-Blosc2 %s in %s: no Blosc 1 writer with this layout", version, path)
            return None
        lib.blosc2_init()  # idempotent
        lib.blosc2_create_cctx.restype = ctypes.c_void_p
        lib.blosc2_create_cctx.argtypes = [_CParams]
        lib.blosc2_ctx_set_blosc1_format.argtypes = [ctypes.c_void_p, ctypes.c_bool]
        lib.blosc2_free_ctx.argtypes = [ctypes.c_void_p]
        lib.blosc2_compress_ctx.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int32,
        ]
    except (OSError, AttributeError, ValueError) as e:
        log.debug("C-Blosc2 in %s not usable: %s", path, e)
        return None
    return lib


class _Context:
    """One thread's compression context; freed with the thread's encoder state."""

    def __init__(self, lib: Any, params: _CParams) -> None:
        self._lib = lib
        self.handle = lib.blosc2_create_cctx(params)
        if not self.handle or lib.blosc2_ctx_set_blosc1_format(self.handle, True) != 0:
            self.close()
            raise RuntimeError("C-Blosc2 refused a Blosc 1 compression context")

    def close(self) -> None:
        if self.handle:
            self._lib.blosc2_free_ctx(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


class Blosc1Encoder:
    """Encodes chunks as Blosc 1 with C-Blosc2; the ``encode`` / ``encode_into``
    protocol of :mod:`omestream.backends.codecs`. Safe to call from many threads
    at once: each gets its own context, and the calls release the GIL."""

    max_overhead = _MAX_OVERHEAD

    def __init__(
        self, lib: Any, cname: str, level: int, shuffle: str, typesize: int, blocksize: int
    ):
        params = _CParams()
        params.compcode = _CODECS[cname]
        params.clevel = level
        params.typesize = typesize
        params.nthreads = 1  # the engine runs one encode per core itself
        params.blocksize = blocksize
        params.splitmode = _FORWARD_COMPAT_SPLIT
        params.filters[_MAX_FILTERS - 1] = _SHUFFLES[shuffle]  # the slot c-blosc 1 uses
        self._lib = lib
        self._params = params
        self._local = threading.local()

    def _context(self, nbytes: int) -> int:
        # A context keeps the block size its last chunk was clamped to (a chunk
        # smaller than a block is one block) and uses it for the next chunks, so
        # each chunk size gets its own context: the same bytes whatever came before.
        contexts: dict[int, _Context] | None = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = self._local.contexts = {}
        ctx = contexts.get(nbytes)
        if ctx is None:
            if len(contexts) >= _CONTEXTS_PER_THREAD:  # an array has one or two sizes
                contexts.pop(next(iter(contexts))).close()
            ctx = contexts[nbytes] = _Context(self._lib, self._params)
        return int(ctx.handle)

    def encode_into(self, data: np.ndarray, out: memoryview) -> int:
        """Encode into ``out`` (at least ``data.nbytes + max_overhead`` long); the size."""
        if data.nbytes > _MAX_BUFFERSIZE:
            raise ValueError(
                f"a Blosc chunk holds at most {_MAX_BUFFERSIZE} bytes, not {data.nbytes}: "
                "choose smaller chunks"
            )
        src = np.ascontiguousarray(data)
        dest = np.frombuffer(out, np.uint8)
        if dest.size < src.nbytes + _MAX_OVERHEAD or dest.flags.writeable is False:
            raise ValueError(
                "encode_into needs a writable buffer max_overhead longer than the data"
            )
        n = self._lib.blosc2_compress_ctx(
            self._context(src.nbytes), src.ctypes.data, src.nbytes, dest.ctypes.data, dest.size
        )
        if n <= 0:  # cannot happen with that much room; an error code otherwise
            raise RuntimeError(f"C-Blosc2 failed to encode a chunk (code {n})")
        return int(n)

    def encode(self, data: np.ndarray) -> bytes:
        out = bytearray(data.nbytes + _MAX_OVERHEAD)
        return bytes(memoryview(out)[: self.encode_into(data, memoryview(out))])


@cache
def blosc1_encoder(
    cname: str, level: int, shuffle: str, typesize: int, blocksize: int
) -> Blosc1Encoder | None:
    """A C-Blosc2 encoder of Blosc 1 chunks, or None where it is not installed,
    not a supported version, or (checked once per setting) what it writes does
    not decode with c-blosc 1 to the same values."""
    lib = _library()
    if lib is None or cname not in _CODECS:
        return None
    try:
        encoder = Blosc1Encoder(lib, cname, level, shuffle, typesize, blocksize)
        if _decodes_alike(encoder):
            return encoder
        log.debug("C-Blosc2's Blosc 1 chunks do not decode alike with c-blosc 1; not used")
    except (RuntimeError, ValueError) as e:
        log.debug("C-Blosc2's Blosc 1 writer not usable: %s", e)
    return None


def _decodes_alike(encoder: Blosc1Encoder) -> bool:
    from numcodecs import Blosc

    # smooth and noisy halves: both the compressed and the stored (memcpy) paths
    rng = np.random.default_rng(0)
    n = 1 << 16
    smooth = (np.arange(n, dtype=np.uint64) // 7).astype(np.uint8)
    raw = np.concatenate([smooth, rng.integers(0, 256, n, dtype=np.uint8)])
    for data in (raw, raw[n:]):
        decoded = Blosc().decode(encoder.encode(data))
        if bytes(decoded) != data.tobytes():
            return False
    return True
