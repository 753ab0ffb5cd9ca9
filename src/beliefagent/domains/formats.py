"""Value formats: how a feature's raw value is written in option text.

Each format is a pure function ``raw value -> text``. Parsing goes the other way through a lookup
table built from the grid (see :class:`beliefagent.domains.choice.ChoiceDomain`), so a value parses
back exactly when it renders to a grid level; no format needs its own parser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["FORMATS", "render_value"]


def _clock(minutes: Any) -> str:
    """Minutes after midnight -> ``"02:00 PM"`` (12-hour clock, zero-padded hour)."""
    m = round(float(minutes)) % (24 * 60)
    hour, minute = divmod(m, 60)
    suffix = "AM" if hour < 12 else "PM"
    hour12 = hour % 12 or 12
    return f"{hour12:02d}:{minute:02d} {suffix}"


def _duration(minutes: Any) -> str:
    """Minutes -> ``"30 min"``, ``"2 hr 27 min"``, ``"20 hr"`` (the official data's style)."""
    m = round(float(minutes))
    hours, rest = divmod(m, 60)
    if hours == 0:
        return f"{rest} min"
    if rest == 0:
        return f"{hours} hr"
    return f"{hours} hr {rest} min"


def _integer(value: Any) -> str:
    return str(round(float(value)))


def _money(value: Any) -> str:
    v = float(value)
    return f"${round(v)}" if v == round(v) else f"${v:.2f}"


def _number(value: Any) -> str:
    v = float(value)
    return str(int(v)) if v == int(v) else f"{v:g}"


def _text(value: Any) -> str:
    return str(value)


FORMATS: dict[str, Callable[[Any], str]] = {
    "clock": _clock,
    "duration": _duration,
    "integer": _integer,
    "money": _money,
    "number": _number,
    "text": _text,
}


def render_value(
    fmt: str, value: Any, template: str | None = None, template_one: str | None = None
) -> str:
    """Render ``value`` with format ``fmt``; ``template`` wraps it (``"{value} miles"``) and
    ``template_one`` is used instead when the value is exactly 1 (``"{value} mile"``)."""
    text = FORMATS[fmt](value)
    if template_one is not None and text == "1":
        return template_one.format(value=text)
    if template is not None:
        return template.format(value=text)
    return text
