"""Subset selection against a brute-force per-hypothesis computation, and its strategies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from beliefagent.belief import (
    EpsilonGreedy,
    NoiseFree,
    SelectionConfig,
    Softmax,
    select_subset,
    subset_information_gain,
)
from beliefagent.belief.selection import exact_subset_gains
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError, OptionError

FLIGHT = load_domain("flight")
W = FLIGHT.hypothesis_weights()  # (624, 4)
MODELS = [NoiseFree(), EpsilonGreedy(0.2), Softmax(0.25)]


def _pool(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, FLIGHT.n_levels, size=(n, FLIGHT.n_features))
    return W @ FLIGHT.codes(levels).T  # (H, N) utilities


def _posterior(seed: int, sparse: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    post = rng.dirichlet(np.ones(len(W)))
    if sparse:
        post[rng.random(len(W)) < 0.6] = 0.0
    return post / post.sum()


def brute_force_gain(post, utilities, subset, model) -> float:
    """EIG of one subset, hypothesis by hypothesis, with plain Python."""
    k = len(subset)
    pred = [0.0] * k
    cond = 0.0
    for h, ph in enumerate(post.tolist()):
        if ph == 0.0:
            continue
        utils = [float(utilities[h, o]) for o in subset]
        best = max(utils)
        if isinstance(model, NoiseFree | EpsilonGreedy):
            tied = [u >= best - 1e-9 for u in utils]
            p = [(1.0 / sum(tied)) if t else 0.0 for t in tied]
            if isinstance(model, EpsilonGreedy):
                p = [(1 - model.epsilon) * v + model.epsilon / k for v in p]
        else:
            e = [math.exp((u - best) / model.temperature) for u in utils]
            p = [v / sum(e) for v in e]
        for i in range(k):
            pred[i] += ph * p[i]
        cond += ph * -sum(v * math.log(v) for v in p if v > 0)
    return -sum(v * math.log(v) for v in pred if v > 0) - cond


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
@pytest.mark.parametrize("k", [2, 3])
def test_exact_gains_match_brute_force(model, k) -> None:
    utilities = _pool(1, 9)
    post = _posterior(2)
    subsets, gains = exact_subset_gains(post, utilities, k, model)
    assert [tuple(s) for s in subsets] == list(itertools.combinations(range(9), k))
    ref = [brute_force_gain(post, utilities, list(s), model) for s in subsets]
    np.testing.assert_allclose(gains, ref, atol=1e-10)


def test_ties_are_exact() -> None:
    """Options that tie under many hypotheses (equal on the features those weigh)."""
    levels = np.array([[0, 0, 0, 0], [0, 0, 0, 5], [0, 0, 1, 0], [0, 0, 0, 0], [3, 0, 0, 0]])
    levels[3, 1] = 10  # differs from option 0 only in duration
    utilities = W @ FLIGHT.codes(levels).T
    post = np.full(len(W), 1 / len(W))
    for model in (NoiseFree(), EpsilonGreedy(0.1)):
        subsets, gains = exact_subset_gains(post, utilities, 3, model)
        ref = [brute_force_gain(post, utilities, list(s), model) for s in subsets]
        np.testing.assert_allclose(gains, ref, atol=1e-10)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_subset_gain_is_shared_by_every_path(model) -> None:
    utilities = _pool(3, 12)
    post = _posterior(4, sparse=False)
    subsets = np.array([[0, 1, 2], [3, 7, 11], [2, 5, 9]])
    got = subset_information_gain(post, utilities, subsets, model)
    ref = [brute_force_gain(post, utilities, list(s), model) for s in subsets]
    np.testing.assert_allclose(got, ref, atol=1e-10)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_eig_exact_picks_the_best_subset(model) -> None:
    utilities = _pool(5, 15)
    post = _posterior(6)
    sel = select_subset(post, utilities, 3, model, SelectionConfig("eig", search="exact"))
    _, gains = exact_subset_gains(post, utilities, 3, model)
    assert sel.search == "exact" and sel.n_scored == math.comb(15, 3)
    assert sel.information_gain == pytest.approx(gains.max())
    assert sel.indices == sorted(sel.indices) and len(set(sel.indices)) == 3


def test_greedy_is_close_to_exact() -> None:
    losses = []
    for seed in range(6):
        utilities = _pool(10 + seed, 40)
        post = _posterior(20 + seed, sparse=seed % 2 == 0)
        exact = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig(search="exact"))
        greedy = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig(search="greedy"))
        assert greedy.search == "greedy" and greedy.n_scored < math.comb(40, 3)
        assert greedy.information_gain <= exact.information_gain + 1e-12
        losses.append(1 - greedy.information_gain / exact.information_gain)
    assert max(losses) < 0.02


def test_auto_switches_on_size() -> None:
    post = np.full(len(W), 1 / len(W))
    small = select_subset(post, _pool(0, 12), 3, NoiseFree())
    large = select_subset(post, _pool(0, 60), 3, NoiseFree())
    assert (small.search, large.search) == ("exact", "greedy")


def test_reward_takes_the_top_expected_rewards() -> None:
    utilities = _pool(7, 20)
    post = _posterior(8)
    sel = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig("reward"))
    expected = post @ utilities
    assert sorted(sel.indices) == sorted(np.argsort(-expected)[:3].tolist())
    assert sel.search == "none"


def test_random_is_seeded_and_distinct() -> None:
    utilities = _pool(9, 30)
    post = np.full(len(W), 1 / len(W))
    cfg = SelectionConfig("random")
    a = select_subset(post, utilities, 3, NoiseFree(), cfg, np.random.default_rng(1))
    b = select_subset(post, utilities, 3, NoiseFree(), cfg, np.random.default_rng(1))
    assert a.indices == b.indices and len(set(a.indices)) == 3


def test_mixed_stays_within_the_margin() -> None:
    utilities = _pool(11, 30)
    post = _posterior(12)
    expected = post @ utilities
    lo, hi = expected.min(), expected.max()
    for margin in (0.0, 0.3, 1.0):
        sel = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig("mixed", margin))
        if margin == 0.0:
            assert sorted(sel.indices) == sorted(np.argsort(-expected)[:3].tolist())
        else:
            assert all(expected[i] >= hi - margin * (hi - lo) - 1e-9 for i in sel.indices)
    full = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig("mixed", 1.0))
    eig = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig("eig"))
    assert full.indices == eig.indices and full.n_eligible == 30


def test_dead_hypotheses_do_not_change_the_answer() -> None:
    utilities = _pool(13, 10)
    post = _posterior(14)
    alive = post > 0
    a = select_subset(post, utilities, 3, NoiseFree(), SelectionConfig(search="exact"))
    b = select_subset(
        post[alive], utilities[alive], 3, NoiseFree(), SelectionConfig(search="exact")
    )
    assert a.indices == b.indices and a.information_gain == pytest.approx(b.information_gain)


def test_bad_arguments_are_named() -> None:
    post = np.full(len(W), 1 / len(W))
    with pytest.raises(ConfigError, match="strategy"):
        SelectionConfig("greedy-ish")
    with pytest.raises(ConfigError, match="margin"):
        SelectionConfig("mixed", margin=1.5)
    with pytest.raises(ConfigError, match="search"):
        SelectionConfig(search="fast")
    with pytest.raises(OptionError, match="candidates"):
        select_subset(post, _pool(0, 2), 3, NoiseFree())
