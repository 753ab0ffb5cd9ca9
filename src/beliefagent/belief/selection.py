"""Active elicitation: which ``k`` of ``N`` candidate options to show, given the posterior.

Everything here works on arrays: the posterior ``post (H,)`` and the utilities of every candidate
under every hypothesis ``utilities (H, N)`` (``U[h, o] = w_h . phi(o)``). Strategies:

- ``random`` — ``k`` candidates uniformly at random (the paper's protocol: random option sets);
- ``eig`` — the subset whose choice has the highest expected information gain (EIG) about the
  hypothesis, ``I(choice; h) = H[P(choice)] - E_h H[P(choice | h)]``;
- ``reward`` — the ``k`` candidates with the highest posterior expected reward (exploitation);
- ``mixed`` — EIG among the candidates whose expected reward is within ``margin`` of the best,
  as a share of the pool's expected-reward range (``margin=1`` is ``eig``; ``0`` keeps only the
  best candidates, then the top ``k`` by expected reward fill in).

Search over subsets (``search``):

- ``exact`` scores every one of the ``C(N, k)`` subsets. For ``k = 3`` and a likelihood of the
  argmax family (:class:`NoiseFree`, :class:`EpsilonGreedy`) it uses three contractions
  ``sum_h post[h] X[h, a, b] Y[h, a, c]`` of pairwise win/tie tables (exact, ties included);
  otherwise it enumerates the subsets in chunks.
- ``greedy`` seeds from the ``n_seeds`` candidates whose utility varies most under the posterior
  (more while ``seed_budget`` allows: every candidate once few hypotheses are alive), extends
  each seed one option at a time by exact EIG, then improves the best subset by single swaps
  until no swap helps. Every subset it considers is scored exactly.
- ``auto`` (default) is ``exact`` while ``C(N, k) * k * (H_alive + 8)`` stays under
  ``exact_limit`` (every pool of 20 for flight; never for 100, where one pass over the 161,700
  subsets costs more than 50 ms even with few hypotheses alive), else ``greedy``.
  ``benchmarks/bench_selection.py`` measures what greedy loses.

Hypotheses with zero posterior mass are dropped before scoring (exact: they contribute nothing).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from beliefagent.belief.likelihood import TIE_TOL, ChoiceModel, EpsilonGreedy, NoiseFree
from beliefagent.belief.posterior import entropy
from beliefagent.errors import ConfigError, OptionError

__all__ = [
    "SEARCHES",
    "STRATEGIES",
    "Selection",
    "SelectionConfig",
    "exact_subset_gains",
    "select_subset",
    "subset_information_gain",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STRATEGIES = ("random", "eig", "reward", "mixed")
SEARCHES = ("auto", "exact", "greedy")

_SUBSET_OVERHEAD = 8  # auto: per-subset cost of exact search, in hypothesis-equivalents
_CHUNK = 2_000_000  # hypotheses x subsets x k elements per chunk of exact enumeration


@dataclass(frozen=True)
class SelectionConfig:
    """How a session picks the options to show from candidates."""

    strategy: str = "eig"
    """random | eig | reward | mixed."""
    margin: float = 0.25
    """mixed: keep candidates with expected reward >= best - margin * (best - worst)."""
    search: str = "auto"
    """auto | exact | greedy (see the module docstring)."""
    exact_limit: int = 4_000_000
    """auto: the largest ``C(N, k) * k * (H_alive + 8)`` searched exactly."""
    n_seeds: int = 4
    """greedy: the fewest high-variance candidates that seed the search."""
    seed_budget: int = 2_000_000
    """greedy: more seeds while ``seeds * 2N * H_alive * k`` stays under this (few hypotheses
    alive: every candidate seeds)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy (known: {', '.join(STRATEGIES)})",
                field="strategy",
                value=self.strategy,
            )
        if self.search not in SEARCHES:
            raise ConfigError(
                f"unknown search (known: {', '.join(SEARCHES)})", field="search", value=self.search
            )
        if not 0.0 <= self.margin <= 1.0:
            raise ConfigError("must be in [0, 1]", field="margin", value=self.margin)
        if self.exact_limit < 0:
            raise ConfigError("must be >= 0", field="exact_limit", value=self.exact_limit)
        if self.n_seeds < 1:
            raise ConfigError("must be >= 1", field="n_seeds", value=self.n_seeds)
        if self.seed_budget < 0:
            raise ConfigError("must be >= 0", field="seed_budget", value=self.seed_budget)


