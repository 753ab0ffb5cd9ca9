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
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from beliefagent.adapters.base import GenerationSettings
from beliefagent.errors import BeliefAgentError, ConfigError, InputError, short_repr, short_text
from beliefagent.server.auth_failures import FailedAuthLimiter
from beliefagent.server.durable import DurableSessions, store_error
from beliefagent.server.forwarding import without_body_secrets
from beliefagent.server.guarded_json import parse_json, parse_json_object
from beliefagent.server.http_errors import APIError, from_backend_error, from_exception
from beliefagent.server.limits import Authenticator, RateLimiter, read_body
from beliefagent.server.memory import SessionMemoryBudget
from beliefagent.server.metrics import MetricsMiddleware, ServerMetrics
from beliefagent.server.openai_format import completion_payload, sse_events, usage_payload
from beliefagent.server.sessions import (
    EXTENSION_FIELD,
    SessionRegistry,
    TurnRequest,
    UpstreamFailure,
    check_choice,
    check_session_id,
    parse_extension,
    turn_extension,
)
from beliefagent.server.store import MemoryStore, SessionStore, StoreError
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
        metrics_public: serve ``/metrics`` without auth (default: the API's auth).
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
    metrics_public: bool = False
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
        store: SessionStore,
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
        self.store = store
        self.durable = DurableSessions(
            self.sessions,
            models,
            store,
            log=log,
            settings=self.settings,
            fallback=config.upstream_errors == "fallback",
            memory=self.memory,
        )
        self._next_sweep = 0.0
        self.metrics = ServerMetrics(self.durable.count_open)

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
        sessions = await run_in_threadpool(self.durable.count_open)
        return JSONResponse({"status": "ok", "sessions": sessions, "models": self.models.names()})

    async def metrics_page(self, request: Request) -> Response:
        if not self.config.metrics_public:
            self.auth.identify(request)
        return self.metrics.response()

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
        await self.expire_idle()
        start = time.perf_counter()
        try:
            outcome = await run_in_threadpool(self.durable.turn, client, model, turn)
        except UpstreamFailure as exc:
            raise from_backend_error(exc.error) from exc
        except StoreError as exc:
            raise store_error(exc) from exc
        except BeliefAgentError as exc:
            raise from_exception(exc, param_prefix="") from exc
        session, result = outcome.session, outcome.result
        self.metrics.turn(
            result,
            domain=session.domain.name,
            policy=session.policy,
            route=session.route.name,
            canary=session.canary,
            opened=outcome.opened,
            replayed=outcome.replayed,
            elapsed_s=time.perf_counter() - start,
        )
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

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a session operation in a worker thread, mapping its errors."""
        try:
            return await run_in_threadpool(fn, *args)
        except StoreError as exc:
            raise store_error(exc) from exc
        except BeliefAgentError as exc:
            raise from_exception(exc) from exc

    async def report_choice(self, request: Request) -> Response:
        client = self.admit(request)
        body, _ = await self.json_body(request)
        try:
            session_id = check_session_id(request.path_params["session_id"])
            choice = check_choice(body.get("choice"), "choice")
            if choice is None:
                raise InputError("required: the 0-based index of the user's choice",
                                 field="choice", value=None)  # fmt: skip
        except BeliefAgentError as exc:
            raise from_exception(exc) from exc
        reply = await self._call(self.durable.choice, client, session_id, choice)
        return JSONResponse(reply)

    async def session_state(self, request: Request) -> Response:
        client = self.admit(request)
        try:
            session_id = check_session_id(request.path_params["session_id"])
        except InputError as exc:
            raise from_exception(exc) from exc
        return JSONResponse(await self._call(self.durable.state, client, session_id))

    async def close_session(self, request: Request) -> Response:
        client = self.admit(request)
        try:
            session_id = check_session_id(request.path_params["session_id"])
        except InputError as exc:
            raise from_exception(exc) from exc
        rounds = await self._call(self.durable.close, client, session_id)
        return JSONResponse({"session_id": session_id, "rounds": rounds, "closed": True})

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
        """Close idle sessions, at most once a second."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        try:
            await run_in_threadpool(self.durable.expire_idle)
        except BeliefAgentError:
            logger.exception("closing idle sessions failed")

    async def startup(self) -> None:
        if self.log is not None:
            await run_in_threadpool(self.durable.recover)

    async def shutdown(self) -> None:
        try:
            closed = await run_in_threadpool(self.durable.shutdown)
        except Exception:
            logger.exception("closing sessions on shutdown failed")
            closed = 0
        if closed:
            logger.info("closed %d open session(s) on shutdown", closed)
        await self.models.aclose()
        self.store.close()
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
    store: SessionStore | None = None,
) -> Starlette:
    """The ASGI app serving ``models`` (see the module docstring).

    Args:
        models: the routes (base first) and the canary.
        config: admission and session settings.
        log: the trajectory log every session appends to; closed on shutdown when
            ``owns_log``.
        store: where sessions live between requests (see :mod:`beliefagent.server.store`;
            default: in this process only). Closed on shutdown.
    """
    server = _Server(config or ServerConfig(), models, log, owns_log, store or MemoryStore())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, server.config.worker_threads)
        await server.startup()
        logger.info("serving %s", ", ".join(models.names()))
        try:
            yield
        finally:
            await server.shutdown()

    routes = [
        Route("/health", server.health, methods=["GET"]),
        Route("/metrics", server.metrics_page, methods=["GET"]),
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
        middleware=[Middleware(MetricsMiddleware, metrics=server.metrics)],
        exception_handlers={
            APIError: _api_error,
            BeliefAgentError: _library_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.server = server
    return app
