"""Metadata documents: NGFF 0.4/0.5 attributes and OME-XML (pure builders).

``build_ome`` is imported on first use: ome-types takes about a second to import and
most programs (streaming OME-Zarr, reading NGFF) never need it.
"""

from typing import Any

from omestream.metadata.ngff import plan_documents, versioned

__all__ = ["build_ome", "plan_documents", "versioned"]


def __getattr__(name: str) -> Any:
    if name == "build_ome":
        from omestream.metadata.ome_xml import build_ome

        return build_ome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