@dataclass(frozen=True)
class Selection:
    """The options chosen from the candidates."""

    indices: list[int]
    """into the candidates, ascending (the order they are shown in)."""
    strategy: str
    search: str
    """"exact", "greedy", or "none" (random and reward score no subsets)."""
    information_gain: float
    """EIG of the chosen subset, in nats."""
    expected_rewards: list[float]
    """posterior expected reward of each chosen option."""
    n_scored: int
    """subsets whose EIG was computed."""
    n_eligible: int
    """candidates the search could pick from (mixed: those within the margin)."""


def subset_information_gain(
    post: FloatArray, utilities: FloatArray, subsets: IntArray, likelihood: ChoiceModel
) -> FloatArray:
    """EIG of each subset: ``post (H,)``, ``utilities (H, N)``, ``subsets (T, k)`` -> ``(T,)``."""
    us = utilities[:, subsets]  # (H, T, k)
    k = us.shape[-1]
    family = _argmax_family(likelihood, k)
    if family is None:
        p = likelihood.probs(us)  # (H, T, k)
        pred = np.einsum("h,htk->tk", post, p)  # (T, k)
        cond = post @ entropy(p)  # (T,)
        return np.asarray(entropy(pred) - cond, dtype=np.float64)
    # argmax family: P(. | h) depends only on which options tie at the top
    alpha, beta = family
    top = us >= us.max(axis=-1, keepdims=True) - TIE_TOL  # (H, T, k)
    count = top.sum(axis=-1)  # (H, T), 1..k
    share = post[:, None] / count  # (H, T)
    pred = alpha * np.einsum("ht,htk->tk", share, top) + beta  # (T, k)
    h_tied = _tied_entropies(likelihood, k)  # (k + 1,), by number tied
    cond = post @ h_tied[count]  # (T,)
    return np.asarray(entropy(pred) - cond, dtype=np.float64)


def _tied_entropies(likelihood: ChoiceModel, k: int) -> FloatArray:
    """Entropy of ``P(. | h)`` when ``c`` of ``k`` options tie at the top, for c = 0..k."""
    rows = np.tril(np.ones((k, k)))  # row c-1: c options at utility 1, the rest at 0
    out = np.zeros(k + 1)
    out[1:] = entropy(likelihood.probs(rows))
    return out


def _argmax_family(likelihood: ChoiceModel, k: int) -> tuple[float, float] | None:
    """``(alpha, beta)`` with ``probs = alpha * noise-free + beta``, or None."""
    if isinstance(likelihood, NoiseFree):
        return 1.0, 0.0
    if isinstance(likelihood, EpsilonGreedy):
        return 1.0 - likelihood.epsilon, likelihood.epsilon / k
    return None


@functools.lru_cache(maxsize=16)
def _combinations(n: int, k: int) -> IntArray:
    """Every ``k``-subset of ``range(n)``, lexicographic: ``(C(n, k), k)`` (cached, read-only)."""
    out = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    out.setflags(write=False)
    return out


