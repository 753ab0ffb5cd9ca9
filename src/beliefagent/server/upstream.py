"""What the server sits in front of: upstreams, the model routes they serve, and the canary.

An :class:`Upstream` answers chat requests that carry no extension field (pass-through) and any
other ``/v1/...`` request; a :class:`ModelRoute` is one model name clients may ask for, with the
:class:`~beliefagent.adapters.Backend` its belief sessions use. Two upstreams exist:

* :class:`HTTPUpstream` — any OpenAI-compatible URL (OpenAI, vLLM, llama.cpp server). Requests
  are forwarded byte for byte, with an allow-list of headers, secret fields of the body
  removed and the upstream key as ``Authorization`` (see
  :mod:`beliefagent.server.forwarding`); SSE responses are streamed back event by event, other
  responses once complete. Upstream failures become short OpenAI-style errors with a request
  id, the details logged (see :mod:`beliefagent.server.http_errors`); upstream 4xx other than
  401/403 reach the client unchanged, since they describe the client's request.
* :class:`LocalUpstream` — the in-process transformers model (the bundled SmolLM2 by default,
  optionally with a LoRA adapter); it serves ``/v1/chat/completions`` only. ``stream: true``
  streams tokens as they are generated when the backend can (``LocalBackend.stream``), else
  the finished text word by word.

Canary: :class:`Canary` sends a share of the sessions that ask for the base model to a tuned
model, sticky per session: a session goes to the canary when ``sha256(f"{seed}:{session_id}")``,
read as a fraction in [0, 1), is below the share.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from beliefagent.adapters.base import Backend, validate_messages
from beliefagent.adapters.openai_compat import OpenAICompatibleBackend, parse_retry_after
from beliefagent.adapters.retry import RetryingBackend
from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    ConfigError,
)
from beliefagent.server.forwarding import (
    forwarded_headers,
    read_all,
    relay_sse,
    without_body_secrets,
)
from beliefagent.server.http_errors import APIError, from_backend_error, new_request_id
from beliefagent.server.openai_format import completion_payload, settings_from_body, sse_events

__all__ = ["Canary", "HTTPUpstream", "LocalUpstream", "ModelRegistry", "ModelRoute", "Upstream"]

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class Upstream(Protocol):
    """Where pass-through requests go."""

    kind: str

    async def chat(self, route: ModelRoute, body: Mapping[str, Any], raw: bytes) -> Response:
        """Answer a chat completion request that carries no extension field."""
        ...

    async def forward(
        self, method: str, path: str, raw: bytes, headers: Mapping[str, str], query: str
    ) -> Response:
        """Answer any other ``/v1/<path>`` request."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass
class ModelRoute:
    """One model clients can name: ``name`` in ``/v1/models`` and in a request's ``model``.

    Attributes:
        name: the model id clients send.
        upstream: where pass-through requests for it go.
        backend: what belief sessions on this model call (its ``name``, ``model`` and
            ``adapter`` are written to every turn record).
        parent: the base model's name, for a tuned model (an adapter on that base).
    """

    name: str
    upstream: Upstream
    backend: Backend
    parent: str | None = None

    def card(self) -> dict[str, Any]:
        """The ``/v1/models`` entry."""
        card: dict[str, Any] = {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": "beliefagent",
            "root": self.backend.model,
            "parent": self.parent,
        }
        if self.backend.adapter:
            card["adapter"] = self.backend.adapter
        return card


