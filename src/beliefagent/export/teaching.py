"""Teaching examples: re-run the Bayesian teacher over logged dialogues and write its answers as
the assistant turns of the paper's multi-turn chat ("Bayesian teaching").

The pure core, usable without logs, is :func:`build_examples`: give it a domain and sessions
``(session_id, user_id, option_sets (R, O, F) level indices, user_choices (R,))`` and it returns
one :class:`TeachingExample` per session. :func:`sessions_from_log` turns a trajectory log into
such sessions (reporting what it cannot use), and :func:`export_teaching_set` goes from logs to a
written teaching set (``train.jsonl``, ``eval.jsonl``, ``manifest.json``).

Targets (one per assistant turn, i.e. per round):

- ``bayes`` — the teacher's recommendation before it sees the round's choice: the argmax of the
  posterior expected reward, its early wrong guesses included (the paper's Bayesian teaching).
  Ties are broken at random, seeded per session (:func:`session_seed`); otherwise every round-1
  target would be "option 1".
- ``bayes-soft`` — the teacher's predictive distribution ``P(user picks o)`` per round, written
  as ``soft_targets``; the hard target is its argmax, ties broken at random (seeded).
- ``oracle`` — the user's actual choice.

The model's own logged answers are never a target. The user turns' feedback refers to the target
answer shown ("Your option Flight 2 is incorrect. I prefer Flight 3."), built with
:func:`~beliefagent.prompts.build_dialogue`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from beliefagent.belief import ChoiceModel
from beliefagent.belief.likelihood import choice_model_from_spec as likelihood_from_spec
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.errors import (
    BeliefAgentError,
    ChoiceError,
    ConfigError,
    DataError,
    InputError,
    OptionError,
)
from beliefagent.export.scrub import Scrubber
from beliefagent.prompts import DialoguePrompts, Message, build_dialogue
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import (
    LogRead,
    SessionEnd,
    SessionStart,
    Turn,
    dialogue_keys,
    group_sessions,
    read_trajectories,
)

__all__ = [
    "Format",
    "LogSessions",
    "Skip",
    "SkipReason",
    "SourceReport",
    "Target",
    "TeachingExample",
    "TeachingSession",
    "build_examples",
    "export_teaching_set",
    "likelihood_from_spec",
    "session_seed",
    "sessions_from_log",
]

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]

MAX_SKIP_DETAILS = 1000
"""At most this many skipped sessions are listed one by one in the manifest (all are counted)."""


class Target(StrEnum):
    """What the assistant turns of an exported chat say."""

    BAYES = "bayes"
    BAYES_SOFT = "bayes-soft"
    ORACLE = "oracle"


class Format(StrEnum):
    """How examples are written: ``chat`` (every field) or ``openai`` (``messages`` only)."""

    CHAT = "chat"
    OPENAI = "openai"


class SkipReason(StrEnum):
    """Why a session (or a log line) did not become an example."""

    UNKNOWN_DOMAIN = "unknown_domain"
    """the session's domain is neither built in nor a readable spec"""
    NO_TEACHER = "no_teacher"
    """the domain has no Bayesian choice teacher (e.g. a questionnaire such as bigfive)"""
    OTHER_DOMAIN = "other_domain"
    """a domain was given and the session was logged under another one"""
    MIXED_DOMAINS = "mixed_domains"
    """the session's turns name different domains"""
    NO_USER_CHOICES = "no_user_choices"
    """no round with a user choice (a session that ended before the user chose)"""
    OPTIONS_UNPARSABLE = "options_unparsable"
    """options that neither their features nor their text map onto the domain's grid"""
    BELIEF_EMPTIED = "belief_emptied"
    """the user's choices contradicted every hypothesis (noise-free likelihood)"""
    TORN_LINE = "torn_line"
    """a log line cut short by a crash"""
    INVALID_LINE = "invalid_line"
    """a log line that is not a valid record"""


