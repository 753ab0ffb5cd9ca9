"""Edges found by probing the server as an outside tester would; each test failed before its
fix. Real loopback servers and the official openai client throughout."""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from edge_upstream import EdgeUpstream
from server_helpers import ANSWER, option_texts, stub_registry

from beliefagent.adapters import StubHTTPError, StubServer
from beliefagent.domains import load_domain
from beliefagent.server import HTTPUpstream, ModelRegistry, ModelRoute
from beliefagent.server.limits import Authenticator
from beliefagent.trajectories import read_trajectories

KEY = "sk-right-key-123"


def _chat(url: str, body: dict, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60, **kwargs
    )


def _plain(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def _turn(model: str, sid: str, options: list, **ext) -> dict:
    return {**_plain(model), "beliefagent": {"session_id": sid, "options": options, **ext}}


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def _edge_registry(upstream: EdgeUpstream) -> ModelRegistry:
    http = HTTPUpstream(upstream.base_url, api_key="sk-server-own", timeout_s=10)
    return ModelRegistry([ModelRoute("m", http, http.backend("m", retries=0))])


# ------------------------------------------------------------------- malformed JSON bodies

DEEP = b"[" * 50_000
HUGE_INT = b'{"model": "m", "n": ' + b"7" * 5_000 + b"}"


@pytest.mark.parametrize("raw", [DEEP, HUGE_INT], ids=["nested", "long-int"])
@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/embeddings", "/v1/beliefagent/sessions/s1/choice"]
)
def test_pathological_json_is_a_400_not_a_500(stub, serve, caplog, raw, path) -> None:
    caplog.set_level(logging.WARNING)
    with serve(stub_registry(stub)) as url:
        response = httpx.post(
            url + path, content=raw, headers={"content-type": "application/json"}, timeout=30
        )
        assert response.status_code == 400, response.text
        assert _error(response)["code"] == "invalid_json"
        assert len(response.text) < 1000
        assert _chat(url, _plain(stub.model)).status_code == 200  # still serving
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# ------------------------------------------------------------------------ the extension field


def test_n_above_one_is_refused_in_belief_sessions(stub, serve) -> None:
    options = option_texts(seed=2, rounds=1)[0]
    with serve(stub_registry(stub)) as url:
        three = _chat(url, {**_turn(stub.model, "n3", options), "n": 3})
        assert three.status_code == 400, three.text
        assert _error(three)["param"] == "n"
        one = _chat(url, {**_turn(stub.model, "n1", options), "n": 1})
        assert one.status_code == 200 and len(one.json()["choices"]) == 1


def test_a_huge_unparseable_option_is_cut_in_the_error(stub, serve) -> None:
    options = option_texts(seed=2, rounds=1)[0]
    options[1] = "x" * 900_000
    with serve(stub_registry(stub), max_body_bytes=2_000_000) as url:
        response = _chat(url, _turn(stub.model, "big", options))
    assert response.status_code == 400
    message = _error(response)["message"]
    assert len(response.content) < 2_000, len(response.content)
    assert "900,000 characters" in message and "beliefagent.options[1]" in message


# ------------------------------------------------------------------------------ pass-through


