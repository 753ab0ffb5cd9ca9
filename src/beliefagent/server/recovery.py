"""Start-up recovery: bring the session store level with the trajectory log.

The log is written before the store is saved, so after a crash the log can be ahead: a turn
logged whose save never happened, a ``session_end`` written before the closed state was stored,
or — for a log written before the store existed, or a store file that was lost — whole sessions
the store does not know. :func:`recover_from_log` reads the log once and, per session id, under
its lock:

* a closed session in the store stays as it is;
* logged turns from the stored round on (with a user choice) are applied: the pending round's
  stored options and answer, or the logged options, with the logged choice;
* a ``session_end`` closes the session;
* a session only in the log is rebuilt from its records (owner from ``meta.client``, route and
  canary from ``meta``); its pending round was never logged, so it resumes at its last answered
  round.

A second ``session_start`` under one id (a log from a server that forgot its sessions on
restart) starts over: only the last dialogue is resumed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from beliefagent.errors import BeliefAgentError, DataError
from beliefagent.server.store import now
from beliefagent.trajectories import SessionEnd, SessionStart, Turn, iter_records

if TYPE_CHECKING:
    from beliefagent.server.durable import DurableSessions

__all__ = ["recover_from_log"]

logger = logging.getLogger(__name__)


def recover_from_log(sessions: DurableSessions) -> dict[str, int]:
    """Bring the store level with the trajectory log (see the module docstring); returns
    counts of what it did."""
    counts = {"applied_turns": 0, "closed": 0, "rebuilt": 0}
    if sessions.log is None or not sessions.log.path.exists():
        return counts
    starts: dict[str, SessionStart] = {}
    turns: dict[str, dict[int, Turn]] = {}
    ends: dict[str, SessionEnd] = {}
    try:
        for record in iter_records(sessions.log.path):
            sid = record.session_id
            if isinstance(record, SessionStart):
                # a second start under one id (a log from a server that forgot its
                # sessions): only the last dialogue is the one to resume
                starts[sid] = record
                turns.pop(sid, None)
                ends.pop(sid, None)
            elif isinstance(record, Turn):
                turns.setdefault(sid, {})[record.round] = record
            elif isinstance(record, SessionEnd):
                ends[sid] = record
    except DataError:
        logger.exception("cannot read %s to recover sessions", sessions.log.path)
        return counts
    for sid in {*starts, *turns, *ends}:
        try:
            with sessions.store.lock(sid, sessions.lock_timeout_s):
                _recover_one(sessions, sid, starts.get(sid), turns.get(sid, {}), ends.get(sid),
                             counts)  # fmt: skip
        except BeliefAgentError:
            logger.exception("cannot recover session %s from the log", sid)
    if any(counts.values()):
        logger.info("recovered from %s: %s", sessions.log.path, counts)
    return counts


def _recover_one(
    sessions: DurableSessions,
    sid: str,
    start: SessionStart | None,
    turns: dict[int, Turn],
    end: SessionEnd | None,
    counts: dict[str, int],
) -> None:
    found = sessions.store.load(sid)
    if found is not None and found[1]["status"] != "open":
        return
    if found is None:
        if start is None:
            return
        meta = start.meta
        if end is not None:
            state: dict[str, Any] = {"status": "closed", "reason": end.reason,
                                     "owner": meta.get("client"), "rounds": end.rounds,
                                     "last_used": now()}  # fmt: skip
            sessions.store.save(sid, state, 1)
            counts["closed"] += 1
            return
        version = 0
        state = {
            "status": "open",
            "reason": None,
            "owner": meta.get("client"),
            "route": meta.get("route") or start.model,
            "requested": meta.get("requested_model") or meta.get("route") or start.model,
            "canary": bool(meta.get("canary", False)),
            "domain": start.domain,
            "policy": start.policy,
            "user_id": start.user_id,
            "rounds": 0,
            "observed": {},
            "pending_round": None,
            "checkpoint": {"rounds": [], "pending": None},
            "choice_reply": None,
            "last_used": now(),
        }
        counts["rebuilt"] += 1
    else:
        version, state = found
    changed = found is None
    checkpoint = state["checkpoint"]
    domain = sessions.registry.domain(state["domain"], field="domain")
    while state["rounds"] in turns:
        turn = turns[state["rounds"]]
        if turn.user_choice is None:
            break
        pending = checkpoint["pending"]
        if pending is not None:
            levels, shown = pending["levels"], pending["result"]["shown_choice"]
        else:
            rows = [
                domain.option_from_values(o.features) if o.features else domain.parse_option(o.text)
                for o in turn.options
            ]
            levels, shown = [[int(v) for v in row] for row in rows], turn.shown_choice
        checkpoint["rounds"].append({"levels": levels, "shown": shown, "choice": turn.user_choice})
        checkpoint["pending"] = None
        state["observed"][str(turn.round)] = turn.user_choice
        state["pending_round"] = None
        state["choice_reply"] = None
        state["rounds"] += 1
        counts["applied_turns"] += 1
        changed = True
    if end is not None:
        closed = {"status": "closed", "reason": end.reason, "owner": state.get("owner"),
                  "rounds": state["rounds"], "last_used": now()}  # fmt: skip
        sessions.store.save(sid, closed, version + 1)
        sessions.forget(sid)
        counts["closed"] += 1
        return
    if changed:
        sessions.store.save(sid, state, version + 1)
        sessions.forget(sid)
