"""Choice likelihoods: ``P(choice = o | hypothesis h, option set)`` from the utilities
``U[h, o] = w_h . phi(o)``.

Every model maps utilities ``(..., n_hyp, n_options)`` to choice probabilities of the same shape,
rows summing to 1, vectorised over any leading batch dimensions. For updates, which need only the
probability of the option actually chosen, :func:`choice_likelihood` takes utilities laid out
option-major, ``(..., n_options, n_hyp)`` (each option's row contiguous over hypotheses, as
``codes @ weights.T`` gives them), and returns ``P(choice | h)`` ``(..., n_hyp)``; the built-in
models compute it without building the full table.

- :class:`NoiseFree` — the paper's user: picks the utility maximiser; exact ties split evenly.
- :class:`EpsilonGreedy` — with probability ``epsilon`` picks uniformly at random instead.
- :class:`Softmax` — Boltzmann choice ``exp(U / temperature)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from beliefagent.errors import ConfigError

__all__ = [
    "TIE_TOL",
    "ChoiceModel",
    "EpsilonGreedy",
    "NoiseFree",
    "Softmax",
    "argmax_first",
    "choice_likelihood",
    "choice_model_from_name",
    "choice_model_from_spec",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TIE_TOL = 1e-9
"""Utilities closer than this count as tied (guards against float round-off)."""


def argmax_first(
    values: npt.ArrayLike, axis: int = -1, tol: float = TIE_TOL
) -> npt.NDArray[np.int64]:
    """Index of the maximum along ``axis``; among values within ``tol`` of it, the first wins."""
    v = np.asarray(values, dtype=np.float64)
    best = v.max(axis=axis, keepdims=True)
    return np.argmax(v >= best - tol, axis=axis)


def _argmax_mask(utilities: FloatArray) -> FloatArray:
    best = utilities.max(axis=-1, keepdims=True)
    return (utilities >= best - TIE_TOL).astype(np.float64)


class ChoiceModel(Protocol):
    """``probs(utilities (..., n_hyp, n_options)) -> (..., n_hyp, n_options)``."""

    @property
    def name(self) -> str: ...

    def probs(self, utilities: FloatArray) -> FloatArray: ...


@dataclass(frozen=True)
class NoiseFree:
    """The paper's likelihood: 1 for the utility maximiser (split evenly among exact ties)."""

    name: str = "noise-free"

    def probs(self, utilities: FloatArray) -> FloatArray:
        mask = _argmax_mask(utilities)
        return mask / mask.sum(axis=-1, keepdims=True)

    def chosen_probs(self, utilities: FloatArray, choice: npt.ArrayLike) -> FloatArray:
        """``P(choice | h)`` from option-major ``utilities (..., n_options, n_hyp)`` and
        ``choice`` (an int, or ints shaped like the leading dimensions): ``1 / n_tied`` where
        the chosen option is among the maximisers, else 0."""
        best = utilities.max(axis=-2)  # (..., n_hyp)
        best -= TIE_TOL
        n_tied = np.zeros(best.shape, dtype=np.float64)  # (..., n_hyp)
        for o in range(utilities.shape[-2]):
            n_tied += utilities[..., o, :] >= best
        picked = _pick(utilities, choice) >= best  # (..., n_hyp)
        return np.divide(picked, n_tied, out=n_tied)

    def gap_probs(self, gaps: FloatArray) -> FloatArray:
        """``P(choice | h)`` from ``gaps (..., n_options - 1, n_hyp)``: each other option's
        utility minus the chosen one's. The same numbers as :meth:`chosen_probs` (chosen among
        the options within ``TIE_TOL`` of the best, ties split) with one row fewer to build and
        no per-hypothesis maximum over all options."""
        top = np.maximum.reduce(gaps, axis=-2)  # (..., n_hyp) best other - chosen
        np.maximum(top, 0.0, out=top)  # best - chosen
        picked = top <= TIE_TOL
        top -= TIE_TOL  # options at or above best - TIE_TOL (relative to the chosen) tie
        n_tied = np.ones(top.shape)
        for o in range(gaps.shape[-2]):
            n_tied += gaps[..., o, :] >= top
        return np.divide(picked, n_tied, out=n_tied)


