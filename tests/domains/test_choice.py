from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beliefagent.domains import load_domain
from beliefagent.errors import OptionError

FLIGHT = load_domain("flight")


def test_render_matches_paper_example() -> None:
    lv = FLIGHT.option_from_values(
        {"departure_time": "02:00 PM", "duration": "30 min", "number_of_stops": 1, "price": 370}
    )
    assert FLIGHT.render_option(lv, 0) == (
        "Flight 1: departure time: 02:00 PM, duration: 30 min, number of stops: 1, price: $370"
    )


def test_grids_and_codes() -> None:
    lv = np.array([[0, 0, 0, 0], [10, 10, 2, 10], [5, 1, 1, 3]])
    x = FLIGHT.codes(lv)
    assert x[0].tolist() == [0, 0, 0, 0] and x[1].tolist() == [1, 1, 1, 1]
    assert x[2].tolist() == pytest.approx([0.5, 0.1, 0.5, 0.3])
    texts = FLIGHT.render_options(lv)
    assert "10:00 PM" in texts[1] and "20 hr," in texts[1] and "$1000" in texts[1]
    assert "2 hr 27 min" in texts[2] and "$370" in texts[2] and "02:00 PM" in texts[2]


@pytest.mark.official
def test_every_official_option_parses(official_dir: Path) -> None:
    n = 0
    held = json.loads((official_dir / "heldout_flight.json").read_text())
    sets = list(zip(held["all_options"], held["all_options_numpy"], strict=True))
    for name in ("interaction_flight.jsonl", "interaction_flight_human.jsonl"):
        for line in (official_dir / name).read_text().splitlines():
            rec = json.loads(line)
            sets += [
                (r["options"], num)
                for r, num in zip(rec["rounds"], rec["rounds_numpy"], strict=True)
            ]
    for texts, numeric in sets:
        lv = FLIGHT.parse_option_set(texts)
        assert np.allclose(FLIGHT.codes(lv), numeric)
        assert FLIGHT.render_options(lv) == texts
        n += len(texts)
    assert n == 300 + 3 * 5 * (624 + 500)


def test_parse_is_lenient_on_case_and_label() -> None:
    assert FLIGHT.parse_option(
        "departure time: 02:00 pm, duration: 30 MIN, number of stops: 1, price: $370."
    ) == (5, 0, 1, 3)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda: FLIGHT.parse_option(
                "Flight 1: departure time: 02:01 PM, duration: 30 min, "
                "number of stops: 1, price: $370"
            ),
            "option.departure_time",
        ),
        (lambda: FLIGHT.parse_option("Flight 1: colour: red"), "option"),
        (lambda: FLIGHT.option_from_values({"colour": "red"}), "option"),
        (
            lambda: FLIGHT.option_from_values(
                {"departure_time": 360, "duration": 30, "number_of_stops": 3, "price": 100}
            ),
            "option.number_of_stops",
        ),
        (lambda: FLIGHT.validate_option_set(np.zeros((2, 4), dtype=int)), "options"),
        (lambda: FLIGHT.validate_option_set(np.full((3, 4), 11)), "options.departure_time"),
    ],
)
def test_bad_options_name_field_and_value(call, field: str) -> None:
    with pytest.raises(OptionError) as info:
        call()
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_random_sets_have_distinct_options_and_are_seeded() -> None:
    a = FLIGHT.random_option_sets(np.random.default_rng(3), 500)
    b = FLIGHT.random_option_sets(np.random.default_rng(3), 500)
    assert a.shape == (500, 3, 4) and np.array_equal(a, b)
    for s in a:
        assert len({tuple(o) for o in s}) == 3


def test_hotel_and_flight8_round_trip() -> None:
    rng = np.random.default_rng(0)
    for name in ("hotel", "flight8", "flight-3"):
        d = load_domain(name)
        for s in d.random_option_sets(rng, 50):
            assert np.array_equal(d.parse_option_set(d.render_options(s)), s)
