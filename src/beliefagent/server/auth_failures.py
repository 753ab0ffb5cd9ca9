"""Failed authentications, limited per client address, so that keys cannot be guessed at speed.

Authentication runs before the per-client rate limit (an unknown key has no client id to limit),
so wrong keys are counted here instead, by the address they come from: a token bucket of
``burst`` failures refilled at ``per_minute`` a minute. While an address's bucket is empty,
every request from it — with a right key or a wrong one — gets 429 with ``Retry-After``, so a
guess that happens to be right is not confirmed either. Successful requests cost nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from beliefagent.errors import ConfigError
from beliefagent.server.http_errors import APIError

__all__ = ["FailedAuthLimiter"]


class FailedAuthLimiter:
    """Failure buckets per address (at most ``max_clients`` remembered, least recent dropped).

    Args:
        per_minute: failed authentications an address may make per minute on average;
            ``0`` disables the limit.
        burst: failures allowed at once.
        clock: monotonic seconds (inject a fake in tests).
    """

    def __init__(
        self,
        per_minute: float = 10.0,
        burst: int = 10,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 0 or not math.isfinite(per_minute):
            raise ConfigError("must be a finite number >= 0", field="auth_failures_per_minute",
                              value=per_minute)  # fmt: skip
        if burst < 1:
            raise ConfigError("must be >= 1", field="auth_failure_burst", value=burst)
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._max = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def _tokens(self, address: str, now: float) -> float:
        tokens, stamp = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - stamp) * self.rate)

    def check(self, address: str) -> None:
        """429 while ``address`` has no failures left."""
        if self.rate == 0 or address not in self._buckets:
            return
        tokens = self._tokens(address, self._clock())
        if tokens < 1.0:
            wait = (1.0 - tokens) / self.rate
            raise APIError(
                429,
                f"too many failed authentications from this address; retry in {wait:.0f} s",
                type="rate_limit_error",
                code="auth_rate_limited",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self.rate == 0:
            return
        now = self._clock()
        tokens = max(0.0, self._tokens(address, now) - 1.0)
        self._buckets.pop(address, None)
        self._buckets[address] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
