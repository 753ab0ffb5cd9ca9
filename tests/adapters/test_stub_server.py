"""StubServer: a real OpenAI-compatible HTTP server on loopback, driven through the official
openai client (no mocked HTTP) and through OpenAICompatibleBackend."""

from __future__ import annotations

import math

import pytest

from beliefagent.adapters import (
    GenerationSettings,
    OpenAICompatibleBackend,
    RetryingBackend,
    StubCompletion,
    StubHTTPError,
    StubServer,
)
from beliefagent.adapters.openai_compat import openai_http_client
from beliefagent.adapters.stub_server import stub_tokens
from beliefagent.errors import BackendConnectionError, BackendError, BackendTimeoutError

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MESSAGES = [{"role": "user", "content": "Flight 1, Flight 2 or Flight 3?"}]
LABELS = {"1": math.log(0.2), "2": math.log(0.7), "3": math.log(0.1)}


def labelled(messages):
    return StubCompletion("The best option is Flight 2.", label_logprobs=LABELS)


def test_tokens_round_trip():
    text = "The best option is Flight 12.\n\nThanks!  "
    tokens = stub_tokens(text)
    assert "".join(tokens) == text
    assert tokens[:6] == ["The", " best", " option", " is", " Flight", " 1"]


def test_backend_over_real_http_reads_text_usage_and_scores():
    with StubServer(labelled, model="stub-7b") as srv:
        backend = OpenAICompatibleBackend("stub-7b", base_url=srv.base_url, api_key="k")
        reply = backend.complete(MESSAGES, GenerationSettings(candidates=("1", "2", "3")))
        backend.close()
        (request,) = srv.requests
    assert reply.text == "The best option is Flight 2."
    assert reply.model == "stub-7b"
    assert reply.completion_tokens == 7 and reply.prompt_tokens == 13
    assert reply.candidate_logprobs == pytest.approx(LABELS)
    assert request["logprobs"] is True and request["top_logprobs"] == 20
    assert request["messages"] == MESSAGES


def test_backend_with_a_given_http_client_over_real_http():
    with StubServer(labelled) as srv:
        http_client = openai_http_client(timeout=5.0)
        backend = OpenAICompatibleBackend(
            "stub", base_url=srv.base_url, api_key="k", http_client=http_client
        )
        reply = backend.complete(MESSAGES, GenerationSettings(candidates=("1", "2", "3")))
        backend.close()
        http_client.close()
    assert reply.text == "The best option is Flight 2."
    assert reply.candidate_logprobs == pytest.approx(LABELS)


def test_extra_body_reaches_the_server():
    with StubServer(lambda m: "Flight 1") as srv:
        backend = OpenAICompatibleBackend(
            "m", base_url=srv.base_url, api_key="k", extra_body={"top_k": 5}
        )
        backend.complete(MESSAGES, GenerationSettings())
        backend.close()
        (request,) = srv.requests
    assert request["top_k"] == 5


def test_refused_connection_is_a_retryable_connection_error():
    with StubServer(lambda m: "x") as srv:
        url = srv.base_url  # the port is free again once the server has stopped
    backend = OpenAICompatibleBackend("m", base_url=url, api_key="k")
    with pytest.raises(BackendConnectionError) as info:
        backend.complete(MESSAGES, GenerationSettings(timeout_s=2))
    backend.close()
    assert info.value.retryable


def test_official_client_non_streamed_logprobs_format():
    with StubServer(labelled) as srv:
        client = openai.OpenAI(api_key="k", base_url=srv.base_url, max_retries=0)
        completion = client.chat.completions.create(
            model="stub-model", messages=MESSAGES, logprobs=True, top_logprobs=2
        )
        client.close()
    choice = completion.choices[0]
    digit = choice.logprobs.content[5]
    assert digit.token == " 2" and digit.logprob == pytest.approx(math.log(0.7))
    assert [t.token for t in digit.top_logprobs] == [" 2", " 1"]  # top 2, best first
    assert choice.logprobs.content[0].top_logprobs[0].token == "The"
    assert completion.usage.total_tokens == 20