def test_passthrough_forwards_an_allow_list_of_headers_and_no_body_secret(serve) -> None:
    secrets = {
        "x-api-key": "sk-client-x",
        "openai-organization": "org-client",
        "openai-project": "proj-client",
        "cookie": "session=abc",
        "api-key": "sk-azure-style",
    }
    with EdgeUpstream() as upstream, serve(_edge_registry(upstream)) as url:
        headers = {**secrets, "user-agent": "probe/1.0", "openai-beta": "assistants=v2"}
        body = {"model": "m", "input": "hello", "api_key": "sk-body-secret"}
        embed = httpx.post(f"{url}/v1/embeddings", json=body, headers=headers, timeout=30)
        assert embed.status_code == 200, embed.text
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={**_plain("m"), "api_key": "sk-body-secret"},
            headers=headers,
            timeout=30,
        )
        assert chat.status_code == 200, chat.text
    assert len(upstream.seen) == 2
    for seen in upstream.seen:
        sent = {k.lower(): v for k, v in seen["headers"].items()}
        for name in secrets:
            assert name not in sent, name
        assert sent["authorization"] == "Bearer sk-server-own"
        assert "sk-body-secret" not in str(seen["body"]) and "api_key" not in seen["body"]
    assert {k.lower(): v for k, v in upstream.seen[0]["headers"].items()}["user-agent"] == (
        "probe/1.0"
    )
    assert upstream.seen[0]["body"] == {"model": "m", "input": "hello"}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_upstream_failures_show_no_internal_url_nor_body(serve, caplog) -> None:
    caplog.set_level(logging.WARNING)
    options = option_texts(seed=4, rounds=1)[0]
    http = HTTPUpstream(_closed_port_url(), timeout_s=5)
    registry = ModelRegistry([ModelRoute("m", http, http.backend("m", retries=0))])
    with serve(registry) as url:
        responses = [_chat(url, _plain("m")), _chat(url, _turn("m", "down", options))]
    for response in responses:
        assert response.status_code == 502, response.text
        error = _error(response)
        assert "127.0.0.1" not in response.text and "http" not in error["message"]
        request_id = response.headers["x-request-id"]
        assert request_id in error["message"]
        logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
        assert logged and "127.0.0.1" in logged[0]  # the details are in the server log

    def fail(_messages):
        raise StubHTTPError(500, "db password is hunter2 at 10.0.0.7")

    with StubServer(fail) as upstream, serve(stub_registry(upstream)) as url:
        for response in (_chat(url, _plain(upstream.model)),
                         _chat(url, _turn(upstream.model, "s500", options))):  # fmt: skip
            assert response.status_code == 502
            assert "hunter2" not in response.text and "10.0.0.7" not in response.text


