"""Stream a table case and compute, independently of omestream's router, what every
image must hold afterwards."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from omestream import AcquisitionSettings, Dimension, PositionDimension, create_stream
from tests.cases import Case, frame_for


def time_series(
    root: str, size: int, dtype: str, t_chunk: int = 1, **kw: Any
) -> AcquisitionSettings:
    """An unbounded time series of ``size`` x ``size`` frames, one y/x chunk each."""
    return AcquisitionSettings(
        root_path=root,
        dimensions=[
            Dimension(name="t", count=None, chunk_size=t_chunk, type="time"),
            Dimension(name="y", count=size, chunk_size=size),
            Dimension(name="x", count=size, chunk_size=size),
        ],
        dtype=dtype,
        **kw,
    )


def frame_count(case: Case, settings: AcquisitionSettings) -> int:
    return settings.total_frames if settings.total_frames is not None else case.n_frames  # type: ignore[return-value]


def stream_case(case: Case, settings: AcquisitionSettings) -> int:
    """Append (or skip) every frame of the case; return the number of frames."""
    n_frames = frame_count(case, settings)
    shape = settings.frame_shape
    with create_stream(settings) as stream:
        for n in range(n_frames):
            if n in case.skip:
                stream.skip(frames=1)
            elif case.metadata:
                stream.append(
                    frame_for(n, shape, case.dtype), metadata={"n": n, "delta_t": n * 0.1}
                )
            else:
                stream.append(frame_for(n, shape, case.dtype))
    return n_frames


def expected_images(case: Case, settings: AcquisitionSettings) -> list[np.ndarray]:
    """Per image, the full level-0 array in storage order (numpy only)."""
    n_frames = frame_count(case, settings)
    dims = settings.dimensions
    outer = dims[:-2]
    counts = [d.count for d in outer]
    per_outer = math.prod(c for c in counts[1:]) if len(counts) > 1 else 1
    if counts and counts[0] is None:
        counts[0] = math.ceil(n_frames / per_outer)
    shape = settings.frame_shape
    acq = np.zeros((math.prod(counts), *shape), dtype=case.dtype)
    for n in range(n_frames):
        if n not in case.skip:
            acq[n] = frame_for(n, shape, case.dtype)
    acq = acq.reshape(*counts, *shape)
    names = [d.name for d in outer]
    p_axis = next((i for i, d in enumerate(outer) if isinstance(d, PositionDimension)), None)
    images: list[np.ndarray] = []
    n_images = counts[p_axis] if p_axis is not None else 1
    storage = list(settings.storage_dimension_names[:-2])
    for i in range(n_images):
        arr = acq.take(i, axis=p_axis) if p_axis is not None else acq
        arr_names = [n for k, n in enumerate(names) if k != p_axis]
        perm = [arr_names.index(n) for n in storage]
        arr = arr.transpose(*perm, len(arr_names), len(arr_names) + 1)
        images.append(arr)
    if settings.is_unbounded:
        # each image holds the time points it received
        images = [
            _trim_unbounded(img, case, settings, i, n_frames, p_axis)
            for i, img in enumerate(images)
        ]
    return images


def _trim_unbounded(
    img: np.ndarray,
    case: Case,
    settings: AcquisitionSettings,
    image: int,
    n_frames: int,
    p_axis: Any,
) -> np.ndarray:
    outer = settings.dimensions[:-2]
    per_outer = math.prod(d.count for d in outer[1:]) if len(outer) > 1 else 1
    full, rest = divmod(n_frames, per_outer)
    extent = full
    if rest:
        # did this image receive any frame of the last, partial time point?
        if p_axis is None:
            extent += 1
        else:
            inner = math.prod(d.count for d in outer[p_axis + 1 :])
            first_of_image = image * inner
            if rest > first_of_image:
                extent += 1
    axis = settings.storage_dimension_names.index(settings.dimensions[0].name)
    return img.take(range(extent), axis=axis)
