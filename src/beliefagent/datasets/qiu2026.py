"""Readers for the official evaluation files of Qiu et al. (2026): held-out option sets
(``heldout_flight.json``) and interactions (``interaction_flight.jsonl`` with simulated users,
``interaction_flight_human.jsonl`` with real people's choices).

Option text is parsed with the domain (so every option must round-trip through its grid) and
checked against the files' numeric ``*_numpy`` arrays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from beliefagent.domains import ChoiceDomain
from beliefagent.errors import BeliefAgentError, ConfigError, DataError

__all__ = [
    "Heldout",
    "Interactions",
    "data_roots",
    "find_data_file",
    "find_data_path",
    "heldout_truth",
    "load_heldout",
    "load_interactions",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Heldout:
    option_sets: IntArray  # (S, O, F) level indices
    user_weights: FloatArray  # (U, F)
    truth: IntArray  # (U, S) the user's preferred option, as stored


@dataclass(frozen=True)
class Interactions:
    user_weights: FloatArray  # (U, F)
    rounds: IntArray  # (U, R, O, F) level indices
    choices: IntArray  # (U, R) the user's choice each round
    ids: list[int]


def data_roots() -> list[Path]:
    """Where data files are looked up by name: ``$BELIEFAGENT_DATA``, ``./data/qiu2026``,
    ``../shared/data/qiu2026`` (from the working directory, then from the repository)."""
    here = Path(__file__).resolve()
    roots = [
        os.environ.get("BELIEFAGENT_DATA"),
        "data/qiu2026",
        "../shared/data/qiu2026",
        here.parents[3] / "../shared/data/qiu2026",
    ]
    return [Path(r) for r in roots if r]


def find_data_file(name: str | os.PathLike[str]) -> Path:
    """Resolve a data file: the path as given, else the path (then its bare name) under
    ``$BELIEFAGENT_DATA``, ``./data/qiu2026`` or ``../shared/data/qiu2026`` (from the working
    directory or the repository), e.g. ``samples/interaction_hotel.jsonl``."""
    p = Path(name)
    if p.is_file():
        return p
    for root in data_roots():
        for candidate in (root / p, root / p.name):
            if candidate.is_file():
                return candidate
    raise DataError(
        "file not found (also looked in $BELIEFAGENT_DATA and ../shared/data/qiu2026)", path=str(p)
    )


def find_data_path(candidates: list[str]) -> Path | None:
    """The first of ``candidates`` (relative paths, files or folders) that exists as given or
    under one of :func:`data_roots`; ``None`` when none does."""
    for c in candidates:
        if Path(c).exists():
            return Path(c)
        for root in data_roots():
            if (root / c).exists():
                return root / c
    return None


def _parse_sets(
    domain: ChoiceDomain, sets: list[list[str]], numeric: object, path: str
) -> IntArray:
    try:
        levels = np.stack([domain.parse_option_set(s) for s in sets])  # (n, O, F)
    except BeliefAgentError as exc:
        raise DataError(f"option does not parse: {exc}", path=path) from exc
    if numeric is not None and not np.allclose(domain.codes(levels), np.asarray(numeric)):
        raise DataError("option text disagrees with its numeric form", path=path)
    return levels


def _matching_builtin(features: list[str]) -> str | None:
    """The built-in choice domain whose features are exactly ``features`` (same order), if any."""
    from beliefagent.domains.registry import builtin_domains, load_domain

    for name in builtin_domains():
        try:
            d = load_domain(name)
        except BeliefAgentError:
            continue
        if isinstance(d, ChoiceDomain) and list(d.feature_names) == list(features):
            return name
    return None


def _check_features(domain: ChoiceDomain, features: list[str], path: str) -> None:
    if list(features) != list(domain.feature_names):
        hint = ""
        if isinstance(features, list) and all(isinstance(f, str) for f in features):
            match = _matching_builtin(features)
            hint = f" (they are those of --domain {match})" if match else ""
        raise DataError(
            f"features {features} do not match domain {domain.name!r} "
            f"{list(domain.feature_names)}{hint}",
            path=path,
        )


def heldout_truth(held: Heldout, user_weights: FloatArray, *, source: str) -> IntArray:
    """The held-out truth rows ``(U, S)`` of the users with reward vectors ``user_weights (U, F)``:
    row by row when the held-out file lists the same users in the same order (duplicate reward
    vectors keep their own rows), otherwise looked up by reward vector."""
    if held.user_weights.shape == user_weights.shape and np.array_equal(
        held.user_weights, user_weights
    ):
        return held.truth
    row = {tuple(w): i for i, w in enumerate(held.user_weights.tolist())}
    try:
        pick = np.array([row[tuple(w)] for w in user_weights.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ConfigError(
            f"a dialogue's reward_fn {list(exc.args[0])} has no row in the held-out file",
            field="interactions",
            value=source,
        ) from exc
    return held.truth[pick]


def load_heldout(path: str | os.PathLike[str], domain: ChoiceDomain) -> Heldout:
    p = find_data_file(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read: {exc}", path=str(p)) from exc
    _check_features(domain, data["features"], str(p))
    sets = _parse_sets(domain, data["all_options"], data.get("all_options_numpy"), str(p))
    weights = np.array([u["reward_fn"] for u in data["user_idxs"]], dtype=np.float64)
    truth = np.array([u["idxs"] for u in data["user_idxs"]], dtype=np.int64)
    return Heldout(option_sets=sets, user_weights=weights, truth=truth)


def load_interactions(path: str | os.PathLike[str], domain: ChoiceDomain) -> Interactions:
    p = find_data_file(path)
    weights, rounds, choices, ids = [], [], [], []
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read: {exc}", path=str(p)) from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            _check_features(domain, rec["features"], f"{p}:{n}")
            rounds.append(
                _parse_sets(
                    domain,
                    [r["options"] for r in rec["rounds"]],
                    rec.get("rounds_numpy"),
                    f"{p}:{n}",
                )
            )
            choices.append([int(r["user_idx"]) for r in rec["rounds"]])
            weights.append([float(v) for v in rec["reward_fn"]])
            ids.append(int(rec.get("idx", n - 1)))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"bad record: {exc!r}", path=str(p), line=n) from exc
    return Interactions(
        user_weights=np.array(weights, dtype=np.float64),
        rounds=np.stack(rounds),
        choices=np.array(choices, dtype=np.int64),
        ids=ids,
    )