def _exact_triples_tensor(
    post: FloatArray, utilities: FloatArray, likelihood: ChoiceModel
) -> tuple[IntArray, FloatArray]:
    """Exact EIG of every 3-subset for an argmax-family likelihood, ties included.

    With ``G[h,a,b] = 1[U_a > U_b]``, ``E[h,a,b] = 1[U_a = U_b]`` and ``W = G + E / 2``, the
    noise-free probability that ``a`` wins in ``{a, b, c}`` is ``W_ab W_ac + E_ab E_ac / 12``
    (1, 1/2 or 1/3 for a unique, two-way or three-way top). The conditional entropy needs the mass
    of three-way ties (``E_ab E_ac``) and of two-way ties at the top (``E_ab G_ac`` summed over
    the three pairs); each is one contraction ``sum_h post[h] X[h,a,b] Y[h,a,c]``.
    """
    alpha, beta = _argmax_family(likelihood, 3) or (1.0, 0.0)
    n = utilities.shape[1]
    d = utilities[:, :, None] - utilities[:, None, :]  # (H, N, N)
    g = (d > TIE_TOL).astype(np.float64)
    e = (np.abs(d) <= TIE_TOL).astype(np.float64)
    w = g + 0.5 * e
    p = post[:, None, None]

    def contract(x: FloatArray, y: FloatArray) -> FloatArray:
        # sum_h p[h] x[h, a, b] y[h, a, c] -> (a, b, c): one (N, H) @ (H, N) product per a
        return np.matmul((p * x).transpose(1, 2, 0), y.transpose(1, 0, 2))  # (N, N, N)

    e3 = contract(e, e)  # mass of hypotheses with U_a = U_b = U_c
    win = contract(w, w) + e3 / 12.0  # (a, b, c): P_nf(a wins | {a, b, c})
    top2 = contract(e, g)  # (a, b, c): mass with U_a = U_b > U_c
    subsets = _combinations(n, 3)  # (T, 3)
    a, b, c = subsets.T
    pred_nf = np.stack([win[a, b, c], win[b, a, c], win[c, a, b]], axis=1)  # (T, 3)
    pred = alpha * pred_nf + beta
    n3 = e3[a, b, c]
    n2 = top2[a, b, c] + top2[a, c, b] + top2[b, c, a]
    n1 = 1.0 - n2 - n3
    h1, h2, h3 = (
        float(entropy(likelihood.probs(np.asarray([u], dtype=np.float64)))[0])
        for u in ([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0])
    )
    gains = entropy(np.clip(pred, 0.0, 1.0)) - (n1 * h1 + n2 * h2 + n3 * h3)
    return subsets, np.asarray(gains, dtype=np.float64)


