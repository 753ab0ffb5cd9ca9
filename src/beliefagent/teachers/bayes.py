"""The Bayesian teacher (the paper's Bayesian Assistant) for choice domains.

It keeps an exact posterior over every hypothesis of the domain (a weight vector ``w``; the user's
reward for option ``o`` is ``w . phi(o)``) and, each round, recommends the option with the highest
*posterior expected reward* ``E_q[w] . phi(o)`` — the paper's rule; predicting with the single most
probable hypothesis (MAP) is worse and is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from beliefagent.belief import Belief, ChoiceModel, NoiseFree, argmax_first, predictive
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.belief.posterior import expected_information_gain, log_normalize
from beliefagent.belief.selection import Selection, SelectionConfig, select_subset
from beliefagent.domains import ChoiceDomain, QuestionnaireDomain
from beliefagent.errors import ChoiceError, ConfigError

__all__ = [
    "BayesianTeacher",
    "BeliefSummary",
    "Marginals",
    "QuestionnaireTeacher",
    "Recommendation",
    "heldout_accuracy_by_round",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Recommendation:
    """The teacher's answer for one option set."""

    choice: int
    """argmax of posterior expected reward (ties: first option, or random with tie_break)."""
    map_choice: int
    """the choice of the single most probable hypothesis."""
    expected_rewards: list[float]
    predictive: list[float]
    """P(the user picks each option) under the posterior: the soft teaching target."""
    information_gain: float
    """expected information gain of this option set, in nats."""


@dataclass(frozen=True)
class BeliefSummary:
    """A compact view of the posterior, cheap to log every turn."""

    entropy: float
    n_hypotheses: int
    n_alive: int
    map_index: int
    map_weights: list[float]
    mean_weights: dict[str, float]
    marginals: dict[str, list[float]] = field(repr=False)
    """per feature (or trait): P(weight = v) for each value in ``support``."""
    support: list[float] = field(repr=False)
    emptied: bool = False
    n_contradictions: int = 0


class Marginals:
    """Per-column posterior marginals over the distinct values of ``weights (n_hyp, n_cols)``,
    precomputed once per hypothesis space: ``post @ onehot`` gives every column's marginal in
    one product."""

    def __init__(self, weights: FloatArray, names: tuple[str, ...]) -> None:
        support, inverse = np.unique(weights, return_inverse=True)
        inverse = inverse.reshape(weights.shape)  # (n_hyp, n_cols)
        n_hyp, n_cols = weights.shape
        k = len(support)
        onehot = np.zeros((n_hyp, n_cols * k))  # (n_hyp, n_cols * n_support)
        onehot[np.arange(n_hyp)[:, None], np.arange(n_cols) * k + inverse] = 1.0
        self.names = names
        self.support: list[float] = support.tolist()
        self.weights = weights
        self._onehot = onehot

    def __call__(self, post: FloatArray) -> dict[str, list[float]]:
        flat = (post @ self._onehot).reshape(len(self.names), len(self.support))
        return {name: row.tolist() for name, row in zip(self.names, flat, strict=True)}

    def summary(self, belief: Belief) -> BeliefSummary:
        post = belief.probs
        mean = post @ self.weights  # (n_cols,)
        idx = belief.map_index()
        return BeliefSummary(
            entropy=belief.entropy(),
            n_hypotheses=belief.n_hyp,
            n_alive=belief.n_alive,
            map_index=idx,
            map_weights=self.weights[idx].tolist(),
            mean_weights={n: float(v) for n, v in zip(self.names, mean, strict=True)},
            marginals=self(post),
            support=self.support,
            emptied=belief.emptied,
            n_contradictions=belief.n_contradictions,
        )