def test_a_stream_that_breaks_off_ends_with_an_error_the_client_raises(serve, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with EdgeUpstream("break") as upstream, serve(_edge_registry(upstream)) as url:
        client = openai.OpenAI(api_key="k", base_url=f"{url}/v1", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = []
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                chunks.append(chunk)
        assert "stopped mid-stream" in str(info.value)
        assert [c.choices[0].delta.content for c in chunks] == ["Flight"]  # what came before
        # a non-streamed answer that breaks off is a 502, not a 200 with half a body
        broken = _chat(url, _plain("m"))
        assert broken.status_code == 502 and _error(broken)["code"] == "upstream_unavailable"
        client.close()
    lines = [r for r in caplog.records if "broke off a stream" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# -------------------------------------------------------------------------- sessions


def test_a_failed_first_round_leaves_no_session(serve, tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(_messages):
        calls.append(1)
        if len(calls) == 1:
            raise StubHTTPError(503, "warming up")
        return ANSWER

    options = option_texts(seed=5, rounds=1)[0]
    log = tmp_path / "log.jsonl"
    with StubServer(flaky) as upstream, serve(stub_registry(upstream), log=log,
                                              max_sessions=1) as url:  # fmt: skip
        failed = _chat(url, _turn(upstream.model, "s1", options))
        assert failed.status_code == 502
        health = httpx.get(f"{url}/health").json()
        assert health["sessions"] == 0
        # the id is free and the server not full: the same request works once the upstream does
        again = _chat(url, _turn(upstream.model, "s1", options))
        assert again.status_code == 200, again.text
        assert httpx.get(f"{url}/health").json()["sessions"] == 1
    starts = [r for r in read_trajectories(log).records if r.kind == "session_start"]
    assert [s.session_id for s in starts] == ["s1"]


def test_fallback_answers_are_marked_as_such(serve, tmp_path: Path) -> None:
    def down(_messages):
        raise StubHTTPError(503, "overloaded at http://10.1.2.3:8000")

    rounds = option_texts(seed=6, rounds=2)
    log = tmp_path / "log.jsonl"
    with StubServer(down) as upstream, serve(stub_registry(upstream), log=log,
                                             upstream_errors="fallback") as url:  # fmt: skip
        first = _chat(url, _turn(upstream.model, "fb", rounds[0]))
        assert first.status_code == 200, first.text
        ext = first.json()["beliefagent"]
        assert ext["fallback"] is True and ext["invalid"] is True
        assert ext["decision"]["reason"].startswith("fallback:")
        assert ext["errors"] and "10.1.2.3" not in str(ext["errors"])
        assert _chat(url, _turn(upstream.model, "fb", rounds[1], choice=0)).status_code == 200
    (turn, *_) = [r for r in read_trajectories(log).records if r.kind == "turn"]
    assert turn.invalid is True and turn.decision.reason.startswith("fallback:")


def _flight8_options(seed: int) -> list[str]:
    flight8 = load_domain("flight8")
    (levels,) = flight8.random_option_sets(np.random.default_rng(seed), 1)
    return [t.split(": ", 1)[1] for t in flight8.render_options(levels)]


def test_sessions_beyond_the_memory_budget_get_503(stub, serve) -> None:
    from beliefagent.server.memory import session_bytes

    flight8 = load_domain("flight8")
    budget = int(2.5 * session_bytes(flight8))
    registry = stub_registry(stub)
    with serve(registry, max_session_memory=budget, allowed_domains=("flight", "flight8"),
               default_policy="bayes") as url:  # fmt: skip
        for sid in ("a", "b"):
            ok = _chat(url, _turn(stub.model, sid, _flight8_options(1), domain="flight8"))
            assert ok.status_code == 200, ok.text
        full = _chat(url, _turn(stub.model, "c", _flight8_options(2), domain="flight8"))
        assert full.status_code == 503, full.text
        assert _error(full)["code"] == "session_memory_exhausted"
        assert full.headers["Retry-After"]
        small = _chat(url, _turn(stub.model, "d", option_texts(seed=1, rounds=1)[0]))
        assert small.status_code == 200  # a flight session still fits beside them
        assert httpx.delete(f"{url}/v1/beliefagent/sessions/a").status_code == 200
        again = _chat(url, _turn(stub.model, "c", _flight8_options(2), domain="flight8"))
        assert again.status_code == 200, again.text


# ------------------------------------------------------------------------- paths and auth


def test_unknown_paths_answer_not_found(stub, serve) -> None:
    with serve(stub_registry(stub)) as url:
        missing = httpx.get(f"{url}/nothing/here")
        assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
        wrong_method = httpx.post(f"{url}/health")
        assert wrong_method.status_code == 405
        assert _error(wrong_method)["code"] == "method_not_allowed"


def test_failed_authentications_are_limited_per_address(stub, serve) -> None:
    with serve(stub_registry(stub), api_keys=(KEY,), auth_failure_burst=3,
               auth_failures_per_minute=1.0) as url:  # fmt: skip
        for i in range(3):
            wrong = _chat(url, _plain(stub.model), key=f"sk-guess-{i}")
            assert wrong.status_code == 401
        blocked = _chat(url, _plain(stub.model), key="sk-guess-3")
        assert blocked.status_code == 429 and _error(blocked)["code"] == "auth_rate_limited"
        assert int(blocked.headers["Retry-After"]) >= 1
        # a right guess is not confirmed while the address is blocked
        assert _chat(url, _plain(stub.model), key=KEY).status_code == 429


def test_client_ids_are_an_hmac_under_the_server_secret() -> None:
    class Req:
        def __init__(self, key: str) -> None:
            self.headers = {"authorization": f"Bearer {key}"}
            self.client = None

    a = Authenticator([KEY], secret=b"server-secret")
    b = Authenticator([KEY], secret=b"server-secret")
    other = Authenticator([KEY], secret=b"another")
    client_id = a.identify(Req(KEY))  # type: ignore[arg-type]
    assert client_id == b.identify(Req(KEY))  # type: ignore[arg-type]
    assert client_id != other.identify(Req(KEY))  # type: ignore[arg-type]
    assert client_id.removeprefix("key:") != hashlib.sha256(KEY.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the process


def test_a_drained_sigterm_shutdown_exits_0(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    run = "import typer; from beliefagent.server import serve_command; typer.run(serve_command)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with StubServer(lambda _m: ANSWER) as stub:
        argv = [sys.executable, "-c", run, "--upstream", stub.base_url, "--port", str(port)]
        argv += ["--upstream-model", stub.model, "--log", str(tmp_path / "log.jsonl")]
        # an in-memory store closes its sessions on shutdown (a durable one keeps them open
        # for the restart to resume)
        argv += ["--log-level", "warning", "--session-store", "memory"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-upstream"}
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
            options = option_texts(seed=7, rounds=1)[0]
            assert _chat(url, _turn(stub.model, "t", options)).status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ends = [r for r in read_trajectories(tmp_path / "log.jsonl").records if r.kind == "session_end"]
    assert [e.reason for e in ends] == ["server_shutdown"]
