"""Session.select: candidates in every accepted form, the log, and bad candidates."""

from __future__ import annotations

import numpy as np
import pytest

from beliefagent.belief import SelectionConfig
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError, OptionError
from beliefagent.middleware import Session, read_candidates
from beliefagent.trajectories import read_trajectories

FLIGHT = load_domain("flight")


def _candidates(n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    while True:
        c = rng.integers(0, FLIGHT.n_levels, size=(n, FLIGHT.n_features))
        if len(np.unique(c, axis=0)) == n:
            return c


def test_select_then_recommend_logs_candidates(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    cands = _candidates()
    with Session(FLIGHT, policy="bayes", log=log, selection=SelectionConfig("eig")) as s:
        for r in range(3):
            chosen = s.select(cands)
            assert len(chosen.indices) == 3 and chosen.levels.shape == (3, 4)
            np.testing.assert_array_equal(chosen.levels, cands[chosen.indices])
            assert chosen.options[0].startswith("Flight 1: departure time:")
            turn = s.recommend(chosen.levels)
            assert turn.information_gain == pytest.approx(chosen.selection.information_gain)
            s.observe(r % 3)
    read = read_trajectories(log)
    start, turns = read.records[0], read.records[1:4]
    assert start.settings["selection"]["strategy"] == "eig"
    for t in turns:
        assert t.selection is not None and t.selection.strategy == "eig"
        assert len(t.selection.candidates) == 12
        for i, idx in enumerate(t.selection.indices):
            # the option shown as i is candidate idx (texts differ only in their number)
            assert t.options[i].features == t.selection.candidates[idx].features


def test_candidates_as_texts_and_mappings() -> None:
    cands = _candidates(6)
    texts = [FLIGHT.render_option(row, i) for i, row in enumerate(cands)]
    maps = [FLIGHT.feature_values(row) for row in cands]
    unlabelled = [t.split(": ", 1)[1] for t in texts]
    for form in (texts, maps, unlabelled, cands.tolist()):
        np.testing.assert_array_equal(read_candidates(FLIGHT, form), cands)


def test_strategy_per_call_and_reward() -> None:
    s = Session(FLIGHT, policy="bayes")
    cands = _candidates(20)
    s.recommend(cands[:3])
    s.observe(0)
    chosen = s.select(cands, strategy="reward")
    assert chosen.selection.strategy == "reward"
    expected = np.asarray(chosen.selection.expected_rewards)
    assert s.teacher is not None
    assert (
        expected.min()
        >= np.sort(s.teacher.belief.probs @ s.teacher.weights @ FLIGHT.codes(cands).T)[-3] - 1e-12
    )


def test_other_options_drop_the_selection(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    cands = _candidates()
    with Session(FLIGHT, policy="bayes", log=log) as s:
        s.select(cands)
        s.recommend(cands[-3:][::-1])  # not what was selected
        s.observe(0)
    turn = read_trajectories(log).records[1]
    assert turn.selection is None


@pytest.mark.parametrize(
    ("candidates", "field"),
    [
        (
            ["departure time: 25:00 PM, duration: 30 min, number of stops: 1, price: $370"] * 3,
            "candidates[0]",
        ),
        ([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], "candidates[0]"),
        ([[0, 0, 0, 0], [0, 0, 9, 1], [1, 0, 0, 0]], "candidates.number_of_stops"),
        ([[0, 0, 0, 0], [0, 0, 0, 1]], "candidates"),
        ([[0, 0, 0], [0, 0, 1], [1, 0, 0]], "candidates"),
        ("Flight 1: ...", "candidates"),
        ([{"price": 370}, {"price": 460}, {"price": 550}], "candidates[0]"),
    ],
)
def test_bad_candidates_name_the_field(candidates, field) -> None:
    s = Session(FLIGHT, policy="bayes")
    with pytest.raises(OptionError) as info:
        s.select(candidates)
    assert info.value.field == field


def test_select_needs_a_matching_k() -> None:
    s = Session(FLIGHT, policy="bayes")
    with pytest.raises(ConfigError, match="k="):
        s.select(_candidates(), k=4)
    with pytest.raises(ConfigError, match="strategy"):
        s.select(_candidates(), strategy="nope")