class BayesianTeacher:
    """Exact Bayesian teacher for a :class:`ChoiceDomain`.

    ``likelihood`` is the user model used to update (``NoiseFree()`` is the paper's; use
    ``EpsilonGreedy``/``Softmax`` for real people). ``tie_break`` decides between options whose
    expected rewards tie: ``"first"`` (the paper's scoring convention) or ``"random"`` (seeded by
    ``seed``; use it for teaching data, or every tied round teaches "option 1").
    """

    def __init__(
        self,
        domain: ChoiceDomain,
        likelihood: ChoiceModel | None = None,
        *,
        tie_break: str = "first",
        seed: int | None = 0,
    ) -> None:
        if tie_break not in ("first", "random"):
            raise ConfigError("must be 'first' or 'random'", field="tie_break", value=tie_break)
        self.domain = domain
        self.likelihood = likelihood or NoiseFree()
        self.tie_break = tie_break
        self._rng = np.random.default_rng(seed)
        self.weights = domain.hypothesis_weights()  # (n_hyp, n_features)
        self._marginals = Marginals(self.weights, domain.feature_names)
        self.belief = Belief(len(self.weights))
        self.history: list[tuple[IntArray, int]] = []

    def reset(self) -> None:
        self.belief = Belief(len(self.weights))
        self.history = []

    def choice_probs(self, option_set: npt.ArrayLike) -> FloatArray:
        """``P(choice | h)`` for every hypothesis: ``(n_hyp, n_options)``."""
        x = self.domain.codes(self.domain.validate_option_set(option_set))  # (n_opt, n_feat)
        return self.likelihood.probs(self.weights @ x.T)  # (n_hyp, n_opt)

    def _break_tie(self, scores: FloatArray) -> int:
        if self.tie_break == "first":
            return int(argmax_first(scores))
        best = np.flatnonzero(scores >= scores.max() - 1e-9)
        return int(self._rng.choice(best))

    def recommend(self, option_set: npt.ArrayLike) -> Recommendation:
        lv = self.domain.validate_option_set(option_set)
        x = self.domain.codes(lv)  # (n_opt, n_feat)
        post = self.belief.probs  # (n_hyp,)
        expected = (post @ self.weights) @ x.T  # (n_opt,)
        probs = self.likelihood.probs(self.weights @ x.T)  # (n_hyp, n_opt)
        map_w = self.weights[self.belief.map_index()]
        return Recommendation(
            choice=self._break_tie(expected),
            map_choice=int(argmax_first(x @ map_w)),
            expected_rewards=expected.tolist(),
            predictive=predictive(post, probs).tolist(),
            information_gain=float(expected_information_gain(post, probs)),
        )

    def select(
        self,
        candidates: npt.ArrayLike,
        k: int | None = None,
        config: SelectionConfig | None = None,
    ) -> Selection:
        """Choose ``k`` (default: the options per round) of ``candidates (N, n_features)`` level
        indices to show, by ``config.strategy`` over the current posterior (see
        :mod:`beliefagent.belief.selection`); ``random`` draws from the teacher's seeded rng."""
        lv = self.domain.validate_candidates(candidates, k)
        x = self.domain.codes(lv)  # (N, n_feat)
        return select_subset(
            self.belief.probs,
            self.weights @ x.T,  # (n_hyp, N)
            self.domain.n_options if k is None else k,
            self.likelihood,
            config,
            self._rng,
        )

    def observe(self, option_set: npt.ArrayLike, choice: int) -> bool:
        """Condition on the user's choice. Returns False when the choice contradicted every
        remaining hypothesis (the update is skipped; see :class:`~beliefagent.belief.Belief`)."""
        lv = self.domain.validate_option_set(option_set)
        if not 0 <= int(choice) < self.domain.n_options:
            raise ChoiceError(
                f"must be in 0..{self.domain.n_options - 1}", field="choice", value=choice
            )
        self.history.append((lv, int(choice)))
        x = self.domain.codes(lv)  # (n_opt, n_feat)
        return self.belief.update(self.likelihood.probs(self.weights @ x.T), int(choice))

    def summary(self) -> BeliefSummary:
        return self._marginals.summary(self.belief)


