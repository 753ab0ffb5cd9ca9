from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from beliefagent.domains import builtin_domains, load_domain, parse_spec
from beliefagent.domains.registry import spec_dirs
from beliefagent.errors import BeliefAgentError, SpecError


def _flight_dict() -> dict:
    path = next(d / "flight.toml" for d in spec_dirs() if (d / "flight.toml").is_file())
    return tomllib.loads(path.read_text())


def test_builtins_load() -> None:
    names = builtin_domains()
    for name in ("flight", "flight8", "hotel", "bigfive", "flight-2", "flight-8"):
        assert name in names
        assert len(load_domain(name).hypothesis_weights()) > 0
    assert len(load_domain("flight").hypothesis_weights()) == 624
    assert len(load_domain("hotel").hypothesis_weights()) == 624
    assert len(load_domain("bigfive").hypothesis_weights()) == 3125
    assert len(load_domain("flight8").hypothesis_weights()) == 5**8 - 1
    assert load_domain("flight-4").feature_names == load_domain("flight").feature_names


@pytest.mark.parametrize(
    ("mutate", "field_part"),
    [
        (lambda d: d["features"][0].update(format="sundial"), "features.0"),
        (lambda d: d["features"][0].update(values=[1, 2]), "features.0"),
        (lambda d: d["features"].append(copy.deepcopy(d["features"][0])), "features"),
        (lambda d: d.update(options_per_round=1), "options_per_round"),
        (lambda d: d["features"][1].update(codes=[0.0, 1.0]), "features.1"),
        (lambda d: d.update(colour="blue"), "colour"),
    ],
)
def test_bad_specs_name_the_field(mutate, field_part: str) -> None:
    data = _flight_dict()
    mutate(data)
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="custom.toml")
    assert field_part in info.value.field
    assert isinstance(info.value, BeliefAgentError)


def test_empty_hypothesis_space() -> None:
    data = _flight_dict()
    data["weights"] = {"grid": [0.0], "exclude_zero": True}
    with pytest.raises(BeliefAgentError) as info:
        from beliefagent.domains import ChoiceDomain

        ChoiceDomain(parse_spec(data))
    assert "weights" in str(info.value)


def test_user_spec_file_needs_no_code(tmp_path: Path) -> None:
    spec = tmp_path / "laptop.toml"
    spec.write_text(
        """
name = "laptop"
item = "Laptop"
options_per_round = 2
rounds = 3
[weights]
grid = [-1.0, 0.0, 1.0]
[prompts]
intro = "Help me pick laptops."
question = "Which laptop is the best option?"
[[features]]
name = "weight"
label = "weight"
format = "number"
template = "{value} kg"
values = [1, 1.5, 2, 2.5]
[[features]]
name = "price"
label = "price"
format = "money"
levels = { start = 500, step = 250, count = 5 }
"""
    )
    d = load_domain(spec)
    assert len(d.hypothesis_weights()) == 8
    text = d.render_option((1, 4), 0)
    assert text == "Laptop 1: weight: 1.5 kg, price: $1500"
    assert d.parse_option(text) == (1, 4)


def test_unknown_domain_lists_builtins() -> None:
    with pytest.raises(SpecError, match="flight"):
        load_domain("submarine")
