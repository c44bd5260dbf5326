"""Shared fixtures: case table, formats and engines, and independent validators."""

from __future__ import annotations

import pytest
from hypothesis import settings

from omestream.backends.registry import available_engines
from tests.cases import CASE_IDS, CASES

# The default run replays the same examples every time, so a landing never fails on
# a newly drawn one; `--hypothesis-profile=explore` draws fresh examples to hunt bugs.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, derandomize=False)
settings.load_profile("default")

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