def test_official_client_streamed_with_usage():
    with StubServer(lambda m: "Flight 3 is cheapest.") as srv:
        client = openai.OpenAI(api_key="k", base_url=srv.base_url, max_retries=0)
        stream = client.chat.completions.create(
            model="stub-model",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Flight 3 is cheapest."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_models_endpoint():
    with StubServer(lambda m: "x", model="stub-9b") as srv:
        client = openai.OpenAI(api_key="k", base_url=srv.base_url, max_retries=0)
        ids = [m.id for m in client.models.list()]
        client.close()
    assert ids == ["stub-9b"]


def test_max_tokens_and_stop_are_honoured():
    with StubServer(lambda m: "Flight 1. Then Flight 2. Then Flight 3.") as srv:
        backend = OpenAICompatibleBackend("m", base_url=srv.base_url, api_key="k")
        short = backend.complete(MESSAGES, GenerationSettings(max_tokens=3))
        stopped = backend.complete(MESSAGES, GenerationSettings(stop=(". Then",)))
        backend.close()
    assert (short.text, short.finish_reason) == ("Flight 1.", "length")
    assert (stopped.text, stopped.finish_reason) == ("Flight 1", "stop")


def test_rate_limit_then_success_through_retrying_backend():
    calls = []

    def reply_fn(messages):
        calls.append(1)
        if len(calls) == 1:
            raise StubHTTPError(429, "slow down", headers={"Retry-After": "2"})
        return "Flight 1"

    sleeps: list[float] = []
    with StubServer(reply_fn) as srv:
        inner = OpenAICompatibleBackend("m", base_url=srv.base_url, api_key="k")
        backend = RetryingBackend(inner, sleep=sleeps.append)
        assert backend.complete(MESSAGES, GenerationSettings()).text == "Flight 1"
        inner.close()
    assert sleeps == [2.0] and len(calls) == 2


def test_wrong_api_key_is_401_not_retried():
    with StubServer(lambda m: "x", api_key="right") as srv:
        inner = OpenAICompatibleBackend("m", base_url=srv.base_url, api_key="wrong")
        backend = RetryingBackend(inner, sleep=lambda s: pytest.fail("must not retry"))
        with pytest.raises(BackendError) as info:
            backend.complete(MESSAGES, GenerationSettings())
        inner.close()
    assert info.value.status_code == 401 and not info.value.retryable
    assert "wrong" not in str(info.value)


def test_slow_server_times_out():
    with StubServer(lambda m: "late", delay_s=1.0) as srv:
        backend = OpenAICompatibleBackend("m", base_url=srv.base_url, api_key="k")
        with pytest.raises(BackendTimeoutError):
            backend.complete(MESSAGES, GenerationSettings(timeout_s=0.2))
        backend.close()


def test_reply_fn_crash_is_a_retryable_500():
    def broken(messages):
        raise RuntimeError("bug in the script")

    with StubServer(broken) as srv:
        backend = OpenAICompatibleBackend("m", base_url=srv.base_url, api_key="k")
        with pytest.raises(BackendError) as info:
            backend.complete(MESSAGES, GenerationSettings())
        backend.close()
    assert info.value.status_code == 500 and info.value.retryable
    assert "bug in the script" in str(info.value)


def test_bad_requests_and_unknown_routes():
    with StubServer(lambda m: "x") as srv:
        root = srv.base_url.removesuffix("/v1")
        with httpx.Client(base_url=root) as http:
            assert http.post("/v1/chat/completions", content=b"{").status_code == 400
            missing = http.post("/v1/chat/completions", json={"model": "m"})
            assert missing.status_code == 400
            assert "messages" in missing.json()["error"]["message"]
            assert http.get("/v1/nothing").status_code == 404
    assert srv.requests == []


def test_base_url_needs_a_running_server():
    srv = StubServer(lambda m: "x")
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.base_url
