"""RetryingBackend: what is retried, how long it waits, and that it is a Backend itself."""

from __future__ import annotations

import logging
import random

import pytest

from beliefagent.adapters import Backend, GenerationSettings, Reply, RetryingBackend
from beliefagent.adapters.scripted import ScriptedBackend
from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)

MESSAGES = [{"role": "user", "content": "Which flight?"}]


def flaky(*outcomes: Exception | str) -> ScriptedBackend:
    """A backend that raises or answers with ``outcomes`` in order (the last one repeats)."""
    items = list(outcomes)

    def step(_messages: list[dict[str, str]]) -> str:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return ScriptedBackend(step, name="flaky", model="m")


def retrying(inner: ScriptedBackend, **kwargs) -> tuple[RetryingBackend, list[float]]:
    sleeps: list[float] = []
    return RetryingBackend(inner, sleep=sleeps.append, **kwargs), sleeps


@pytest.mark.parametrize(
    "error",
    [
        BackendConnectionError("refused", retryable=True),
        BackendTimeoutError("slow", retryable=True),
        BackendError("timeout", status_code=408, retryable=True),
        BackendError("conflict", status_code=409, retryable=True),
        BackendError("rate", status_code=429, retryable=True),
        BackendError("boom", status_code=500, retryable=True),
        BackendError("bad gateway", status_code=502, retryable=True),
    ],
    ids=lambda e: type(e).__name__ + str(e.status_code or ""),
)
def test_retryable_errors_are_retried(error):
    inner = flaky(error, "ok")
    backend, sleeps = retrying(inner)
    assert backend.complete(MESSAGES, GenerationSettings()).text == "ok"
    assert len(inner.calls) == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    "error",
    [
        BackendError("bad request", status_code=400),
        BackendError("unauthorized", status_code=401),
        BackendError("not found", status_code=404),
        BackendError("unprocessable", status_code=422),
        BackendResponseError("malformed"),
    ],
    ids=lambda e: type(e).__name__ + str(e.status_code or ""),
)
def test_other_errors_are_raised_at_once(error):
    inner = flaky(error, "ok")
    backend, sleeps = retrying(inner)
    with pytest.raises(type(error)):
        backend.complete(MESSAGES, GenerationSettings())
    assert len(inner.calls) == 1 and sleeps == []


def test_gives_up_after_max_attempts_with_the_last_error(caplog):
    inner = flaky(BackendError("boom", status_code=503, retryable=True))
    backend, sleeps = retrying(inner, max_attempts=3)
    with (
        caplog.at_level(logging.WARNING, logger="beliefagent.adapters.retry"),
        pytest.raises(BackendError) as info,
    ):
        backend.complete(MESSAGES, GenerationSettings())
    assert info.value.status_code == 503
    assert len(inner.calls) == 3 and len(sleeps) == 2
    assert "giving up after 3 attempts" in caplog.text


def test_full_jitter_backoff_is_bounded_and_reproducible():
    error = BackendConnectionError("refused", retryable=True)
    inner = flaky(error, error, error, error, error, "ok")
    backend, sleeps = retrying(inner, max_attempts=6, base_delay_s=1.0, max_delay_s=5.0)
    backend.complete(MESSAGES, GenerationSettings())
    caps = [1.0, 2.0, 4.0, 5.0, 5.0]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))
    # the default rng is random.Random(0): the same delays every run
    expected = random.Random(0)
    assert sleeps == [expected.uniform(0, cap) for cap in caps]


def test_retry_after_is_honoured():
    inner = flaky(BackendError("rate", status_code=429, retryable=True, retry_after=12.5), "ok")
    backend, sleeps = retrying(inner)
    backend.complete(MESSAGES, GenerationSettings())
    assert sleeps == [12.5]


def test_retry_after_beyond_the_limit_is_not_waited_for():
    inner = flaky(BackendError("rate", status_code=429, retryable=True, retry_after=3600), "ok")
    backend, sleeps = retrying(inner, max_retry_after_s=60)
    with pytest.raises(BackendError):
        backend.complete(MESSAGES, GenerationSettings())
    assert sleeps == [] and len(inner.calls) == 1


def test_is_a_backend_and_forwards_identity():
    inner = ScriptedBackend(lambda m: "x", name="n", model="m", adapter="a")
    backend = RetryingBackend(inner)
    assert isinstance(backend, Backend)
    assert (backend.name, backend.model, backend.adapter) == ("n", "m", "a")
    reply = backend.complete(MESSAGES, GenerationSettings())
    assert isinstance(reply, Reply) and reply.text == "x"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"base_delay_s": -1}, "base_delay_s"),
        ({"max_delay_s": "5"}, "max_delay_s"),
        ({"max_retry_after_s": -0.1}, "max_retry_after_s"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        RetryingBackend(ScriptedBackend(lambda m: "x"), **kwargs)
    assert info.value.field == field
