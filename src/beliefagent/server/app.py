"""The starlette application: an OpenAI-compatible front with belief sessions.

Endpoints (all but ``/health`` behind the optional bearer-token auth and the rate limit):

=====================================================  ==========================================
``GET  /health``                                       ``{"status": "ok", "sessions", "models"}``
``GET  /v1/models``                                    the base model and the tuned model(s)
``POST /v1/chat/completions``                          with the ``beliefagent`` extension field: a
                                                       belief-session round; without: pass-through
``POST /v1/beliefagent/sessions/{id}/choice``          ``{"choice": 1}``: the pending round's choice
``GET  /v1/beliefagent/sessions/{id}``                 the session's state
``DELETE /v1/beliefagent/sessions/{id}``               close it (writes ``session_end``)
``*    /v1/{anything else}``                           pass-through to the base model's upstream
=====================================================  ==========================================

:func:`create_app` takes the routes already built (see :mod:`beliefagent.server.upstream`), so
tests and embedders can put any backend behind it. On shutdown (uvicorn turns SIGTERM and SIGINT
into a graceful shutdown: in-flight requests finish first) every open session is closed with
reason ``"server_shutdown"`` and the trajectory log is closed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from beliefagent.adapters.base import GenerationSettings
from beliefagent.errors import BeliefAgentError, ConfigError, InputError, short_repr, short_text
from beliefagent.server.auth_failures import FailedAuthLimiter
from beliefagent.server.forwarding import without_body_secrets
from beliefagent.server.guarded_json import parse_json, parse_json_object
from beliefagent.server.http_errors import APIError, from_backend_error, from_exception
from beliefagent.server.limits import Authenticator, RateLimiter, read_body
from beliefagent.server.memory import SessionMemoryBudget
from beliefagent.server.openai_format import completion_payload, sse_events, usage_payload
from beliefagent.server.sessions import (
    EXTENSION_FIELD,
    ServerSession,
    SessionRegistry,
    TurnRequest,
    UpstreamFailure,
    check_choice,
    check_session_id,
    choice_reply,
    parse_extension,
    read_options,
    turn_extension,
)
from beliefagent.server.upstream import ModelRegistry
from beliefagent.trajectories import TrajectoryWriter

__all__ = ["ServerConfig", "create_app"]

logger = logging.getLogger(__name__)

NO_ANSWER = "I could not pick an option."


@dataclass(frozen=True)
class ServerConfig:
    """How the server admits requests and runs sessions.

    Attributes:
        api_keys: accepted bearer tokens; empty means no auth.
        max_body_bytes: larger request bodies get 413.
        rate_limit: requests per second per client (0: no limit); ``burst`` at once.
        default_domain, default_policy: for sessions whose request names none.
        allowed_domains: domains clients may ask for (``None``: every built-in one).
        session_ttl_s: idle sessions are closed (reason ``"expired"``) after this long.
        max_sessions: open sessions at most (503 beyond).
        session_max_tokens: generation budget of a session's answer.
        session_timeout_s: seconds a session's backend call may take (504 beyond).
        upstream_errors: ``"error"`` — an upstream failure fails the request (429/502/504)
            and leaves the session unchanged; ``"fallback"`` — the policy's fallback answers
            (the teacher's choice) and the failure is listed in ``beliefagent.errors``.
        worker_threads: threads for session and local-model work.
        max_session_memory: bytes the open sessions' own state may hold at most (0: no
            budget); a session that would exceed it is refused with 503 before it opens (see
            :mod:`beliefagent.server.memory`).
        client_id_secret: the HMAC key of client ids (``None``: random per process).
        auth_failures_per_minute, auth_failure_burst: failed authentications allowed per
            client address (429 beyond; see :mod:`beliefagent.server.auth_failures`).
    """

    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 1_000_000
    rate_limit: float = 0.0
    burst: int = 20
    default_domain: str = "flight"
    default_policy: str = "llm"
    allowed_domains: tuple[str, ...] | None = None
    session_ttl_s: float = 3600.0
    max_sessions: int = 10_000
    session_max_tokens: int = 24
    session_timeout_s: float = 60.0
    upstream_errors: str = "error"
    worker_threads: int = 64
    max_session_memory: int = 0
    client_id_secret: bytes | None = None
    auth_failures_per_minute: float = 10.0
    auth_failure_burst: int = 10

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ConfigError("must be >= 1", field="max_body_bytes", value=self.max_body_bytes)
        if self.upstream_errors not in ("error", "fallback"):
            raise ConfigError(
                "must be 'error' or 'fallback'",
                field="upstream_errors",
                value=self.upstream_errors,
            )
        if self.worker_threads < 1:
            raise ConfigError("must be >= 1", field="worker_threads", value=self.worker_threads)
        if self.max_session_memory < 0:
            raise ConfigError("must be >= 0 bytes (0: no budget)", field="max_session_memory",
                              value=self.max_session_memory)  # fmt: skip


class _Server:
    """The request handlers and the state they share."""

    def __init__(
        self,
        config: ServerConfig,
        models: ModelRegistry,
        log: TrajectoryWriter | None,
        owns_log: bool,
    ) -> None:
        self.config = config
        self.models = models
        self.log = log
        self.owns_log = owns_log
        self.auth = Authenticator(list(config.api_keys), config.client_id_secret)
        self.limiter = RateLimiter(config.rate_limit, config.burst)
        self.auth_failures = FailedAuthLimiter(
            config.auth_failures_per_minute, config.auth_failure_burst
        )
        self.memory = SessionMemoryBudget(config.max_session_memory)
        self.sessions = SessionRegistry(
            default_domain=config.default_domain,
            default_policy=config.default_policy,
            allowed_domains=config.allowed_domains,
            ttl_s=config.session_ttl_s,
            max_sessions=config.max_sessions,
        )
        self.settings = GenerationSettings(
            max_tokens=config.session_max_tokens, timeout_s=config.session_timeout_s
        )

    # -- admission ---------------------------------------------------------------------------
    def admit(self, request: Request) -> str:
        address = request.client.host if request.client else "unknown"
        if self.auth.enabled:
            self.auth_failures.check(address)
        try:
            client = self.auth.identify(request)
        except APIError as exc:
            if exc.status == 401:
                self.auth_failures.failed(address)
            raise
        self.limiter.check(client)
        return client

    async def json_body(self, request: Request) -> tuple[dict[str, Any], bytes]:
        raw = await read_body(request, self.config.max_body_bytes)
        return parse_json_object(raw), raw

    # -- endpoints ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "sessions": len(self.sessions), "models": self.models.names()}
        )

    async def list_models(self, request: Request) -> Response:
        self.admit(request)
        return JSONResponse(
            {"object": "list", "data": [route.card() for route in self.models.routes]}
        )

    async def chat_completions(self, request: Request) -> Response:
        client = self.admit(request)
        body, raw = await self.json_body(request)
        if "model" not in body:
            raise APIError(400, "model: required", code="missing_field", param="model")
        route = self.models.get(body["model"])
        if EXTENSION_FIELD not in body:
            return await route.upstream.chat(route, body, raw)
        try:
            turn = parse_extension(body[EXTENSION_FIELD])
        except InputError as exc:
            raise from_exception(exc) from exc
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or n != 1):
            raise APIError(
                400,
                f"n: a belief-session round answers with one choice; send n=1 or leave it out"
                f" (got {short_repr(n)})",
                code="invalid_value",
                param="n",
            )
        return await self.session_turn(client, route.name, turn, body)

    async def session_turn(
        self, client: str, model: str, turn: TurnRequest, body: dict[str, Any]
    ) -> Response:
        session = self.sessions.find(turn.session_id, client)
        if session is None:
            await self.expire_idle()
            requested = self.models.get(model)
            route, canary = self.models.for_session(requested, turn.session_id)
            domain = self.sessions.domain(turn.domain or self.sessions.default_domain)
            self.memory.admit(domain, [s.domain for s in self.sessions.all()])
            session = self.sessions.create(
                turn, owner=client, route=route, requested=requested.name, canary=canary
            )
        else:
            self.sessions.check_consistent(session, turn)
            if model not in (session.requested, session.route.name):
                raise APIError(
                    409,
                    f"model: session {session.session_id!r} runs on {session.route.name!r}"
                    f" (opened as {session.requested!r}), not {model!r}",
                    code="session_mismatch",
                    param="model",
                )
        async with session.lock:
            if session.closed:
                raise APIError(
                    409, f"session {session.session_id!r} was closed", code="session_closed"
                )
            opening = session.session is None
            played = False
            try:
                levels = read_options(session.domain, turn.options)
                session.check_turn(turn.choice)
                if opening:
                    if not self.sessions.holds(session):
                        raise APIError(
                            409,
                            f"session {session.session_id!r} failed to open; send the request"
                            " again",
                            code="session_retry",
                        )
                    await run_in_threadpool(
                        session.open,
                        log=self.log,
                        settings=self.settings,
                        user_id=turn.user_id,
                        fallback=self.config.upstream_errors == "fallback",
                    )
                result = await run_in_threadpool(session.turn, levels, turn.choice)
                played = True
            except UpstreamFailure as exc:
                raise from_backend_error(exc.error) from exc
            except BeliefAgentError as exc:
                raise from_exception(exc, param_prefix="") from exc
            finally:
                if opening and not played:
                    # opening and the first round succeed or fail together: nothing was
                    # logged yet (the log starts with the first round), and the id stays free
                    session.session = None
                    self.sessions.discard(session, "failed")
        route = session.route
        extension = turn_extension(session, result, route=route)
        shown = result.shown_choice
        assert session.session is not None
        text = session.session.prompts.answer_text(shown) if shown is not None else NO_ANSWER
        usage = usage_payload(result.prompt_tokens, result.completion_tokens)
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = sse_events(
                route.name,
                text,
                usage=usage,
                include_usage=include_usage,
                extra={EXTENSION_FIELD: extension},
            )
            return StreamingResponse(events, media_type="text/event-stream")
        payload = completion_payload(
            route.name, text, usage=usage, extra={EXTENSION_FIELD: extension}
        )
        return JSONResponse(payload)

    async def _owned(self, request: Request, client: str) -> ServerSession:
        session_id = check_session_id(request.path_params["session_id"])
        session = self.sessions.find(session_id, client)
        if session is None:
            raise APIError(
                404,
                f"session_id {session_id!r}: no open session with this id",
                type="not_found_error",
                code="session_not_found",
                param="session_id",
            )
        return session

    async def report_choice(self, request: Request) -> Response:
        client = self.admit(request)
        body, _ = await self.json_body(request)
        try:
            session = await self._owned(request, client)
            choice = check_choice(body.get("choice"), "choice")
            if choice is None:
                raise InputError("required: the 0-based index of the user's choice",
                                 field="choice", value=None)  # fmt: skip
            async with session.lock:
                if session.closed:
                    raise APIError(409, f"session {session.session_id!r} was closed",
                                   code="session_closed")  # fmt: skip
                record = await run_in_threadpool(session.observe, choice)
        except BeliefAgentError as exc:
            raise from_exception(exc) from exc
        return JSONResponse(dict(choice_reply(session, record)))

    async def session_state(self, request: Request) -> Response:
        client = self.admit(request)
        try:
            session = await self._owned(request, client)
        except InputError as exc:
            raise from_exception(exc) from exc
        return JSONResponse(session.state())

    async def close_session(self, request: Request) -> Response:
        client = self.admit(request)
        try:
            session = await self._owned(request, client)
        except InputError as exc:
            raise from_exception(exc) from exc
        async with session.lock:
            await run_in_threadpool(session.close, "closed_by_client")
            self.sessions.discard(session, "closed_by_client")
        return JSONResponse({"session_id": session.session_id, "rounds": session.round,
                             "closed": True})  # fmt: skip

    async def passthrough(self, request: Request) -> Response:
        self.admit(request)
        raw = await read_body(request, self.config.max_body_bytes)
        route = self.models.base
        if raw and request.headers.get("content-type", "").startswith("application/json"):
            body = parse_json(raw)
            raw = without_body_secrets(body, raw)
            if isinstance(body, dict) and "model" in body:
                route = self.models.get(body["model"])
        return await route.upstream.forward(
            request.method,
            request.path_params["path"],
            raw,
            dict(request.headers),
            request.url.query,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def expire_idle(self) -> None:
        for session in self.sessions.idle():
            async with session.lock:
                await run_in_threadpool(session.close, "expired")
                self.sessions.discard(session, "expired")
            logger.info("closed idle session %s", session.session_id)

    async def shutdown(self) -> None:
        sessions = self.sessions.all()
        for session in sessions:
            try:
                await run_in_threadpool(session.close, "server_shutdown")
            except Exception:
                logger.exception("closing session %s failed", session.session_id)
            self.sessions.discard(session, "server_shutdown")
        if sessions:
            logger.info("closed %d open session(s) on shutdown", len(sessions))
        await self.models.aclose()
        if self.log is not None and self.owns_log:
            self.log.close()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _library_error(request: Request, exc: Exception) -> Response:
    return from_exception(exc).response()


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"{exc.detail}: {request.method} {short_text(request.url.path)}"
    code = _HTTP_CODES.get(exc.status_code, str(exc.status_code))
    return APIError(exc.status_code, message, type=kind, code=code,
                    headers=exc.headers).response()  # fmt: skip


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return APIError(
        500, "internal server error", type="server_error", code="internal_error"
    ).response()


def create_app(
    models: ModelRegistry,
    config: ServerConfig | None = None,
    *,
    log: TrajectoryWriter | None = None,
    owns_log: bool = True,
) -> Starlette:
    """The ASGI app serving ``models`` (see the module docstring).

    Args:
        models: the routes (base first) and the canary.
        config: admission and session settings.
        log: the trajectory log every session appends to; closed on shutdown when
            ``owns_log``.
    """
    server = _Server(config or ServerConfig(), models, log, owns_log)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, server.config.worker_threads)
        logger.info("serving %s", ", ".join(models.names()))
        try:
            yield
        finally:
            await server.shutdown()

    routes = [
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.list_models, methods=["GET"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route(
            "/v1/beliefagent/sessions/{session_id}/choice",
            server.report_choice,
            methods=["POST"],
        ),
        Route("/v1/beliefagent/sessions/{session_id}", server.session_state, methods=["GET"]),
        Route("/v1/beliefagent/sessions/{session_id}", server.close_session, methods=["DELETE"]),
        Route(
            "/v1/{path:path}",
            server.passthrough,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            APIError: _api_error,
            BeliefAgentError: _library_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.server = server
    return app
