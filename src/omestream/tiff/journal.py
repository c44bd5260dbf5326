"""Where an OME-TIFF stream journals its per-frame metadata.

The OME-XML of a running stream is rewritten only now and then (each rewrite renders
the whole document), so the records of the last seconds or minutes of a killed
acquisition would be lost. The stream appends them on its metadata cadence to a
journal (:class:`omestream.io.journal.MetadataJournal`, one JSON line per record) in
the hidden folder that holds its lock, next to the dataset and never inside it;
``close`` deletes it, :func:`~omestream.tiff.recover` and resuming read it back.
"""

from __future__ import annotations

import contextlib
import os

from omestream.io.journal import JournalContents, read_journal
from omestream.io.kv import LocalKV
from omestream.io.locks import lock_dir

__all__ = ["TIFF_JOURNAL", "drop_journal", "metadata_journal_root", "read_tiff_journal"]

TIFF_JOURNAL = "frame-metadata.jsonl"


def metadata_journal_root(output_path: str) -> str:
    """The folder of the journal of the dataset at ``output_path`` (file or folder)."""
    return lock_dir(output_path)


def read_tiff_journal(output_path: str) -> JournalContents:
    """What was journalled for the dataset at ``output_path``: per image the records,
    and the frames skipped (nothing when there is no journal, e.g. the dataset was
    moved since)."""
    return read_journal(LocalKV(metadata_journal_root(output_path)), TIFF_JOURNAL)


def drop_journal(output_path: str) -> None:
    """Every record is in the document now: the journal is no longer needed."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(metadata_journal_root(output_path), TIFF_JOURNAL))
