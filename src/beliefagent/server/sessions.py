"""Belief sessions behind the server: the extension field, one :class:`ServerSession` per
session id, and the registry that owns them.

The extension field (top level of a chat completion request; the official openai client sends
it through ``extra_body={"beliefagent": {...}}``)::

    "beliefagent": {
        "session_id": "u42-trip",        # required: 1-128 of A-Z a-z 0-9 . _ : @ -
        "user_id": "u42",                # optional, logged
        "domain": "flight",              # optional, the server's --domain by default
        "options": [...],                # option texts, or {feature: value} objects
        "candidates": [...],             # instead of options: the session picks what to show
        "selection": "eig",              # with candidates: random | eig | reward | mixed
        "choice": 1,                     # the user's real choice for the previous round
        "policy": "guard"                # optional: llm | bayes | hint | guard
    }

``domain`` and ``policy`` are fixed when a session opens; a later request may repeat them but
not change them. Each session has its own lock: requests on one session run one at a time,
requests on different sessions run in parallel. A session belongs to the client (API key) that
opened it; another key gets 403 for its id.

Choice protocol. Round ``r`` is answered by a request carrying round ``r``'s options; the user's
real choice for it arrives with the next request (``choice``) or through
``POST /v1/beliefagent/sessions/{id}/choice``. A request whose round still awaits a choice and
carries none is a 409. Everything is validated before anything changes: a request with options
that do not parse or a choice out of range leaves the session as it was. If the upstream fails
mid-round, the round is not opened (the error is returned, 429/502/504) and the same request
may be sent again: a repeated ``choice`` equal to the one already recorded is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from beliefagent.adapters.base import Backend, GenerationSettings, Message, Reply, WrapperBackend
from beliefagent.domains import ChoiceDomain, builtin_domains, load_domain
from beliefagent.errors import (
    BackendError,
    ChoiceError,
    ConfigError,
    InputError,
    OptionError,
    SpecError,
    short_text,
)
from beliefagent.middleware import POLICIES, SelectedOptions, Session, TurnResult
from beliefagent.server.http_errors import APIError
from beliefagent.server.selection import (
    check_strategy,
    option_rows,
    read_candidates_field,
    selected_payload,
)
from beliefagent.server.upstream import ModelRoute
from beliefagent.trajectories import TrajectoryWriter, Turn

__all__ = [
    "EXTENSION_FIELD",
    "ServerSession",
    "SessionRegistry",
    "TurnRequest",
    "UpstreamFailure",
    "parse_extension",
    "read_candidates_field",
    "read_options",
]

logger = logging.getLogger(__name__)

EXTENSION_FIELD = "beliefagent"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_KNOWN = frozenset(
    {"session_id", "user_id", "domain", "options", "choice", "policy", "candidates", "selection"}
)


@dataclass(frozen=True)
class TurnRequest:
    """A validated extension field (see the module docstring)."""

    session_id: str
    options: list[Any]
    user_id: str | None = None
    domain: str | None = None
    choice: int | None = None
    policy: str | None = None
    candidates: list[Any] | None = None
    """instead of options: choose what to show from these (see beliefagent.server.selection)."""
    selection: str | None = None


def _field(name: str) -> str:
    return f"{EXTENSION_FIELD}.{name}"


def check_session_id(value: Any, field: str = "session_id") -> str:
    """A session id: 1-128 characters of ``A-Z a-z 0-9 . _ : @ -``, starting alphanumeric."""
    if not isinstance(value, str) or not _SESSION_ID.match(value):
        raise InputError(
            "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit",
            field=field,
            value=value,
        )
    return value


def check_choice(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChoiceError("must be an int (0-based option index) or null", field=field, value=value)
    if value < 0:
        raise ChoiceError("must be >= 0 (0-based option index)", field=field, value=value)
    return value


def parse_extension(value: Any) -> TurnRequest:
    """Validate the extension object; errors name ``beliefagent.<field>`` and the value."""
    if not isinstance(value, dict):
        raise InputError("must be an object", field=EXTENSION_FIELD, value=value)
    unknown = sorted(set(value) - _KNOWN)
    if unknown:
        raise InputError(
            f"unknown field (known: {sorted(_KNOWN)})", field=_field(unknown[0]), value=unknown[0]
        )
    session_id = check_session_id(value.get("session_id"), _field("session_id"))
    user_id = value.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > 256):
        raise InputError("must be a string of at most 256 characters", field=_field("user_id"),
                         value=user_id)  # fmt: skip
    domain = value.get("domain")
    if domain is not None and not isinstance(domain, str):
        raise InputError("must be a domain name", field=_field("domain"), value=domain)
    policy = value.get("policy")
    if policy is not None and policy not in POLICIES:
        raise InputError(
            f"unknown policy (one of {', '.join(POLICIES)})", field=_field("policy"), value=policy
        )
    options = value.get("options")
    candidates = value.get("candidates")
    strategy = check_strategy(value.get("selection"))
    if candidates is not None:
        if options is not None:
            raise OptionError(
                "give options or candidates, not both", field=_field("candidates"), value=None
            )
        if not isinstance(candidates, list) or not candidates:
            raise OptionError(
                "must be a non-empty list of option texts or {feature: value} objects",
                field=_field("candidates"),
                value=candidates,
            )
        options = []
    elif strategy is not None:
        raise InputError("applies to candidates only", field=_field("selection"), value=strategy)
    elif not isinstance(options, list) or not options:
        raise OptionError(
            "required: a non-empty list of option texts or {feature: value} objects"
            " (or candidates)",
            field=_field("options"),
            value=options,
        )
    choice = check_choice(value.get("choice"), _field("choice"))
    return TurnRequest(session_id, options, user_id, domain, choice, policy, candidates, strategy)


def read_options(domain: ChoiceDomain, options: Sequence[Any]) -> npt.NDArray[np.int64]:
    """Parse a request's options into levels ``(n_options, n_features)``; errors name the
    option (``beliefagent.options[1]``, ``beliefagent.options[1].price``)."""
    if len(options) != domain.n_options:
        raise OptionError(
            f"{domain.name} takes {domain.n_options} options a round, got {len(options)}",
            field=_field("options"),
            value=len(options),
        )
    levels = option_rows(domain, options, _field("options"))  # (n_options, n_features)
    try:
        return domain.validate_option_set(levels)
    except OptionError as exc:
        raise OptionError(exc.reason, field=_field("options"), value=exc.value) from exc


class UpstreamFailure(Exception):
    """Raised through :class:`~beliefagent.middleware.Session` so that an upstream failure
    aborts the round instead of letting the policy fall back (the session stays unchanged)."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