class TeachingSession(NamedTuple):
    """One dialogue's history: what the teacher is re-run over. A plain 4-tuple
    ``(session_id, user_id, option_sets, user_choices)`` works wherever this is expected."""

    session_id: str
    user_id: str | None
    option_sets: npt.ArrayLike
    """level indices, ``(R, n_options, n_features)``"""
    user_choices: Sequence[int]
    """the user's choice (0-based) in each round, ``(R,)``"""
    user_messages: Sequence[str | None] | None = None
    """free text the user wrote with each round's question (production logs), or None"""


@dataclass(frozen=True)
class Skip:
    """A session, or a log line, left out of the teaching set."""

    session_id: str | None
    reason: SkipReason
    detail: str = ""
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "reason": str(self.reason),
            "detail": self.detail,
            "source": self.source,
        }


@dataclass(frozen=True)
class TeachingExample:
    """One exported chat and its targets (one per assistant turn)."""

    id: str
    user_id: str | None
    domain: str
    target: Target
    messages: list[Message]
    targets: list[int]
    """0-based option index of each assistant turn's answer"""
    soft_targets: list[list[float]] | None
    """per assistant turn, P(user picks each option) (``bayes-soft`` only)"""
    labels: list[str]
    """each option's label as written in the chat ("1", "2", "3")"""
    user_choices: list[int]
    emptied: bool = False
    """the teacher's belief emptied (only with ``keep_emptied``; otherwise such are skipped)"""

    def to_chat(self) -> dict[str, Any]:
        """The ``chat`` line: the paper's data release / TRL ``messages`` format plus fields."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "domain": self.domain,
            "target": str(self.target),
            "messages": self.messages,
            "targets": self.targets,
            "soft_targets": self.soft_targets,
            "labels": self.labels,
            "user_choices": self.user_choices,
            "emptied": self.emptied,
        }

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI fine-tuning line: ``{"messages": [...]}`` only (soft targets cannot ride)."""
        return {"messages": self.messages}


