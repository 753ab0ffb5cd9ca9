from __future__ import annotations

import pytest

from beliefagent.middleware import parse_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The best option is Flight 2.", 1),
        ("Flight 2", 1),
        ("2", 1),
        ("3.", 2),
        ("option two", 1),
        ("Option 3 is best", 2),
        ("**Flight 1**", 0),
        ("I would pick the third flight.", 2),
        ("flight #1", 0),
        ("The best option is Flight 2. Flight 2 has the lowest price.", 1),
        ("the answer is 1", 0),
    ],
)
def test_accepts_reasonable_answers(text: str, expected: int) -> None:
    assert parse_answer(text, 3, "Flight") == expected


@pytest.mark.parametrize(
    "text",
    [
        "Flight 1 or Flight 2",
        "Flight 4",
        "0",
        "I need more information.",
        "",
        "The best option is Flight",  # truncated
        "Between 2 and 3, hard to say",
        "Flight 1 costs $370, Flight 3 is faster",
    ],
)
def test_rejects_ambiguous_or_missing(text: str) -> None:
    assert parse_answer(text, 3, "Flight") is None


def test_item_word_follows_domain() -> None:
    assert parse_answer("The best option is Hotel 3.", 3, "Hotel") == 2
    assert parse_answer("Flight 3", 3, "Hotel") is None
