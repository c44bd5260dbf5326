"""The frozen pydantic base model that every settings class uses."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from omestream.errors import SettingsError

__all__ = ["FrozenModel", "as_settings_error", "warn_user"]


def warn_user(message: str) -> None:
    """Warn with the location of the first caller outside omestream and pydantic."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.dirname(__file__))  # the package
    level, frame = 2, sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(here) or "pydantic" in frame.f_code.co_filename
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


class FrozenModel(BaseModel):
    """Immutable, validated once; ``replace`` gives a validated copy."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise as_settings_error(exc, type(self).__name__) from None

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied, validated like a new object."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return type(self)(**data)


def as_settings_error(exc: ValidationError, where: str) -> SettingsError:
    """Turn pydantic's report into one readable SettingsError (field: message per line)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return SettingsError(f"invalid {where}:\n  " + "\n  ".join(lines))
