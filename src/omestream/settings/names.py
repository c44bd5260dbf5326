"""Rules for names that end up in paths or metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["case_twin", "check_label", "check_path_name", "row_letters"]

_PATH_NAME = re.compile(r"^[A-Za-z0-9]+$")


def case_twin(name: str, existing: Iterable[str]) -> str | None:
    """The entry of ``existing`` that is ``name`` in other case ("b" beside "B"), if any:
    both would be one folder on case-insensitive disks (macOS, Windows)."""
    folded = name.casefold()
    return next((e for e in existing if e != name and e.casefold() == folded), None)


def check_label(name: str, what: str) -> str:
    """A free-text name (stored in metadata only): printable, no path separators."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")
    if not name.isprintable():
        raise ValueError(f"{what} name {name!r} contains non-printable characters")
    if "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"{what} name {name!r} must not contain '/' or '\\' or be '.'/'..'")
    return name


def check_path_name(name: str, what: str) -> str:
    """A name that becomes a Zarr group path (plate rows, columns, fields): alphanumeric."""
    check_label(name, what)
    if not _PATH_NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} is used as a path in the plate and may contain only "
            "letters and digits (NGFF); e.g. 'A', '1', 'fov0'"
        )
    return name


def row_letters(i: int) -> str:
    """A plate row's name from its index: 0 -> A, 25 -> Z, 26 -> AA, 27 -> AB, as
    plates of more than 26 rows (1536 wells) print them."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out
