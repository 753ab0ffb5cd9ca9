"""The posterior against brute-force enumeration, and its invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from beliefagent.belief import (
    Belief,
    EpsilonGreedy,
    NoiseFree,
    Softmax,
    choice_likelihood,
    entropy,
    expected_information_gain,
    log_normalize,
)
from beliefagent.domains import load_domain
from beliefagent.errors import ChoiceError, EmptyHypothesisSpaceError

FLIGHT = load_domain("flight")
MODELS = [NoiseFree(), EpsilonGreedy(0.2), Softmax(0.25)]


def brute_force_posterior(weights, option_sets, choices, model) -> list[float]:
    """A straightforward per-hypothesis computation, independent of the vectorised code."""
    unnorm = []
    for w in weights.tolist():
        p = 1.0
        for s, c in zip(option_sets, choices, strict=True):
            utils = [sum(wi * xi for wi, xi in zip(w, opt, strict=True)) for opt in s.tolist()]
            best = max(utils)
            if isinstance(model, NoiseFree | EpsilonGreedy):
                tied = [u >= best - 1e-9 for u in utils]
                lik = (1.0 / sum(tied)) if tied[c] else 0.0
                if isinstance(model, EpsilonGreedy):
                    lik = (1 - model.epsilon) * lik + model.epsilon / len(utils)
            else:
                z = [math.exp((u - best) / model.temperature) for u in utils]
                lik = z[c] / sum(z)
            p *= lik
        unnorm.append(p)
    total = sum(unnorm)
    return [u / total for u in unnorm]


def _dialogue(seed: int, n_rounds: int = 5):
    rng = np.random.default_rng(seed)
    sets = FLIGHT.random_option_sets(rng, n_rounds)
    true_w = FLIGHT.hypothesis_weights()[rng.integers(624)]
    choices = [int(np.argmax(FLIGHT.codes(s) @ true_w)) for s in sets]
    return sets, choices


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_posterior_equals_brute_force(model, seed: int) -> None:
    sets, choices = _dialogue(seed)
    weights = FLIGHT.hypothesis_weights()
    belief = Belief(len(weights))
    for s, c in zip(sets, choices, strict=True):
        belief.update(model.probs(weights @ FLIGHT.codes(s).T), c)
    expected = brute_force_posterior(weights, [FLIGHT.codes(s) for s in sets], choices, model)
    assert np.allclose(belief.probs, expected, atol=1e-12)
    assert belief.probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
@pytest.mark.parametrize("block", [1, 100, 624, 4096])
def test_blockwise_update_equals_brute_force(model, block: int) -> None:
    sets, choices = _dialogue(3)
    weights = FLIGHT.hypothesis_weights()
    belief = Belief(len(weights))
    for s, c in zip(sets, choices, strict=True):
        x = FLIGHT.codes(s)
        assert belief.update_blockwise(
            lambda sl, x=x, c=c: choice_likelihood(model, x @ weights[sl].T, c), block=block
        )
    expected = brute_force_posterior(weights, [FLIGHT.codes(s) for s in sets], choices, model)
    assert np.allclose(belief.probs, expected, atol=1e-12)
    assert belief.n_observations == 5


def test_blockwise_contradiction_keeps_the_posterior() -> None:
    b = Belief(10)
    assert b.update_likelihood(np.r_[np.zeros(5), np.ones(5)])
    before = b.log_post.copy()
    assert not b.update_blockwise(lambda sl: np.r_[np.ones(5), np.zeros(5)][sl], block=3)
    assert np.array_equal(b.log_post, before) and b.emptied and b.n_observations == 2
    with pytest.raises(ChoiceError):
        b.update_likelihood(np.ones(4))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_order_of_observations_does_not_matter(model) -> None:
    sets, choices = _dialogue(7)
    weights = FLIGHT.hypothesis_weights()
    posts = []
    for perm in itertools.islice(itertools.permutations(range(5)), 0, 120, 17):
        b = Belief(len(weights))
        for i in perm:
            b.update(model.probs(weights @ FLIGHT.codes(sets[i]).T), choices[i])
        posts.append(b.probs)
    for p in posts[1:]:
        assert np.allclose(p, posts[0], atol=1e-12)


def test_eliminated_hypotheses_stay_eliminated() -> None:
    sets, choices = _dialogue(11, n_rounds=8)
    weights = FLIGHT.hypothesis_weights()
    b = Belief(len(weights))
    dead = np.zeros(len(weights), dtype=bool)
    for s, c in zip(sets, choices, strict=True):
        b.update(NoiseFree().probs(weights @ FLIGHT.codes(s).T), c)
        now_dead = b.probs == 0
        assert np.all(now_dead[dead])
        dead = now_dead
        assert b.probs.sum() == pytest.approx(1.0)
    assert dead.any()


def test_contradiction_keeps_previous_posterior_and_never_nan() -> None:
    weights = FLIGHT.hypothesis_weights()
    b = Belief(len(weights))
    probs = np.zeros((len(weights), 3))
    probs[:, 0] = 1.0  # every hypothesis says option 0
    before = b.probs.copy()
    assert b.update(probs, 2) is False
    assert b.emptied and b.n_contradictions == 1
    assert np.array_equal(b.probs, before)
    assert np.isfinite(b.entropy())
    assert b.update(probs, 0) is True


def test_predictive_and_information_gain_invariants() -> None:
    weights = FLIGHT.hypothesis_weights()
    rng = np.random.default_rng(0)
    b = Belief(len(weights))
    for s in FLIGHT.random_option_sets(rng, 20):
        probs = Softmax(0.2).probs(weights @ FLIGHT.codes(s).T)
        pred = b.predictive(probs)
        assert pred.sum() == pytest.approx(1.0) and np.all(pred >= 0)
        ig = b.information_gain(probs)
        assert -1e-12 <= ig <= np.log(3) + 1e-12
    # a set of identical options tells nothing
    same = np.repeat(FLIGHT.codes(FLIGHT.random_option_sets(rng, 1))[0][:1], 3, axis=0)
    assert b.information_gain(NoiseFree().probs(weights @ same.T)) == pytest.approx(0, abs=1e-12)


def test_log_normalize_and_entropy_edge_cases() -> None:
    x = np.array([[0.0, -np.inf, np.log(3.0)], [-np.inf, -np.inf, -np.inf]])
    y = log_normalize(x)
    assert np.exp(y[0]).sum() == pytest.approx(1.0)
    assert np.all(np.isneginf(y[1]))
    assert entropy(np.array([1.0, 0.0])) == 0.0
    assert entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))
    post = np.full(2, 0.5)
    assert expected_information_gain(post, np.eye(2)) == pytest.approx(np.log(2))


def test_bad_inputs() -> None:
    with pytest.raises(EmptyHypothesisSpaceError):
        Belief(0)
    with pytest.raises(ChoiceError) as info:
        Belief(3).update(np.full((3, 3), 1 / 3), 3)
    assert info.value.field == "choice" and info.value.value == 3
