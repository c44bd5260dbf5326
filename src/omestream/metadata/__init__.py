"""Metadata documents: NGFF 0.4/0.5 attributes and OME-XML (pure builders)."""

from omestream.metadata.ngff import plan_documents, versioned
from omestream.metadata.ome_xml import build_ome

__all__ = ["build_ome", "plan_documents", "versioned"]
