"""The server in front of a StubServer upstream: pass-through (streaming included), belief
sessions through the official openai client, the session endpoints, and the canary."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_helpers import (
    ANSWER,
    FLIGHT,
    FnBackend,
    option_texts,
    option_values,
    stub_registry,
)

from beliefagent.adapters import StubServer
from beliefagent.server import Canary, LocalUpstream, ModelRegistry, ModelRoute, create_app
from beliefagent.server.background import serving
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import read_trajectories


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def test_health_and_models_list_base_and_tuned(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub, tuned=("tuned-a", "tuned-b"))) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["models"] == [stub.model, "tuned-a", "tuned-b"]
        models = _client(url).models.list()
        ids = [m.id for m in models.data]
        assert ids == [stub.model, "tuned-a", "tuned-b"]
        parents = {m.id: m.model_extra.get("parent") for m in models.data}
        assert parents == {stub.model: None, "tuned-a": stub.model, "tuned-b": stub.model}


def test_plain_chat_passes_through_unchanged(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub)) as url:
        reply = _client(url).chat.completions.create(
            model="tuned",
            messages=[{"role": "user", "content": "Which flight?"}],
            max_tokens=50,
            extra_body={"vendor_field": {"keep": True}},
        )
    assert reply.choices[0].message.content == ANSWER
    assert reply.model == "tuned"
    sent = stub.requests[-1]
    assert sent["model"] == "tuned"  # the tuned name reaches the upstream (a vLLM LoRA name)
    assert sent["vendor_field"] == {"keep": True}
    assert sent["messages"] == [{"role": "user", "content": "Which flight?"}]


def test_streamed_chat_passes_through(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub)) as url:
        stream = _client(url).chat.completions.create(
            model=stub.model,
            messages=[{"role": "user", "content": "Which flight?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len(chunks) > 3  # really streamed in pieces
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert stub.requests[-1]["stream"] is True


def test_other_paths_pass_through(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub)) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"model": stub.model, "input": "x"})
    # the stub has no such route: its own 404 comes back unchanged
    assert response.status_code == 404
    assert "no route for POST /v1/embeddings" in response.json()["error"]["message"]


def test_session_with_options_logs_the_belief_per_turn(stub: StubServer, serve, tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    rounds = option_texts(seed=3, rounds=3)
    choices = [0, 2, 1]
    with serve(stub_registry(stub), log=log) as url:
        client = _client(url)
        answers = []
        for r, options in enumerate(rounds):
            ext = {"session_id": "s-1", "user_id": "u-1", "domain": "flight", "options": options}
            if r > 0:
                ext["choice"] = choices[r - 1]
            reply = client.chat.completions.create(
                model=stub.model,
                messages=[{"role": "user", "content": "Which flight?"}],
                extra_body={"beliefagent": ext},
            )
            answers.append(reply)
        done = httpx.post(f"{url}/v1/beliefagent/sessions/s-1/choice", json={"choice": 1})
        assert done.status_code == 200 and done.json()["round"] == 2
        state = httpx.get(f"{url}/v1/beliefagent/sessions/s-1").json()
        assert state["round"] == 3 and state["awaiting_choice"] is False
        closed = httpx.delete(f"{url}/v1/beliefagent/sessions/s-1")
        assert closed.json() == {"session_id": "s-1", "rounds": 3, "closed": True}
    first = answers[0]
    assert first.choices[0].message.content == ANSWER
    ext0 = first.model_extra["beliefagent"]
    assert ext0["session_id"] == "s-1" and ext0["round"] == 0
    assert ext0["llm_choice"] == 1 and ext0["shown_choice"] == 1
    assert ext0["decision"]["source"] == "llm" and ext0["backend"] == "upstream"
    assert len(ext0["bayes_distribution"]) == 3 and ext0["entropy"] > 0
    assert [a.model_extra["beliefagent"]["round"] for a in answers] == [0, 1, 2]

    read = read_trajectories(log)
    kinds = [r.kind for r in read.records]
    assert kinds == ["session_start", "turn", "turn", "turn", "session_end"]
    turns = read.records[1:4]
    assert [t.user_choice for t in turns] == [*choices[:2], 1]
    assert all(t.belief is not None and t.belief.available for t in turns)
    assert turns[2].belief.entropy < turns[0].belief.entropy
    assert all(t.model == stub.model and t.adapter is None for t in turns)
    assert read.records[-1].reason == "closed_by_client"
    # the logged belief is the exact teacher's, fed the same choices
    teacher = BayesianTeacher(FLIGHT)
    for t, options, choice in zip(turns, rounds, [*choices[:2], 1], strict=True):
        levels = FLIGHT.parse_option_set(options)
        assert t.bayes_distribution == pytest.approx(teacher.recommend(levels).predictive)
        teacher.observe(levels, choice)


def test_feature_value_options_and_streamed_session(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub)) as url:
        stream = _client(url).chat.completions.create(
            model=stub.model,
            messages=[{"role": "user", "content": "?"}],
            stream=True,
            extra_body={"beliefagent": {"session_id": "fv", "options": option_values(seed=1)}},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    ext = [c.model_extra.get("beliefagent") for c in chunks if c.model_extra.get("beliefagent")]
    assert len(ext) == 1 and ext[0]["shown_choice"] == 1 and ext[0]["round"] == 0


def test_upstream_failure_leaves_the_session_retryable(serve, tmp_path) -> None:
    calls = {"n": 0}

    def flaky(_messages):
        calls["n"] += 1
        if calls["n"] == 2:
            from beliefagent.adapters import StubHTTPError

            raise StubHTTPError(503, "overloaded")
        return ANSWER

    rounds = option_texts(seed=4, rounds=2)
    with (
        StubServer(flaky) as upstream,
        serve(stub_registry(upstream), log=tmp_path / "l.jsonl") as url,
    ):
        ext = {"session_id": "r", "options": rounds[0]}
        body = {"model": upstream.model, "messages": [{"role": "user", "content": "?"}]}
        assert (
            httpx.post(f"{url}/v1/chat/completions", json={**body, "beliefagent": ext}).status_code
            == 200
        )
        ext = {"session_id": "r", "options": rounds[1], "choice": 2}
        failed = httpx.post(f"{url}/v1/chat/completions", json={**body, "beliefagent": ext})
        assert failed.status_code == 502
        assert failed.json()["error"]["code"] == "upstream_error"
        # the same request again: the recorded choice is not applied twice
        again = httpx.post(f"{url}/v1/chat/completions", json={**body, "beliefagent": ext})
        assert again.status_code == 200, again.text
        assert again.json()["beliefagent"]["round"] == 1
        answered = httpx.post(f"{url}/v1/beliefagent/sessions/r/choice", json={"choice": 1})
        assert answered.status_code == 200
        # a different choice for an answered round is refused
        ext["choice"] = 0
        conflict = httpx.post(f"{url}/v1/chat/completions", json={**body, "beliefagent": ext})
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "no_pending_round"
    turns = [r for r in read_trajectories(tmp_path / "l.jsonl").records if r.kind == "turn"]
    assert [(t.round, t.user_choice) for t in turns] == [(0, 2), (1, 1)]


def test_canary_splits_sessions_sticky_and_logs_who_answered(
    stub: StubServer, serve, tmp_path
) -> None:
    canary = Canary("tuned", 0.5, seed=7)
    log = tmp_path / "canary.jsonl"
    ids = [f"user-{i}" for i in range(12)]
    rounds = option_texts(seed=5, rounds=2)
    with serve(stub_registry(stub, canary=canary), log=log) as url:
        client = _client(url)
        routes: dict[str, list[str]] = {}
        for sid in ids:
            for r, options in enumerate(rounds):
                ext = {"session_id": sid, "options": options, **({"choice": 0} if r else {})}
                reply = client.chat.completions.create(
                    model=stub.model,
                    messages=[{"role": "user", "content": "?"}],
                    extra_body={"beliefagent": ext},
                )
                routes.setdefault(sid, []).append(reply.model_extra["beliefagent"]["route"])
            httpx.post(f"{url}/v1/beliefagent/sessions/{sid}/choice", json={"choice": 1})
    assert all(len(set(r)) == 1 for r in routes.values())  # sticky
    expected = {sid: "tuned" if canary.picks(sid) else stub.model for sid in ids}
    assert {sid: r[0] for sid, r in routes.items()} == expected
    assert 0 < sum(v == "tuned" for v in expected.values()) < len(ids)
    # the upstream saw the tuned name for canary sessions; the log says which one answered
    turns = [r for r in read_trajectories(log).records if r.kind == "turn"]
    assert len(turns) == 2 * len(ids)
    for t in turns:
        assert t.adapter == ("tuned" if expected[t.session_id] == "tuned" else None)
        assert t.backend == "upstream" and t.model == stub.model
    assert {r["model"] for r in stub.requests} == {stub.model, "tuned"}


def test_canary_is_deterministic_and_near_its_share() -> None:
    canary = Canary.parse("tuned:0.1", seed=3)
    picks = [canary.picks(f"s{i}") for i in range(5000)]
    assert picks == [Canary("tuned", 0.1, 3).picks(f"s{i}") for i in range(5000)]
    assert 0.08 < sum(picks) / len(picks) < 0.12
    assert not any(Canary("t", 0.0).picks(f"s{i}") for i in range(100))


def test_sessions_on_different_routes_do_not_block_each_other() -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(_messages):
        entered.set()
        assert release.wait(20)
        return ANSWER

    local = LocalUpstream()
    registry = ModelRegistry(
        [
            ModelRoute("fast", local, FnBackend(lambda _m: ANSWER, model="fast")),
            ModelRoute("slow", local, FnBackend(slow, model="slow")),
        ]
    )
    options = option_texts(seed=6, rounds=1)[0]

    def ask(url: str, model: str, sid: str) -> int:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "?"}],
            "beliefagent": {"session_id": sid, "options": options},
        }
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code

    with serving(create_app(registry)) as url, ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(ask, url, "slow", "a")
        assert entered.wait(10)
        assert ask(url, "fast", "b") == 200  # answered while session a is still in the backend
        assert not blocked.done()
        release.set()
        assert blocked.result(timeout=20) == 200


def test_choice_endpoint_errors(stub: StubServer, serve) -> None:
    options, later = option_texts(seed=8, rounds=2)
    with serve(stub_registry(stub)) as url:
        missing = httpx.post(f"{url}/v1/beliefagent/sessions/nope/choice", json={"choice": 0})
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "session_id"
        body = {
            "model": stub.model,
            "messages": [{"role": "user", "content": "?"}],
            "beliefagent": {"session_id": "c", "options": options},
        }
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        bad = httpx.post(f"{url}/v1/beliefagent/sessions/c/choice", json={"choice": 7})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "choice" and "7" in bad.json()["error"]["message"]
        # no choice yet: the next round is refused with a message naming the field
        ext = {"session_id": "c", "options": later}
        again = httpx.post(f"{url}/v1/chat/completions", json={**body, "beliefagent": ext})
        assert again.status_code == 409
        assert again.json()["error"]["param"] == "beliefagent.choice"
        ok = httpx.post(f"{url}/v1/beliefagent/sessions/c/choice", json={"choice": 2})
        assert ok.status_code == 200 and ok.json()["user_choice"] == 2
        # the same choice sent again (a retry) gets the same reply; another one is a 409
        twice = httpx.post(f"{url}/v1/beliefagent/sessions/c/choice", json={"choice": 2})
        assert twice.status_code == 200 and twice.json() == ok.json()
        other = httpx.post(f"{url}/v1/beliefagent/sessions/c/choice", json={"choice": 1})
        assert other.status_code == 409
        assert httpx.delete(f"{url}/v1/beliefagent/sessions/c").status_code == 200
        reopened = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert reopened.status_code == 409
        assert reopened.json()["error"]["code"] == "session_closed"


def test_raw_body_is_forwarded_byte_for_byte(stub: StubServer, serve) -> None:
    raw = json.dumps(
        {"model": stub.model, "messages": [{"role": "user", "content": "é ✓"}], "x": [1, 2.5]}
    ).encode()
    with serve(stub_registry(stub)) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200
    assert stub.requests[-1] == json.loads(raw)
