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

from beliefagent.belief import ChoiceModel, NoiseFree
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.datasets import Heldout, Interactions, load_heldout, load_interactions
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ConfigError
from beliefagent.teachers import BayesianTeacher, heldout_accuracy_by_round, sample_users

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
    domain: ChoiceDomain, data: Interactions, likelihood: ChoiceModel
) -> dict[str, object]:
    """In-dialogue accuracy: predict each round's choice from the rounds before it.
    Also counts dialogues whose posterior emptied (a choice contradicted every hypothesis)."""
    n_users, n_rounds = data.choices.shape
    hits = np.zeros(n_rounds)
    emptied = 0
    for u in range(n_users):
        t = BayesianTeacher(domain, likelihood)
        for r in range(n_rounds):
            hits[r] += t.recommend(data.rounds[u, r]).choice == data.choices[u, r]
            t.observe(data.rounds[u, r], int(data.choices[u, r]))
        emptied += t.belief.emptied
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
        # The held-out file stores truth for every hypothesis; align it to the dialogues' users.
        row = {tuple(w): i for i, w in enumerate(held.user_weights.tolist())}
        try:
            pick = np.array([row[tuple(w)] for w in inter.user_weights.tolist()])
        except KeyError as exc:
            raise ConfigError(
                "a dialogue's reward_fn has no row in the held-out file",
                field="interactions",
                value=str(interactions),
            ) from exc
        truth, source = held.truth[pick], "official"
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