@dataclass(frozen=True)
class Canary:
    """Send ``share`` of the base model's sessions to the tuned model ``model``."""

    model: str
    share: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError("share must be in [0, 1]", field="canary", value=self.share)

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> Canary:
        """``"NAME:0.1"`` -> ``Canary("NAME", 0.1)``."""
        name, sep, share = text.rpartition(":")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not name or not 0.0 <= value <= 1.0:
            raise ConfigError(
                "expected NAME:SHARE with SHARE in [0, 1], e.g. 'tuned:0.1'",
                field="canary",
                value=text,
            )
        return cls(name, value, seed)

    def picks(self, session_id: str) -> bool:
        """Whether ``session_id`` goes to the canary (deterministic for a given seed)."""
        digest = hashlib.sha256(f"{self.seed}:{session_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.share


@dataclass
class ModelRegistry:
    """The routes, the first being the base model, and an optional canary."""

    routes: Sequence[ModelRoute]
    canary: Canary | None = None
    _by_name: dict[str, ModelRoute] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.routes:
            raise ConfigError("need at least one model route", field="routes", value=[])
        self._by_name = {}
        for route in self.routes:
            if route.name in self._by_name:
                raise ConfigError("two routes share a model name", field="model", value=route.name)
            self._by_name[route.name] = route
        if self.canary is not None and self.canary.model not in self._by_name:
            raise ConfigError(
                f"names no served model (served: {list(self._by_name)})",
                field="canary",
                value=self.canary.model,
            )

    @property
    def base(self) -> ModelRoute:
        return self.routes[0]

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: Any) -> ModelRoute:
        """The route for a request's ``model``; a 404 naming the served models otherwise."""
        route = self._by_name.get(name) if isinstance(name, str) else None
        if route is None:
            raise APIError(
                404,
                f"model: {name!r} is not served here (served: {', '.join(self._by_name)})",
                code="model_not_found",
                param="model",
            )
        return route

    def for_session(self, requested: ModelRoute, session_id: str) -> tuple[ModelRoute, bool]:
        """The route a new session runs on, and whether the canary picked it."""
        canary = self.canary
        if (
            canary is not None
            and requested.name == self.base.name
            and canary.model != requested.name
            and canary.picks(session_id)
        ):
            return self._by_name[canary.model], True
        return requested, False

    async def aclose(self) -> None:
        seen: set[int] = set()
        for route in self.routes:
            if id(route.upstream) not in seen:
                seen.add(id(route.upstream))
                await route.upstream.aclose()
            close = getattr(route.backend, "close", None) or getattr(
                getattr(route.backend, "inner", None), "close", None
            )
            if callable(close):
                close()


class HTTPUpstream:
    """An OpenAI-compatible endpoint such as ``http://localhost:8000/v1``.

    Args:
        base_url: the endpoint's base URL, ending in ``/v1`` as OpenAI clients expect.
        api_key: sent upstream as ``Authorization: Bearer``; ``None`` sends none.
        timeout_s: seconds to wait for the upstream (per read, for streams).
        client: an ``httpx.AsyncClient`` to use (tests, proxies); closed by :meth:`aclose`.
    """

    kind = "http"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", field="upstream", value=base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._api_key = api_key
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)), limits=limits
        )

    def backend(
        self,
        model: str,
        *,
        adapter: str | None = None,
        retries: int = 2,
        max_retry_after_s: float = 10.0,
        http_client: Any = None,  # httpx.Client (openai 1.x, 2.x) or httpx2.Client (3.x)
    ) -> Backend:
        """A backend for belief sessions on ``model`` (``adapter``: a LoRA name the upstream
        serves, sent as the request's model), retrying transient failures ``retries`` times."""
        inner = OpenAICompatibleBackend(
            model,
            base_url=self.base_url,
            api_key=self._api_key,
            api_key_env="",
            timeout_s=self.timeout_s,
            name="upstream",
            adapter=adapter,
            http_client=http_client,
        )
        if retries <= 0:
            return inner
        retrying = RetryingBackend(
            inner, max_attempts=retries + 1, base_delay_s=0.2, max_retry_after_s=max_retry_after_s
        )
        # WrapperBackend's read-only name/model/adapter properties do not match the protocol's
        # plain attributes for mypy; at run time it is a Backend.
        return cast(Backend, retrying)

    async def chat(self, route: ModelRoute, body: Mapping[str, Any], raw: bytes) -> Response:
        headers = {"content-type": "application/json"}
        return await self._send("POST", "chat/completions", without_body_secrets(body, raw),
                                headers, "")  # fmt: skip

    async def forward(
        self, method: str, path: str, raw: bytes, headers: Mapping[str, str], query: str
    ) -> Response:
        return await self._send(method, path, raw, forwarded_headers(headers), query)

    async def _send(
        self, method: str, path: str, raw: bytes, headers: Mapping[str, str], query: str
    ) -> Response:
        url = f"{self.base_url}/{path.lstrip('/')}" + (f"?{query}" if query else "")
        out = dict(headers)
        if self._api_key:
            out["authorization"] = f"Bearer {self._api_key}"
        request = self._client.build_request(method, url, content=raw or None, headers=out)
        request_id = new_request_id()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise from_backend_error(
                BackendTimeoutError(f"no answer from {url} within {self.timeout_s} s"),
                request_id=request_id,
            ) from exc
        except httpx.TransportError as exc:
            raise from_backend_error(
                BackendConnectionError(f"cannot reach {url}: {type(exc).__name__}: {exc}"),
                request_id=request_id,
            ) from exc
        kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        if response.status_code >= 400:
            try:
                data = await response.aread()
            except httpx.HTTPError:
                data = b""
            finally:
                await response.aclose()
            return self._error(response, data, kept, request_id)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = relay_sse(response, request_id=request_id, upstream=self.base_url)
            return StreamingResponse(events, status_code=response.status_code, headers=kept)
        try:
            data = await read_all(response)
        except httpx.HTTPError as exc:
            raise from_backend_error(
                BackendConnectionError(
                    f"{url} broke off its answer mid-body: {type(exc).__name__}: {exc}"
                ),
                request_id=request_id,
            ) from exc
        return Response(data, status_code=response.status_code, headers=kept)

    def _error(
        self, response: httpx.Response, data: bytes, headers: dict[str, str], request_id: str
    ) -> Response:
        status = response.status_code
        if status < 500 and status not in (401, 403, 407):
            # the upstream's verdict on the client's own request (or its rate limit): as is
            return Response(data, status_code=status, headers=headers)
        text = data.decode("utf-8", errors="replace")[:2000]
        error = BackendError(
            f"{self.base_url} answered HTTP {status}: {text}",
            status_code=status,
            body=text,
            retry_after=parse_retry_after(response.headers),
        )
        return from_backend_error(error, request_id=request_id).response()

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"HTTPUpstream({self.base_url!r})"


