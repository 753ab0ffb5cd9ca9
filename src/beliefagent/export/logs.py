"""Reading trajectory logs into teaching sessions: :func:`sessions_from_log` groups a log's records
by session, parses each turn's options with the session's domain and keeps the rounds that have a
user choice, reporting (:class:`SourceReport`, :class:`~beliefagent.export.examples.Skip`) what it
cannot use rather than failing the whole export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.errors import BeliefAgentError, InputError
from beliefagent.export.examples import Skip, SkipReason, TeachingSession
from beliefagent.trajectories import (
    LogRead,
    SessionEnd,
    SessionStart,
    Turn,
    dialogue_keys,
    group_sessions,
    read_trajectories,
)

__all__ = ["LogSessions", "SourceReport", "sessions_from_log"]

IntArray = npt.NDArray[np.int64]


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
