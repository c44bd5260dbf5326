"""Channel colours: the colour a channel gets when none is given.

A channel named after a dye or a fluorescent protein, or with a known emission or
excitation wavelength, gets the colour it is usually shown in (DAPI blue, GFP green,
mCherry red, Cy5 magenta), so a dataset opens in a viewer the way it looked at the
microscope. Any other channel takes the first palette colour no other channel has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["DEFAULT_COLORS", "NAMED_COLORS", "guess_color", "pick_colors"]

NAMED_COLORS = {
    "red": "FF0000", "green": "00FF00", "blue": "0000FF", "cyan": "00FFFF",
    "magenta": "FF00FF", "yellow": "FFFF00", "white": "FFFFFF", "gray": "808080",
    "grey": "808080", "orange": "FFA500",
}  # fmt: skip

# For channels nothing is known about: a colour-blind-safe pair first.
DEFAULT_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")

_BLUE, _CYAN, _GREEN, _YELLOW, _RED, _MAGENTA, _WHITE = (
    "0000FF", "00FFFF", "00FF00", "FFFF00", "FF0000", "FF00FF", "FFFFFF",
)  # fmt: skip

# Emission bands (upper bound in nm): DAPI 461, CFP 475, GFP 509, YFP 535-545, Cy3 570,
# mCherry 610, Cy5 670.
_BANDS = ((470.0, _BLUE), (500.0, _CYAN), (530.0, _GREEN), (560.0, _YELLOW), (650.0, _RED))
# A typical shift from excitation to emission peak, for channels named by laser line.
_STOKES_NM = 30.0

# Dyes and proteins, matched inside the lower-cased name with everything but letters and
# digits removed; longer keys first so "tagbfp" is not read as something shorter.
_DYES = {
    _BLUE: "dapi hoechst bfp ebfp tagbfp alexa350 alexa405 af405 bv421 pacificblue",
    _CYAN: "cfp ecfp cerulean turquoise",
    _GREEN: "gfp fitc alexa488 af488 cy2 mneongreen clover emerald atto488",
    _YELLOW: "yfp venus citrine ypet",
    _RED: "rfp mcherry tdtomato dsred cy3 tritc texasred alexa546 alexa555 alexa568 "
    "alexa594 af555 af568 af594 mscarlet mkate mruby mapple rhodamine atto565 propidium",
    _MAGENTA: "cy5 alexa633 alexa647 alexa660 alexa680 alexa750 af647 cy7 irfp farred "
    "draq5 atto647",
}
_DYE_KEYS = sorted(
    ((key, color) for color, keys in _DYES.items() for key in keys.split()),
    key=lambda kv: -len(kv[0]),
)
# Transmitted light, matched as whole words.
_TRANSMITTED = {"bf", "brightfield", "dic", "phase", "transmitted", "trans", "pc", "tl"}

_FILTER = re.compile(r"(?<!\d)([3-8]\d\d)\s*/\s*\d{1,3}(?!\d)")  # "525/50": emission
_LINE = re.compile(r"(?<!\d)([3-8]\d\d)(?!\d)")  # "488", "561nm": laser line


def _band(emission: float) -> str:
    for upper, color in _BANDS:
        if emission < upper:
            return color
    return _MAGENTA


def _from_name(name: str) -> str | None:
    low = name.lower()
    if set(re.split(r"[^a-z]+", low)) & _TRANSMITTED:
        return _WHITE
    flat = re.sub(r"[^a-z0-9]", "", low).replace("alexafluor", "alexa")
    for key, color in _DYE_KEYS:
        if key in flat:
            return color
    for word in re.split(r"[^a-z]+", low):  # channels named "red", "Green", ...
        if word in NAMED_COLORS:
            return NAMED_COLORS[word]
    if m := _FILTER.search(low):
        return _band(float(m.group(1)))
    if m := _LINE.search(low):
        return _band(float(m.group(1)) + _STOKES_NM)
    return None


def guess_color(
    name: str | None,
    *,
    fluorophore: str | None = None,
    excitation: float | None = None,
    emission: float | None = None,
) -> str | None:
    """The usual display colour of a channel, or None when nothing identifies it.

    The emission wavelength decides first, then the excitation wavelength, the
    fluorophore, and last the channel's name (transmitted light, dyes, proteins,
    colour names, filters like ``"525/50"``, laser lines like ``"561nm"``)."""
    if emission is not None:
        return _band(emission)
    if excitation is not None:
        return _band(excitation + _STOKES_NM)
    for text in (fluorophore, name):
        if text and (color := _from_name(text)) is not None:
            return color
    return None


def pick_colors(colors: Sequence[str | None], taken: Iterable[str | None] = ()) -> list[str]:
    """``colors`` with every None replaced by the first palette colour that neither
    ``taken`` nor another entry has (cycling by position once all are used)."""
    used = {c.upper() for c in [*taken, *colors] if c}
    out = []
    for i, color in enumerate(colors):
        if color is None:
            color = next((c for c in DEFAULT_COLORS if c not in used), None)
            color = color or DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
            used.add(color)
        out.append(color)
    return out
