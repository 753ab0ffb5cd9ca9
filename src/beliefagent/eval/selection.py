"""The active-elicitation evaluation: each round's options are chosen from a fresh random pool.

For every simulated user and round ``r``: draw a pool of ``N`` distinct random candidates, let a
strategy (:mod:`beliefagent.belief.selection`) pick ``k`` of them from the teacher's current
posterior, let the user choose among those shown, update the posterior. The resulting rounds
form an ordinary :class:`~beliefagent.eval.tasks.ChoiceTask` (so every assistant of a run sees the
same selected sets and is scored on the paper's held-out protocol), plus per round:

- ``regret`` — the best true reward in the pool minus the true reward of the option the user
  picked from those shown (how good what was shown was; 0 is the best the pool allows);
- ``entropy`` — the teacher's posterior entropy (nats) after rounds 0..R;
- ``information_gain`` — the expected information gain of each shown set.

Users are ``noise-free`` (the favourite; exact ties at random) or ``ε``-noisy (with probability
``user_epsilon`` a uniformly random option of those shown). Pools, user noise and the ``random``
strategy's draws each come from their own seeded stream per user, so runs with different
strategies share users, held-out sets and pools: their differences are the strategies'.

The real people of ``interaction_flight_human.jsonl`` saw fixed option sets, so selection cannot
be replayed on them; noisy simulated users are the stand-in.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from beliefagent.belief import Belief, ChoiceModel, SelectionConfig, select_subset
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ConfigError
from beliefagent.eval.tasks import ChoiceTask
from beliefagent.eval.teacher import generate_heldout
from beliefagent.teachers import sample_users

if TYPE_CHECKING:
    from beliefagent.eval.harness import EvalConfig

__all__ = [
    "SelectionTask",
    "check_selection_config",
    "make_selection_task",
    "random_pool",
    "selection_summary",
    "selection_task",
]

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class SelectionTask(ChoiceTask):
    """A choice task whose rounds were selected from pools, with what the selection did."""

    strategy: str = "random"
    pool: int = 0
    user_epsilon: float = 0.0
    margin: float = 0.25
    regret: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (U, R)
    entropy: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (U, R + 1)
    information_gain: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (U, R)
    select_ms: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (U, R)
    searches: dict[str, int] = field(default_factory=dict)


def selection_task(config: EvalConfig, domain: object, protocol: str) -> SelectionTask:
    """The task of an evaluation run with ``--selection`` (see :func:`make_selection_task`)."""
    check_selection_config(config, domain, protocol)
    assert isinstance(domain, ChoiceDomain) and config.selection is not None
    return make_selection_task(
        domain,
        strategy=config.selection,
        pool=config.pool,
        users=config.users,
        heldout_sets=config.heldout_sets,
        seed=config.seed,
        likelihood=config.choice_model(),
        user_epsilon=config.user_epsilon,
        margin=config.selection_margin,
    )


def check_selection_config(config: EvalConfig, domain: object, protocol: str) -> None:
    """A selection run needs a choice domain, generated users and the held-out protocol."""
    if config.selection is None:
        raise ConfigError(
            "simulated user noise applies to --selection runs",
            field="user_epsilon",
            value=config.user_epsilon,
        )
    if not isinstance(domain, ChoiceDomain):
        raise ConfigError("selection needs a choice domain", field="domain", value=config.domain)
    if config.interactions is not None or config.heldout is not None:
        raise ConfigError(
            "selection generates its own rounds; drop --interactions/--heldout",
            field="selection",
            value=config.selection,
        )
    if protocol != "heldout":
        raise ConfigError(
            "selection runs use the heldout protocol", field="protocol", value=protocol
        )


def random_pool(domain: ChoiceDomain, rng: np.random.Generator, n: int) -> IntArray:
    """``n`` distinct options drawn uniformly from the grid, in draw order: ``(n, F)``."""
    total = int(np.prod(domain.n_levels))
    if not domain.n_options <= n <= total:
        raise ConfigError(
            f"must be in {domain.n_options}..{total} for {domain.name}", field="pool", value=n
        )
    highs = np.asarray(domain.n_levels)
    out = rng.integers(0, highs, size=(n, domain.n_features))
    while True:
        _, first = np.unique(out, axis=0, return_index=True)
        if len(first) == n:
            return out.astype(np.int64)
        keep = out[np.sort(first)]
        out = np.concatenate([keep, rng.integers(0, highs, size=(n - len(keep), len(highs)))])


def make_selection_task(
    domain: ChoiceDomain,
    *,
    strategy: str,
    pool: int,
    users: int | None,
    heldout_sets: int,
    seed: int,
    likelihood: ChoiceModel,
    user_epsilon: float = 0.0,
    margin: float = 0.25,
    search: str = "auto",
) -> SelectionTask:
    """Simulate every user's dialogue with options selected by ``strategy`` from pools of
    ``pool`` candidates; the teacher updates with ``likelihood``."""
    if users is not None and users < 1:
        raise ConfigError("must be >= 1", field="users", value=users)
    if heldout_sets < 1:
        raise ConfigError("must be >= 1", field="heldout_sets", value=heldout_sets)
    if not 0.0 <= user_epsilon <= 1.0:
        raise ConfigError("must be in [0, 1]", field="user_epsilon", value=user_epsilon)
    config = SelectionConfig(strategy, margin=margin, search=search)
    random_pool(domain, np.random.default_rng(0), pool)  # validates the pool size up front
    rng = np.random.default_rng(seed)
    idx = sample_users(domain, users, rng)
    hyp = domain.hypothesis_weights()  # (H, F)
    weights = hyp[idx]  # (U, F)
    held = generate_heldout(domain, weights, heldout_sets, rng)
    n_users, n_rounds, k = len(idx), domain.rounds, domain.n_options
    rounds = np.zeros((n_users, n_rounds, k, domain.n_features), dtype=np.int64)
    choices = np.zeros((n_users, n_rounds), dtype=np.int64)
    regret = np.zeros((n_users, n_rounds))
    gains = np.zeros((n_users, n_rounds))
    ent = np.zeros((n_users, n_rounds + 1))
    ms = np.zeros((n_users, n_rounds))
    searches: Counter[str] = Counter()
    for u in range(n_users):
        pools = np.random.default_rng([seed, 1, int(idx[u])])
        noise = np.random.default_rng([seed, 2, int(idx[u])])
        draws = np.random.default_rng([seed, 3, int(idx[u])])
        belief = Belief(len(hyp))
        ent[u, 0] = belief.entropy()
        for r in range(n_rounds):
            cands = random_pool(domain, pools, pool)  # (N, F)
            x = domain.codes(cands)  # (N, F)
            utilities = hyp @ x.T  # (H, N)
            t0 = time.perf_counter()
            sel = select_subset(belief.probs, utilities, k, likelihood, config, draws)
            ms[u, r] = 1000 * (time.perf_counter() - t0)
            searches[sel.search] += 1
            shown = np.asarray(sel.indices)
            true = x @ weights[u]  # (N,)
            tied = true[shown] >= true[shown].max() - TIE_TOL
            favourite = int(np.argmax(np.where(tied, noise.random(k), -1.0)))
            coin, other = noise.random(), int(noise.integers(k))
            choice = other if coin < user_epsilon else favourite
            rounds[u, r], choices[u, r] = cands[shown], choice
            regret[u, r] = float(true.max() - true[shown][choice])
            gains[u, r] = sel.information_gain
            belief.update(likelihood.probs(utilities[:, shown]), choice)
            ent[u, r + 1] = belief.entropy()
    logger.info(
        "selection %s, pool %d: %d users, mean %.1f ms a round (%s)",
        strategy,
        pool,
        n_users,
        float(ms.mean()),
        dict(searches),
    )
    return SelectionTask(
        domain=domain,
        protocol="heldout",
        source="selected",
        user_ids=[str(i) for i in idx],
        user_weights=weights,
        rounds=rounds,
        choices=choices,
        heldout=held.option_sets,
        truth=held.truth,
        strategy=strategy,
        pool=pool,
        user_epsilon=user_epsilon,
        margin=margin,
        regret=regret,
        entropy=ent,
        information_gain=gains,
        select_ms=ms,
        searches=dict(searches),
    )


def _mean_ci(values: FloatArray) -> tuple[list[float], list[list[float]]]:
    from beliefagent.eval.metrics import bootstrap_ci

    ci = bootstrap_ci(values)  # (K, 2)
    return (
        [round(float(v), 4) for v in values.mean(axis=0)],
        [[round(float(a), 4), round(float(b), 4)] for a, b in ci],
    )


def selection_summary(summary: dict[str, Any], task: object) -> None:
    """Add the selection's figures to a run summary: ``summary["selection"]`` and, for every
    assistant, ``regret_by_round`` (rounds 1..R; the user picks from what was shown, so it is
    the same for every assistant of the run)."""
    if not isinstance(task, SelectionTask):
        raise ConfigError("not a selection run", field="selection", value=type(task).__name__)
    regret, regret_ci = _mean_ci(task.regret)
    ent, ent_ci = _mean_ci(task.entropy)
    summary["selection"] = {
        "strategy": task.strategy,
        "pool": task.pool,
        "user_epsilon": task.user_epsilon,
        "margin": task.margin if task.strategy == "mixed" else None,
        "regret_by_round": regret,
        "regret_ci": regret_ci,
        "regret_mean": round(float(task.regret.mean()), 4),
        "entropy_by_round": ent,
        "entropy_ci": ent_ci,
        "information_gain_by_round": [round(float(v), 4) for v in task.information_gain.mean(0)],
        "select_ms_mean": round(float(task.select_ms.mean()), 2),
        "select_ms_p95": round(float(np.percentile(task.select_ms, 95)), 2),
        "select_ms_max": round(float(task.select_ms.max()), 2),
        "searches": task.searches,
    }
    for entry in summary["assistants"]:
        entry["regret_by_round"] = list(regret)
        entry["regret_ci"] = regret_ci
