"""Log-space posteriors over an enumerated hypothesis space.

The free functions are vectorised over leading batch dimensions (users, rounds) and are what the
fast evaluators use; :class:`Belief` is the stateful single-dialogue wrapper the teachers keep.

Shapes: ``log_post (..., n_hyp)``; outcome tables ``probs (..., n_hyp, n_outcomes)`` give
``P(outcome | h)`` for one query (an option set or a questionnaire item).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from beliefagent.errors import ChoiceError, EmptyHypothesisSpaceError

__all__ = [
    "Belief",
    "entropy",
    "expected_information_gain",
    "log_normalize",
    "predictive",
]

FloatArray = npt.NDArray[np.float64]

_TINY = 1e-300
BLOCK = 32_768
"""Hypotheses per block in :meth:`Belief.update_blockwise` (a block's utilities for 3 options
are 768 KiB, inside a core's L2 cache)."""


def log_normalize(log_w: FloatArray) -> FloatArray:
    """Normalise log weights along the last axis (logsumexp). Rows that are all ``-inf`` stay
    ``-inf`` (callers check for that; see :class:`Belief`)."""
    m = np.max(log_w, axis=-1, keepdims=True)
    safe_m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = safe_m + np.log(np.sum(np.exp(log_w - safe_m), axis=-1, keepdims=True))
        return np.where(np.isfinite(m), log_w - lse, -np.inf)


def entropy(p: FloatArray) -> FloatArray:
    """Shannon entropy in nats along the last axis; ``0 log 0 = 0``."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1)


def predictive(post: FloatArray, probs: FloatArray) -> FloatArray:
    """``P(outcome) = sum_h post[h] P(outcome | h)``: ``(..., n_hyp) x (..., n_hyp, n_out)``."""
    return np.einsum("...h,...ho->...o", post, probs)


def expected_information_gain(post: FloatArray, probs: FloatArray) -> FloatArray:
    """Mutual information between the outcome and the hypothesis, in nats:
    ``H[predictive] - E_h H[P(. | h)]`` — how much observing the answer is expected to shrink
    the posterior's entropy."""
    return entropy(predictive(post, probs)) - np.einsum("...h,...h->...", post, entropy(probs))


class Belief:
    """The posterior of one dialogue, in log space.

    Degradation when evidence contradicts every hypothesis (possible with a noise-free likelihood
    and a real person who contradicts themselves): the update that would empty the posterior is
    **not applied**; the belief keeps its previous state, :attr:`n_contradictions` counts the event
    and :attr:`emptied` turns true. Nothing ever divides by zero or returns NaN.
    """

    def __init__(self, n_hyp: int, log_prior: FloatArray | None = None) -> None:
        if n_hyp <= 0:
            raise EmptyHypothesisSpaceError(
                "need at least one hypothesis", field="n_hyp", value=n_hyp
            )
        if log_prior is None:
            self.log_post = np.full(n_hyp, -np.log(n_hyp))  # (n_hyp,)
        else:
            lp = np.asarray(log_prior, dtype=np.float64)
            if lp.shape != (n_hyp,):
                raise EmptyHypothesisSpaceError(
                    "prior shape mismatch", field="log_prior", value=lp.shape
                )
            self.log_post = log_normalize(lp)
            if not np.isfinite(self.log_post).any():
                raise EmptyHypothesisSpaceError(
                    "prior gives every hypothesis zero mass", field="log_prior", value="all -inf"
                )
        self.n_observations = 0
        self.n_contradictions = 0

    @property
    def n_hyp(self) -> int:
        return int(self.log_post.shape[0])

    @property
    def emptied(self) -> bool:
        """True once some observation contradicted every remaining hypothesis."""
        return self.n_contradictions > 0

    @property
    def probs(self) -> FloatArray:
        return np.exp(self.log_post)  # (n_hyp,)

    @property
    def n_alive(self) -> int:
        """Hypotheses with non-negligible mass."""
        return int(np.count_nonzero(self.log_post > np.log(_TINY)))

    def entropy(self) -> float:
        return float(entropy(self.probs))

    def map_index(self) -> int:
        return int(np.argmax(self.log_post))

    def mean(self, values: FloatArray) -> FloatArray:
        """Posterior expectation of per-hypothesis ``values (n_hyp, ...)``."""
        return np.tensordot(self.probs, values, axes=(0, 0))

    def predictive(self, probs: FloatArray) -> FloatArray:
        return predictive(self.probs, probs)

    def information_gain(self, probs: FloatArray) -> float:
        return float(expected_information_gain(self.probs, probs))

    def update(self, probs: FloatArray, outcome: int) -> bool:
        """Condition on ``outcome`` given the table ``probs (n_hyp, n_outcomes)``.

        Returns False (and leaves the belief unchanged) when the outcome has zero probability
        under every hypothesis still alive; see the class docstring."""
        n_out = probs.shape[-1]
        if not 0 <= int(outcome) < n_out:
            raise ChoiceError(f"must be in 0..{n_out - 1}", field="choice", value=outcome)
        return self.update_likelihood(probs[:, int(outcome)])

    def update_likelihood(self, likelihood: FloatArray) -> bool:
        """Condition on an observation whose probability under each hypothesis is
        ``likelihood (n_hyp,)`` (e.g. :func:`~beliefagent.belief.choice_likelihood`); same
        contract as :meth:`update`."""
        if likelihood.shape != self.log_post.shape:
            raise ChoiceError(
                "likelihood shape mismatch", field="likelihood", value=likelihood.shape
            )
        return self.update_blockwise(lambda block: likelihood[block], block=self.n_hyp)

    def update_blockwise(
        self, likelihood_of: Callable[[slice], FloatArray], *, block: int = BLOCK
    ) -> bool:
        """:meth:`update_likelihood`, with the likelihood computed ``block`` hypotheses at a
        time by ``likelihood_of(slice) -> (len(slice),)``. A block's temporaries (utilities,
        tie masks, logs) stay in a core's cache, which for 390,624 hypotheses measured about
        twice as fast as whole-array passes; the result is the same."""
        n = self.n_hyp
        new = np.empty(n)  # (n_hyp,) the unnormalised log posterior
        m = -np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            for start in range(0, n, block):
                sl = slice(start, min(n, start + block))
                part = np.log(likelihood_of(sl), out=new[sl])
                part += self.log_post[sl]
                m = max(m, float(part.max()))
            self.n_observations += 1
            if not np.isfinite(m):
                self.n_contradictions += 1
                return False
            total = 0.0
            for start in range(0, n, block):
                total += float(np.exp(new[start : start + block] - m).sum())
            new -= m + np.log(total)
        self.log_post = new
        return True

    def copy(self) -> Belief:
        other = Belief.__new__(Belief)
        other.log_post = self.log_post.copy()
        other.n_observations = self.n_observations
        other.n_contradictions = self.n_contradictions
        return other
