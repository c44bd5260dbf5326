"""Multiscale pyramids: downsampling kernels and level builders."""

from omestream.pyramid.kernels import KERNELS, downsample
from omestream.pyramid.streaming import StreamPyramid

__all__ = ["KERNELS", "StreamPyramid", "downsample"]