class QuestionnaireTeacher:
    """Exact Bayesian teacher for a :class:`QuestionnaireDomain` (Big Five): posterior over every
    profile, updated with the GRM likelihood after each answer; predicts the next answer."""

    def __init__(self, domain: QuestionnaireDomain) -> None:
        self.domain = domain
        self.weights = domain.hypothesis_weights()  # (n_hyp, n_traits)
        self._marginals = Marginals(self.weights, domain.traits)
        self.belief = Belief(len(self.weights))

    def reset(self) -> None:
        self.belief = Belief(len(self.weights))

    def predictive(self, item: int) -> FloatArray:
        """P(answer = 1..K) for ``item``: ``(n_answers,)``."""
        return self.belief.predictive(self.domain.answer_probs(item))

    def predict(self, item: int) -> int:
        """The most probable answer (1-based Likert value)."""
        return int(np.argmax(self.predictive(item))) + 1

    def information_gain(self, item: int) -> float:
        return self.belief.information_gain(self.domain.answer_probs(item))

    def observe(self, item: int, answer: int) -> bool:
        a = self.domain.check_answer(answer)
        return self.belief.update(self.domain.answer_probs(item), a - 1)

    def summary(self) -> BeliefSummary:
        return self._marginals.summary(self.belief)


def heldout_accuracy_by_round(
    domain: ChoiceDomain,
    user_weights: FloatArray,
    rounds: IntArray,
    choices: IntArray,
    heldout: IntArray,
    truth: IntArray,
    likelihood: ChoiceModel | None = None,
    *,
    max_elements: int = 2_000_000,
    tie_tol: float = TIE_TOL,
) -> FloatArray:
    """The paper's protocol for the Bayesian teacher, vectorised over users and hypotheses.

    ``user_weights (U, F)``, ``rounds (U, R, O, F)`` level indices, ``choices (U, R)``,
    ``heldout (S, O, F)`` level indices, ``truth (U, S)`` the user's preferred held-out option.
    After each of rounds 0..R the teacher predicts every held-out set (argmax of posterior
    expected reward, first option on ties); returns accuracy per checkpoint averaged over users,
    ``(R + 1,)`` in [0, 1]. Expected rewards within ``tie_tol`` count as tied (``0`` reproduces a
    plain ``argmax`` that lets float round-off break the round-0 tie). Updates that would empty
    the posterior are skipped, as in :class:`~beliefagent.belief.Belief`. Users are processed in
    chunks to bound memory.
    """
    lik = likelihood or NoiseFree()
    weights = domain.hypothesis_weights()  # (H, F)
    n_users, n_rounds = choices.shape
    if rounds.shape[:2] != (n_users, n_rounds) or truth.shape != (n_users, heldout.shape[0]):
        raise ConfigError(
            "shape mismatch between rounds, choices and truth",
            field="rounds",
            value=(rounds.shape, choices.shape, truth.shape),
        )
    x_held = domain.codes(heldout)  # (S, O, F)
    h = weights.shape[0]
    chunk = max(1, max_elements // max(1, h * rounds.shape[2]))
    correct = np.zeros(n_rounds + 1)
    for start in range(0, n_users, chunk):
        sl = slice(start, start + chunk)
        x = domain.codes(rounds[sl])  # (u, R, O, F)
        u = x.shape[0]
        log_post = np.full((u, h), -np.log(h))  # (u, H)
        means = np.empty((u, n_rounds + 1, weights.shape[1]))  # (u, R+1, F)
        means[:, 0] = np.exp(log_post) @ weights
        for r in range(n_rounds):
            utils = np.matmul(x[:, r], weights.T).swapaxes(1, 2)  # (u, H, O), O-major in memory
            probs = lik.probs(utils)
            p_choice = np.take_along_axis(probs, choices[sl, r][:, None, None], axis=2)[..., 0]
            with np.errstate(divide="ignore"):
                new = log_normalize(log_post + np.log(p_choice))  # (u, H)
            ok = np.asarray(np.isfinite(new).any(axis=1))  # a contradiction keeps the old posterior
            log_post = np.where(ok[:, None], new, log_post)
            means[:, r + 1] = np.exp(log_post) @ weights
        scores = (means @ x_held.reshape(-1, x_held.shape[-1]).T).reshape(
            u, n_rounds + 1, *x_held.shape[:2]
        )  # (u, R+1, S, O)
        pred = argmax_first(scores, axis=-1, tol=tie_tol)  # (u, R+1, S)
        hit = np.asarray(pred == truth[sl, None, :], dtype=np.float64)  # (u, R+1, S)
        correct += hit.mean(axis=2).sum(axis=0)
    return correct / n_users
