"""``GET /metrics``: Prometheus text, behind the API's auth unless public, with the counts of
what the server did."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import play_turn, stub_registry, turn_body

from beliefagent.adapters import StubServer
from beliefagent.server import Canary

KEY = {"authorization": "Bearer key-1"}


def _scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_requests_turns_decisions_and_sessions(stub: StubServer, serve) -> None:
    registry = stub_registry(stub, canary=Canary("tuned", 0.5, seed=3))
    sessions = [f"m{i}" for i in range(6)]
    with serve(registry, api_keys=("key-1",)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        for sid in sessions:
            for r in range(3):
                play_turn(url, stub.model, sid, r, **KEY)
        # one refused turn (a choice out of range), one resend
        bad = turn_body(stub.model, "m0", 3)
        bad["beliefagent"]["choice"] = 9
        assert httpx.post(f"{url}/v1/chat/completions", json=bad, headers=KEY).status_code == 400
        play_turn(url, stub.model, "m0", 2, **KEY)
        got = _scrape(url, **KEY)
    canaried = sum(registry.canary.picks(sid) for sid in sessions)  # type: ignore[union-attr]
    assert 0 < canaried < len(sessions)
    assert got["beliefagent_turns_total", (("domain", "flight"), ("policy", "llm"))] == 18
    assert got["beliefagent_turns_replayed_total", ()] == 1
    assert (
        got["beliefagent_requests_total", (("route", "chat_completions"), ("status", "200"))] == 19
    )
    assert (
        got["beliefagent_request_errors_total", (("route", "chat_completions"), ("status", "400"))]
        == 1
    )
    assert got["beliefagent_requests_total", (("route", "metrics_page"), ("status", "401"))] == 1
    assert got["beliefagent_open_sessions", ()] == len(sessions)
    opened = {
        labels: v
        for (name, labels), v in got.items()
        if name == "beliefagent_sessions_opened_total"
    }
    assert opened == {
        (("canary", "true"), ("route", "tuned")): canaried,
        (("canary", "false"), ("route", stub.model)): len(sessions) - canaried,
    }
    assert got["beliefagent_policy_decisions_total", (("policy", "llm"), ("source", "llm"))] == 18
    for r in range(3):
        assert got["beliefagent_belief_entropy_bits_count", (("round", str(r)),)] == len(sessions)
    assert got["beliefagent_added_latency_seconds_count", ()] == 18
    assert got["beliefagent_upstream_latency_seconds_count", ()] == 18
    assert got["beliefagent_upstream_latency_seconds_sum", ()] > 0


def test_metrics_public_needs_no_key(stub: StubServer, serve) -> None:
    with serve(stub_registry(stub), api_keys=("key-1",), metrics_public=True) as url:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        got = _scrape(url)
    assert got["beliefagent_open_sessions", ()] == 0
