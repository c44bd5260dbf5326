"""How one frame becomes one TIFF page: tifffile arguments and strip encoding.

Strips are encoded here (on omestream's thread pool, one task per page) with
tifffile's own compressor and predictor functions, then handed to
``TiffWriter.write`` as pre-encoded bytes, so the bytes are exactly what tifffile
would produce while encoding of many pages runs in parallel with the writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tifffile import TIFF

__all__ = ["TIFF_COMPRESSION", "PageFormat"]

# omestream compression name -> TIFF Compression tag value
TIFF_COMPRESSION: dict[str | None, int] = {None: 1, "zstd": 50000, "gzip": 8, "lzw": 5}
_STRIP_BYTES = 256 * 1024  # about what tifffile chooses; readers fetch strips of this size
_HORIZONTAL = 2


class PageFormat:
    """Encoding and tags of every page of one acquisition (all levels)."""

    def __init__(
        self,
        dtype: str,
        compression: str | None,
        level_shapes: list[tuple[int, int]],
        compression_level: int | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.tag = TIFF_COMPRESSION[compression]
        self.level_shapes = level_shapes
        self.n_levels = len(level_shapes)
        # Horizontal differencing helps smooth integer images with every codec; it is
        # not defined for floats (TIFF predictor 3 is, but few readers support it).
        self.predictor = _HORIZONTAL if self.tag != 1 and self.dtype.kind in "iu" else None
        self._args: dict[str, Any] = {}
        if compression_level is not None and compression in ("zstd", "gzip"):
            self._args["level"] = compression_level
        self._rows = [
            max(1, min(h, _STRIP_BYTES // max(1, w * self.dtype.itemsize)))
            for h, w in level_shapes
        ]
        self._fill: dict[int, list[bytes] | np.ndarray] = {}

    @property
    def compressed(self) -> bool:
        return self.tag != 1

    def write_args(self, level: int, description: bytes | None = None) -> dict[str, Any]:
        """Keyword arguments for ``TiffWriter.write`` of one page of ``level``."""
        h, w = self.level_shapes[level]
        kw: dict[str, Any] = {
            "shape": (h, w),
            "dtype": self.dtype,
            "photometric": "minisblack",
            "metadata": None,  # the OME-XML is ours, written as the description
            "software": "omestream" if description is not None else False,
            "description": description,
        }
        if self.compressed:
            kw["compression"] = self.tag
            kw["predictor"] = self.predictor
            kw["rowsperstrip"] = self._rows[level]
        if level == 0 and self.n_levels > 1:
            kw["subifds"] = self.n_levels - 1  # reduced resolutions as SubIFDs (OME-TIFF)
        elif level > 0:
            kw["subfiletype"] = 1  # reduced-resolution image
        return kw

    def encode(self, frame: np.ndarray, level: int) -> list[bytes] | np.ndarray:
        """The strips of one page, encoded; the frame itself when uncompressed."""
        if not self.compressed:
            return frame
        compressor = TIFF.COMPRESSORS[self.tag]
        predict = TIFF.PREDICTORS[self.predictor] if self.predictor else None
        rows = self._rows[level]
        out = []
        for r in range(0, frame.shape[0], rows):
            strip = np.ascontiguousarray(frame[r : r + rows])
            if predict is not None:
                strip = predict(strip, axis=-1)
            out.append(compressor(strip, **self._args))
        return out

    def fill(self, level: int, value: int | float) -> list[bytes] | np.ndarray:
        """An encoded page of the fill value (computed once per level)."""
        page = self._fill.get(level)
        if page is None:
            frame = np.full(self.level_shapes[level], value, dtype=self.dtype)
            page = self._fill[level] = self.encode(frame, level)
        return page

    @staticmethod
    def data(encoded: list[bytes] | np.ndarray) -> Any:
        """What ``TiffWriter.write`` takes: the array, or an iterator of strips."""
        return iter(encoded) if isinstance(encoded, list) else encoded
