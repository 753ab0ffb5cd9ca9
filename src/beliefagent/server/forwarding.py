"""What a pass-through request carries to the upstream, and how its answer is relayed back.

* **Headers: an allow-list.** Only :data:`FORWARDED_HEADERS` (and the openai SDK's
  ``x-stainless-*`` telemetry) reach the upstream. Everything else — the client's credentials
  for this server (``authorization``, ``x-api-key``, ``api-key``), its OpenAI account
  (``openai-organization``, ``openai-project``), cookies, proxy headers — stays here; the
  upstream gets the server's own key.
* **Body secrets.** A top-level JSON field that names a secret (``api_key``, ``token``, ...; see
  :func:`~beliefagent.trajectories.redact.is_secret_key`) is removed before forwarding.
* **Relaying.** :func:`relay_sse` forwards a server-sent-event stream event by event; if the
  upstream dies mid-body, the partial event is dropped and the stream ends with
  ``data: {"error": {...}}``, which the openai client raises as ``APIError``, and one line is
  logged. :func:`read_all` reads a non-streamed body whole, so that a failure mid-body becomes a
  502 instead of a 200 with a truncated body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from beliefagent.trajectories.redact import is_secret_key

__all__ = [
    "FORWARDED_HEADERS",
    "forwarded_headers",
    "read_all",
    "relay_sse",
    "without_body_secrets",
]

logger = logging.getLogger(__name__)

FORWARDED_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "idempotency-key",
        "openai-beta",
        "user-agent",
        "x-request-id",
    }
)
_FORWARDED_PREFIXES = ("x-stainless-",)


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers that may reach the upstream (see the module docstring)."""
    return {
        k: v
        for k, v in headers.items()
        if (name := k.lower()) in FORWARDED_HEADERS or name.startswith(_FORWARDED_PREFIXES)
    }


def without_body_secrets(body: Any, raw: bytes) -> bytes:
    """``raw`` with the top-level fields of the JSON object ``body`` that name a secret removed
    (``raw`` itself, byte for byte, when there are none)."""
    if not isinstance(body, dict):
        return raw
    secret = [k for k in body if isinstance(k, str) and is_secret_key(k)]
    if not secret:
        return raw
    kept = {k: v for k, v in body.items() if k not in secret}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _broken_stream_event(request_id: str) -> bytes:
    error = {
        "message": f"the upstream stopped mid-stream (request id {request_id})",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_stream_broken",
    }
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


def _event_end(buffer: bytes) -> int:
    """Offset just past the last complete event (a blank line) in ``buffer``; 0 if none."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := buffer.rfind(sep)) >= 0]
    return max(ends, default=0)


async def relay_sse(
    response: httpx.Response, *, request_id: str, upstream: str
) -> AsyncIterator[bytes]:
    """Forward complete events of ``response``; end with an error event if it breaks off."""
    pending = b""
    try:
        async for chunk in response.aiter_raw():
            pending += chunk
            end = _event_end(pending)
            if end:
                yield pending[:end]
                pending = pending[end:]
        if pending:
            yield pending
    except httpx.HTTPError as exc:
        logger.warning(
            "upstream %s broke off a stream (%s: %s); request id %s",
            upstream,
            type(exc).__name__,
            exc,
            request_id,
        )
        yield _broken_stream_event(request_id)
    finally:
        await response.aclose()


async def read_all(response: httpx.Response) -> bytes:
    """The whole raw body (content encoding untouched); raises ``httpx.HTTPError`` if the
    upstream fails before the end."""
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
