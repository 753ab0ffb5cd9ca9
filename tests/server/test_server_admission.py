"""Auth, size and rate limits, bad requests, session ownership and upstream error mapping.
Every error is OpenAI-style JSON naming the field and value, and the server keeps serving."""

from __future__ import annotations

import socket

import httpx
import pytest
from server_helpers import ANSWER, option_texts, stub_registry

from beliefagent.adapters import StubHTTPError, StubServer
from beliefagent.server import HTTPUpstream, ModelRegistry, ModelRoute
from beliefagent.server.http_errors import APIError
from beliefagent.server.limits import RateLimiter

KEY_A, KEY_B = "sk-alpha-123", "sk-bravo-456"


def _chat(url: str, body: dict, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30, **kwargs
    )


def _plain(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def _turn(model: str, sid: str, options: list, **ext) -> dict:
    return {**_plain(model), "beliefagent": {"session_id": sid, "options": options, **ext}}


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]


def test_auth_required_and_sessions_bound_to_their_key(stub: StubServer, serve) -> None:
    options = option_texts(seed=1, rounds=1)[0]
    with serve(stub_registry(stub), api_keys=(KEY_A, KEY_B)) as url:
        missing = _chat(url, _plain(stub.model))
        assert missing.status_code == 401 and _error(missing)["code"] == "missing_api_key"
        wrong = _chat(url, _plain(stub.model), key="sk-wrong")
        assert wrong.status_code == 401 and _error(wrong)["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no key
        assert _chat(url, _plain(stub.model), key=KEY_A).status_code == 200
        # the upstream never sees the client's key
        assert "sk-alpha" not in str(stub.requests[-1])

        assert _chat(url, _turn(stub.model, "mine", options), key=KEY_A).status_code == 200
        hijack = _chat(url, _turn(stub.model, "mine", options, choice=0), key=KEY_B)
        assert hijack.status_code == 403 and _error(hijack)["code"] == "session_forbidden"
        for method, path, kwargs in (
            ("POST", "/choice", {"json": {"choice": 0}}),
            ("GET", "", {}),
            ("DELETE", "", {}),
        ):
            r = httpx.request(
                method,
                f"{url}/v1/beliefagent/sessions/mine{path}",
                headers={"Authorization": f"Bearer {KEY_B}"},
                **kwargs,
            )
            assert r.status_code == 403, (method, path)
        # the owner still drives it
        assert (
            _chat(url, _turn(stub.model, "mine", options, choice=0), key=KEY_A).status_code == 200
        )


def test_oversized_body_is_413_and_the_server_keeps_serving(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub), max_body_bytes=2_000) as url:
        big = _plain(stub.model)
        big["messages"][0]["content"] = "x" * 5_000
        response = _chat(url, big)
        assert response.status_code == 413
        err = _error(response)
        assert err["code"] == "request_too_large" and "2000" in err["message"]
        # a chunked body without Content-Length is cut off too
        chunked = httpx.post(
            f"{url}/v1/chat/completions",
            content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        assert _chat(url, _plain(stub.model)).status_code == 200


def test_rate_limit_is_429_with_retry_after(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub), rate_limit=0.01, burst=2) as url:
        assert _chat(url, _plain(stub.model)).status_code == 200
        assert _chat(url, _plain(stub.model)).status_code == 200
        limited = _chat(url, _plain(stub.model))
        assert limited.status_code == 429
        assert _error(limited)["type"] == "rate_limit_error"
        assert int(limited.headers["Retry-After"]) >= 1


def test_rate_limiter_refills_per_client() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(APIError) as info:
        limiter.check("a")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    limiter.check("b")  # another client has its own bucket
    now[0] = 0.5  # one token back at 2/s
    limiter.check("a")


