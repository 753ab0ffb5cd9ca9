from __future__ import annotations

import numpy as np
import pytest

from beliefagent.belief import EpsilonGreedy, NoiseFree
from beliefagent.domains import load_domain
from beliefagent.errors import ChoiceError, ConfigError, OptionError
from beliefagent.teachers import (
    BayesianTeacher,
    OracleTeacher,
    QuestionnaireTeacher,
    SimulatedRespondent,
    SimulatedUser,
    heldout_accuracy_by_round,
)

FLIGHT = load_domain("flight")


def test_round_one_ties_and_outputs() -> None:
    t = BayesianTeacher(FLIGHT)
    s = FLIGHT.random_option_sets(np.random.default_rng(0), 1)[0]
    rec = t.recommend(s)
    assert rec.choice == 0  # the posterior mean is 0: every option ties, the first wins
    assert np.allclose(rec.expected_rewards, 0.0, atol=1e-12)
    assert sum(rec.predictive) == pytest.approx(1.0)
    assert 0 < rec.information_gain <= np.log(3)
    summary = t.summary()
    assert summary.entropy == pytest.approx(np.log(624))
    assert set(summary.marginals) == set(FLIGHT.feature_names)
    for m in summary.marginals.values():
        assert sum(m) == pytest.approx(1.0)


def test_random_tie_break_is_seeded_and_varied() -> None:
    sets = FLIGHT.random_option_sets(np.random.default_rng(1), 30)
    t1 = BayesianTeacher(FLIGHT, tie_break="random", seed=5)
    t2 = BayesianTeacher(FLIGHT, tie_break="random", seed=5)
    picks = [t1.recommend(s).choice for s in sets]
    again = [t2.recommend(s).choice for s in sets]
    assert picks == again and len(set(picks)) == 3


def test_teacher_learns_a_user() -> None:
    rng = np.random.default_rng(2)
    w = FLIGHT.hypothesis_weights()[100]
    user = SimulatedUser(FLIGHT, w, seed=0)
    t = BayesianTeacher(FLIGHT)
    for s in FLIGHT.random_option_sets(rng, 30):
        t.observe(s, user.choose(s))
    held = FLIGHT.random_option_sets(rng, 200)
    oracle = OracleTeacher(FLIGHT, w)
    agree = np.mean([t.recommend(s).choice == oracle.recommend(s) for s in held])
    assert agree > 0.9
    assert t.summary().entropy < np.log(624) / 3


def test_batched_evaluation_equals_per_session_teacher() -> None:
    rng = np.random.default_rng(4)
    users = rng.choice(624, size=25, replace=False)
    weights = FLIGHT.hypothesis_weights()[users]
    rounds = FLIGHT.random_option_sets(rng, 25 * 5).reshape(25, 5, 3, 4)
    choices = np.array(
        [
            [SimulatedUser(FLIGHT, w, EpsilonGreedy(0.3), seed=i).choose(s) for s in r]
            for i, (w, r) in enumerate(zip(weights, rounds, strict=True))
        ]
    )
    held = FLIGHT.random_option_sets(rng, 40)
    truth = np.array([[OracleTeacher(FLIGHT, w).recommend(s) for s in held] for w in weights])
    for lik in (NoiseFree(), EpsilonGreedy(0.3)):
        fast = heldout_accuracy_by_round(
            FLIGHT, weights, rounds, choices, held, truth, lik, max_elements=10_000
        )
        slow = np.zeros(6)
        for u in range(25):
            t = BayesianTeacher(FLIGHT, lik)
            for r in range(6):
                slow[r] += np.mean(
                    [t.recommend(s).choice == truth[u, k] for k, s in enumerate(held)]
                )
                if r < 5:
                    t.observe(rounds[u, r], int(choices[u, r]))
        assert np.allclose(fast, slow / 25)


def test_bad_observations() -> None:
    t = BayesianTeacher(FLIGHT)
    s = FLIGHT.random_option_sets(np.random.default_rng(0), 1)[0]
    with pytest.raises(ChoiceError) as info:
        t.observe(s, 3)
    assert info.value.field == "choice" and info.value.value == 3
    with pytest.raises(OptionError):
        t.recommend(s[:2])
    with pytest.raises(ConfigError):
        BayesianTeacher(FLIGHT, tie_break="coin")
    with pytest.raises(ConfigError):
        OracleTeacher(FLIGHT, [1.0, 0.0])


def test_simulated_users_are_reproducible() -> None:
    sets = FLIGHT.random_option_sets(np.random.default_rng(0), 50)
    w = FLIGHT.hypothesis_weights()[7]
    a = [SimulatedUser(FLIGHT, w, EpsilonGreedy(0.5), seed=3).choose(s) for s in sets]
    b = [SimulatedUser(FLIGHT, w, EpsilonGreedy(0.5), seed=3).choose(s) for s in sets]
    assert a == b
    noiseless = SimulatedUser(FLIGHT, w, seed=0)
    assert all(
        noiseless.choose(s) == OracleTeacher(FLIGHT, w).recommend(s)
        or np.isclose(noiseless.choice_probs(s).max(), 0.5, atol=0.2)
        for s in sets
    )


def test_big_five_posterior_concentrates_on_true_profile() -> None:
    big5 = load_domain("bigfive")
    for profile in (0, 1562, 2718):
        t = QuestionnaireTeacher(big5)
        user = SimulatedRespondent(big5, profile, seed=profile)
        mass = []
        for _ in range(4):  # the questionnaire four times over
            for item in range(50):
                t.observe(item, user.answer(item))
            mass.append(t.belief.probs[profile])
            assert t.belief.probs.sum() == pytest.approx(1.0)
        assert mass[-1] > mass[0] and mass[-1] > 0.5
        assert t.summary().map_index == profile
        assert t.predictive(0).sum() == pytest.approx(1.0)
