"""Planning: settings -> the arrays to create and where each frame goes (no I/O)."""

from omestream.plan.router import FrameRouter, Route
from omestream.plan.storage import (
    ArrayPlan,
    AxisPlan,
    ImagePlan,
    StoragePlan,
    auto_chunks,
    plan_storage,
)

__all__ = [
    "ArrayPlan",
    "AxisPlan",
    "FrameRouter",
    "ImagePlan",
    "Route",
    "StoragePlan",
    "auto_chunks",
    "plan_storage",
]