@pytest.mark.parametrize(
    ("make_body", "status", "param", "needle"),
    [
        (lambda m, o: b"{not json", 400, None, "not valid JSON"),
        (lambda m, o: b"[1, 2]", 400, None, "JSON object"),
        (lambda m, o: {**_plain("gpt-nope")}, 404, "model", "'gpt-nope'"),
        (lambda m, o: {"messages": []}, 400, "model", "model"),
        (
            lambda m, o: _turn(m, "s1", [o[0], "departure time: 25:00 PM, nonsense", o[2]]),
            400,
            "beliefagent.options[1]",
            "25:00 PM",
        ),
        (
            lambda m, o: _turn(m, "s1", [{"price": 370}, {}, {}]),
            400,
            "beliefagent.options[0].departure_time",
            "missing feature",
        ),
        (
            lambda m, o: _turn(m, "s1", [{**dict.fromkeys(["wings"], 2)}] * 3),
            400,
            "beliefagent.options[0]",
            "wings",
        ),
        (lambda m, o: _turn(m, "s1", o[:2]), 400, "beliefagent.options", "3 options"),
        (lambda m, o: _turn(m, "s1", o, choice=3), 400, "beliefagent.choice", "3"),
        (lambda m, o: _turn(m, "s1", o, choice="first"), 400, "beliefagent.choice", "'first'"),
        (lambda m, o: _turn(m, "bad id!", o), 400, "beliefagent.session_id", "'bad id!'"),
        (lambda m, o: _turn(m, "s1", o, domain="mars"), 400, "beliefagent.domain", "'mars'"),
        (lambda m, o: _turn(m, "s1", o, domain="bigfive"), 400, "beliefagent.domain", "choice"),
        (lambda m, o: _turn(m, "s1", o, policy="yolo"), 400, "beliefagent.policy", "'yolo'"),
        (lambda m, o: _turn(m, "s1", o, colour="red"), 400, "beliefagent.colour", "unknown"),
        (lambda m, o: {**_plain(m), "beliefagent": "s1"}, 400, "beliefagent", "object"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    stub: StubServer, serve, make_body, status, param, needle
) -> None:
    options = option_texts(seed=2, rounds=1)[0]
    with serve(stub_registry(stub)) as url:
        body = make_body(stub.model, options)
        if isinstance(body, bytes):
            response = httpx.post(
                f"{url}/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json"},
            )
        else:
            response = _chat(url, body)
        assert response.status_code == status, response.text
        err = _error(response)
        assert err["param"] == param
        assert needle in err["message"], err["message"]
        if param:
            assert param in err["message"]
        # the same session id still works with a good request
        good = _chat(url, _turn(stub.model, "s1", options))
        assert good.status_code == 200, good.text
        assert good.json()["choices"][0]["message"]["content"] == ANSWER


def test_choice_out_of_range_changes_nothing(stub: StubServer, serve) -> None:
    rounds = option_texts(seed=9, rounds=2)
    with serve(stub_registry(stub)) as url:
        assert _chat(url, _turn(stub.model, "k", rounds[0])).status_code == 200
        bad = _chat(url, _turn(stub.model, "k", rounds[1], choice=5))
        assert bad.status_code == 400 and "0..2" in _error(bad)["message"]
        good = _chat(url, _turn(stub.model, "k", rounds[1], choice=1))
        assert good.status_code == 200 and good.json()["beliefagent"]["round"] == 1


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (StubHTTPError(429, "slow down", headers={"Retry-After": "7"}), 429, None),
        (StubHTTPError(500, "boom"), 502, "upstream_error"),
        (StubHTTPError(503, "overloaded"), 502, "upstream_error"),
        (StubHTTPError(401, "bad upstream key"), 502, "upstream_error"),
        (StubHTTPError(400, "context too long"), 400, None),
    ],
)
def test_upstream_errors_are_mapped(serve, error, status, code) -> None:
    def fail(_messages):
        raise error

    options = option_texts(seed=3, rounds=1)[0]
    with StubServer(fail) as upstream, serve(stub_registry(upstream)) as url:
        passthrough = _chat(url, _plain(upstream.model))
        session = _chat(url, _turn(upstream.model, "e", options))
    for response in (passthrough, session):
        assert response.status_code == status, response.text
        err = _error(response)
        if code is not None:
            assert err["code"] == code
        if status == 429:
            assert response.headers["Retry-After"] == "7"
    if status == 502:  # the upstream's body and URL stay in the server log
        for response in (passthrough, session):
            assert error.message not in response.text and "127.0.0.1" not in response.text
            assert response.headers["x-request-id"] in _error(response)["message"]


def test_upstream_timeout_is_504_and_unreachable_is_502(serve) -> None:
    with StubServer(lambda _m: ANSWER, delay_s=2.0) as slow:
        options = option_texts(seed=3, rounds=1)[0]
        with serve(stub_registry(slow, timeout_s=0.3), session_timeout_s=0.3) as url:
            timed_out = _chat(url, _plain(slow.model))
            assert timed_out.status_code == 504 and _error(timed_out)["code"] == "upstream_timeout"
            in_session = _chat(url, _turn(slow.model, "t", options))
            assert in_session.status_code == 504
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    http = HTTPUpstream(f"http://127.0.0.1:{port}/v1", timeout_s=2)
    registry = ModelRegistry([ModelRoute("m", http, http.backend("m", retries=0))])
    with serve(registry) as url:
        down = _chat(url, _plain("m"))
        assert down.status_code == 502 and _error(down)["code"] == "upstream_unavailable"
        assert httpx.get(f"{url}/health").status_code == 200


def test_unknown_route_is_json_404(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub)) as url:
        response = httpx.get(f"{url}/nope")
    assert response.status_code == 404 and _error(response)["type"] == "not_found_error"
