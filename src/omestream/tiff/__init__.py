"""OME-TIFF specifics: file layout, page encoding, OME-XML assembly, crash recovery."""

from omestream.tiff.recover import RecoveryReport, recover

__all__ = ["RecoveryReport", "recover"]