@dataclass(frozen=True)
class EpsilonGreedy:
    """Maximiser with probability ``1 - epsilon``, uniform otherwise."""

    epsilon: float = 0.1
    name: str = "epsilon"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError("must be in [0, 1]", field="epsilon", value=self.epsilon)

    def probs(self, utilities: FloatArray) -> FloatArray:
        n = utilities.shape[-1]
        return (1.0 - self.epsilon) * NoiseFree().probs(utilities) + self.epsilon / n

    def chosen_probs(self, utilities: FloatArray, choice: npt.ArrayLike) -> FloatArray:
        """See :meth:`NoiseFree.chosen_probs` (option-major utilities)."""
        n = utilities.shape[-2]
        p = NoiseFree().chosen_probs(utilities, choice)
        p *= 1.0 - self.epsilon
        p += self.epsilon / n
        return p

    def gap_probs(self, gaps: FloatArray) -> FloatArray:
        """See :meth:`NoiseFree.gap_probs`."""
        p = NoiseFree().gap_probs(gaps)
        p *= 1.0 - self.epsilon
        p += self.epsilon / (gaps.shape[-2] + 1)
        return p


@dataclass(frozen=True)
class Softmax:
    """Boltzmann choice: ``P(o) ∝ exp(U[o] / temperature)``."""

    temperature: float = 0.1
    name: str = "softmax"

    def __post_init__(self) -> None:
        if not self.temperature > 0.0:
            raise ConfigError("must be > 0", field="temperature", value=self.temperature)

    def probs(self, utilities: FloatArray) -> FloatArray:
        z = utilities / self.temperature
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def chosen_probs(self, utilities: FloatArray, choice: npt.ArrayLike) -> FloatArray:
        """See :meth:`NoiseFree.chosen_probs` (option-major utilities)."""
        z = utilities / self.temperature  # (..., n_options, n_hyp)
        z -= z.max(axis=-2, keepdims=True)
        e = np.exp(z, out=z)
        return _pick(e, choice) / e.sum(axis=-2)

    def gap_probs(self, gaps: FloatArray) -> FloatArray:
        """See :meth:`NoiseFree.gap_probs`: ``1 / (1 + sum_o exp(gap_o / temperature))``."""
        with np.errstate(over="ignore"):
            e = np.exp(gaps / self.temperature)  # an overflow to inf gives probability 0
        return 1.0 / (1.0 + e.sum(axis=-2))


def _pick(option_major: FloatArray, choice: npt.ArrayLike) -> FloatArray:
    """Row ``choice`` of ``(..., n_options, n_hyp)``: ``(..., n_hyp)``."""
    c = np.asarray(choice, dtype=np.int64)
    if c.ndim == 0:
        return option_major[..., int(c), :]
    lead = np.ix_(*(np.arange(n) for n in c.shape)) if c.ndim > 1 else (np.arange(len(c)),)
    return option_major[(*lead, c)]  # a row gather: far cheaper than take_along_axis


def choice_likelihood(
    model: ChoiceModel, utilities: FloatArray, choice: npt.ArrayLike
) -> FloatArray:
    """``P(choice | h)`` for every hypothesis: option-major ``utilities (..., n_options, n_hyp)``
    and ``choice`` (an int, or ints shaped like the leading dimensions) -> ``(..., n_hyp)``.

    Uses the model's ``chosen_probs`` when it has one (the built-in models do), otherwise its
    full table ``probs``; both give the same numbers."""
    fast = getattr(model, "chosen_probs", None)
    if callable(fast):
        return np.asarray(fast(utilities, choice), dtype=np.float64)
    table = model.probs(np.swapaxes(utilities, -1, -2))  # (..., n_hyp, n_options)
    return _pick(np.swapaxes(table, -1, -2), choice)


def choice_model_from_name(name: str, param: float | None = None) -> ChoiceModel:
    """``noise-free`` | ``epsilon`` (param: epsilon, default 0.1) | ``softmax`` (param:
    temperature, default 0.1)."""
    if name in ("noise-free", "noisefree", "exact"):
        return NoiseFree()
    if name in ("epsilon", "eps", "epsilon-greedy"):
        return EpsilonGreedy(0.1 if param is None else param)
    if name == "softmax":
        return Softmax(0.1 if param is None else param)
    raise ConfigError(
        "unknown likelihood (noise-free, epsilon, softmax)", field="likelihood", value=name
    )


def choice_model_from_spec(spec: str | ChoiceModel | None) -> ChoiceModel:
    """``"noise-free"``, ``"epsilon:0.1"``, ``"softmax:0.1"`` (a model is passed through;
    None is the paper's noise-free model)."""
    if spec is None:
        return NoiseFree()
    if not isinstance(spec, str):
        return spec
    name, _, param = spec.partition(":")
    try:
        value = float(param) if param else None
    except ValueError as exc:
        raise ConfigError("parameter must be a number", field="likelihood", value=spec) from exc
    return choice_model_from_name(name.strip(), value)
