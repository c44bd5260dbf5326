"""Streaming: create_stream(settings) -> OMEStream."""

from omestream.stream.state import StreamState
from omestream.stream.stream import OMEStream, create_stream

__all__ = ["OMEStream", "StreamState", "create_stream"]
