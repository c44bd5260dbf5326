"""Compression settings -> codec objects, one source for every engine.

The same choice gives the zarr-python codec (for array metadata and the
zarr-python engine), the numcodecs codec (for the built-in engine's encoder) and
the tensorstore / tifffile spellings, so every engine writes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from omestream.settings import WriterOptions

__all__ = ["BLOSC_BLOCKSIZE", "SHUFFLE_CODES", "CodecChoice", "codec_choice"]

# blosc's shuffle numbers (numcodecs, the acquire-zarr engine)
SHUFFLE_CODES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}

# Blosc splits a chunk into blocks and compresses each on its own. Its automatic
# choice for clevel 1 is tens of KiB; 1 MiB blocks (a whole chunk, up to 1 MiB)
# encoded camera frames ~1.5x faster with zstd and lz4, and a little smaller.
# Blosc clamps the block to the chunk, so one value serves every chunk size.
BLOSC_BLOCKSIZE = 1 << 20


@dataclass(frozen=True)
class CodecChoice:
    name: str | None  # blosc-zstd | blosc-lz4 | zstd | gzip | lzw | None
    level: int
    shuffle: str  # for blosc

    @property
    def blosc_cname(self) -> str | None:
        return self.name.split("-", 1)[1] if self.name and self.name.startswith("blosc-") else None

    def numcodecs(self, dtype: str) -> Any:
        """The numcodecs codec that encodes one chunk, or None for raw bytes."""
        import numcodecs

        if self.name is None:
            return None
        if cname := self.blosc_cname:
            return numcodecs.Blosc(
                cname=cname,
                clevel=self.level,
                shuffle=SHUFFLE_CODES[self.shuffle],
                blocksize=BLOSC_BLOCKSIZE,
            )
        if self.name == "zstd":
            return numcodecs.Zstd(level=self.level)
        if self.name == "gzip":
            return numcodecs.GZip(level=self.level)
        raise ValueError(f"compression {self.name!r} has no Zarr codec")

    def encoder(self, dtype: str) -> Any:
        """What the built-in engine encodes chunks with: ``.encode(array) -> bytes``.

        Blosc chunks are the Blosc 1 format with the numcodecs codec's settings (any
        Blosc reader decodes them), encoded by the fastest build installed: C-Blosc2
        from the ``blosc2`` package (:mod:`omestream.backends.blosc_c`), then
        imagecodecs' c-blosc (~8-10% faster than numcodecs' build here).
        """
        cname = self.blosc_cname
        if cname is not None:
            from omestream.backends.blosc_c import blosc1_encoder

            fast = blosc1_encoder(
                cname, self.level, self.shuffle, np.dtype(dtype).itemsize, BLOSC_BLOCKSIZE
            )
            if fast is not None:
                return fast
            try:
                import imagecodecs

                if imagecodecs.BLOSC.available:
                    return _ImagecodecsBlosc(cname, self.level, self.shuffle, dtype)
            except (ImportError, AttributeError):
                pass
        return self.numcodecs(dtype)

    def zarr_v3(self, dtype: str) -> list[Any]:
        """``compressors=`` for ``zarr.create_array`` (Zarr v3)."""
        from zarr.codecs import BloscCname, BloscCodec, BloscShuffle, GzipCodec, ZstdCodec

        if self.name is None:
            return []
        if cname := self.blosc_cname:
            return [
                BloscCodec(
                    cname=BloscCname(cname),
                    clevel=self.level,
                    shuffle=BloscShuffle(self.shuffle),
                    typesize=np.dtype(dtype).itemsize,
                    blocksize=BLOSC_BLOCKSIZE,
                )
            ]
        if self.name == "zstd":
            return [ZstdCodec(level=self.level)]
        return [GzipCodec(level=self.level)]

    def zarr_v2(self, dtype: str) -> Any:
        """``compressors=`` for ``zarr.create_array`` (Zarr v2): a numcodecs codec."""
        return self.numcodecs(dtype)


class _ImagecodecsBlosc:
    """A chunk encoder with numcodecs' ``encode`` signature over imagecodecs' Blosc.

    ``encode_into`` writes into a caller's buffer instead: a fresh output buffer per
    chunk costs page faults on every call while many encoded chunks are in flight;
    encoding into reused memory ran 1.1-1.15x faster here (without disk I/O).
    """

    max_overhead = 16  # Blosc never adds more than its header to the input size

    def __init__(self, cname: str, level: int, shuffle: str, dtype: str) -> None:
        self._cname = cname
        self._level = level
        self._shuffle = shuffle
        self._typesize = np.dtype(dtype).itemsize

    def encode(self, data: np.ndarray) -> bytes:
        return bytes(self._blosc(data, None))

    def encode_into(self, data: np.ndarray, out: memoryview) -> int:
        """Encode into ``out`` (at least ``data.nbytes + max_overhead`` long); the size."""
        return len(self._blosc(data, out))

    def _blosc(self, data: np.ndarray, out: memoryview | None) -> Any:
        import imagecodecs

        return imagecodecs.blosc_encode(
            np.ascontiguousarray(data),  # type: ignore[arg-type]  # any buffer works
            level=self._level,
            compressor=self._cname,
            shuffle=self._shuffle,
            typesize=self._typesize,
            blocksize=BLOSC_BLOCKSIZE,
            numthreads=1,  # the engine runs one encode per core itself
            out=out,  # type: ignore[arg-type]  # any writable buffer works
        )


_DEFAULT_LEVEL = {"blosc-zstd": 1, "blosc-lz4": 1, "zstd": 1, "gzip": 1, "lzw": 0}


def codec_choice(compression: str | None, options: WriterOptions | None = None) -> CodecChoice:
    """Resolve level and shuffle; clevel 1 with bitshuffle was fastest for camera data."""
    options = options or WriterOptions()
    level = options.compression_level
    if level is None:
        level = _DEFAULT_LEVEL.get(compression or "", 0)
    if compression and compression.startswith("blosc-"):
        level = min(level, 9)
    if compression == "gzip":
        level = min(level, 9)
    return CodecChoice(compression, level, options.shuffle or "bitshuffle")
