"""The Bayesian teacher on the official hotel and flight-K samples equals a brute-force
computation written independently here: hypotheses enumerated from the weight grid, the files'
own numeric option vectors (not the parsed text), posterior weights kept in linear space."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from beliefagent.cli import app

SAMPLES = {
    "hotel": "interaction_hotel.jsonl",
    "flight-2": "interaction_flight_2features.jsonl",
    "flight-6": "interaction_flight_6features.jsonl",
    "flight-8": "interaction_flight_8features.jsonl",
}
GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
TOL = 1e-9


def _hypotheses(n_features: int) -> np.ndarray:
    hyps = [h for h in itertools.product(GRID, repeat=n_features) if any(v != 0 for v in h)]
    return np.array(hyps)  # (H, F)


def _first_best(scores: np.ndarray) -> int:
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s >= best - TOL)


def _brute_force(records: list[dict], heldout: list[np.ndarray] | None = None) -> dict:
    """Noise-free user: a hypothesis keeps weight 1/k if the choice is one of its k tied best
    options, else 0 (an observation that would remove every hypothesis is skipped)."""
    n_rounds = len(records[0]["rounds"])
    hits = np.zeros(n_rounds)
    held_hits = np.zeros(n_rounds + 1)
    hyps = _hypotheses(len(records[0]["features"]))
    for rec in records:
        w = np.ones(len(hyps))
        reward = np.array(rec["reward_fn"])
        for r in range(n_rounds + 1):
            mean = (w[:, None] * hyps).sum(axis=0) / w.sum()
            if heldout is not None:
                for x_set in heldout:
                    truth = _first_best(list(x_set @ reward))
                    held_hits[r] += _first_best(list(x_set @ mean)) == truth
            if r == n_rounds:
                break
            x = np.array(rec["rounds_numpy"][r])  # (O, F), from the file
            choice = rec["rounds"][r]["user_idx"]
            hits[r] += _first_best(list(x @ mean)) == choice
            util = hyps @ x.T  # (H, O)
            tied = util >= util.max(axis=1, keepdims=True) - TOL
            lik = np.where(tied[:, choice], 1.0 / tied.sum(axis=1), 0.0)
            if (w * lik).sum() > 0:
                w = w * lik
    n = len(records)
    out = {"dialogue": (100 * hits / n).tolist()}
    if heldout is not None:
        out["heldout"] = (100 * held_hits / (n * len(heldout))).tolist()
    return out


def _records(samples_dir: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (samples_dir / SAMPLES[name]).read_text().splitlines()]


def _invoke(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.official
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_teacher_dialogues_equal_brute_force(samples_dir: Path, name: str) -> None:
    path = samples_dir / SAMPLES[name]
    args = ["--domain", name, "--interactions", str(path), "--likelihood", "noise-free"]
    got = _invoke(["teacher-dialogues", *args, "--json"])
    expect = _brute_force(_records(samples_dir, name))
    assert got["n_dialogues"] == 4
    assert got["stated_reward_agreement"] == 100.0
    assert np.allclose(got["teachers"][0]["accuracy_by_round"], expect["dialogue"])


def _write_heldout(records: list[dict], path: Path) -> list[np.ndarray]:
    """A held-out file in the official layout built from the sample's own option sets."""
    sets = [r["options"] for rec in records for r in rec["rounds"]]
    numeric = [r for rec in records for r in rec["rounds_numpy"]]
    users = [
        {
            "reward_fn": rec["reward_fn"],
            "idxs": [_first_best(list(np.array(x) @ np.array(rec["reward_fn"]))) for x in numeric],
        }
        for rec in records
    ]
    data = {
        "features": records[0]["features"],
        "all_options": sets,
        "user_idxs": users,
        "all_options_numpy": numeric,
    }
    path.write_text(json.dumps(data, indent=2))
    return [np.array(x) for x in numeric]


@pytest.mark.official
@pytest.mark.parametrize("name", ["hotel", "flight-2", "flight-6"])
def test_teacher_eval_and_eval_equal_brute_force(
    samples_dir: Path, tmp_path: Path, name: str
) -> None:
    records = _records(samples_dir, name)
    held_path = tmp_path / "heldout.json"
    held = _write_heldout(records, held_path)
    inter = str(samples_dir / SAMPLES[name])
    expect = _brute_force(records, held)
    common = ["--domain", name, "--heldout", str(held_path), "--interactions", inter, "--json"]
    teacher = _invoke(["teacher-eval", *common])
    assert teacher["source"] == "official" and teacher["n_heldout"] == 20
    assert np.allclose(teacher["accuracy_by_round"], expect["heldout"], atol=0.01)
    flags = ["--quiet", "--no-plots", "--out", str(tmp_path / "run")]
    run = _invoke(["eval", *common, "-a", "bayes", "-a", "oracle", *flags])
    bayes = next(a for a in run["assistants"] if a["name"] == "bayes")
    assert np.allclose(bayes["accuracy_by_round"], expect["heldout"], atol=0.01)
    oracle = next(a for a in run["assistants"] if a["name"] == "oracle")
    assert oracle["accuracy_by_round"] == [100.0] * 6


@pytest.mark.official
def test_features_that_do_not_fit_are_refused(samples_dir: Path) -> None:
    wrong = str(samples_dir / SAMPLES["flight-6"])
    result = CliRunner().invoke(
        app, ["teacher-dialogues", "--domain", "flight-2", "--interactions", wrong, "--json"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    text = str(result.exception)
    assert "do not match domain 'flight-2'" in text and "--domain flight-6" in text
