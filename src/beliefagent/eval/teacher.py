"""Evaluating the Bayesian teacher alone with the paper's protocol: on the official files, or on
users and option sets the project generates from the domain spec.

Generated data: every hypothesis (or ``users`` of them, sampled) plays a noise-free user; each user
sees its own ``rounds`` random option sets; ``heldout_sets`` random sets are shared by all users;
the truth is each user's favourite (reward ties broken at random, seeded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from beliefagent.belief import ChoiceModel, NoiseFree, argmax_first
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.belief.posterior import log_normalize
from beliefagent.datasets import (
    Heldout,
    Interactions,
    heldout_truth,
    load_heldout,
    load_interactions,
)
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ConfigError
from beliefagent.teachers import heldout_accuracy_by_round, sample_users

__all__ = [
    "TeacherEvalResult",
    "dialogue_accuracy",
    "generate_heldout",
    "generate_interactions",
    "run_teacher_eval",
    "stated_reward_agreement",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class TeacherEvalResult:
    accuracy_by_round: list[float]  # percentages after rounds 0..R
    domain: str
    source: str  # "official" or "generated"
    n_users: int
    n_heldout: int
    likelihood: str
    seed: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _favourites(x: FloatArray, weights: FloatArray, rng: np.random.Generator) -> IntArray:
    """Favourite option of each user in each set, reward ties broken at random.
    ``x (..., O, F)``, ``weights (U, F)`` -> ``(U, ...)``."""
    r = np.einsum("uf,...of->u...o", weights, x)
    tied = r >= r.max(axis=-1, keepdims=True) - TIE_TOL
    return np.argmax(np.where(tied, rng.random(r.shape), -1.0), axis=-1).astype(np.int64)


def generate_interactions(
    domain: ChoiceDomain, n_users: int | None, rng: np.random.Generator
) -> Interactions:
    idx = sample_users(domain, n_users, rng)
    weights = domain.hypothesis_weights()[idx]  # (U, F)
    sets = domain.random_option_sets(rng, len(idx) * domain.rounds).reshape(
        len(idx), domain.rounds, domain.n_options, domain.n_features
    )  # (U, R, O, F)
    x = domain.codes(sets)
    r = np.einsum("uf,urof->uro", weights, x)
    tied = r >= r.max(axis=-1, keepdims=True) - TIE_TOL
    choices = np.argmax(np.where(tied, rng.random(r.shape), -1.0), axis=-1).astype(np.int64)
    return Interactions(user_weights=weights, rounds=sets, choices=choices, ids=idx.tolist())


def generate_heldout(
    domain: ChoiceDomain, weights: FloatArray, n_sets: int, rng: np.random.Generator
) -> Heldout:
    sets = domain.random_option_sets(rng, n_sets)  # (S, O, F)
    truth = _favourites(domain.codes(sets), weights, rng)  # (U, S)
    return Heldout(option_sets=sets, user_weights=weights, truth=truth)


def dialogue_accuracy(
    domain: ChoiceDomain,
    data: Interactions,
    likelihood: ChoiceModel,
    *,
    max_elements: int = 4_000_000,
) -> dict[str, object]:
    """In-dialogue accuracy: predict each round's choice from the rounds before it (the
    :class:`~beliefagent.teachers.BayesianTeacher` rule: argmax of the posterior expected reward,
    first option on ties). Also counts dialogues whose posterior emptied (a choice contradicted
    every hypothesis; the update is skipped, as in :class:`~beliefagent.belief.Belief`).

    Vectorised over users and hypotheses, users in chunks of at most ``max_elements`` (user x
    hypothesis x option) entries, so 8-feature tasks (390,624 hypotheses) stay fast."""
    weights = domain.hypothesis_weights()  # (H, F)
    n_users, n_rounds = data.choices.shape
    h = weights.shape[0]
    chunk = max(1, max_elements // max(1, h * domain.n_options))
    hits = np.zeros(n_rounds)
    emptied = 0
    for start in range(0, n_users, chunk):
        sl = slice(start, start + chunk)
        x = domain.codes(data.rounds[sl])  # (u, R, O, F)
        u = x.shape[0]
        log_post = np.full((u, h), -np.log(h))  # (u, H)
        contradicted = np.zeros(u, dtype=bool)
        for r in range(n_rounds):
            means = np.exp(log_post) @ weights  # (u, F)
            expected = np.einsum("uf,uof->uo", means, x[:, r])  # (u, O)
            hits[r] += float(np.sum(argmax_first(expected) == data.choices[sl, r]))
            probs = likelihood.probs(np.matmul(x[:, r], weights.T).swapaxes(1, 2))  # (u, H, O)
            p_choice = np.take_along_axis(probs, data.choices[sl, r][:, None, None], axis=2)[
                ..., 0
            ]  # (u, H)
            with np.errstate(divide="ignore"):
                new = log_normalize(log_post + np.log(p_choice))  # (u, H)
            ok = np.asarray(np.isfinite(new).any(axis=1))
            contradicted |= ~ok
            log_post = np.where(ok[:, None], new, log_post)
        emptied += int(contradicted.sum())
    per_round = (100 * hits / n_users).tolist()
    return {
        "likelihood": likelihood.name,
        "accuracy_by_round": per_round,
        "accuracy": float(np.mean(per_round)),
        "emptied_dialogues": int(emptied),
        "emptied_share": 100 * emptied / n_users,
        "n_dialogues": n_users,
    }


def stated_reward_agreement(domain: ChoiceDomain, data: Interactions) -> float:
    """Share (%) of rounds where the choice maximises the user's own stated reward."""
    x = domain.codes(data.rounds)  # (U, R, O, F)
    r = np.einsum("uf,urof->uro", data.user_weights, x)
    best = r >= r.max(axis=-1, keepdims=True) - TIE_TOL
    return float(100 * np.take_along_axis(best, data.choices[..., None], axis=-1).mean())


