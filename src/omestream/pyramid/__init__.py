"""Multiscale pyramids: downsampling kernels, levels while streaming, levels after the fact."""

from omestream.pyramid.build import PyramidResult, build_pyramid
from omestream.pyramid.kernels import KERNELS, METHODS, SHIFTING_METHODS, downsample, halo
from omestream.pyramid.streaming import StreamPyramid, level_factors

__all__ = [
    "KERNELS",
    "METHODS",
    "SHIFTING_METHODS",
    "PyramidResult",
    "StreamPyramid",
    "build_pyramid",
    "downsample",
    "halo",
    "level_factors",
]
