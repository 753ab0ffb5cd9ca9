"""Scrub personal data out of free text before a teaching set is written.

Production logs carry some free text: what users typed (``Turn.user_message``), and ids and
option texts that may hold anything. :class:`Scrubber` replaces what it recognises with a
placeholder and counts each kind:

============  ===============  ===========================================================
kind          placeholder      what is recognised
============  ===============  ===========================================================
credential    ``[REDACTED]``   API keys, bearer tokens, passwords, ... —
                               :func:`~beliefagent.trajectories.redact.redact_text`, applied
                               again even though the log store already redacts
iban          ``[IBAN]``       2 letters, 2 check digits, 11-30 letters/digits (spaces
                               allowed every 4), **and** the ISO 13616 mod-97 check passes
card          ``[CARD]``       13-19 digits, optionally grouped by spaces or dashes, **and**
                               the Luhn check passes (a failing run is left to the phone rule)
email         ``[EMAIL]``      ``local@domain.tld``
phone         ``[PHONE]``      ``+`` and 7-15 digits; or 10-15 digits in groups
                               (``(555) 123-4567``, ``07700 900123``); or ``555-1234``
address       ``[ADDRESS]``    street addresses where detectable: ``221B Baker Street``,
                               ``1600 Pennsylvania Ave NW``, ``Hauptstraße 5``,
                               ``12 rue de la Paix``, ``PO Box 123``
============  ===============  ===========================================================

Rules run in that order, so a valid card number is counted as a card, not a phone number.
What is *not* detected: people's names, dates of birth, free-form or non-Western addresses,
national id numbers. Teaching sets leave user messages out unless asked
(``--include-user-messages``); if your users type sensitive things, keep it that way.

>>> s = Scrubber()
>>> s.scrub("mail me at ann@example.org or call +44 20 7946 0958")
'mail me at [EMAIL] or call [PHONE]'
>>> s.counts["email"], s.counts["phone"]
(1, 1)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from beliefagent.trajectories.redact import REDACTED, redact_text

__all__ = ["PII_KINDS", "PLACEHOLDERS", "Scrubber", "iban_valid", "luhn_valid", "scrub_text"]

PII_KINDS = ("credential", "iban", "card", "email", "phone", "address")
"""Every kind :class:`Scrubber` counts, in the order its rules run."""

PLACEHOLDERS = {
    "credential": REDACTED,
    "iban": "[IBAN]",
    "card": "[CARD]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
}
"""What each kind of personal data is replaced with."""


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (payment card numbers do)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether ``text`` (spaces allowed) is an IBAN whose ISO 13616 mod-97 check passes."""
    compact = text.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)  # A=10 .. Z=35
    return int(number) % 97 == 1


_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
_CARD_RE = re.compile(r"(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d)")
_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
# A phone candidate: optional "+", optional "(area)", then up to 6 digit groups split by one
# space, dot or dash. Whether it counts is decided on its digits (see _phone).
_PHONE_RE = re.compile(
    r"(?<![\w+\-.])(?P<plus>\+\s?)?(?:\(\d{1,5}\)[ .\-]?)?\d{1,15}(?:[ .\-]\d{1,15}){0,5}(?![\w\-])"
)
_LOCAL_PHONE_RE = re.compile(r"\d{3}[.\-]\d{4}")
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Terrace|Close|Crescent|Highway|Hwy|Parkway|Pkwy|Square|Sq|Circle|Cir|Row|Gardens|Walk)"
)
_ADDRESS_RE = re.compile(
    # 221B Baker Street, 1600 Pennsylvania Ave NW, 10 Downing St., apt 4
    rf"\b\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z][A-Za-z'\-]+\.?\s+){{1,4}}{_STREET_SUFFIX}\b\.?"
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat|#)\.?\s*[A-Za-z0-9\-]+)?"
    # Hauptstraße 5, Lindenweg 12a, Marktplatz 3
    r"|\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm)\s+\d{1,4}[a-z]?\b"
    # 12 rue de la Paix, 3 bis avenue Foch
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|impasse|allée"
    r"|quai|cours)\s+(?:(?:de|du|des|la|le|l'|d')\s*)*[A-ZÀ-Ý][\w'\-]+(?:\s+[A-ZÀ-Ý][\w'\-]+){0,3}"
    # PO Box 123
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b",
)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _iban(match: re.Match[str]) -> str | None:
    text = match.group(0)
    # The pattern may have swallowed a trailing group; try shorter spans from the end.
    for end in range(len(text), 14, -1):
        span = text[:end]
        if span[-1] != " " and iban_valid(span):
            return PLACEHOLDERS["iban"] + text[end:]
    return None


def _card(match: re.Match[str]) -> str | None:
    digits = _digits(match.group(0))
    return PLACEHOLDERS["card"] if 13 <= len(digits) <= 19 and luhn_valid(digits) else None


def _email(match: re.Match[str]) -> str | None:
    return PLACEHOLDERS["email"]


def _phone(match: re.Match[str]) -> str | None:
    text = match.group(0)
    n = len(_digits(text))
    if match.group("plus") and 7 <= n <= 15:
        return PLACEHOLDERS["phone"]
    if 10 <= n <= 15 or _LOCAL_PHONE_RE.fullmatch(text):
        return PLACEHOLDERS["phone"]
    return None


def _address(match: re.Match[str]) -> str | None:
    return PLACEHOLDERS["address"]


_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    ("iban", _IBAN_RE, _iban),
    ("card", _CARD_RE, _card),
    ("email", _EMAIL_RE, _email),
    ("phone", _PHONE_RE, _phone),
    ("address", _ADDRESS_RE, _address),
)


@dataclass
class Scrubber:
    """Scrubs strings and keeps a running count of what it replaced, by kind (see the module
    docstring). One scrubber is used for a whole export so its counts go into the manifest."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PII_KINDS, 0))

    def scrub(self, text: str) -> str:
        """``text`` with credentials and personal data replaced by placeholders."""
        before = text.count(REDACTED)
        out = redact_text(text)
        self.counts["credential"] += max(0, out.count(REDACTED) - before)
        for kind, pattern, replace in _RULES:
            hits = 0

            def sub(match: re.Match[str], replace: Callable[..., str | None] = replace) -> str:
                nonlocal hits
                new = replace(match)
                if new is None:
                    return match.group(0)
                hits += 1
                return new

            out = pattern.sub(sub, out)
            self.counts[kind] += hits
        return out

    @property
    def total(self) -> int:
        """Everything replaced so far, all kinds together."""
        return sum(self.counts.values())


def scrub_text(text: str) -> tuple[str, dict[str, int]]:
    """Scrub one string; returns the clean text and what was replaced, by kind."""
    s = Scrubber()
    return s.scrub(text), s.counts