def exact_subset_gains(
    post: FloatArray, utilities: FloatArray, k: int, likelihood: ChoiceModel
) -> tuple[IntArray, FloatArray]:
    """Every ``k``-subset of the ``N`` candidates (lexicographic, ``(T, k)``) and its EIG
    ``(T,)``."""
    n = utilities.shape[1]
    if k == 3 and _argmax_family(likelihood, k) is not None and n >= 3:
        return _exact_triples_tensor(post, utilities, likelihood)
    subsets = _combinations(n, k)
    step = max(1, _CHUNK // max(1, utilities.shape[0] * k))
    gains = np.concatenate(
        [
            subset_information_gain(post, utilities, subsets[i : i + step], likelihood)
            for i in range(0, len(subsets), step)
        ]
        or [np.zeros(0)]
    )
    return subsets, gains


def _greedy(
    post: FloatArray, utilities: FloatArray, k: int, likelihood: ChoiceModel, n_seeds: int
) -> tuple[IntArray, float, int]:
    """Seeds, greedy extension, then single-swap local search; every subset scored exactly.

    The seeds are the ``n_seeds`` candidates whose utility varies most under the posterior; each
    is extended one option at a time (the best EIG given those already chosen), the best result
    is then improved by swapping one chosen option for one unchosen until no swap helps."""
    n = utilities.shape[1]
    mean = post @ utilities  # (N,)
    spread = post @ (utilities - mean) ** 2  # (N,): posterior variance of each utility
    seeds = np.argsort(-spread, kind="stable")[: min(n_seeds, n)]
    chosen = seeds[:, None].astype(np.int64)  # (S, 1): every seed is extended at once
    gain = np.zeros(len(seeds))
    n_scored = 0
    for step in range(1, k):
        n_seed = len(chosen)
        extra = np.broadcast_to(np.arange(n), (n_seed, n))  # (S, N)
        trial = np.concatenate(
            [np.repeat(chosen[:, None, :], n, axis=1), extra[..., None]], axis=2
        )  # (S, N, step + 1)
        g = subset_information_gain(post, utilities, trial.reshape(-1, step + 1), likelihood)
        g = g.reshape(n_seed, n)
        n_scored += g.size
        g[(chosen[:, :, None] == extra[:, None, :]).any(axis=1)] = -np.inf  # already chosen
        j = np.argmax(g, axis=1)  # (S,)
        chosen = np.column_stack([chosen, j])
        gain = g[np.arange(n_seed), j]
    top = int(np.argmax(gain))
    best: list[int] = [int(v) for v in chosen[top]]
    best_gain = float(gain[top])
    for _ in range(4 * k):  # single swaps until none improves
        rest = np.setdiff1d(np.arange(n), best)
        trial = np.tile(np.asarray(best, dtype=np.int64), (k, len(rest), 1))  # (k, N - k, k)
        trial[np.arange(k), :, np.arange(k)] = rest
        trial = trial.reshape(-1, k)
        g = subset_information_gain(post, utilities, trial, likelihood)
        n_scored += len(trial)
        j = int(np.argmax(g))
        if g[j] <= best_gain + 1e-12:
            break
        best, best_gain = [int(v) for v in trial[j]], float(g[j])
    return np.sort(np.asarray(best, dtype=np.int64)), best_gain, n_scored


def _eig_search(
    post: FloatArray,
    utilities: FloatArray,
    k: int,
    likelihood: ChoiceModel,
    config: SelectionConfig,
) -> tuple[IntArray, float, str, int]:
    n = utilities.shape[1]
    if n == k:
        gain = subset_information_gain(post, utilities, np.arange(k)[None, :], likelihood)
        return np.arange(k, dtype=np.int64), float(gain[0]), "exact", 1
    search = config.search
    if search == "auto":
        # exact costs about k * (H_alive + a fixed overhead) per subset
        size = math.comb(n, k) * k * (len(post) + _SUBSET_OVERHEAD)
        search = "exact" if size <= config.exact_limit else "greedy"
    if search == "exact":
        subsets, gains = exact_subset_gains(post, utilities, k, likelihood)
        j = int(np.argmax(gains))
        return subsets[j], float(gains[j]), "exact", len(subsets)
    seeds = max(config.n_seeds, config.seed_budget // max(1, 2 * n * len(post) * k))
    idx, best, n_scored = _greedy(post, utilities, k, likelihood, seeds)
    return idx, best, "greedy", n_scored


def select_subset(
    post: FloatArray,
    utilities: FloatArray,
    k: int,
    likelihood: ChoiceModel,
    config: SelectionConfig | None = None,
    rng: np.random.Generator | None = None,
) -> Selection:
    """Pick ``k`` of the ``N`` candidates: ``post (H,)``, ``utilities (H, N)``."""
    cfg = config or SelectionConfig()
    post = np.asarray(post, dtype=np.float64)
    utilities = np.asarray(utilities, dtype=np.float64)
    n = utilities.shape[1]
    if utilities.ndim != 2 or utilities.shape[0] != post.shape[0]:
        raise OptionError(
            "utilities must be (n_hyp, n_candidates)", field="candidates", value=utilities.shape
        )
    if not 1 <= k <= n:
        raise OptionError(f"need at least k={k} candidates", field="candidates", value=n)
    alive = post > 0.0
    post, utilities = post[alive], utilities[alive]
    post = post / post.sum()
    expected = post @ utilities  # (N,)
    eligible = np.arange(n)
    gain: float | None = None
    search, n_scored = "none", 0
    if cfg.strategy == "random":
        gen = rng if rng is not None else np.random.default_rng()
        idx = np.sort(gen.choice(n, size=k, replace=False)).astype(np.int64)
    elif cfg.strategy == "reward":
        idx = np.sort(np.argsort(-expected, kind="stable")[:k]).astype(np.int64)
    else:
        if cfg.strategy == "mixed":
            lo, hi = float(expected.min()), float(expected.max())
            keep = np.flatnonzero(expected >= hi - cfg.margin * (hi - lo) - TIE_TOL)
            if len(keep) < k:
                keep = np.sort(np.argsort(-expected, kind="stable")[:k])
            eligible = keep
        local, gain, search, n_scored = _eig_search(
            post, utilities[:, eligible], k, likelihood, cfg
        )
        idx = np.sort(eligible[local]).astype(np.int64)
    if gain is None:
        gain = float(subset_information_gain(post, utilities, idx[None, :], likelihood)[0])
    return Selection(
        indices=[int(i) for i in idx],
        strategy=cfg.strategy,
        search=search,
        information_gain=gain,
        expected_rewards=[float(v) for v in expected[idx]],
        n_scored=n_scored,
        n_eligible=len(eligible),
    )
