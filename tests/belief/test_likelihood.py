from __future__ import annotations

import numpy as np
import pytest

from beliefagent.belief import (
    EpsilonGreedy,
    NoiseFree,
    Softmax,
    argmax_first,
    choice_likelihood,
    choice_model_from_name,
)
from beliefagent.errors import ConfigError


def test_rows_sum_to_one_over_batches() -> None:
    u = np.random.default_rng(0).normal(size=(4, 7, 3))
    for m in (NoiseFree(), EpsilonGreedy(0.3), Softmax(0.5)):
        p = m.probs(u)
        assert p.shape == u.shape
        assert np.allclose(p.sum(axis=-1), 1.0)


def test_noise_free_splits_ties() -> None:
    p = NoiseFree().probs(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert p.tolist() == [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]


def test_softmax_limits() -> None:
    u = np.array([0.0, 1.0, 0.5])
    assert Softmax(1e-3).probs(u)[1] == pytest.approx(1.0)
    assert np.allclose(Softmax(1e6).probs(u), 1 / 3, atol=1e-6)


def test_argmax_first_tolerates_round_off() -> None:
    assert argmax_first(np.array([0.0, 1e-17, -1e-17])) == 0
    assert argmax_first(np.array([0.0, 1e-3, 0.0])) == 1


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        EpsilonGreedy(1.5)
    with pytest.raises(ConfigError):
        Softmax(0.0)
    with pytest.raises(ConfigError) as info:
        choice_model_from_name("psychic")
    assert info.value.field == "likelihood"


@pytest.mark.parametrize("model", [NoiseFree(), EpsilonGreedy(0.2), Softmax(0.3)])
def test_chosen_probs_equal_the_full_table(model) -> None:
    rng = np.random.default_rng(7)
    # grid-valued utilities, so exact ties occur as they do in the domains
    utils = rng.integers(-2, 3, size=(4, 5, 3, 50)).astype(np.float64) / 2  # (..., O, H)
    choice = rng.integers(0, 3, size=(4, 5))
    table = model.probs(np.swapaxes(utils, -1, -2))  # (..., H, O)
    expected = np.take_along_axis(table, choice[..., None, None], axis=-1)[..., 0]
    assert np.allclose(choice_likelihood(model, utils, choice), expected)
    # a single option set and a scalar choice
    assert np.allclose(choice_likelihood(model, utils[0, 0], 2), table[0, 0, :, 2])


def test_choice_likelihood_falls_back_to_the_table_for_other_models() -> None:
    class Uniform:
        name = "uniform"

        def probs(self, utilities):
            return np.full(utilities.shape, 1.0 / utilities.shape[-1])

    utils = np.zeros((3, 8))  # (O, H)
    assert np.allclose(choice_likelihood(Uniform(), utils, 1), 1 / 3)


@pytest.mark.parametrize("model", [NoiseFree(), EpsilonGreedy(0.2), Softmax(0.3)])
def test_gap_probs_equal_chosen_probs(model) -> None:
    rng = np.random.default_rng(8)
    utils = rng.integers(-2, 3, size=(6, 3, 40)).astype(np.float64) / 2  # (..., O, H), ties
    utils[0, 1, :5] = utils[0, 0, :5] + 0.5e-9  # within the tie tolerance of each other
    choice = rng.integers(0, 3, size=6)
    choice[0] = 0
    others = np.array([[o for o in range(3) if o != c] for c in choice])  # (6, 2)
    gaps = (
        np.take_along_axis(utils, others[:, :, None], axis=1)
        - utils[np.arange(6), choice][:, None, :]
    )
    assert np.allclose(model.gap_probs(gaps), model.chosen_probs(utils, choice))
