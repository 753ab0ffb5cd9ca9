"""Readers for the web-shopping files of Qiu et al. (2026), read as released.

A user is a WebShop goal (``goal_attrs``, ``goal_options``). Each option set carries the
product texts (``options``), the user's pick (``user_idx``) and the WebShop reward of every
option (``score``); the simulated user picks the top score. There is no feature vector and no
Bayesian teacher: the bounds are a random guess and the best-score oracle.

- interaction file (``interaction_<category>.jsonl``, upstream ``interaction/webshop/<c>.jsonl``):
  one line per user, ``idx``, ``goal_attrs``, ``goal_options``, ``rounds`` (the dialogue);
- held-out file (``heldout_<category>.jsonl``, upstream ``heldout/webshop/<c>.jsonl``): line i is
  user i's own held-out sets, ``idx``, ``goal_attrs``, ``goal_options``, ``all_options``.

A malformed line is refused with a :class:`~beliefagent.errors.DataError` naming the file, the
line and the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beliefagent.errors import DataError

__all__ = [
    "WebshopCategory",
    "WebshopSet",
    "WebshopUser",
    "category_name",
    "find_webshop_categories",
    "load_webshop_category",
    "read_webshop_file",
]

_INTERACTION_PREFIX = "interaction_"
_HELDOUT_PREFIX = "heldout_"


@dataclass(frozen=True)
class WebshopSet:
    """One option set: the product texts, the user's pick and the score of every option."""

    options: tuple[str, ...]
    user_idx: int
    score: tuple[float, ...]

    @property
    def best(self) -> int:
        """The best-score option (first on ties): what the oracle answers."""
        top = max(self.score)
        return next(i for i, s in enumerate(self.score) if s >= top)


@dataclass(frozen=True)
class WebshopUser:
    """One user of a category: the goal, the dialogue's rounds and (when given) held-out sets."""

    idx: int
    goal_attrs: tuple[str, ...]
    goal_options: dict[str, str]
    rounds: tuple[WebshopSet, ...]
    heldout: tuple[WebshopSet, ...] = ()


@dataclass(frozen=True)
class WebshopCategory:
    name: str
    users: tuple[WebshopUser, ...]
    interactions: str
    heldout: str | None = None
    users_without_heldout: int = 0
    """users of the interaction file with no held-out line (the file is shorter)."""


def category_name(path: str | os.PathLike[str]) -> str:
    """``interaction_mens_boots.jsonl`` / ``heldout_mens_boots.jsonl`` / ``mens_boots.jsonl``
    -> ``mens_boots``."""
    stem = Path(path).name.removesuffix(".jsonl")
    for prefix in (_INTERACTION_PREFIX, _HELDOUT_PREFIX):
        stem = stem.removeprefix(prefix)
    return stem


