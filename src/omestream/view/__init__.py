"""Pictures of datasets: thumbnails, colour composites and plate mosaics (PNG via pillow)."""

from omestream.view.render import Picture, channel_planes, render_dataset

__all__ = ["Picture", "channel_planes", "render_dataset"]
