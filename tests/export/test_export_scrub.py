"""Personal-data scrubbing: one table of cases, each checked for what is removed, what stays and
how it is counted."""

from __future__ import annotations

import pytest

from beliefagent.export import PII_KINDS, Scrubber, iban_valid, luhn_valid, scrub_text

CASES = [
    # (text, kind, secret that must disappear)
    ("mail me: ann.lee+trips@example.co.uk", "email", "ann.lee+trips@example.co.uk"),
    ("card 4111 1111 1111 1111 thanks", "card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "card", "4111-1111-1111-1111"),
    ("pay with 5500005555555559", "card", "5500005555555559"),
    ("amex 3782 822463 10005", "card", "3782 822463 10005"),
    ("call +44 20 7946 0958 today", "phone", "7946 0958"),
    ("call (555) 123-4567", "phone", "123-4567"),
    ("call 555-123-4567", "phone", "555-123-4567"),
    ("call 555.123.4567", "phone", "555.123.4567"),
    ("ring 07700 900123", "phone", "07700 900123"),
    ("ext 555-1234", "phone", "555-1234"),
    ("+4915112345678", "phone", "4915112345678"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "iban", "3704 0044 0532"),
    ("GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
    ("I live at 221B Baker Street, London", "address", "221B Baker Street"),
    ("1600 Pennsylvania Ave NW", "address", "1600 Pennsylvania Ave"),
    ("send it to 10 Downing St.", "address", "Downing"),
    ("Hauptstraße 5, Berlin", "address", "Hauptstraße 5"),
    ("12 rue de la Paix, Paris", "address", "rue de la Paix"),
    ("PO Box 1234", "address", "Box 1234"),
    ("my key is sk-abcdefghijklmnop1234", "credential", "sk-abcdefghijklmnop1234"),
    ("api_key=hunter2hunter2", "credential", "hunter2hunter2"),
]


@pytest.mark.parametrize(("text", "kind", "secret"), CASES)
def test_personal_data_is_replaced_and_counted(text: str, kind: str, secret: str) -> None:
    clean, counts = scrub_text(text)
    assert secret not in clean
    assert counts[kind] == 1, counts
    assert sum(counts.values()) == 1, counts


CLEAN = [
    "I prefer Flight 2: departure time: 06:00 AM, duration: 2 hr 27 min, number of stops: 1, "
    "price: $370",
    "leaving on 2024-01-15 at 10:30, back 15.03.2024",
    "not a card: 4111 1111 1111 1112",  # fails Luhn, and 16 digits is too long for a phone
    "3 Way better, 2 stops please",
    "DE89 3704 0044 0532 0130 01",  # fails mod-97
    "the password is in my head",
    "price about $1,000 or 1000 dollars",
]


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_text_is_left_alone(text: str) -> None:
    clean, counts = scrub_text(text)
    assert clean == text
    assert sum(counts.values()) == 0


def test_scrubber_accumulates_counts_over_calls() -> None:
    s = Scrubber()
    s.scrub("a@b.io and c@d.io")
    s.scrub("4111111111111111, +1 415 555 0100")
    assert s.counts == {
        "credential": 0,
        "iban": 0,
        "card": 1,
        "email": 2,
        "phone": 1,
        "address": 0,
    }
    assert s.total == 4 and tuple(s.counts) == PII_KINDS


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and iban_valid("gb82west12345698765432")
    assert not iban_valid("DE00 3704 0044 0532 0130 00") and not iban_valid("DE89")


def test_long_inputs_stay_fast() -> None:
    text = ("1" * 5000 + " ") * 20 + "x@y.zz " * 2000
    clean, counts = scrub_text(text)
    assert counts["email"] == 2000 and "@" not in clean
