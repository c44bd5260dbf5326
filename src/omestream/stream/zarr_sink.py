"""Writes the NGFF groups and omestream's own record for a Zarr stream."""

from __future__ import annotations

from typing import Any

from omestream import __version__
from omestream.io import zarr_nodes
from omestream.io.journal import MetadataJournal
from omestream.io.kv import KVStore
from omestream.metadata import plan_documents
from omestream.metadata.display import apply_windows
from omestream.plan import StoragePlan
from omestream.settings import AcquisitionSettings, Channel
from omestream.stream.state import StreamState

__all__ = ["OMESTREAM_KEY", "ZarrMetadataSink"]

OMESTREAM_KEY = "omestream"


class ZarrMetadataSink:
    def __init__(self, kv: KVStore, plan: StoragePlan, settings: AcquisitionSettings) -> None:
        self.kv = kv
        self.plan = plan
        self.settings = settings
        self.docs = plan_documents(plan)
        self.journal = MetadataJournal.for_plan(kv, plan)

    def _write(self, path: str, attrs: dict[str, Any], durable: bool = True) -> None:
        zarr_nodes.write_group(
            self.kv,
            path,
            attrs,
            self.plan.zarr_format,
            durable=durable and self.settings.writer.fsync,
        )

    def _root_record(self, state: StreamState) -> dict[str, Any]:
        return {
            "version": __version__,
            "settings": self.settings.model_dump(mode="json"),
            **state.summary(),
        }

    def start(self, state: StreamState) -> None:
        for path, attrs in self.docs.items():
            if path not in ("",) and path not in {im.path for im in self.plan.images}:
                self._write(path, attrs)
        self.update(state, final=False, images_too=True)
        if self.plan.layout == "bioformats2raw":
            self._write_ome_xml(state)

    def update(self, state: StreamState, final: bool, images_too: bool = False) -> None:
        """Refresh image groups with new frame metadata, and the root record.

        Refreshes while streaming are replaced atomically but not fsynced: on ext4 an
        fsync commits the journal, which first waits for every chunk still being
        written back, and would stall ``append`` for as long. A killed process loses
        nothing by it (the page cache survives); ``close`` writes durably.
        """
        durable = final or images_too
        # Long acquisitions: new frame metadata is appended to a journal and the full
        # lists are rewritten only once they doubled (see omestream.io.journal).
        defer = (
            not (final or images_too) and self.journal is not None and self.journal.absorb(state)
        )
        if defer and self.plan.layout == "image":
            return
        for i, im in enumerate(self.plan.images):
            if defer or not (images_too or final or state.dirty_metadata) or im.path == "":
                continue
            attrs = self._image_doc(i, state)
            if state.frame_metadata[i]:
                attrs[OMESTREAM_KEY] = {"frame_metadata": state.frame_metadata[i]}
            self._write(im.path, attrs, durable)
        root = self._image_doc(0, state) if self.plan.layout == "image" else dict(self.docs[""])
        record = self._root_record(state)
        if self.plan.layout == "image" and state.frame_metadata[0]:
            record["frame_metadata"] = state.frame_metadata[0]
        root[OMESTREAM_KEY] = record
        self._write("", root, durable)
        if final and self.plan.layout == "bioformats2raw":
            # the series list too: a writer killed while creating the dataset may have
            # left the root without it, and repair closes through here
            self._write("OME", dict(self.docs["OME"]), durable)
            self._write_ome_xml(state)
        if final and self.journal is not None:
            self.journal.finish()
        state.dirty_metadata = state.dirty_metadata and defer

    def _image_doc(self, i: int, state: StreamState) -> dict[str, Any]:
        """Image ``i``'s group attributes, with the display windows measured so far."""
        image = self.plan.images[i]
        attrs = dict(self.docs[image.path])
        # a window the settings give (Channel.display) is kept as given
        windows = {c: w for c, w in state.windows[i].items() if not _given(image.channels, c)}
        if windows:
            content = attrs  # NGFF 0.4: top level; 0.5: under "ome"
            if "ome" in attrs:
                content = attrs["ome"] = dict(attrs["ome"])
            if "omero" in content:
                content["omero"] = apply_windows(content["omero"], windows, self.plan.dtype)
        return attrs

    def _write_ome_xml(self, state: StreamState) -> None:
        shapes = None
        if self.plan.unbounded_axis is not None:
            u = self.plan.unbounded_axis
            shapes = []
            for i, im in enumerate(self.plan.images):
                shape = list(im.levels[0].shape)
                shape[u] = state.extents[i]
                shapes.append(shape)
        from omestream.metadata.ome_xml import build_ome, render_xml  # slow to import

        ome = build_ome(self.plan, shapes, acquisition_date=state.started)
        self.kv.set(
            "OME/METADATA.ome.xml", render_xml(ome).encode(), durable=self.settings.writer.fsync
        )


def _given(channels: tuple[Channel, ...] | None, c: int) -> bool:
    """Whether channel ``c``'s display window is given by its settings."""
    if channels is None or c >= len(channels):
        return False
    display = channels[c].display
    return display is not None and display.window is not None