def run_teacher_eval(
    domain: ChoiceDomain,
    *,
    heldout: str | Path | None = None,
    interactions: str | Path | None = None,
    users: int | None = None,
    heldout_sets: int = 100,
    seed: int = 0,
    likelihood: ChoiceModel | None = None,
    tie_tol: float = TIE_TOL,
) -> TeacherEvalResult:
    """Accuracy of the Bayesian teacher on held-out sets after each round (the paper's protocol)."""
    lik = likelihood or NoiseFree()
    if (heldout is None) != (interactions is None):
        raise ConfigError(
            "give both --heldout and --interactions, or neither",
            field="heldout" if heldout is None else "interactions",
            value=None,
        )
    if heldout is not None and interactions is not None:
        held = load_heldout(heldout, domain)
        inter = load_interactions(interactions, domain)
        # The held-out file stores truth per user; align it to the dialogues' users.
        truth = heldout_truth(held, inter.user_weights, source=str(interactions))
        source = "official"
    else:
        if users is not None and users < 1:
            raise ConfigError("must be >= 1", field="users", value=users)
        if heldout_sets < 1:
            raise ConfigError("must be >= 1", field="heldout_sets", value=heldout_sets)
        rng = np.random.default_rng(seed)
        inter = generate_interactions(domain, users, rng)
        held = generate_heldout(domain, inter.user_weights, heldout_sets, rng)
        truth, source = held.truth, "generated"
    acc = heldout_accuracy_by_round(
        domain,
        inter.user_weights,
        inter.rounds,
        inter.choices,
        held.option_sets,
        truth,
        lik,
        tie_tol=tie_tol,
    )
    return TeacherEvalResult(
        accuracy_by_round=[round(float(a) * 100, 2) for a in acc],
        domain=domain.name,
        source=source,
        n_users=len(inter.choices),
        n_heldout=len(held.option_sets),
        likelihood=lik.name,
        seed=None if source == "official" else seed,
    )