class _AbortOnUpstreamError(WrapperBackend):
    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        try:
            return self.inner.complete(messages, settings)
        except BackendError as exc:
            raise UpstreamFailure(exc) from exc


class ServerSession:
    """One client's dialogue: a :class:`~beliefagent.middleware.Session` plus the server's
    bookkeeping (owner, route, lock, the round awaiting a choice). The sync methods run in a
    worker thread while :attr:`lock` is held."""

    def __init__(
        self,
        session_id: str,
        *,
        owner: str,
        route: ModelRoute,
        requested: str,
        canary: bool,
        domain: ChoiceDomain,
        policy: str,
    ) -> None:
        self.session_id = session_id
        self.owner = owner
        self.route = route
        self.requested = requested
        self.canary = canary
        self.domain = domain
        self.policy = policy
        self.lock = asyncio.Lock()
        self.session: Session | None = None
        self.pending_round: int | None = None
        self.observed: dict[int, int] = {}
        self.selected: SelectedOptions | None = None  # the last round's choice from candidates
        self.last_used = time.monotonic()
        self.closed = False
        self._log: TrajectoryWriter | None = None

    def open(
        self,
        *,
        log: TrajectoryWriter | None,
        settings: GenerationSettings,
        user_id: str | None,
        fallback: bool,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the middleware session, or rebuild it from a checkpoint (``resume``: see
        :meth:`~beliefagent.middleware.Session.checkpoint`). A new session's log starts with its
        first round (:meth:`turn`), so that a session whose first round fails leaves nothing
        behind; a resumed one logs on at once (its session_start is in the log already)."""
        backend: Backend = self.route.backend
        if not fallback:
            # WrapperBackend exposes name/model/adapter as read-only properties, which mypy
            # does not match against the protocol's plain attributes.
            backend = cast(Backend, _AbortOnUpstreamError(backend))
        meta: dict[str, Any] = {
            "server": True,
            "route": self.route.name,
            "requested_model": self.requested,
            "canary": self.canary,
        }
        if self.owner.startswith("key:"):
            meta["client"] = self.owner
        self._log = log
        self.session = Session(
            self.domain,
            backend,
            policy=self.policy,
            log=None,
            session_id=self.session_id,
            user_id=user_id,
            settings=settings,
            meta=meta,
            resume=resume,
        )
        if resume is not None and log is not None:
            self.session.log = log  # no second session_start for a resumed dialogue

    @property
    def round(self) -> int:
        return self.session.round if self.session is not None else 0

    def check_turn(self, choice: int | None) -> None:
        """Refuse, before anything changes, a choice out of range or one the session cannot
        take now (409)."""
        if choice is not None and choice >= self.domain.n_options:
            raise ChoiceError(
                f"must be an int in 0..{self.domain.n_options - 1}",
                field=_field("choice"),
                value=choice,
            )
        if self.pending_round is not None and choice is None:
            raise APIError(
                409,
                f"{_field('choice')}: round {self.pending_round} of session"
                f" {self.session_id!r} awaits the user's choice; send it as"
                f" {_field('choice')} or POST /v1/beliefagent/sessions/{self.session_id}/choice",
                code="choice_required",
                param=_field("choice"),
            )
        if self.pending_round is None and choice is not None:
            last = self.round - 1
            if last < 0 or self.observed.get(last) != choice:
                raise APIError(
                    409,
                    f"{_field('choice')}={choice}: no round of session {self.session_id!r}"
                    " awaits a choice"
                    + (
                        f" (round {last} was answered with {self.observed[last]})"
                        if last >= 0
                        else " (no round has been played yet)"
                    ),
                    code="no_pending_round",
                    param=_field("choice"),
                )

    def turn(
        self,
        levels: npt.NDArray[np.int64],
        choice: int | None,
        *,
        candidates: npt.NDArray[np.int64] | None = None,
        strategy: str | None = None,
    ) -> TurnResult:
        """Record ``choice`` for the pending round (if any), then answer a new round: on
        ``levels``, or on the options chosen from ``candidates`` with the updated belief."""
        assert self.session is not None
        if choice is not None and self.pending_round is not None:
            self.observe(choice)
        self.selected = None
        if candidates is not None:
            self.selected = self.session.select(candidates, strategy=strategy)
            levels = self.selected.levels
        result = self.session.recommend(levels)
        if self._log is not None and self.session.log is None:
            self.session.attach_log(self._log)  # the first round worked: the session exists
        self.pending_round = result.round
        return result

    def observe(self, choice: int) -> Turn:
        """Record the user's choice for the pending round (writes the turn record)."""
        assert self.session is not None
        if self.pending_round is None:
            raise APIError(
                409,
                f"choice: no round of session {self.session_id!r} awaits a choice",
                code="no_pending_round",
                param="choice",
            )
        if choice >= self.domain.n_options:
            raise ChoiceError(
                f"must be an int in 0..{self.domain.n_options - 1}", field="choice", value=choice
            )
        record = self.session.observe(choice)
        self.observed[self.pending_round] = choice
        self.pending_round = None
        return record

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.session is not None:
            self.session.close(reason)

    def state(self) -> dict[str, Any]:
        """A JSON view for ``GET /v1/beliefagent/sessions/{id}``."""
        backend = self.route.backend
        return {
            "session_id": self.session_id,
            "domain": self.domain.name,
            "policy": self.policy,
            "round": self.round,
            "awaiting_choice": self.pending_round is not None,
            "model": self.route.name,
            "requested_model": self.requested,
            "canary": self.canary,
            "backend": backend.name,
            "adapter": backend.adapter,
            "closed": self.closed,
        }


class SessionRegistry:
    """Open sessions by id. Used from the event loop only (no locking needed for the dict);
    session work runs in worker threads under each session's own lock."""

    def __init__(
        self,
        *,
        default_domain: str = "flight",
        default_policy: str = "llm",
        allowed_domains: Sequence[str] | None = None,
        ttl_s: float = 3600.0,
        max_sessions: int = 10_000,
        remember_closed: int = 100_000,
    ) -> None:
        if default_policy not in POLICIES:
            raise ConfigError(
                f"unknown policy (one of {', '.join(POLICIES)})",
                field="policy",
                value=default_policy,
            )
        self.default_domain = default_domain
        self.default_policy = default_policy
        self.allowed_domains = (
            tuple(allowed_domains) if allowed_domains is not None else tuple(builtin_domains())
        )
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, ServerSession] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._remember_closed = remember_closed
        self.domain(default_domain, field="domain")  # fail at start-up, not at first request

    def __len__(self) -> int:
        return len(self._sessions)

    def domain(self, name: str, *, field: str = _field("domain")) -> ChoiceDomain:
        if name not in self.allowed_domains:
            raise InputError(
                f"not a domain this server offers ({', '.join(self.allowed_domains)})",
                field=field,
                value=name,
            )
        try:
            domain = load_domain(name)
        except SpecError as exc:
            raise InputError(exc.reason, field=field, value=name) from exc
        if not isinstance(domain, ChoiceDomain):
            raise InputError("needs a choice domain (flight, hotel, ...)", field=field, value=name)
        return domain

    def find(self, session_id: str, owner: str) -> ServerSession | None:
        """The open session ``session_id`` (403 when another client owns it, 409 when it was
        closed), or ``None`` when there is none."""
        session = self._sessions.get(session_id)
        if session is not None:
            if session.owner != owner:
                raise APIError(
                    403,
                    f"session_id {session_id!r} belongs to another API key",
                    type="permission_error",
                    code="session_forbidden",
                    param=_field("session_id"),
                )
            session.last_used = time.monotonic()
            return session
        reason = self._closed.get(session_id)
        if reason is not None:
            raise APIError(
                409,
                f"session_id {session_id!r} was closed ({reason}); start a new session id",
                code="session_closed",
                param=_field("session_id"),
            )
        return None

    def create(
        self,
        request: TurnRequest,
        *,
        owner: str,
        route: ModelRoute,
        requested: str,
        canary: bool,
    ) -> ServerSession:
        """Register a new session (not yet opened); 503 when the server is full."""
        if len(self._sessions) >= self.max_sessions:
            raise APIError(
                503,
                f"too many open sessions ({self.max_sessions}); close some or retry later",
                type="server_error",
                code="too_many_sessions",
                headers={"Retry-After": "5"},
            )
        domain = self.domain(request.domain or self.default_domain)
        session = ServerSession(
            request.session_id,
            owner=owner,
            route=route,
            requested=requested,
            canary=canary,
            domain=domain,
            policy=request.policy or self.default_policy,
        )
        self._sessions[request.session_id] = session
        return session

    def check_consistent(self, session: ServerSession, request: TurnRequest) -> None:
        """A later request may repeat the session's domain and policy, not change them."""
        for name, given, fixed in (
            ("domain", request.domain, session.domain.name),
            ("policy", request.policy, session.policy),
        ):
            if given is not None and given != fixed:
                raise APIError(
                    409,
                    f"{_field(name)}={given!r}: session {session.session_id!r} was opened with"
                    f" {name} {fixed!r}",
                    code="session_mismatch",
                    param=_field(name),
                )

    def discard(self, session: ServerSession, reason: str) -> None:
        """Forget ``session`` (closing is the caller's job) and refuse its id from now on."""
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        if session.session is not None:
            self._closed[session.session_id] = reason
            while len(self._closed) > self._remember_closed:
                self._closed.popitem(last=False)

    def holds(self, session: ServerSession) -> bool:
        """Whether ``session`` is still the registered one for its id."""
        return self._sessions.get(session.session_id) is session

    def idle(self, now: float | None = None) -> list[ServerSession]:
        """Sessions unused for longer than the TTL and not busy now."""
        now = time.monotonic() if now is None else now
        return [
            s
            for s in self._sessions.values()
            if now - s.last_used > self.ttl_s and not s.lock.locked()
        ]

    def all(self) -> list[ServerSession]:
        return list(self._sessions.values())


