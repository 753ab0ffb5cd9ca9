"""Simulated sessions and trajectory logs shared by the export tests (imported relatively)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.eval.teacher import generate_interactions
from beliefagent.export import TeachingSession
from beliefagent.trajectories import (
    OptionRecord,
    SessionEnd,
    SessionStart,
    TrajectoryWriter,
    Turn,
)

_flight = load_domain("flight")
assert isinstance(_flight, ChoiceDomain)
FLIGHT: ChoiceDomain = _flight


def simulated_sessions(
    n_users: int, seed: int = 0, domain: ChoiceDomain = FLIGHT
) -> list[TeachingSession]:
    """``n_users`` noise-free simulated users, one 5-round session each."""
    data = generate_interactions(domain, n_users, np.random.default_rng(seed))
    return [
        TeachingSession(f"s{i}", f"u{i}", data.rounds[i], data.choices[i].tolist())
        for i in range(len(data.choices))
    ]


def option_records(option_set: Any, *, features: bool = True) -> list[OptionRecord]:
    """Options as a production log would hold them: the text the model saw, maybe features."""
    return [
        OptionRecord(
            text=FLIGHT.render_option(row, i),
            features=dict(FLIGHT.feature_values(row)) if features else None,
        )
        for i, row in enumerate(option_set)
    ]


def session_records(
    session: TeachingSession,
    *,
    domain: str = "flight",
    llm_choices: Sequence[int] | None = None,
    user_messages: Sequence[str | None] | None = None,
    features: bool = True,
    end: bool = True,
) -> list[SessionStart | Turn | SessionEnd]:
    """The records a deployed assistant would log for ``session``: the model's answers
    (``llm_choices``, default always option 1) and the user's choices."""
    sets = np.asarray(session.option_sets)
    records: list[SessionStart | Turn | SessionEnd] = [
        SessionStart(
            session_id=session.session_id, user_id=session.user_id, domain=domain, policy="advise"
        )
    ]
    for r, (option_set, choice) in enumerate(zip(sets, session.user_choices, strict=True)):
        records.append(
            Turn(
                session_id=session.session_id,
                user_id=session.user_id,
                domain=domain,
                round=r,
                options=option_records(option_set, features=features),
                raw_replies=["The best option is Flight 1."],
                llm_choice=llm_choices[r] if llm_choices is not None else 0,
                shown_choice=llm_choices[r] if llm_choices is not None else 0,
                user_choice=int(choice),
                user_message=user_messages[r] if user_messages is not None else None,
            )
        )
    if end:
        records.append(SessionEnd(session_id=session.session_id, rounds=len(sets)))
    return records


def write_log(path: Path, records: Sequence[SessionStart | Turn | SessionEnd]) -> Path:
    with TrajectoryWriter(path, fsync=False) as log:
        for record in records:
            log.write(record)
    return path


def simulated_log(path: Path, n_users: int, seed: int = 0) -> tuple[Path, list[TeachingSession]]:
    """A log of ``n_users`` simulated sessions; returns it with the sessions."""
    sessions = simulated_sessions(n_users, seed)
    records: list[SessionStart | Turn | SessionEnd] = []
    for s in sessions:
        records += session_records(s)
    return write_log(path, records), sessions
