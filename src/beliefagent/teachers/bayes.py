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

from beliefagent.belief import (
    Belief,
    ChoiceModel,
    NoiseFree,
    argmax_first,
    choice_likelihood,
)
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.belief.posterior import entropy
from beliefagent.belief.selection import Selection, SelectionConfig, select_subset
from beliefagent.domains import ChoiceDomain, QuestionnaireDomain
from beliefagent.errors import ChoiceError, ConfigError
from beliefagent.teachers.tables import Marginals, domain_tables

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


def _summary(marginals: Marginals, weights: FloatArray, belief: Belief) -> BeliefSummary:
    post = belief.probs
    mean = post @ weights  # (n_cols,)
    idx = belief.map_index()
    return BeliefSummary(
        entropy=float(entropy(post)),
        n_hypotheses=belief.n_hyp,
        n_alive=belief.n_alive,
        map_index=idx,
        map_weights=weights[idx].tolist(),
        mean_weights={n: float(v) for n, v in zip(marginals.names, mean, strict=True)},
        marginals=marginals(post),
        support=marginals.support,
        emptied=belief.emptied,
        n_contradictions=belief.n_contradictions,
    )


class BayesianTeacher:
    """Exact Bayesian teacher for a :class:`ChoiceDomain`.

    ``likelihood`` is the user model used to update (``NoiseFree()`` is the paper's; use
    ``EpsilonGreedy``/``Softmax`` for real people). ``tie_break`` decides between options whose
    expected rewards tie: ``"first"`` (the paper's scoring convention) or ``"random"`` (seeded by
    ``seed``; use it for teaching data, or every tied round teaches "option 1").

    Memory: the weights and marginal tables are the domain's, shared read-only by every teacher
    of the domain in the process (:func:`~beliefagent.teachers.tables.domain_tables`); a teacher
    owns its posterior (``8 * n_hyp`` bytes) and its history (:meth:`state_nbytes`).
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
        tables = domain_tables(domain, domain.feature_names)
        self.weights = tables.weights  # (n_hyp, n_features), shared, read-only
        self._marginals = tables.marginals
        self.belief = Belief(len(self.weights))
        self.history: list[tuple[IntArray, int]] = []

    @staticmethod
    def session_nbytes(domain: ChoiceDomain, rounds: int | None = None) -> int:
        """What one teacher of ``domain`` holds of its own after ``rounds`` observations
        (default: the domain's rounds): the posterior, its random generator and the history
        (an upper bound; tests/teachers/test_tables.py measures it)."""
        n_rounds = domain.rounds if rounds is None else rounds
        per_round = 8 * domain.n_options * domain.n_features + 200  # levels array + tuple
        return 8 * len(domain.hypothesis_weights()) + 16_000 + n_rounds * per_round

    def state_nbytes(self) -> int:
        """Bytes of the arrays this teacher owns (the shared tables excluded)."""
        return int(self.belief.log_post.nbytes) + sum(int(lv.nbytes) for lv, _ in self.history)

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
        expected = x @ (post @ self.weights)  # (n_opt,)
        probs = self.likelihood.probs(self.weights @ x.T)  # (n_hyp, n_opt)
        pred = post @ probs  # (n_opt,) the predictive; matmul, not einsum: the hot path
        gain = float(entropy(pred) - post @ entropy(probs))  # expected information gain
        map_w = self.weights[self.belief.map_index()]
        return Recommendation(
            choice=self._break_tie(expected),
            map_choice=int(argmax_first(x @ map_w)),
            expected_rewards=expected.tolist(),
            predictive=pred.tolist(),
            information_gain=gain,
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
        model, weights, c = self.likelihood, self.weights, int(choice)
        return self.belief.update_blockwise(
            # (n_opt, block) option-major utilities -> P(choice | h) for the block
            lambda block: choice_likelihood(model, x @ weights[block].T, c)
        )

    def summary(self) -> BeliefSummary:
        return _summary(self._marginals, self.weights, self.belief)


class QuestionnaireTeacher:
    """Exact Bayesian teacher for a :class:`QuestionnaireDomain` (Big Five): posterior over every
    profile, updated with the GRM likelihood after each answer; predicts the next answer."""

    def __init__(self, domain: QuestionnaireDomain) -> None:
        self.domain = domain
        tables = domain_tables(domain, domain.traits)
        self.weights = tables.weights  # (n_hyp, n_traits), shared, read-only
        self._marginals = tables.marginals
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
        return _summary(self._marginals, self.weights, self.belief)


def heldout_accuracy_by_round(
    domain: ChoiceDomain,
    user_weights: FloatArray,
    rounds: IntArray,
    choices: IntArray,
    heldout: IntArray,
    truth: IntArray,
    likelihood: ChoiceModel | None = None,
    *,
    max_elements: int = 200_000,
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
    chunks of about ``max_elements`` utilities (``users x options x hypotheses``): the default
    keeps a chunk's arrays (~1.6 MB of utilities) in a core's cache, which measured twice as fast
    as one chunk of every user, whose passes are bound by memory bandwidth.

    The posterior is kept in linear space, renormalised after every round: each round's
    likelihood is computed for the chosen option only (:func:`~beliefagent.belief.
    choice_likelihood`), so a round costs one matrix product and a few passes over
    ``(users, hypotheses)``; models with a ``gap_probs`` method (the built-in ones) get the
    utilities of the other options minus the chosen one's, one row fewer. For the paper's
    noise-free model this is exact (likelihoods are 0
    or at least ``1 / n_options``); for noisy models it differs from the log-space
    :class:`~beliefagent.belief.Belief` only for posterior masses below ~1e-300.
    """
    lik = likelihood or NoiseFree()
    weights = domain_tables(domain, domain.feature_names).weights  # (H, F)
    n_users, n_rounds = choices.shape
    if rounds.shape[:2] != (n_users, n_rounds) or truth.shape != (n_users, heldout.shape[0]):
        raise ConfigError(
            "shape mismatch between rounds, choices and truth",
            field="rounds",
            value=(rounds.shape, choices.shape, truth.shape),
        )
    x_held = domain.codes(heldout)  # (S, O, F)
    held_by_option = np.ascontiguousarray(x_held.transpose(1, 2, 0))  # (O, F, S)
    h, n_opt, n_feat = weights.shape[0], rounds.shape[2], weights.shape[1]
    chunk = max(1, max_elements // max(1, h * n_opt))
    correct = np.zeros(n_rounds + 1)
    gap_probs = getattr(lik, "gap_probs", None)
    for start in range(0, n_users, chunk):
        sl = slice(start, start + chunk)
        x = domain.codes(rounds[sl])  # (u, R, O, F)
        u = x.shape[0]
        if callable(gap_probs):  # rows of (other option - chosen option), (u, R, O-1, F)
            c = choices[sl][..., None]  # (u, R, 1)
            others = np.arange(n_opt - 1)
            others = others + (others >= c)  # (u, R, O-1) the options not chosen
            chosen = np.take_along_axis(x, c[..., None], axis=2)  # (u, R, 1, F)
            gap_x = np.take_along_axis(x, others[..., None], axis=2) - chosen
        post = np.full((u, h), 1.0 / h)  # (u, H)
        means = np.empty((u, n_rounds + 1, n_feat))  # (u, R+1, F)
        means[:, 0] = post @ weights
        for r in range(n_rounds):
            if callable(gap_probs):
                rows = gap_x[:, r].reshape(u * (n_opt - 1), n_feat)
                new = gap_probs((rows @ weights.T).reshape(u, n_opt - 1, h))  # (u, H)
            else:
                utils = (x[:, r].reshape(u * n_opt, n_feat) @ weights.T).reshape(u, n_opt, h)
                new = choice_likelihood(lik, utils, choices[sl, r])  # (u, H)
            new *= post
            total = new.sum(axis=1)  # (u,)
            ok = total > 0  # a contradiction keeps the old posterior
            if ok.all():
                new /= total[:, None]
                post = new
            else:
                post[ok] = new[ok] / total[ok, None]
            means[:, r + 1] = post @ weights
        flat = means.reshape(u * (n_rounds + 1), n_feat)  # (u * (R+1), F)
        scores = [flat @ held_by_option[o] for o in range(n_opt)]  # O x (u * (R+1), S)
        best = np.maximum.reduce(scores) - tie_tol
        pred = np.full(scores[0].shape, n_opt - 1, dtype=np.int64)
        for o in range(n_opt - 2, -1, -1):  # the first option within tie_tol of the best wins
            pred[scores[o] >= best] = o
        hit = pred.reshape(u, n_rounds + 1, -1) == truth[sl, None, :]  # (u, R+1, S)
        correct += hit.mean(axis=2).sum(axis=0)
    return correct / n_users
