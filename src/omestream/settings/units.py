"""Physical units: the NGFF unit names and the abbreviations people type."""

from __future__ import annotations

from typing import Literal

__all__ = ["SPACE_UNITS", "TIME_UNITS", "normalize_unit", "ome_xml_unit"]

DimensionType = Literal["space", "time", "channel", "other"]

# The unit names the NGFF axes specification allows (UDUNITS-2 names).
SPACE_UNITS: frozenset[str] = frozenset(
    {
        "angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer",
        "foot", "gigameter", "hectometer", "inch", "kilometer", "megameter", "meter",
        "micrometer", "mile", "millimeter", "nanometer", "parsec", "petameter",
        "picometer", "terameter", "yard", "yoctometer", "yottameter", "zeptometer",
        "zettameter",
    }
)  # fmt: skip
TIME_UNITS: frozenset[str] = frozenset(
    {
        "attosecond", "centisecond", "day", "decisecond", "exasecond", "femtosecond",
        "gigasecond", "hectosecond", "hour", "kilosecond", "megasecond", "microsecond",
        "millisecond", "minute", "nanosecond", "petasecond", "picosecond", "second",
        "terasecond", "yoctosecond", "yottasecond", "zeptosecond", "zettasecond",
    }
)  # fmt: skip

# Abbreviations (OME-XML symbols and common spellings) -> NGFF name.
_ALIASES: dict[str, str] = {
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
    "microns": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter",
    "dm": "decimeter", "m": "meter", "km": "kilometer", "pm": "picometer",
    "fm": "femtometer", "å": "angstrom", "a": "angstrom", "in": "inch", "ft": "foot",
    "yd": "yard", "mi": "mile", "pc": "parsec",
    "s": "second", "sec": "second", "ms": "millisecond", "us": "microsecond",
    "µs": "microsecond", "μs": "microsecond", "ns": "nanosecond", "ps": "picosecond",
    "fs": "femtosecond", "min": "minute", "h": "hour", "hr": "hour", "d": "day",
}  # fmt: skip

# NGFF name -> OME-XML UnitsLength / UnitsTime symbol.
_OME_XML: dict[str, str] = {
    "angstrom": "Å", "nanometer": "nm", "micrometer": "µm", "millimeter": "mm",
    "centimeter": "cm", "decimeter": "dm", "meter": "m", "kilometer": "km",
    "picometer": "pm", "femtometer": "fm", "inch": "in", "foot": "ft", "yard": "yd",
    "mile": "mi", "parsec": "pc",
    "second": "s", "millisecond": "ms", "microsecond": "µs", "nanosecond": "ns",
    "picosecond": "ps", "femtosecond": "fs", "minute": "min", "hour": "h", "day": "d",
}  # fmt: skip


def normalize_unit(unit: str, dim_type: str | None) -> tuple[str, DimensionType]:
    """Return the NGFF unit name and the dimension type it implies.

    Raises ``ValueError`` naming the accepted units when ``unit`` is not a length or a
    time, or does not match ``dim_type``.
    """
    key = unit.strip()
    name = key if key in SPACE_UNITS or key in TIME_UNITS else _ALIASES.get(key.lower())
    if name is None:
        raise ValueError(
            f"unknown unit {unit!r}: expected an NGFF length or time unit such as "
            "'micrometer', 'nanometer', 'second', 'millisecond' (abbreviations like "
            "'um', 'nm', 's', 'ms' are accepted)"
        )
    implied: DimensionType = "space" if name in SPACE_UNITS else "time"
    if dim_type is not None and dim_type != implied:
        raise ValueError(
            f"unit {unit!r} is a {'length' if implied == 'space' else 'time'} unit, "
            f"but the dimension has type {dim_type!r}"
        )
    return name, implied


def ome_xml_unit(ngff_unit: str | None) -> str | None:
    """Map an NGFF unit name to the OME-XML symbol, or ``None`` when OME-XML lacks it."""
    if ngff_unit is None:
        return None
    return _OME_XML.get(ngff_unit)
