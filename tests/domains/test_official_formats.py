"""The built-in hotel and flight-K domains write options exactly as the official release does."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from beliefagent.domains import ChoiceDomain, load_domain, parse_spec
from beliefagent.domains.registry import spec_dirs
from beliefagent.errors import SpecError

SAMPLES = {
    "hotel": "interaction_hotel.jsonl",
    "flight-2": "interaction_flight_2features.jsonl",
    "flight-6": "interaction_flight_6features.jsonl",
    "flight-8": "interaction_flight_8features.jsonl",
}

# The features of each K-feature flight task, in the order the official files write them.
RELEASED_ORDER = {
    2: ["duration", "price"],
    3: ["price", "departure_time", "duration"],
    4: ["departure_time", "duration", "number_of_stops", "price"],
    5: ["price", "departure_time", "bags", "number_of_stops", "duration"],
    6: ["arrival_time", "flexibility", "bags", "duration", "number_of_stops", "price"],
    7: [
        "bags",
        "departure_time",
        "layover_duration",
        "number_of_stops",
        "duration",
        "flexibility",
        "arrival_time",
    ],
    8: [
        "departure_time",
        "arrival_time",
        "layover_duration",
        "duration",
        "flexibility",
        "bags",
        "number_of_stops",
        "price",
    ],
}


@pytest.mark.official
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_option_parses_and_renders_back_byte_identical(
    samples_dir: Path, name: str
) -> None:
    domain = load_domain(name)
    assert isinstance(domain, ChoiceDomain)
    n = 0
    for line in (samples_dir / SAMPLES[name]).read_text().splitlines():
        rec = json.loads(line)
        assert rec["features"] == list(domain.feature_names)
        for rnd, numeric in zip(rec["rounds"], rec["rounds_numpy"], strict=True):
            levels = domain.parse_option_set(rnd["options"])
            assert domain.render_options(levels) == rnd["options"]
            assert np.allclose(domain.codes(levels), numeric, atol=1e-12)
            n += len(rnd["options"])
    assert n >= 60


@pytest.mark.parametrize("k", sorted(RELEASED_ORDER))
def test_flight_k_has_the_released_features_in_order(k: int) -> None:
    domain = load_domain(f"flight-{k}")
    assert isinstance(domain, ChoiceDomain)
    assert list(domain.feature_names) == RELEASED_ORDER[k]
    assert len(domain.hypothesis_weights()) == 5**k - 1


def test_level_wordings_and_codes() -> None:
    hotel = load_domain("hotel")
    flight = load_domain("flight8")
    assert isinstance(hotel, ChoiceDomain) and isinstance(flight, ChoiceDomain)
    text = hotel.render_option([1, 0, 0, 4], 0)
    assert text == (
        "Hotel 1: distance to downtown: 1 miles, price: $100, rating: 1 stars, amenities: "
        "free parking, free breakfast, pool, and fitness center"
    )
    assert hotel.codes(np.array([1, 0, 0, 4])).tolist() == [0.1, 0.0, 0.0, 1.0]
    assert hotel.codes(np.array([10, 10, 2, 2])).tolist() == [1.0, 1.0, 0.5, 0.5]
    layover = [
        flight.feature_values([0, 0, i, 0, 0, 0, 0, 0])["layover_duration"]
        for i in (0, 1, 2, 3, 10)
    ]
    assert layover == ["0 hr", "30 min", "1 hr", "1 hr 30 min", "5 hr"]
    values = flight.feature_values([10, 10, 0, 10, 1, 2, 2, 10])
    assert values["bags"] == "1 carry-on bag, 1 checked bag"
    assert values["flexibility"] == "refundable with fee"
    assert values["departure_time"] == "10:00 PM" and values["duration"] == "20 hr"


def test_values_with_commas_still_parse() -> None:
    flight6 = load_domain("flight-6")
    assert isinstance(flight6, ChoiceDomain)
    rng = np.random.default_rng(1)
    for s in flight6.random_option_sets(rng, 200):
        texts = flight6.render_options(s)
        assert np.array_equal(flight6.parse_option_set(texts), s)


def _flight8_dict() -> dict:
    path = next(d / "flight8.toml" for d in spec_dirs() if (d / "flight8.toml").is_file())
    return tomllib.loads(path.read_text())


def test_a_value_that_would_not_parse_back_is_refused() -> None:
    data = _flight8_dict()
    data["features"][5]["values"][0] = "0 bags, price: $0"
    with pytest.raises(SpecError) as info:
        ChoiceDomain(parse_spec(data))  # type: ignore[arg-type]
    assert info.value.field == "features.bags"


@pytest.mark.parametrize(
    "sweeps",
    [{"2": ["price"]}, {"2": ["price", "price"]}, {"2": ["price", "legroom"]}, {"x": []}],
)
def test_bad_sweeps_name_the_field(sweeps: dict) -> None:
    data = copy.deepcopy(_flight8_dict())
    data["sweeps"] = sweeps
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="flight8.toml")
    assert "flight8.toml" in info.value.field
