"""Simulated users: seeded and reproducible.

- :class:`SimulatedUser` (choice domains) picks with a choice model over its true reward:
  ``NoiseFree()`` is the paper's user (exact ties broken at random), ``EpsilonGreedy``/``Softmax``
  are noisy users.
- :class:`SimulatedRespondent` (questionnaires) answers items by sampling the GRM.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from beliefagent.belief import ChoiceModel, NoiseFree
from beliefagent.domains import ChoiceDomain, QuestionnaireDomain

__all__ = ["SimulatedRespondent", "SimulatedUser", "sample_users"]


class SimulatedUser:
    def __init__(
        self,
        domain: ChoiceDomain,
        weights: npt.ArrayLike,
        choice_model: ChoiceModel | None = None,
        *,
        seed: int | None = 0,
    ) -> None:
        self.domain = domain
        self.weights = np.asarray(weights, dtype=np.float64)  # (n_features,)
        self.choice_model = choice_model or NoiseFree()
        self.rng = np.random.default_rng(seed)

    def choice_probs(self, option_set: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = self.domain.codes(self.domain.validate_option_set(option_set))
        return self.choice_model.probs((x @ self.weights)[None, :])[0]  # (n_opt,)

    def choose(self, option_set: npt.ArrayLike) -> int:
        p = self.choice_probs(option_set)
        return int(self.rng.choice(len(p), p=p))

    def preferred(self, option_sets: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Noise-free favourite of each set ``(n_sets, n_opt, n_feat)`` (ties at random)."""
        x = self.domain.codes(np.asarray(option_sets))  # (n_sets, n_opt, n_feat)
        r = x @ self.weights  # (n_sets, n_opt)
        tied = r >= r.max(axis=1, keepdims=True) - 1e-9
        noise = self.rng.random(r.shape)
        return np.argmax(np.where(tied, noise, -1.0), axis=1).astype(np.int64)


class SimulatedRespondent:
    def __init__(self, domain: QuestionnaireDomain, profile_index: int, *, seed: int | None = 0):
        self.domain = domain
        self.profile_index = int(profile_index)
        self.profile = domain.hypothesis_weights()[self.profile_index]
        self.rng = np.random.default_rng(seed)

    def answer(self, item: int) -> int:
        p = self.domain.answer_probs(item)[self.profile_index]  # (n_answers,)
        return int(self.rng.choice(len(p), p=p)) + 1


def sample_users(
    domain: ChoiceDomain | QuestionnaireDomain, n: int | None, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Indices of ``n`` distinct hypotheses to play users (all of them, in order, when ``n`` is
    None or at least the space's size)."""
    total = len(domain.hypothesis_weights())
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
