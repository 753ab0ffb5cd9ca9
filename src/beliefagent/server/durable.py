"""Durable belief sessions: every request loads its session from a
:class:`~beliefagent.server.store.SessionStore` under the session's lock, works on it, and saves
it back before answering, so a restarted server (or another process on the same store) goes on
exactly where the last one stopped.

What is stored per session id (JSON)::

    {"status": "open" | "closed", "reason": ..., "owner": "key:<hash>" | "ip:..." | null,
     "route": ..., "requested": ..., "canary": false, "domain": "flight", "policy": "llm",
     "user_id": ..., "rounds": 3, "observed": {"0": 1, "1": 0, "2": 2}, "pending_round": 3,
     "checkpoint": {"rounds": [...], "pending": {...}},   # Session.checkpoint()
     "choice_reply": {...}, "last_used": <unix seconds>}

The belief is not stored: the checkpoint lists the played rounds (option levels, option shown,
user choice) and the pending round, and rebuilding replays the choices through the teacher (the
same updates in the same order, hence the same belief to the last bit). Each process keeps the
sessions it used last in memory, keyed by version, and rebuilds only when another process
changed one.

Ordering and crashes. Requests on one session hold its lock (across processes with Redis) from
load to save. A turn with a choice writes the turn record to the log, then (on a store shared
by processes) saves the choice, then asks the upstream, then saves the new pending round, then
answers: a
crash leaves a turn logged but unacknowledged, never acknowledged but unlogged. A client that
sends the same turn again gets the answer already given (same options, same choice: the
pending round is replayed, the upstream is not asked again), so retrying never loses or doubles
a round. At start-up :meth:`DurableSessions.recover` reads the log once and brings the store
level with it (see :mod:`beliefagent.server.recovery`).

Closed ids stay closed for every key, and an open session answers only the key that opened it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.adapters.base import GenerationSettings
from beliefagent.errors import BeliefAgentError
from beliefagent.middleware import TurnResult
from beliefagent.server.http_errors import APIError
from beliefagent.server.memory import SessionMemoryBudget
from beliefagent.server.sessions import (
    ServerSession,
    SessionRegistry,
    TurnRequest,
    choice_reply,
    read_candidates_field,
    read_options,
)
from beliefagent.server.store import (
    SessionStore,
    StoreConflict,
    StoreError,
    StoreLockTimeout,
    now,
)
from beliefagent.server.upstream import ModelRegistry
from beliefagent.trajectories import (
    SessionEnd,
    TrajectoryWriter,
)

__all__ = ["DurableSessions", "TurnOutcome", "store_error"]

logger = logging.getLogger(__name__)

_EXT = "beliefagent"


@dataclass
class TurnOutcome:
    """What a session turn produced: the session and the round's answer (``replayed`` when
    it was the answer already given to the same request)."""

    session: ServerSession
    result: TurnResult
    replayed: bool = False
    opened: bool = False


@dataclass
class _Live:
    session: ServerSession
    version: int
    user_id: str | None
    choice_reply: dict[str, Any] | None = None


def store_error(exc: StoreError) -> APIError:
    """The HTTP error for a store failure: 409 when the session changed under the request
    (send it again), 503 when the store cannot be used."""
    if isinstance(exc, StoreConflict):
        return APIError(409, str(exc), code="session_conflict")
    logger.error("session store: %s", exc)
    return APIError(
        503,
        "the session store is unavailable; retry later",
        type="server_error",
        code="session_store_unavailable",
        headers={"Retry-After": "1"},
    )


def _closed_error(session_id: str, reason: str) -> APIError:
    return APIError(
        409,
        f"session_id {session_id!r} was closed ({reason}); start a new session id",
        code="session_closed",
        param=f"{_EXT}.session_id",
    )


def _forbidden(session_id: str) -> APIError:
    return APIError(
        403,
        f"session_id {session_id!r} belongs to another API key",
        type="permission_error",
        code="session_forbidden",
        param=f"{_EXT}.session_id",
    )


class DurableSessions:
    """The server's sessions over a store (see the module docstring).

    Methods are synchronous and run in worker threads; each holds the session's lock for its
    whole duration.
    """

    def __init__(
        self,
        registry: SessionRegistry,
        models: ModelRegistry,
        store: SessionStore,
        *,
        log: TrajectoryWriter | None,
        settings: GenerationSettings,
        fallback: bool,
        lock_timeout_s: float = 120.0,
        cache_size: int = 10_000,
        memory: SessionMemoryBudget | None = None,
    ) -> None:
        self.registry = registry
        self.memory = memory
        self.models = models
        self.store = store
        self.log = log
        self.settings = settings
        self.fallback = fallback
        self.lock_timeout_s = lock_timeout_s
        self._cache: OrderedDict[str, _Live] = OrderedDict()
        self._cache_size = cache_size

    # -- state <-> live sessions ---------------------------------------------------------------
    def _state(self, live: _Live) -> dict[str, Any]:
        s = live.session
        assert s.session is not None
        return {
            "status": "open",
            "reason": None,
            "owner": s.owner,
            "route": s.route.name,
            "requested": s.requested,
            "canary": s.canary,
            "domain": s.domain.name,
            "policy": s.policy,
            "user_id": live.user_id,
            "rounds": s.round,
            "observed": {str(k): v for k, v in s.observed.items()},
            "pending_round": s.pending_round,
            "checkpoint": s.session.checkpoint(),
            "choice_reply": live.choice_reply,
            "last_used": now(),
        }

    def _rebuild(self, session_id: str, version: int, state: Mapping[str, Any]) -> _Live:
        try:
            route = self.models.get(state["route"])
        except APIError:
            raise APIError(
                409,
                f"session {session_id!r} runs on model {state['route']!r}, which this server"
                f" no longer serves ({', '.join(self.models.names())})",
                code="session_mismatch",
                param="model",
            ) from None
        session = ServerSession(
            session_id,
            owner=state["owner"],
            route=route,
            requested=state["requested"],
            canary=bool(state["canary"]),
            domain=self.registry.domain(state["domain"], field="domain"),
            policy=state["policy"],
        )
        session.open(
            log=self.log,
            settings=self.settings,
            user_id=state.get("user_id"),
            fallback=self.fallback,
            resume=state["checkpoint"],
        )
        session.observed = {int(k): int(v) for k, v in state["observed"].items()}
        session.pending_round = state["pending_round"]
        return _Live(session, version, state.get("user_id"), state.get("choice_reply"))

    def _save(self, session_id: str, live: _Live) -> None:
        try:
            self.store.save(session_id, self._state(live), live.version + 1)
        except BaseException:
            self._cache.pop(session_id, None)  # rebuild from the store next time
            raise
        live.version += 1
        self._remember(session_id, live)

    def _remember(self, session_id: str, live: _Live) -> None:
        self._cache[session_id] = live
        self._cache.move_to_end(session_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    @contextlib.contextmanager
    def _locked(self, session_id: str) -> Iterator[None]:
        try:
            with self.store.lock(session_id, self.lock_timeout_s):
                yield
        except StoreLockTimeout as exc:
            raise APIError(
                503,
                str(exc),
                type="server_error",
                code="session_busy",
                headers={"Retry-After": "1"},
            ) from exc

    def _load(self, session_id: str, owner: str) -> _Live | None:
        """The open session (lock held), ``None`` when the id is new; 409 when closed (also
        when it has been idle past the TTL: it is closed now), 403 for another owner."""
        found = self.store.load(session_id)
        if found is None:
            self._cache.pop(session_id, None)
            return None
        version, state = found
        if state["status"] != "open":
            self._cache.pop(session_id, None)
            raise _closed_error(session_id, state.get("reason") or "closed")
        if state["owner"] is None and owner.startswith("ip:"):
            state["owner"] = owner  # rebuilt from a log without owners: the first one claims it
        if state["owner"] != owner:
            raise _forbidden(session_id)
        if now() - float(state["last_used"]) > self.registry.ttl_s:
            self._close_state(session_id, version, state, "expired")
            raise _closed_error(session_id, "expired")
        live = self._cache.get(session_id)
        if live is None or live.version != version:
            live = self._rebuild(session_id, version, state)
        self._remember(session_id, live)
        return live

    def _close_state(
        self, session_id: str, version: int, state: Mapping[str, Any], reason: str
    ) -> None:
        """Write the session_end and store the session as closed (lock held)."""
        if self.log is not None:
            self.log.write(SessionEnd(session_id=session_id, rounds=state["rounds"], reason=reason))
        closed = {
            "status": "closed",
            "reason": reason,
            "owner": state.get("owner"),
            "rounds": state["rounds"],
            "last_used": now(),
        }
        self.store.save(session_id, closed, version + 1)
        self._cache.pop(session_id, None)

    # -- requests ------------------------------------------------------------------------------
    def turn(self, client: str, model: str, turn: TurnRequest) -> TurnOutcome:
        """Answer one round of ``turn.session_id`` (opening the session on its first request)."""
        sid = turn.session_id
        with self._locked(sid):
            live = self._load(sid, client)
            if live is None:
                return self._open(client, model, turn)
            session = live.session
            self.registry.check_consistent(session, turn)
            if model not in (session.requested, session.route.name):
                raise APIError(
                    409,
                    f"model: session {sid!r} runs on {session.route.name!r} (opened as"
                    f" {session.requested!r}), not {model!r}",
                    code="session_mismatch",
                    param="model",
                )
            levels, cands = _turn_options(session, turn)
            # a resend repeats the options it was answered on; a selection picks them anew
            replayed = None if cands is not None else self._resend(session, levels, turn.choice)
            if replayed is not None:
                return TurnOutcome(session, replayed, replayed=True)
            session.check_turn(turn.choice)
            unsaved = False
            if turn.choice is not None and session.pending_round is not None:
                session.observe(turn.choice)  # the turn record is logged ...
                live.choice_reply = None
                if self.store.shared:
                    # ... then the choice is stored, before the upstream call: another process
                    # serving a resend must not record it twice. (One process recovers the
                    # same from the log when it restarts.)
                    self._save(sid, live)
                else:
                    unsaved = True
            try:
                # the upstream is asked (on the options chosen from the candidates, if given)
                result = session.turn(levels, None, candidates=cands, strategy=turn.selection)
            except BaseException:
                if unsaved:
                    self._save(sid, live)  # the choice is logged: the store must know it too
                raise
            self._save(sid, live)
            return TurnOutcome(session, result)

    def _open(self, client: str, model: str, turn: TurnRequest) -> TurnOutcome:
        if self.store.count_open() >= self.registry.max_sessions:
            raise APIError(
                503,
                f"too many open sessions ({self.registry.max_sessions}); close some or retry later",
                type="server_error",
                code="too_many_sessions",
                headers={"Retry-After": "5"},
            )
        domain = self.registry.domain(turn.domain or self.registry.default_domain)
        if self.memory is not None:  # this process's open sessions, before one more opens
            opened = [live.session.domain for live in self._cache.values()]
            self.memory.admit(domain, [d for d in opened if d is not None])
        requested = self.models.get(model)
        route, canary = self.models.for_session(requested, turn.session_id)
        session = ServerSession(
            turn.session_id,
            owner=client,
            route=route,
            requested=requested.name,
            canary=canary,
            domain=domain,
            policy=turn.policy or self.registry.default_policy,
        )
        levels, cands = _turn_options(session, turn)
        session.check_turn(turn.choice)
        session.open(
            log=self.log, settings=self.settings, user_id=turn.user_id, fallback=self.fallback
        )
        live = _Live(session, 0, turn.user_id)
        # opening and the first round succeed or fail together: a failed first round leaves
        # nothing in the store or the log (the log starts with it), and the id stays free
        result = session.turn(levels, None, candidates=cands, strategy=turn.selection)
        self._save(turn.session_id, live)
        return TurnOutcome(session, result, opened=True)

    @staticmethod
    def _resend(
        session: ServerSession, levels: npt.NDArray[np.int64], choice: int | None
    ) -> TurnResult | None:
        """The pending round's answer when this request is the one that opened it (same
        options, same choice for the round before), else ``None``."""
        middleware = session.session
        if middleware is None or session.pending_round is None:
            return None
        pending, pending_levels = middleware.pending, middleware.pending_levels
        if pending is None or pending_levels is None or not np.array_equal(pending_levels, levels):
            return None
        before = session.pending_round - 1
        expected = session.observed.get(before) if before >= 0 else None
        return pending if choice == expected else None

    def choice(self, client: str, session_id: str, choice: int) -> dict[str, Any]:
        """Record the pending round's choice (the choice endpoint); the same choice sent again
        for a round already answered returns the same reply."""
        with self._locked(session_id):
            live = self._require(session_id, client)
            session = live.session
            last = session.round - 1
            if (
                session.pending_round is None
                and live.choice_reply is not None
                and session.observed.get(last) == choice
            ):
                return live.choice_reply
            record = session.observe(choice)
            live.choice_reply = dict(choice_reply(session, record))
            self._save(session_id, live)
            return live.choice_reply

    def state(self, client: str, session_id: str) -> dict[str, Any]:
        with self._locked(session_id):
            return self._require(session_id, client).session.state()

    def close(self, client: str, session_id: str, reason: str = "closed_by_client") -> int:
        """Close the session (writes session_end); returns its round count."""
        with self._locked(session_id):
            live = self._require(session_id, client)
            rounds = live.session.round
            self._close_state(session_id, live.version, {"owner": client, "rounds": rounds}, reason)
            live.session.closed = True
            return rounds

    def _require(self, session_id: str, client: str) -> _Live:
        live = self._load(session_id, client)
        if live is None:
            raise APIError(
                404,
                f"session_id {session_id!r}: no open session with this id",
                type="not_found_error",
                code="session_not_found",
                param="session_id",
            )
        return live

    def count_open(self) -> int:
        return self.store.count_open()

    # -- lifecycle -----------------------------------------------------------------------------
    def expire_idle(self, limit: int = 100) -> int:
        """Close sessions idle past the TTL (at most ``limit``; busy ones are left for later)."""
        closed = 0
        for sid in self.store.idle(now() - self.registry.ttl_s, limit):
            try:
                with self.store.lock(sid, 0.0):
                    found = self.store.load(sid)
                    if found is None or found[1]["status"] != "open":
                        continue
                    version, state = found
                    if now() - float(state["last_used"]) > self.registry.ttl_s:
                        self._close_state(sid, version, state, "expired")
                        closed += 1
                        logger.info("closed idle session %s", sid)
            except StoreLockTimeout:
                continue
        return closed

    def shutdown(self) -> int:
        """On server shutdown: with a store that survives restarts, sessions stay open (a
        restart resumes them); otherwise every session this process holds is closed with
        reason ``"server_shutdown"``. Returns how many were closed."""
        if self.store.durable:
            return 0
        closed = 0
        for sid in list(self._cache):
            with contextlib.suppress(BeliefAgentError), self.store.lock(sid, 5.0):
                found = self.store.load(sid)
                if found is not None and found[1]["status"] == "open":
                    self._close_state(sid, found[0], found[1], "server_shutdown")
                    closed += 1
        return closed

    def recover(self) -> dict[str, int]:
        """Bring the store level with the trajectory log (see
        :func:`~beliefagent.server.recovery.recover_from_log`)."""
        from beliefagent.server.recovery import recover_from_log

        return recover_from_log(self)

    def forget(self, session_id: str) -> None:
        """Drop this process's cached copy of a session (the store changed it)."""
        self._cache.pop(session_id, None)


def _turn_options(
    session: ServerSession, turn: TurnRequest
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """``(levels, candidates)`` of a request: its ``options``, or its ``candidates`` (the
    levels then stand in until the selection replaces them)."""
    if turn.candidates is not None:
        cands = read_candidates_field(session.domain, turn.candidates)
        return cands[: session.domain.n_options], cands
    return read_options(session.domain, turn.options), None