def turn_extension(
    session: ServerSession, result: TurnResult, *, route: ModelRoute
) -> dict[str, Any]:
    """The ``beliefagent`` object of a response."""
    belief = result.belief
    backend = route.backend
    return {
        "session_id": session.session_id,
        "round": result.round,
        "shown_choice": result.shown_choice,
        "llm_choice": result.llm_choice,
        "bayes_choice": result.bayes_choice,
        "bayes_distribution": result.bayes_distribution,
        "llm_distribution": result.llm_distribution,
        "entropy": belief.entropy if belief is not None else None,
        "n_alive": belief.n_alive if belief is not None else None,
        "information_gain": result.information_gain,
        "decision": {
            "policy": session.policy,
            "source": result.decision.source,
            "reason": result.decision.reason,
        },
        "backend": backend.name,
        "model": backend.model,
        "adapter": backend.adapter,
        "route": route.name,
        "canary": session.canary,
        "invalid": result.invalid,
        "fallback": result.llm_failed,
        "errors": [_client_safe(e) for e in result.errors],
        "awaiting_choice": True,
        "selected": selected_payload(session.selected),
    }


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)


def _client_safe(error: str) -> str:
    """An error of the round as the client sees it: no upstream URL, at most 300 characters
    (the trajectory log keeps the full text)."""
    return short_text(_URL.sub("<upstream>", error), 300)


def choice_reply(session: ServerSession, record: Turn) -> Mapping[str, Any]:
    """The body of ``POST /v1/beliefagent/sessions/{id}/choice``."""
    return {
        "session_id": session.session_id,
        "round": record.round,
        "user_choice": record.user_choice,
        "shown_choice": record.shown_choice,
        "next_round": session.round,
        "entropy": record.belief.entropy if record.belief is not None else None,
    }
