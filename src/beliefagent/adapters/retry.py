"""Retries with exponential backoff and full jitter, as a backend that wraps a backend.

Retried: :class:`~beliefagent.errors.BackendError` with ``retryable=True`` — the adapters set it
for connection failures, timeouts, and HTTP 408, 409, 429 and 5xx. Never retried: other 4xx,
malformed responses, input and config errors.

Delay before attempt ``k + 1`` (``k`` = 1, 2, ...): the server's ``Retry-After`` when the error
carries one (``error.retry_after``), else a uniform draw from ``[0, min(max_delay_s,
base_delay_s * 2 ** (k - 1))]`` ("full jitter"). A ``Retry-After`` longer than
``max_retry_after_s`` is not waited for: the error is raised at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence

from beliefagent.adapters.base import Backend, GenerationSettings, Message, Reply, WrapperBackend
from beliefagent.errors import BackendError, ConfigError

__all__ = ["RetryingBackend"]

logger = logging.getLogger(__name__)


class RetryingBackend(WrapperBackend):
    """Wrap ``inner`` so that transient failures are retried.

    Args:
        inner: the backend to call.
        max_attempts: total attempts, first one included (>= 1).
        base_delay_s: backoff scale: the cap of the k-th delay is ``base_delay_s * 2 ** (k-1)``.
        max_delay_s: the largest backoff delay.
        sleep: called with the delay in seconds (inject a fake in tests).
        rng: source of jitter; ``None`` means ``random.Random(0)``, so delays are reproducible.
        max_retry_after_s: the longest server-requested ``Retry-After`` that is honoured.
    """

    def __init__(
        self,
        inner: Backend,
        max_attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        *,
        max_retry_after_s: float = 120.0,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError("must be an int >= 1", field="max_attempts", value=max_attempts)
        for field, value in (
            ("base_delay_s", base_delay_s),
            ("max_delay_s", max_delay_s),
            ("max_retry_after_s", max_retry_after_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError("must be a number >= 0", field=field, value=value)
        super().__init__(inner)
        self.max_attempts = max_attempts
        self.base_delay_s = float(base_delay_s)
        self.max_delay_s = float(max_delay_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random(0)

    def backoff_s(self, attempt: int) -> float:
        """The jittered delay after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, cap)

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """Call the wrapped backend, retrying transient failures (see the module docstring)."""
        attempt = 1
        while True:
            try:
                return self.inner.complete(messages, settings)
            except BackendError as error:
                if not error.retryable:
                    raise
                if attempt >= self.max_attempts:
                    logger.warning(
                        "%s: giving up after %d attempts: %s: %s",
                        self.name,
                        attempt,
                        type(error).__name__,
                        error,
                    )
                    raise
                if error.retry_after is not None:
                    if error.retry_after > self.max_retry_after_s:
                        logger.warning(
                            "%s: server asked to retry after %.1f s (> max_retry_after_s=%.1f);"
                            " not retrying",
                            self.name,
                            error.retry_after,
                            self.max_retry_after_s,
                        )
                        raise
                    delay = max(0.0, error.retry_after)
                else:
                    delay = self.backoff_s(attempt)
                logger.warning(
                    "%s: attempt %d/%d failed (%s: %s); retrying in %.2f s",
                    self.name,
                    attempt,
                    self.max_attempts,
                    type(error).__name__,
                    error,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r}, max_attempts={self.max_attempts})"
