"""OpenAICompatibleBackend against HTTP-level mocks (the ``MockTransport`` of the HTTP library the
installed openai is built on: httpx2 for openai 3.x, httpx before): request shape, candidate
scores from logprobs, error mapping, retries, the http_client check, and keeping the API key
secret."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime

import pytest
from adapter_payloads import SECRET_KEY, chat_completion, token

from beliefagent.adapters import GenerationSettings, RetryingBackend
from beliefagent.adapters.openai_compat import (
    OpenAICompatibleBackend,
    candidate_logprobs_from_tokens,
    openai_http_client,
    openai_http_module,
    openai_major,
    parse_retry_after,
)
from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)

openai = pytest.importorskip("openai")
hx = openai_http_module()  # httpx2 for openai 3.x, httpx for 1.x and 2.x

MESSAGES = [
    {"role": "system", "content": "You recommend flights."},
    {"role": "user", "content": "Flight 1, Flight 2 or Flight 3?"},
]
LABELS = GenerationSettings(candidates=("1", "2", "3"))


def ok(body: dict) -> hx.Response:
    return hx.Response(200, json=body)


class Recorder:
    """A mock handler that answers from a list of responses (or exceptions) in order."""

    def __init__(self, *responses: hx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list = []

    def __call__(self, request: hx.Request) -> hx.Response:
        self.requests.append(request)
        item = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    def body(self, i: int = -1) -> dict:
        return json.loads(self.requests[i].content)


# ------------------------------------------------------------------------ request and reply


def test_plain_completion_sends_settings_and_reads_usage(mock_backend):
    handler = Recorder(ok(chat_completion("Flight 2")))
    backend = mock_backend(handler)
    settings = GenerationSettings(max_tokens=7, temperature=0.5, seed=3, stop=("\n",))
    reply = backend.complete(MESSAGES, settings)

    assert reply.text == "Flight 2"
    assert reply.model == "test-model"
    assert reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 3)
    assert reply.candidate_logprobs is None
    assert reply.latency_s >= 0
    request = handler.requests[0]
    assert request.url.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    body = handler.body()
    assert body["messages"] == MESSAGES
    assert body["model"] == "test-model"
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (7, 0.5, 3)
    assert body["stop"] == ["\n"]
    assert "logprobs" not in body and "top_logprobs" not in body


def test_candidate_scores_read_from_top_logprobs(mock_backend):
    logprobs = [
        token("The", -0.01),
        token(" best", -0.02),
        token(" is", -0.05),
        token(" Flight", -0.1),
        token(" 2", -0.3, {" 2": -0.3, " 1": -1.5, "1": -3.0, " 4": -4.0}),
        token(".", -0.01),
    ]
    handler = Recorder(ok(chat_completion("The best is Flight 2.", logprobs=logprobs)))
    reply = mock_backend(handler).complete(MESSAGES, LABELS)

    body = handler.body()
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    scores = reply.candidate_logprobs
    assert scores is not None and set(scores) == {"1", "2", "3"}
    assert scores["2"] == pytest.approx(-0.3)
    # " 1" and "1" are two spellings of the same answer: their probabilities add up
    assert scores["1"] == pytest.approx(math.log(math.exp(-1.5) + math.exp(-3.0)))
    assert scores["3"] == -math.inf  # not among the top tokens


def test_candidate_scores_read_after_the_answer_prefix(mock_backend):
    logprobs = [
        token("Flight", -0.1),
        token(" 1", -0.2, {" 1": -0.2, " 3": -2.0}),
        token(" is cheap, but the best option is", -0.1),
        token(" Flight", -0.1),
        token(" 2", -0.4, {" 2": -0.4, " 3": -1.2}),
    ]
    body = chat_completion("Flight 1 is cheap, but the best option is Flight 2", logprobs=logprobs)
    prefixed = GenerationSettings(candidates=("1", "2", "3"), answer_prefix="The best option is ")
    reply = mock_backend(Recorder(ok(body))).complete(MESSAGES, prefixed)
    assert reply.candidate_logprobs == {"1": -math.inf, "2": -0.4, "3": -1.2}
    # without the prefix, the first label mentioned is taken
    reply = mock_backend(Recorder(ok(body))).complete(MESSAGES, LABELS)
    assert reply.candidate_logprobs == {"1": -0.2, "2": -math.inf, "3": -2.0}


def test_candidate_scores_absent_when_server_sends_no_logprobs(mock_backend):
    handler = Recorder(ok(chat_completion("Flight 3")))
    reply = mock_backend(handler).complete(MESSAGES, LABELS)
    assert reply.text == "Flight 3"
    assert reply.candidate_logprobs is None


def test_candidate_scores_absent_when_no_token_is_a_candidate(mock_backend):
    logprobs = [token("I", -0.1), token(" like", -0.2), token(" it", -0.3)]
    handler = Recorder(ok(chat_completion("I like it", logprobs=logprobs)))
    assert mock_backend(handler).complete(MESSAGES, LABELS).candidate_logprobs is None


def test_request_logprobs_off_never_asks(mock_backend):
    handler = Recorder(ok(chat_completion("Flight 1")))
    reply = mock_backend(handler, request_logprobs=False).complete(MESSAGES, LABELS)
    assert "logprobs" not in handler.body()
    assert reply.candidate_logprobs is None


def test_vllm_shaped_response_parses(mock_backend):
    body = chat_completion(
        "Flight 1",
        logprobs=[token("Flight", -0.2), token(" 1", -0.1, {" 1": -0.1, " 3": -2.5})],
        prompt_logprobs=None,
        prompt_token_ids=None,
        kv_transfer_params=None,
        service_tier=None,
        system_fingerprint=None,
    )
    choice = body["choices"][0]
    choice.update(stop_reason=None, token_ids=None)
    choice["message"].update(reasoning_content=None, tool_calls=[], refusal=None)
    body["usage"]["prompt_tokens_details"] = None
    reply = mock_backend(Recorder(ok(body))).complete(MESSAGES, LABELS)
    assert reply.text == "Flight 1"
    assert reply.candidate_logprobs == {"1": pytest.approx(-0.1), "2": -math.inf, "3": -2.5}
    assert reply.prompt_tokens == 11


def test_adapter_is_addressed_as_the_model(mock_backend):
    handler = Recorder(ok(chat_completion()))
    backend = mock_backend(handler, model="base-model", adapter="bayes-lora")
    backend.complete(MESSAGES, GenerationSettings())
    assert handler.body()["model"] == "bayes-lora"
    assert backend.adapter == "bayes-lora" and backend.model == "base-model"


def test_max_completion_tokens_param(mock_backend):
    handler = Recorder(ok(chat_completion()))
    backend = mock_backend(handler, max_tokens_param="max_completion_tokens")
    backend.complete(MESSAGES, GenerationSettings(max_tokens=5))
    body = handler.body()
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body


def test_users_own_client_is_used_as_is():
    handler = Recorder(ok(chat_completion("mine")))
    client = openai.OpenAI(
        api_key=SECRET_KEY,
        base_url="http://own.invalid/v1",
        max_retries=0,
        http_client=hx.Client(transport=hx.MockTransport(handler)),
    )
    backend = OpenAICompatibleBackend("m", client=client)
    assert backend.complete(MESSAGES, GenerationSettings()).text == "mine"
    assert handler.requests[0].url.host == "own.invalid"
    backend.close()  # a client it did not create stays open
    assert not client.is_closed()


def test_http_client_of_the_installed_major_is_used():
    handler = Recorder(ok(chat_completion("built")))
    client = openai_http_client(transport=hx.MockTransport(handler))
    assert isinstance(client, hx.Client)
    backend = OpenAICompatibleBackend(
        "m", base_url="http://built.invalid/v1", api_key="k", http_client=client
    )
    assert backend.complete(MESSAGES, GenerationSettings()).text == "built"
    assert handler.requests[0].url.host == "built.invalid"


def test_http_module_matches_the_openai_major():
    expected = "httpx2" if openai_major() >= 3 else "httpx"
    assert hx.__name__ == expected
    assert openai_major() == int(openai.__version__.split(".")[0])


def test_http_client_of_the_other_major_is_a_config_error():
    other_name = "httpx" if hx.__name__ == "httpx2" else "httpx2"
    other = pytest.importorskip(other_name)
    with other.Client() as wrong, pytest.raises(ConfigError) as info:
        OpenAICompatibleBackend("m", base_url="http://x.invalid/v1", api_key="k", http_client=wrong)
    assert info.value.field == "http_client"
    assert f"needs a {hx.__name__}.Client" in str(info.value)
    assert other_name in str(info.value.value)


def test_http_client_that_is_no_client_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleBackend("m", base_url="http://x.invalid/v1", api_key="k", http_client=42)
    assert info.value.field == "http_client" and info.value.value == "builtins.int"


def test_client_and_connection_options_are_exclusive():
    client = openai.OpenAI(api_key="k", base_url="http://x.invalid/v1")
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleBackend("m", client=client, base_url="http://y.invalid/v1")
    assert info.value.field == "base_url"


def test_no_key_for_openai_itself_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleBackend("gpt-4o-mini")
    assert info.value.field == "api_key"
    assert "OPENAI_API_KEY" in str(info.value)


def test_no_key_for_a_local_server_is_fine(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    handler = Recorder(ok(chat_completion()))
    backend = OpenAICompatibleBackend(
        "m",
        base_url="http://vllm.invalid/v1",
        http_client=hx.Client(transport=hx.MockTransport(handler)),
    )
    backend.complete(MESSAGES, GenerationSettings())
    assert handler.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_key_is_read_from_the_named_environment_variable(monkeypatch, mock_backend):
    monkeypatch.setenv("MY_LLM_KEY", "sk-from-env")
    handler = Recorder(ok(chat_completion()))
    backend = mock_backend(handler, api_key=None, api_key_env="MY_LLM_KEY")
    backend.complete(MESSAGES, GenerationSettings())
    assert handler.requests[0].headers["authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": ""}, "model"),
        ({"top_logprobs": 0}, "top_logprobs"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_tokens_param": "tokens"}, "max_tokens_param"),
    ],
)
def test_bad_options_name_the_field(mock_backend, kwargs, field):
    with pytest.raises(ConfigError) as info:
        mock_backend(Recorder(ok(chat_completion())), **kwargs)
    assert info.value.field == field


# ---------------------------------------------------------------------------- error mapping


def test_429_with_retry_after_then_success(mock_backend):
    handler = Recorder(
        hx.Response(429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "3"}),
        ok(chat_completion("Flight 1")),
    )
    sleeps: list[float] = []
    backend = RetryingBackend(mock_backend(handler), sleep=sleeps.append)
    assert backend.complete(MESSAGES, GenerationSettings()).text == "Flight 1"
    assert sleeps == [3.0]
    assert len(handler.requests) == 2


def test_429_maps_to_retryable_backend_error(mock_backend):
    handler = Recorder(
        hx.Response(
            429,
            json={"error": {"message": "rate limited", "type": "requests"}},
            headers={"retry-after-ms": "1500"},
        )
    )
    with pytest.raises(BackendError) as info:
        mock_backend(handler).complete(MESSAGES, GenerationSettings())
    error = info.value
    assert (error.status_code, error.retryable, error.retry_after) == (429, True, 1.5)
    assert "rate limited" in str(error) and "rate limited" in (error.body or "")
    assert isinstance(error.__cause__, openai.RateLimitError)


def test_500_is_retried_with_jittered_backoff(mock_backend):
    handler = Recorder(
        hx.Response(500, json={"error": {"message": "boom"}}),
        hx.Response(503, text="unavailable"),
        ok(chat_completion("Flight 3")),
    )
    sleeps: list[float] = []
    backend = RetryingBackend(mock_backend(handler), sleep=sleeps.append)
    assert backend.complete(MESSAGES, GenerationSettings()).text == "Flight 3"
    assert len(handler.requests) == 3
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_400_is_not_retried(mock_backend):
    handler = Recorder(
        hx.Response(400, json={"error": {"message": "bad 'messages'", "param": "messages"}})
    )
    sleeps: list[float] = []
    backend = RetryingBackend(mock_backend(handler), sleep=sleeps.append)
    with pytest.raises(BackendError) as info:
        backend.complete(MESSAGES, GenerationSettings())
    assert info.value.status_code == 400 and not info.value.retryable
    assert "bad 'messages'" in str(info.value)
    assert len(handler.requests) == 1 and sleeps == []


def test_timeout_maps_to_backend_timeout_error(mock_backend):
    handler = Recorder(hx.ReadTimeout("read timed out"))
    with pytest.raises(BackendTimeoutError) as info:
        mock_backend(handler).complete(MESSAGES, GenerationSettings(timeout_s=2))
    assert info.value.retryable
    assert isinstance(info.value.__cause__, openai.APITimeoutError)


def test_timeouts_are_retried_until_attempts_run_out(mock_backend):
    handler = Recorder(hx.ReadTimeout("read timed out"))
    backend = RetryingBackend(mock_backend(handler), max_attempts=3, sleep=lambda s: None)
    with pytest.raises(BackendTimeoutError):
        backend.complete(MESSAGES, GenerationSettings())
    assert len(handler.requests) == 3


def test_connection_failure_maps_to_backend_connection_error(mock_backend):
    handler = Recorder(hx.ConnectError("connection refused"))
    with pytest.raises(BackendConnectionError) as info:
        mock_backend(handler).complete(MESSAGES, GenerationSettings())
    assert info.value.retryable
    assert "connection refused" in str(info.value)


def test_malformed_json_is_a_response_error(mock_backend):
    bad = hx.Response(200, content=b'{"id": "x", "choices": [', headers=_JSON)
    with pytest.raises(BackendResponseError) as info:
        mock_backend(Recorder(bad)).complete(MESSAGES, GenerationSettings())
    assert not info.value.retryable


def test_non_json_body_is_a_response_error(mock_backend):
    page = hx.Response(200, text="<html>proxy login</html>", headers={"content-type": "text/html"})
    with pytest.raises(BackendResponseError):
        mock_backend(Recorder(page)).complete(MESSAGES, GenerationSettings())


def test_empty_choices_is_a_response_error(mock_backend):
    handler = Recorder(ok(chat_completion(choices=[])))
    with pytest.raises(BackendResponseError) as info:
        mock_backend(handler).complete(MESSAGES, GenerationSettings())
    assert "no choices" in str(info.value)


def test_missing_content_is_a_response_error(mock_backend):
    choice = {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "x"}
    handler = Recorder(ok(chat_completion(choices=[choice])))
    with pytest.raises(BackendResponseError) as info:
        mock_backend(handler).complete(MESSAGES, GenerationSettings())
    assert "no message content" in str(info.value)


_JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------------- the key is secret


def test_api_key_never_logged_nor_in_repr(mock_backend, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    handler = Recorder(
        hx.Response(401, json={"error": {"message": "Incorrect API key provided"}}),
        hx.Response(500, json={"error": {"message": "boom"}}),
        ok(chat_completion("Flight 2")),
    )
    backend = mock_backend(handler)
    with pytest.raises(BackendError) as info:
        backend.complete(MESSAGES, GenerationSettings())
    retrying = RetryingBackend(backend, sleep=lambda s: None)
    retrying.complete(MESSAGES, LABELS)

    assert caplog.records, "expected some log output to check"
    assert SECRET_KEY not in caplog.text
    assert SECRET_KEY not in repr(backend) and SECRET_KEY not in repr(retrying)
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in repr(info.value)
    assert SECRET_KEY not in repr(vars(backend))


# -------------------------------------------------------------------- helpers, unit-tested


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"Retry-After": "Wed, 01 Jan 2025 00:00:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 01 Jan 2025 00:00:00 GMT"}, 0.0),  # already passed
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-5"}, 0.0),
    ],
)
def test_parse_retry_after(headers, expected):
    now = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after(headers, now=now) == expected


def test_candidate_logprobs_from_plain_dicts():
    tokens = [
        {"token": "Flight", "logprob": -0.1, "top_logprobs": []},
        # the chosen token is missing from its own top list: its logprob is still used
        {"token": "2", "logprob": -0.7, "top_logprobs": [{"token": "1", "logprob": -0.9}]},
        {"token": "3", "logprob": -9999.0, "top_logprobs": []},
    ]
    scores = candidate_logprobs_from_tokens(tokens, ["1", "2", "3"])
    assert scores == {"1": -0.9, "2": -0.7, "3": -math.inf}
    assert candidate_logprobs_from_tokens(tokens[:1], ["1", "2"]) is None
