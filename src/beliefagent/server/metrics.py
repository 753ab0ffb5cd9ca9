"""``GET /metrics``: the server's counters in the Prometheus text format (``prometheus-client``).

=================================================  ==============================================
``beliefagent_requests_total``                     requests by ``route`` (the handler) and
                                                   ``status``
``beliefagent_request_errors_total``               answers with status >= 400, by ``route``
                                                   and ``status``
``beliefagent_request_duration_seconds``           histogram of the whole request, by ``route``
``beliefagent_added_latency_seconds``              histogram of a session turn's time in the
                                                   server minus its time waiting for the upstream
``beliefagent_upstream_latency_seconds``           histogram of a session turn's upstream calls
``beliefagent_open_sessions``                      open sessions (in the store: with Redis, all
                                                   processes' sessions)
``beliefagent_turns_total``                        answered rounds by ``domain`` and ``policy``
``beliefagent_turns_replayed_total``               resent turns answered from the store
``beliefagent_policy_decisions_total``             by ``policy`` and ``source`` (llm, bayes, none)
``beliefagent_policy_overrides_total``             rounds where the option shown is not the LLM's
                                                   choice, by ``policy``
``beliefagent_sessions_opened_total``              by ``route`` and ``canary`` (the canary split)
``beliefagent_belief_entropy_bits``                histogram of the belief's entropy, by
                                                   ``round`` (``"20+"`` beyond round 19)
=================================================  ==============================================

Each app has its own registry. With ``serve --workers N`` every process keeps its own counts and
a scrape reaches one of them; scrape each replica (or each worker's port) for totals.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from beliefagent.middleware import TurnResult

__all__ = ["MetricsMiddleware", "ServerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
_ENTROPY_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16)
_MAX_ROUND_LABEL = 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerMetrics:
    """The metrics of one app (see the module docstring)."""

    def __init__(self, open_sessions: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "beliefagent_requests", "Requests by route and status.", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "beliefagent_request_errors", "Answers with status >= 400 by route and status.",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "beliefagent_request_duration_seconds", "Whole request time by route.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.added = Histogram(
            "beliefagent_added_latency_seconds",
            "Session turn time in the server, minus the time waiting for the upstream.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream = Histogram(
            "beliefagent_upstream_latency_seconds", "Upstream time of a session turn.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.turns = Counter(
            "beliefagent_turns", "Answered rounds.", ["domain", "policy"], registry=r
        )
        self.replayed = Counter(
            "beliefagent_turns_replayed", "Resent turns answered from the store.", registry=r
        )
        self.decisions = Counter(
            "beliefagent_policy_decisions", "Who picked the option shown.", ["policy", "source"],
            registry=r,
        )  # fmt: skip
        self.overrides = Counter(
            "beliefagent_policy_overrides", "Rounds where the shown option is not the LLM's.",
            ["policy"], registry=r,
        )  # fmt: skip
        self.opened = Counter(
            "beliefagent_sessions_opened", "Sessions opened, by route and canary split.",
            ["route", "canary"], registry=r,
        )  # fmt: skip
        self.entropy = Histogram(
            "beliefagent_belief_entropy_bits", "Belief entropy at each round.", ["round"],
            buckets=_ENTROPY_BUCKETS, registry=r,
        )  # fmt: skip
        if open_sessions is not None:
            gauge = Gauge("beliefagent_open_sessions", "Open sessions.", registry=r)
            gauge.set_function(lambda: float(open_sessions()))

    def turn(
        self,
        result: TurnResult,
        *,
        domain: str,
        policy: str,
        route: str,
        canary: bool,
        opened: bool,
        replayed: bool,
        elapsed_s: float,
    ) -> None:
        """Count one answered session turn that took ``elapsed_s`` in the server."""
        if replayed:
            self.replayed.inc()
            return
        if opened:
            self.opened.labels(route, str(canary).lower()).inc()
        self.turns.labels(domain, policy).inc()
        self.upstream.observe(result.latency_s)
        self.added.observe(max(0.0, elapsed_s - result.latency_s))
        self.decisions.labels(policy, result.decision.source).inc()
        if result.llm_choice is not None and result.shown_choice != result.llm_choice:
            self.overrides.labels(policy).inc()
        if result.belief is not None:
            label = str(result.round) if result.round < _MAX_ROUND_LABEL else "20+"
            self.entropy.labels(label).observe(result.belief.entropy)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by handler name and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", None) or "unmatched"
            m = self.metrics
            m.requests.labels(route, str(status)).inc()
            m.duration.labels(route).observe(time.perf_counter() - start)
            if status >= 400:
                m.errors.labels(route, str(status)).inc()
