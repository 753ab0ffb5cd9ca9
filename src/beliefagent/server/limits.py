"""Admission control: bearer-token auth, request size limit, per-client rate limit.

* :class:`Authenticator` — keys come from an environment variable (several keys separated by
  commas, one per client). A client is known by a short HMAC-SHA256 of its key under a server
  secret (never the key, and not a plain hash that a list of candidate keys could be checked
  against), which also owns the sessions it opens. Without keys every client is anonymous and
  known by its IP.
* :func:`read_body` — reads at most ``limit`` bytes; a larger ``Content-Length`` or body is a
  413 before any parsing.
* :class:`RateLimiter` — a token bucket per client: ``rate`` requests a second on average,
  bursts of ``burst``; an empty bucket answers 429 with ``Retry-After`` (whole seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from beliefagent.errors import ConfigError
from beliefagent.server.http_errors import APIError

__all__ = ["Authenticator", "RateLimiter", "keys_from_env", "read_body"]


def keys_from_env(name: str | None) -> list[str]:
    """The API keys in ``$name`` (comma-separated); ``[]`` when ``name`` is ``None``. A named
    variable that is unset or empty is a :class:`ConfigError`: auth was asked for."""
    if not name:
        return []
    raw = os.environ.get(name, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"${name} is unset or empty", field="api_key_env", value=name)
    return keys


class Authenticator:
    """Bearer-token checks. ``identify(request)`` returns the client id or raises 401.

    ``secret`` keys the HMAC of client ids; ``None`` draws a random one for this process (ids
    then change on restart; pass the same secret to every process that must agree on them)."""

    def __init__(self, keys: list[str], secret: bytes | None = None) -> None:
        self._secret = secret if secret else os.urandom(32)
        self._keys = {self._digest(k): k for k in keys}

    def _digest(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:16]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, request: Request) -> str:
        """``"key:<hash>"`` for a valid key, ``"ip:<address>"`` when auth is off."""
        if not self._keys:
            host = request.client.host if request.client else "unknown"
            return f"ip:{host}"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise APIError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                type="authentication_error",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = self._digest(token)
        known = self._keys.get(digest)
        if known is None or not hmac.compare_digest(known, token):
            raise APIError(
                401,
                "invalid API key",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return f"key:{digest}"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 once it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise APIError(400, f"Content-Length is not a number: {declared!r}") from None
        if size > limit:
            raise _too_large(size, limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> APIError:
    return APIError(
        413,
        f"request body is {size} bytes or more; the limit is {limit} bytes",
        code="request_too_large",
    )


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per client (at most ``max_clients`` remembered, least recent dropped).

    Args:
        rate: average requests per second allowed per client; ``0`` disables the limit.
        burst: bucket size (requests allowed at once); at least 1.
        clock: monotonic seconds (inject a fake in tests).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ConfigError("must be a finite number >= 0", field="rate_limit", value=rate)
        if burst < 1:
            raise ConfigError("must be >= 1", field="burst", value=burst)
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._max = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, client: str) -> None:
        """Take one token for ``client`` or raise 429 with ``Retry-After``."""
        if self.rate == 0:
            return
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        self._buckets[client] = bucket
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / self.rate
        raise APIError(
            429,
            f"rate limit: {self.rate:g} requests/s per client (burst {self.burst});"
            f" retry in {wait:.2f} s",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
