"""An ``openai:MODEL@URL`` assistant over real HTTP: the official openai client talking to the
loopback StubServer, with label log-probabilities, concurrency and token tallies."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from beliefagent.adapters import StubCompletion, StubServer
from beliefagent.eval.harness import EvalConfig, run_eval

pytest.importorskip("openai")


def _dearest(messages: list[dict[str, str]]) -> StubCompletion:
    """Names the most expensive of the last three flights; reports label logprobs."""
    text = messages[-1]["content"]
    prices = [int(p) for p in re.findall(r"price: \$(\d+)", text)[-3:]]
    if len(prices) != 3:  # the belief probe
        return StubCompletion("4", label_logprobs={"4": -0.1, "5": -2.5})
    best = prices.index(max(prices))
    logprobs = {str(i + 1): (-0.05 if i == best else -4.0) for i in range(3)}
    return StubCompletion(f"The best option is Flight {best + 1}.", label_logprobs=logprobs)


def test_openai_assistant_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    active = [0, 0]  # (now, most) concurrent requests
    lock = threading.Lock()

    def reply(messages: list[dict[str, str]]) -> StubCompletion:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        try:
            time.sleep(0.01)
            return _dearest(messages)
        finally:
            with lock:
                active[0] -= 1

    with StubServer(reply, api_key="sk-test-0123456789abcdef") as srv:
        name = f"openai:stub-model@{srv.base_url}"
        run = run_eval(
            EvalConfig(users=4, heldout_sets=3, concurrency=3, price_per_1k_input=0.5),
            ["bayes", name, f"{name}#guard"],
            tmp_path,
        )
        requests = list(srv.requests)
    row = next(a for a in run.summary["assistants"] if a["name"] == name)
    guard = next(a for a in run.summary["assistants"] if a["name"] == f"{name}#guard")
    assert len(row["accuracy_by_round"]) == 6 and row["invalid_rate"] == 0.0
    assert "calibration" in row  # log-probabilities came back through the openai client
    assert row["tokens"]["prompt"] > 0 and row["cost_usd"] > 0
    assert row["probe"]["mean_by_feature"]["price"] == pytest.approx(0.5, abs=0.05)
    assert guard["agreement_heldout"] >= row["agreement_heldout"]
    # 4 users x (6 checkpoints x 3 held-out + 5 rounds + 4 probes) per assistant
    assert len(requests) == 2 * 4 * (6 * 3 + 5 + 4)
    assert all(r["model"] == "stub-model" and r.get("logprobs") for r in requests)
    assert active[1] > 1, "remote requests run concurrently"
    # the key never reaches the log
    assert "sk-test-0123456789abcdef" not in (tmp_path / "results.jsonl").read_text()
