"""The paper's Bayesian Assistant reproduced on the official files and on generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from beliefagent.cli import app
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError
from beliefagent.eval.teacher import run_teacher_eval

FLIGHT = load_domain("flight")
# Rounds 1..5 from PAPER.md (computed independently on the official files). Round 0 is checked on
# its own: every expected reward ties there, so the first option is predicted for every set, and
# the accuracy is the share of held-out cases whose stored preferred index is 0 (33.44 %).
PAPER = [56.8, 66.8, 73.2, 77.6, 80.7]


@pytest.mark.official
def test_official_curve(official_dir: Path) -> None:
    res = run_teacher_eval(
        FLIGHT,
        heldout=official_dir / "heldout_flight.json",
        interactions=official_dir / "interaction_flight.jsonl",
    )
    assert res.n_users == 624 and res.n_heldout == 100
    assert np.allclose(res.accuracy_by_round[1:], PAPER, atol=0.5)
    truth = json.loads((official_dir / "heldout_flight.json").read_text())["user_idxs"]
    first_share = 100 * np.mean([i == 0 for u in truth for i in u["idxs"]])
    assert res.accuracy_by_round[0] == pytest.approx(first_share, abs=0.01)


@pytest.mark.official
def test_plain_argmax_round_off_explains_the_34_5(official_dir: Path) -> None:
    """With no tie tolerance, float round-off in the round-0 posterior mean (~1e-17) decides the
    'tie'; that is where a 34.5 % round-0 figure comes from."""
    res = run_teacher_eval(
        FLIGHT,
        heldout=official_dir / "heldout_flight.json",
        interactions=official_dir / "interaction_flight.jsonl",
        tie_tol=0.0,
    )
    assert res.accuracy_by_round[0] > 33.44
    assert np.allclose(res.accuracy_by_round[1:], PAPER, atol=0.5)


def test_generated_curve_within_two_points() -> None:
    res = run_teacher_eval(FLIGHT, seed=0)
    assert res.source == "generated" and res.n_users == 624
    assert np.allclose(res.accuracy_by_round[1:], PAPER, atol=2.0)
    assert abs(res.accuracy_by_round[0] - 100 / 3) < 2.0


def test_only_one_file_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        run_teacher_eval(FLIGHT, heldout="heldout_flight.json")
    assert info.value.field == "interactions"


def test_cli_json_contract() -> None:
    result = CliRunner().invoke(
        app,
        [
            "teacher-eval",
            "--domain",
            "flight",
            "--users",
            "60",
            "--heldout-sets",
            "30",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["accuracy_by_round"]) == 6
    assert all(0 <= a <= 100 for a in data["accuracy_by_round"])
    assert data["accuracy_by_round"][5] > data["accuracy_by_round"][0]


@pytest.mark.official
def test_cli_official_by_bare_names(official_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELIEFAGENT_DATA", str(official_dir))
    result = CliRunner().invoke(
        app,
        [
            "teacher-eval",
            "--domain",
            "flight",
            "--heldout",
            "heldout_flight.json",
            "--interactions",
            "interaction_flight.jsonl",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    acc = json.loads(result.stdout)["accuracy_by_round"]
    assert np.allclose(acc[1:], PAPER, atol=0.5)


@pytest.mark.official
def test_human_dialogues(official_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "teacher-dialogues",
            "--interactions",
            str(official_dir / "interaction_flight_human.jsonl"),
            "--likelihood",
            "noise-free",
            "--likelihood",
            "epsilon:0.1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_dialogues"] == 500
    nf, eps = data["teachers"]
    assert nf["emptied_dialogues"] > 0 and eps["emptied_dialogues"] == 0
    assert 60 < data["stated_reward_agreement"] < 70
