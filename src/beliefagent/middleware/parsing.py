"""Reading which option a model's reply names.

Accepted: "The best option is Flight 2.", "Flight 2", "flight #2", "2", "Option 2", "option two",
"the second flight", "**Flight 2**". Rejected (None): replies that name two or more different
options ("Flight 1 or Flight 2"), numbers out of range, and replies with no option at all.
"""

from __future__ import annotations

import re

__all__ = ["parse_answer"]

_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
_NUM = r"(\d+|" + "|".join(_WORDS) + r")"


def _value(token: str) -> int:
    return int(token) if token.isdigit() else _WORDS[token]


def parse_answer(text: str, n_options: int, item: str = "Flight") -> int | None:
    """The 0-based option a reply names, or None when it names none or is ambiguous."""
    t = re.sub(r"[*_`]", "", text.lower())
    nouns = rf"(?:{re.escape(item.lower())}|option|choice|answer)"
    named = [_value(m) for m in re.findall(rf"\b{nouns}\s*(?:no\.?|number|#)?\s*{_NUM}\b", t)]
    named += [
        _value(m) for m in re.findall(rf"\b{_NUM}\s+{nouns}\b", t) if not m.isdigit()
    ]  # "the second flight"
    if not named:
        bare = re.fullmatch(rf"\s*(?:the answer is\s*)?{_NUM}\s*[.!)]?\s*", t)
        if bare is None:
            return None
        named = [_value(bare.group(1))]
    picks = set(named)
    if len(picks) != 1:
        return None
    value = picks.pop()
    return value - 1 if 1 <= value <= n_options else None