class LocalUpstream:
    """The in-process model: each route's :class:`~beliefagent.adapters.LocalBackend` answers
    ``/v1/chat/completions`` (``default_max_tokens`` when the request sets none)."""

    kind = "local"

    def __init__(self, default_max_tokens: int = 128) -> None:
        self.default_max_tokens = default_max_tokens

    async def chat(self, route: ModelRoute, body: Mapping[str, Any], raw: bytes) -> Response:
        messages = validate_messages(body.get("messages"))  # type: ignore[arg-type]
        settings = settings_from_body(body, self.default_max_tokens)
        stream = getattr(route.backend, "stream", None)
        if body.get("stream") and callable(stream):
            # token by token as the model generates them (see beliefagent.server.streaming)
            from beliefagent.server.streaming import token_events

            options = body.get("stream_options")
            tokens = await run_in_threadpool(stream, messages, settings)
            return StreamingResponse(
                token_events(
                    route.name,
                    tokens,
                    include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
                ),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            reply = await run_in_threadpool(route.backend.complete, messages, settings)
        except BackendError as exc:
            raise from_backend_error(exc) from exc
        usage = {
            "prompt_tokens": reply.prompt_tokens or 0,
            "completion_tokens": reply.completion_tokens or 0,
            "total_tokens": (reply.prompt_tokens or 0) + (reply.completion_tokens or 0),
        }
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = sse_events(
                route.name,
                reply.text,
                finish_reason=reply.finish_reason,
                usage=usage,
                include_usage=include_usage,
            )
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        payload = completion_payload(
            route.name, reply.text, finish_reason=reply.finish_reason, usage=usage
        )
        return JSONResponse(payload)

    async def forward(
        self, method: str, path: str, raw: bytes, headers: Mapping[str, str], query: str
    ) -> Response:
        raise APIError(
            404,
            f"the local model serves /v1/chat/completions and /v1/models only; no route for"
            f" {method} /v1/{path}",
            type="not_found_error",
            code="not_found",
        )

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "LocalUpstream()"