def _need(rec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in rec:
        raise DataError(f"missing field {key!r}", path=where)
    value = rec[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"field {key!r} has the wrong type ({type(value).__name__})", path=where)
    return value


def _parse_set(raw: Any, where: str) -> WebshopSet:
    if not isinstance(raw, dict):
        raise DataError(f"an option set must be an object, got {type(raw).__name__}", path=where)
    options = _need(raw, "options", list, where)
    score = _need(raw, "score", list, where)
    user_idx = _need(raw, "user_idx", int, where)
    if len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
        raise DataError("'options' must hold two or more non-empty strings", path=where)
    if len(score) != len(options) or not all(
        isinstance(s, int | float) and not isinstance(s, bool) for s in score
    ):
        raise DataError(
            f"'score' must hold one number per option ({len(options)}), got {score!r}", path=where
        )
    if not 0 <= user_idx < len(options):
        raise DataError(f"'user_idx' {user_idx} is not in 0..{len(options) - 1}", path=where)
    return WebshopSet(tuple(options), int(user_idx), tuple(float(s) for s in score))


def _parse_goal(rec: dict[str, Any], where: str) -> tuple[int, tuple[str, ...], dict[str, str]]:
    idx = _need(rec, "idx", int, where)
    attrs = _need(rec, "goal_attrs", list, where)
    goal = _need(rec, "goal_options", dict, where)
    if not all(isinstance(a, str) for a in attrs):
        raise DataError("'goal_attrs' must be a list of strings", path=where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in goal.items()):
        raise DataError("'goal_options' must map strings to strings", path=where)
    return int(idx), tuple(attrs), dict(goal)


def read_webshop_file(path: str | os.PathLike[str], kind: str) -> list[WebshopUser]:
    """Read an ``interaction`` or ``heldout`` file: one :class:`WebshopUser` a line (for a
    held-out file, its sets are in ``heldout`` and ``rounds`` is empty)."""
    if kind not in ("interaction", "heldout"):
        raise DataError(f"kind must be 'interaction' or 'heldout', got {kind!r}", path=str(path))
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", path=str(p)) from exc
    users: list[WebshopUser] = []
    key = "rounds" if kind == "interaction" else "all_options"
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise DataError(f"not valid JSON: {exc}", path=where) from exc
        if not isinstance(rec, dict):
            raise DataError("a line must be a JSON object", path=where)
        idx, attrs, goal = _parse_goal(rec, where)
        raw_sets = _need(rec, key, list, where)
        if not raw_sets:
            raise DataError(f"'{key}' is empty", path=where)
        sets = tuple(_parse_set(s, f"{where}: {key}[{i}]") for i, s in enumerate(raw_sets))
        if kind == "interaction":
            users.append(WebshopUser(idx, attrs, goal, sets))
        else:
            users.append(WebshopUser(idx, attrs, goal, (), sets))
    if not users:
        raise DataError("no records", path=str(p))
    return users


def load_webshop_category(
    interactions: str | os.PathLike[str], heldout: str | os.PathLike[str] | None = None
) -> WebshopCategory:
    """One category: its interaction file and, optionally, its held-out file. Line i of the
    held-out file must be the same user (``idx`` and goal) as line i of the interaction file; a
    held-out file with fewer lines leaves the remaining users without held-out sets."""
    users = read_webshop_file(interactions, "interaction")
    missing = 0
    if heldout is not None:
        held = read_webshop_file(heldout, "heldout")
        if len(held) > len(users):
            raise DataError(
                f"{len(held)} held-out lines for {len(users)} users in {interactions}",
                path=str(heldout),
            )
        for n, (u, h) in enumerate(zip(users, held, strict=False), 1):
            if (u.idx, u.goal_attrs, u.goal_options) != (h.idx, h.goal_attrs, h.goal_options):
                raise DataError(
                    f"user idx {h.idx} (goal {list(h.goal_attrs)}) is not line {n} of "
                    f"{interactions} (idx {u.idx}, goal {list(u.goal_attrs)})",
                    path=f"{heldout}:{n}",
                )
        missing = len(users) - len(held)
        users = [
            WebshopUser(u.idx, u.goal_attrs, u.goal_options, u.rounds, h.heldout)
            for u, h in zip(users, held, strict=False)
        ] + users[len(held) :]
    return WebshopCategory(
        name=category_name(interactions),
        users=tuple(users),
        interactions=str(interactions),
        heldout=None if heldout is None else str(heldout),
        users_without_heldout=missing,
    )


def _files(path: Path, prefix: str) -> dict[str, Path]:
    """Category -> file in ``path`` (a file, or a folder of ``<prefix><c>.jsonl`` or
    ``<c>.jsonl`` files)."""
    if path.is_file():
        return {category_name(path): path}
    if not path.is_dir():
        raise DataError("no such file or folder", path=str(path))
    found = sorted(path.glob(f"{prefix}*.jsonl")) or sorted(
        p for p in path.glob("*.jsonl") if not p.name.startswith(("interaction_", "heldout_"))
    )
    if not found:
        raise DataError(f"no {prefix}<category>.jsonl or <category>.jsonl files", path=str(path))
    return {category_name(p): p for p in found}


def find_webshop_categories(
    interactions: str | os.PathLike[str],
    heldout: str | os.PathLike[str] | None = None,
    categories: list[str] | None = None,
) -> list[tuple[str, Path, Path | None]]:
    """Pair each category's interaction file with its held-out file. Either argument is a file
    or a folder: the release's layout (``interaction/webshop/<c>.jsonl`` beside
    ``heldout/webshop/<c>.jsonl``) or one folder of ``interaction_<c>.jsonl`` and
    ``heldout_<c>.jsonl``. ``categories`` keeps only those (in that order)."""
    inter = _files(Path(interactions), _INTERACTION_PREFIX)
    held: dict[str, Path] = {}
    if heldout is not None:
        held = _files(Path(heldout), _HELDOUT_PREFIX)
        if Path(interactions).is_file() and Path(heldout).is_file():
            held = {next(iter(inter)): Path(heldout)}
        unknown = sorted(set(held) - set(inter))
        if unknown:
            raise DataError(
                f"held-out files without an interaction file: {unknown}", path=str(heldout)
            )
    names = sorted(inter) if categories is None else list(categories)
    missing = [c for c in names if c not in inter]
    if missing:
        raise DataError(
            f"no interaction file for categories {missing} (found: {sorted(inter)})",
            path=str(interactions),
        )
    return [(c, inter[c], held.get(c)) for c in names]
