"""Shared fixtures: case table, formats and engines, and independent validators."""

from __future__ import annotations

import pytest

from omestream.backends.registry import available_engines
from tests.cases import CASE_IDS, CASES

ZARR_ENGINES = [
    name for name in ("omestream", "zarr-python", "tensorstore", "acquire-zarr")
    if available_engines().get(name)
]  # fmt: skip


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.param


@pytest.fixture(params=["0.5", "0.4"])
def ngff_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)
