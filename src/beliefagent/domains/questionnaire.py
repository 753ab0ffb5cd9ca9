"""Questionnaire domains (Big Five): the user answers Likert items; the hypothesis space is every
profile of trait levels; answers follow a Graded Response Model (GRM).

GRM (Samejima): with latent trait value ``theta`` (``level - center``, negated for reverse-keyed
items), discrimination ``a`` and increasing thresholds ``b_1 < ... < b_{K-1}``::

    P(answer >= k) = sigmoid(a * (theta - b_{k-1}))      k = 2..K
    P(answer = k)  = P(answer >= k) - P(answer >= k + 1)
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from beliefagent.domains.spec import ItemSpec, QuestionnaireSpec
from beliefagent.errors import ChoiceError, EmptyHypothesisSpaceError, OptionError

__all__ = ["QuestionnaireDomain"]

FloatArray = npt.NDArray[np.float64]


class QuestionnaireDomain:
    """A validated questionnaire domain built from a :class:`QuestionnaireSpec`."""

    kind = "questionnaire"

    def __init__(self, spec: QuestionnaireSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.traits: tuple[str, ...] = tuple(spec.traits)
        self.items: tuple[ItemSpec, ...] = tuple(spec.items)
        self.levels = np.asarray(spec.levels, dtype=np.float64)  # (n_levels,)
        self.n_answers = len(spec.scale)
        profiles = np.array(list(itertools.product(self.levels, repeat=len(self.traits))))
        if profiles.size == 0:
            raise EmptyHypothesisSpaceError("no profiles", field="levels", value=spec.levels)
        self._profiles = profiles.astype(np.float64)  # (n_hyp, n_traits)
        trait_index = {t: i for i, t in enumerate(self.traits)}
        self._item_trait = np.array([trait_index[it.trait] for it in self.items])  # (n_items,)
        self._item_key = np.array([it.keyed for it in self.items], dtype=np.float64)
        self._probs = self._grm_table()  # (n_items, n_hyp, n_answers)

    def hypothesis_weights(self) -> FloatArray:
        """Every profile's trait levels, ``(n_hyp, n_traits)``, in ``itertools.product`` order."""
        return self._profiles

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.traits

    def _grm_table(self) -> FloatArray:
        grm = self.spec.grm
        theta = self._profiles[:, self._item_trait].T - grm.center  # (n_items, n_hyp)
        theta = theta * self._item_key[:, None]
        b = np.asarray(grm.thresholds)  # (K-1,)
        z = grm.discrimination * (theta[..., None] - b)  # (n_items, n_hyp, K-1)
        geq = 1.0 / (1.0 + np.exp(-z))  # P(answer >= k), k = 2..K
        ones = np.ones((*geq.shape[:-1], 1))
        zeros = np.zeros((*geq.shape[:-1], 1))
        cum = np.concatenate([ones, geq, zeros], axis=-1)  # (n_items, n_hyp, K+1)
        return np.clip(cum[..., :-1] - cum[..., 1:], 1e-300, 1.0)  # (n_items, n_hyp, K)

    def check_item(self, item: int) -> int:
        if not 0 <= int(item) < len(self.items):
            raise OptionError(
                f"item index must be in 0..{len(self.items) - 1}", field="item", value=item
            )
        return int(item)

    def check_answer(self, answer: int) -> int:
        """Answers are 1..K on the Likert scale."""
        if not 1 <= int(answer) <= self.n_answers:
            raise ChoiceError(
                f"answer must be in 1..{self.n_answers}", field="answer", value=answer
            )
        return int(answer)

    def answer_probs(self, item: int) -> FloatArray:
        """``P(answer | profile)`` for one item: ``(n_hyp, n_answers)``; rows sum to 1."""
        return self._probs[self.check_item(item)]

    def render_item(self, item: int) -> str:
        return self.spec.prompts.question.format(text=self.items[self.check_item(item)].text)

    def __repr__(self) -> str:
        return (
            f"QuestionnaireDomain({self.name!r}, traits={list(self.traits)}, "
            f"items={len(self.items)}, n_hypotheses={len(self._profiles)})"
        )
