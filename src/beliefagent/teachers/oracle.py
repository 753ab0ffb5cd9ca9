"""The oracle teacher: knows the user's true weights and always names their favourite option.
It is the ceiling of any assistant, and the target of "oracle teaching"."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from beliefagent.belief import argmax_first
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ConfigError

__all__ = ["OracleTeacher"]


class OracleTeacher:
    def __init__(self, domain: ChoiceDomain, true_weights: npt.ArrayLike) -> None:
        w = np.asarray(true_weights, dtype=np.float64)
        if w.shape != (domain.n_features,):
            raise ConfigError(
                f"expected {domain.n_features} weights", field="true_weights", value=w.tolist()
            )
        self.domain = domain
        self.true_weights = w

    def rewards(self, option_set: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = self.domain.codes(self.domain.validate_option_set(option_set))  # (n_opt, n_feat)
        return x @ self.true_weights

    def recommend(self, option_set: npt.ArrayLike) -> int:
        return int(argmax_first(self.rewards(option_set)))

    def observe(self, option_set: npt.ArrayLike, choice: int) -> bool:
        """The oracle learns nothing; present so it can stand wherever a teacher does."""
        return True