def session_seed(seed: int, session_id: str) -> int:
    """The tie-breaking seed of one session: a hash of the export seed and the session id, so a
    session's targets do not depend on which other sessions are exported with it."""
    digest = hashlib.sha256(f"{seed}\x00{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _likelihood_settings(model: ChoiceModel) -> dict[str, Any]:
    param = getattr(model, "epsilon", getattr(model, "temperature", None))
    spec = model.name if param is None else f"{model.name}:{param:g}"
    return {"likelihood": spec, "model": repr(model)}


def _argmax_random(values: Sequence[float], rng: np.random.Generator, tol: float = 1e-9) -> int:
    v = np.asarray(values, dtype=np.float64)  # (n_options,)
    best = np.flatnonzero(v >= v.max() - tol)
    return int(rng.choice(best))


def _check_target(target: str | Target) -> Target:
    try:
        return Target(target)
    except ValueError as exc:
        raise ConfigError(
            f"unknown target (one of {', '.join(t.value for t in Target)})",
            field="target",
            value=target,
        ) from exc


def _check_session(domain: ChoiceDomain, session: TeachingSession) -> tuple[IntArray, list[int]]:
    """The session's option sets ``(R, O, F)`` and choices ``(R,)``, checked against the domain."""
    sid = session.session_id
    sets = np.asarray(session.option_sets)
    if sets.ndim != 3 or sets.shape[1:] != (domain.n_options, domain.n_features):
        raise OptionError(
            f"session {sid!r}: expected option_sets of shape "
            f"(rounds, {domain.n_options}, {domain.n_features})",
            field="option_sets",
            value=sets.shape,
        )
    if not np.issubdtype(sets.dtype, np.integer):
        raise OptionError(
            f"session {sid!r}: option levels must be integers",
            field="option_sets",
            value=sets.dtype,
        )
    off = (sets < 0) | (sets >= np.asarray(domain.n_levels))  # (R, O, F)
    if off.any():
        r, o, f = (int(i) for i in np.argwhere(off)[0])
        raise OptionError(
            f"session {sid!r}: round {r}, option {o}: level off the grid "
            f"(0..{domain.n_levels[f] - 1})",
            field=f"option_sets.{domain.feature_names[f]}",
            value=int(sets[r, o, f]),
        )
    choices = [int(c) for c in session.user_choices]
    if len(choices) != len(sets):
        raise InputError(
            f"session {sid!r}: {len(sets)} option sets but {len(choices)} choices",
            field="user_choices",
            value=choices,
        )
    for c in choices:
        if not 0 <= c < domain.n_options:
            raise ChoiceError(
                f"session {sid!r}: choice out of range 0..{domain.n_options - 1}",
                field="user_choices",
                value=c,
            )
    return sets.astype(np.int64), choices


def build_examples(
    domain: ChoiceDomain,
    sessions: Iterable[TeachingSession | tuple[Any, ...]],
    target: str | Target,
    *,
    likelihood: str | ChoiceModel | None = None,
    seed: int = 0,
    keep_emptied: bool = False,
    include_user_messages: bool = False,
    scrubber: Scrubber | None = None,
    prompts: DialoguePrompts | None = None,
) -> tuple[list[TeachingExample], list[Skip]]:
    """One teaching example per session, the Bayesian teacher re-run over its history.

    ``sessions`` are :class:`TeachingSession`\\ s or plain tuples ``(session_id, user_id,
    option_sets (R, O, F), user_choices (R,))``. For every ``target`` the teacher (``likelihood``:
    a model or a spec such as ``"epsilon:0.1"``; noise-free by default) observes every choice;
    a session whose belief emptied is skipped (:attr:`SkipReason.BELIEF_EMPTIED`) unless
    ``keep_emptied``, even for ``oracle`` targets, so that exports of the same sessions with
    different targets hold the same sessions. A session with no rounds is skipped too. Malformed
    sessions (shapes, off-grid levels, choices out of range) raise
    :class:`~beliefagent.errors.InputError`.

    With ``include_user_messages``, each round's user message (scrubbed with ``scrubber``, of
    personal data and credentials) is prepended to that round's user turn. Returns
    ``(examples, skipped)``, examples in the order of ``sessions``.
    """
    tgt = _check_target(target)
    lik = likelihood_from_spec(likelihood)
    wording = prompts or DialoguePrompts.for_domain(domain)
    scrub = scrubber if scrubber is not None else Scrubber()
    labels = [domain.label(i) for i in range(domain.n_options)]
    examples: list[TeachingExample] = []
    skipped: list[Skip] = []
    for raw in sessions:
        session = raw if isinstance(raw, TeachingSession) else TeachingSession(*raw)
        if len(session.user_choices) == 0:
            skipped.append(Skip(session.session_id, SkipReason.NO_USER_CHOICES, "no rounds"))
            continue
        sets, choices = _check_session(domain, session)  # (R, O, F), (R,)
        sseed = session_seed(seed, session.session_id)
        teacher = BayesianTeacher(domain, lik, tie_break="random", seed=sseed)
        rng = np.random.default_rng([sseed, 1])  # ties of the predictive (bayes-soft)
        targets: list[int] = []
        soft: list[list[float]] = []
        for option_set, choice in zip(sets, choices, strict=True):
            if tgt is Target.BAYES:
                targets.append(teacher.recommend(option_set).choice)
            elif tgt is Target.BAYES_SOFT:
                predictive = teacher.recommend(option_set).predictive
                soft.append(predictive)
                targets.append(_argmax_random(predictive, rng))
            else:
                targets.append(choice)
            teacher.observe(option_set, choice)
        emptied = teacher.belief.emptied
        if emptied and not keep_emptied:
            skipped.append(
                Skip(
                    session.session_id,
                    SkipReason.BELIEF_EMPTIED,
                    f"{teacher.belief.n_contradictions} contradicted choice(s) under {lik.name}",
                )
            )
            continue
        option_texts = [[domain.render_option(row, i) for i, row in enumerate(s)] for s in sets]
        messages = build_dialogue(wording, option_texts, answers=targets, choices=choices)
        if include_user_messages and session.user_messages is not None:
            for r, text in enumerate(session.user_messages[: len(choices)]):
                if text and text.strip():
                    turn = messages[2 * r]  # user turns sit at even positions
                    turn["content"] = f"{scrub.scrub(text.strip())}\n\n{turn['content']}"
        examples.append(
            TeachingExample(
                id=session.session_id,
                user_id=session.user_id,
                domain=domain.name,
                target=tgt,
                messages=messages,
                targets=targets,
                soft_targets=soft if tgt is Target.BAYES_SOFT else None,
                labels=list(labels),
                user_choices=choices,
                emptied=emptied,
            )
        )
    return examples, skipped


# --- reading logs ------------------------------------------------------------------------------


@dataclass
class SourceReport:
    """What one log contributed, and what it could not."""

    path: str
    records: int = 0
    sessions: int = 0
    torn_lines: list[int] = field(default_factory=list)
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    without_end: int = 0
    """sessions with no SessionEnd (still running, or crashed): exported as far as they go"""
    truncated: int = 0
    """sessions cut at their first round without a user choice (or a gap in the rounds)"""


@dataclass
class LogSessions:
    """The sessions :func:`sessions_from_log` could use, grouped by domain, and what it skipped."""

    source: SourceReport
    domains: dict[str, ChoiceDomain] = field(default_factory=dict)
    sessions: dict[str, list[TeachingSession]] = field(default_factory=dict)
    """by domain name, in log order"""
    skipped: list[Skip] = field(default_factory=list)

    @property
    def n_sessions(self) -> int:
        return sum(len(v) for v in self.sessions.values())


def _resolve_domain(name: str, cache: dict[str, ChoiceDomain | Skip]) -> ChoiceDomain | Skip:
    if name not in cache:
        try:
            loaded = load_domain(name)
        except (BeliefAgentError, OSError) as exc:
            cache[name] = Skip(None, SkipReason.UNKNOWN_DOMAIN, f"domain {name!r}: {exc}")
        else:
            if isinstance(loaded, ChoiceDomain):
                cache[name] = loaded
            else:
                cache[name] = Skip(
                    None,
                    SkipReason.NO_TEACHER,
                    f"domain {name!r} is a {loaded.kind} domain; export needs a choice domain",
                )
    return cache[name]


def _parse_turn(domain: ChoiceDomain, turn: Turn) -> IntArray:
    """A turn's option set as level indices: from each option's features when they map onto the
    grid, else from its text. Raises OptionError/InputError when neither does."""
    if len(turn.options) != domain.n_options:
        raise InputError(
            f"round {turn.round}: {len(turn.options)} options, {domain.name} shows "
            f"{domain.n_options}",
            field="options",
            value=len(turn.options),
        )
    rows = []
    for option in turn.options:
        levels: tuple[int, ...] | None = None
        if option.features is not None:
            try:
                levels = domain.option_from_values(option.features)
            except InputError:
                levels = None
        if levels is None:
            levels = domain.parse_option(option.text)
        rows.append(levels)
    return domain.validate_option_set(np.asarray(rows, dtype=np.int64))


def _usable_turns(turns: list[Turn]) -> tuple[list[Turn], bool]:
    """The leading run of rounds with a user choice (a round logged twice keeps its last
    record); True when rounds after a gap or an unanswered round were dropped."""
    by_round: dict[int, Turn] = {}
    for turn in turns:
        by_round[turn.round] = turn  # turns are sorted by round, ties in log order
    ordered = [by_round[r] for r in sorted(by_round)]
    kept: list[Turn] = []
    for turn in ordered:
        if turn.user_choice is None or (kept and turn.round != kept[-1].round + 1):
            break
        kept.append(turn)
    # An unanswered final round is the normal end of a live dialogue, not a truncation.
    dropped = ordered[len(kept) :]
    truncated = bool(dropped) and not (len(dropped) == 1 and dropped[0].user_choice is None)
    return kept, truncated


def sessions_from_log(
    log: str | os.PathLike[str] | LogRead, domain: ChoiceDomain | None = None
) -> LogSessions:
    """Read a trajectory log (a path, or what :func:`~beliefagent.trajectories.read_trajectories`
    returned) into teaching sessions.

    Each session's domain is the one it was logged under, resolved with
    :func:`~beliefagent.domains.load_domain`; with ``domain`` given, only sessions logged under
    ``domain.name`` are read (a custom spec) and others are skipped as ``other_domain``. Options
    are taken from their logged features when those map onto the domain's grid, else parsed from
    their text; either way the exported text is later rendered afresh from the levels. A session
    keeps its leading rounds that have a user choice. Torn and invalid lines, and sessions that
    cannot be used, are reported in ``skipped`` (see :class:`SkipReason`).
    """
    read = log if isinstance(log, LogRead) else read_trajectories(log)
    path = str(read.path)
    source = SourceReport(
        path=path,
        records=len(read.records),
        torn_lines=list(read.torn),
        invalid_lines=list(read.invalid),
        ignored_fields=sorted(read.ignored_fields),
    )
    out = LogSessions(source=source)
    out.skipped += [
        Skip(None, SkipReason.TORN_LINE, f"line {n}: torn (truncated by a crash?)", path)
        for n in read.torn
    ]
    out.skipped += [
        Skip(None, SkipReason.INVALID_LINE, f"line {n}: {reason}", path)
        for n, reason in read.invalid
    ]
    starts: dict[str, SessionStart] = {}
    ended: set[str] = set()
    for key, record in zip(dialogue_keys(read.records), read.records, strict=True):
        if isinstance(record, SessionStart):
            starts.setdefault(key, record)
        elif isinstance(record, SessionEnd):
            ended.add(key)
    cache: dict[str, ChoiceDomain | Skip] = {}
    grouped = group_sessions(read.records)
    source.sessions = len(grouped)
    for sid, turns in grouped.items():
        start = starts.get(sid)

        def skip(reason: SkipReason, detail: str, sid: str = sid) -> None:
            out.skipped.append(Skip(sid, reason, detail, path))

        if sid not in ended:
            source.without_end += 1
        if start is None and not turns:  # only a SessionEnd survived
            skip(SkipReason.NO_USER_CHOICES, "no turns")
            continue
        name = start.domain if start is not None else turns[0].domain
        others = sorted({t.domain for t in turns} - {name})
        if others:
            skip(SkipReason.MIXED_DOMAINS, f"session domain {name!r}, turns also in {others}")
            continue
        if domain is not None:
            if name != domain.name:
                skip(SkipReason.OTHER_DOMAIN, f"logged under {name!r}, exporting {domain.name!r}")
                continue
            dom: ChoiceDomain | Skip = domain
        else:
            dom = _resolve_domain(name, cache)
        if isinstance(dom, Skip):
            skip(dom.reason, dom.detail)
            continue
        kept, truncated = _usable_turns(turns)
        if not kept:
            skip(SkipReason.NO_USER_CHOICES, f"{len(turns)} turn(s), none with a user choice")
            continue
        source.truncated += truncated
        try:
            sets = np.stack([_parse_turn(dom, t) for t in kept])  # (R, O, F)
        except InputError as exc:
            skip(SkipReason.OPTIONS_UNPARSABLE, str(exc))
            continue
        user_id = start.user_id if start is not None and start.user_id is not None else None
        if user_id is None:
            user_id = next((t.user_id for t in kept if t.user_id is not None), None)
        session = TeachingSession(
            session_id=sid,
            user_id=user_id,
            option_sets=sets,
            user_choices=[int(t.user_choice) for t in kept if t.user_choice is not None],
            user_messages=[t.user_message for t in kept],
        )
        out.domains.setdefault(dom.name, dom)
        out.sessions.setdefault(dom.name, []).append(session)
    return out


# --- writing a teaching set -------------------------------------------------------------------


class _IdMap:
    """Ids as written: unchanged unless scrubbing finds personal data in them (a user id that is
    an email address), then ``anon-<kind>-<n>``, numbered by first appearance."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.map: dict[tuple[str, str], str] = {}
        self.anonymised = 0

    def __call__(self, kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        key = (kind, value)
        if key not in self.map:
            if self.scrubber.scrub(value) == value:
                self.map[key] = value
            else:
                self.anonymised += 1
                self.map[key] = f"anon-{kind}-{self.anonymised}"
        return self.map[key]


def _user_key(example: TeachingExample) -> str:
    """What the split groups by: the user id, or the session for sessions without one."""
    return f"user:{example.user_id}" if example.user_id is not None else f"session:{example.id}"


def _split_users(keys: Iterable[str], eval_fraction: float, seed: int) -> set[str]:
    """The users that go to eval: ``round(eval_fraction * n_users)`` of them (at least one when
    the fraction is positive and there are two users or more; never all), chosen by a seeded
    hash of each user's key, so the choice does not depend on input order."""
    users = sorted(set(keys))
    n = len(users)
    if eval_fraction <= 0 or n < 2:
        return set()
    n_eval = min(n - 1, max(1, round(eval_fraction * n)))
    ranked = sorted(users, key=lambda k: hashlib.sha256(f"{seed}\x00{k}".encode()).hexdigest())
    return set(ranked[:n_eval])


def _expand_logs(
    logs: Sequence[str | os.PathLike[str] | LogRead],
) -> list[str | os.PathLike[str] | LogRead]:
    out: list[str | os.PathLike[str] | LogRead] = []
    for log in logs:
        if not isinstance(log, LogRead) and Path(log).is_dir():
            found = sorted(Path(log).glob("*.jsonl"))
            if not found:
                raise DataError("no *.jsonl trajectory logs in this directory", path=str(log))
            out.extend(found)
        else:
            out.append(log)
    return out


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    n = size = 0
    with tmp.open("wb") as fh:
        for row in rows:
            line = (
                json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
            ).encode("utf-8")
            fh.write(line)
            digest.update(line)
            n += 1
            size += len(line)
    os.replace(tmp, path)
    return {"sha256": digest.hexdigest(), "bytes": size, "examples": n}


def export_teaching_set(
    logs: str | os.PathLike[str] | LogRead | Sequence[str | os.PathLike[str] | LogRead],
    out_dir: str | os.PathLike[str],
    target: str | Target = Target.BAYES,
    fmt: str | Format = Format.CHAT,
    eval_fraction: float = 0.1,
    seed: int = 0,
    *,
    likelihood: str | ChoiceModel | None = "noise-free",
    domain: ChoiceDomain | None = None,
    keep_emptied: bool = False,
    include_user_messages: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a teaching set from trajectory logs; returns the manifest (also written).

    ``logs`` are log files (a directory stands for its ``*.jsonl`` files) or
    :class:`~beliefagent.trajectories.LogRead`\\ s. Writes ``train.jsonl``, ``eval.jsonl``
    (``fmt``: ``chat`` or ``openai``) and ``manifest.json`` in ``out_dir``:

    - examples are built with :func:`build_examples` per log and domain;
    - ids are scrubbed (an id holding personal data is written as ``anon-user-<n>``);
    - identical message lists are written once (the first seen is kept);
    - users (sessions without a user id count as their own user) are split between train and
      eval by a seeded hash: no user lands in both.

    Existing output files are only replaced with ``overwrite``. Nothing is written before every
    log has been read and every example built.
    """
    tgt = _check_target(target)
    try:
        form = Format(fmt)
    except ValueError as exc:
        raise ConfigError("unknown format (chat, openai)", field="format", value=fmt) from exc
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError("must be in [0, 1)", field="eval_fraction", value=eval_fraction)
    lik = likelihood_from_spec(likelihood)
    out = Path(out_dir)
    names = ("train.jsonl", "eval.jsonl", "manifest.json")
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{existing[0]} already exists there (pass overwrite=True / --overwrite)",
            field="out_dir",
            value=str(out),
        )
    log_list = [logs] if isinstance(logs, str | os.PathLike | LogRead) else list(logs)
    if not log_list:
        raise ConfigError("give at least one trajectory log", field="logs", value=[])

    scrubber = Scrubber()
    ids = _IdMap(scrubber)
    sources: list[SourceReport] = []
    skipped: list[Skip] = []
    examples: list[TeachingExample] = []
    domains_seen: Counter[str] = Counter()
    for log in _expand_logs(log_list):
        read = sessions_from_log(log, domain)
        sources.append(read.source)
        skipped += read.skipped
        for name, sessions in read.sessions.items():
            domains_seen[name] += len(sessions)
            built, skips = build_examples(
                read.domains[name],
                sessions,
                tgt,
                likelihood=lik,
                seed=seed,
                keep_emptied=keep_emptied,
                include_user_messages=include_user_messages,
                scrubber=scrubber,
            )
            examples += built
            skipped += [replace(s, source=read.source.path) for s in skips]

    # Dedup (first seen wins), then split by user.
    seen: set[str] = set()
    unique: list[TeachingExample] = []
    for ex in examples:
        key = hashlib.sha256(
            json.dumps(ex.messages, ensure_ascii=False, sort_keys=True).encode("utf-8")
        ).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(ex)
    eval_users = _split_users((_user_key(ex) for ex in unique), eval_fraction, seed)
    splits: dict[str, list[TeachingExample]] = {"train": [], "eval": []}
    for ex in unique:
        written = replace(ex, id=ids("session", ex.id) or ex.id, user_id=ids("user", ex.user_id))
        splits["eval" if _user_key(ex) in eval_users else "train"].append(written)

    # Everything free-form that reaches the manifest is scrubbed too.
    skip_rows = [
        {
            **s.to_dict(),
            "session_id": ids("session", s.session_id),
            "detail": scrubber.scrub(s.detail),
        }
        for s in skipped[:MAX_SKIP_DETAILS]
    ]
    for s in skipped[MAX_SKIP_DETAILS:]:
        ids("session", s.session_id)  # ids are anonymised consistently even if not listed
    source_rows = [
        {
            "path": src.path,
            "records": src.records,
            "sessions": src.sessions,
            "torn_lines": len(src.torn_lines),
            "invalid_lines": len(src.invalid_lines),
            "torn_line_numbers": src.torn_lines[:100],
            "invalid": [[n, scrubber.scrub(r)] for n, r in src.invalid_lines[:100]],
            "ignored_fields": src.ignored_fields,
            "sessions_without_end": src.without_end,
            "sessions_truncated": src.truncated,
        }
        for src in sources
    ]

    out.mkdir(parents=True, exist_ok=True)
    to_row = TeachingExample.to_chat if form is Format.CHAT else TeachingExample.to_openai
    files = {
        f"{split}.jsonl": _write_jsonl(out / f"{split}.jsonl", (to_row(ex) for ex in rows))
        for split, rows in splits.items()
    }
    by_reason = Counter(str(s.reason) for s in skipped)
    manifest: dict[str, Any] = {
        "beliefagent_export": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": str(tgt),
        "format": str(form),
        "seed": seed,
        "eval_fraction": eval_fraction,
        "teacher": {
            **_likelihood_settings(lik),
            "prediction": {
                Target.BAYES: "argmax of posterior expected reward, ties at random",
                Target.BAYES_SOFT: "predictive distribution; hard target: its argmax, ties random",
                Target.ORACLE: "the user's choice (the teacher only checks for emptied beliefs)",
            }[tgt],
            "tie_seed": "session_seed(seed, session_id)",
            "keep_emptied": keep_emptied,
        },
        "include_user_messages": include_user_messages,
        "counts": {
            "logs": len(sources),
            "records": sum(s.records for s in sources),
            "sessions_read": sum(s.sessions for s in sources),
            "sessions_exported": len(examples),
            "duplicates_dropped": len(examples) - len(unique),
            "examples": {split: len(rows) for split, rows in splits.items()},
            "users": {
                "train": len({_user_key(ex) for ex in unique} - eval_users),
                "eval": len(eval_users),
            },
            "emptied_kept": sum(ex.emptied for ex in unique),
            "skipped": dict(sorted(by_reason.items())),
            "torn_lines": sum(len(s.torn_lines) for s in sources),
            "invalid_lines": sum(len(s.invalid_lines) for s in sources),
        },
        "domains": dict(domains_seen),
        "files": files,
        "sources": source_rows,
        "skipped": skip_rows,
        "skipped_listed": len(skip_rows),
        "pii_scrubbed": dict(scrubber.counts),
        "ids_anonymised": ids.anonymised,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    logger.info(
        "exported %d train / %d eval examples to %s (%d skipped)",
        len(splits["train"]),
        len(splits["eval"]),
        out,
        len(skipped),
    )
    return manifest
