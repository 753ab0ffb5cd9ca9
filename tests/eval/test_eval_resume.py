"""A run killed with SIGKILL and restarted with the same --out gives the same results as an
uninterrupted run, and counts every dialogue exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from beliefagent.adapters import StubCompletion, StubServer
from beliefagent.eval.harness import EvalConfig, run_eval
from beliefagent.trajectories import read_trajectories
from beliefagent.trajectories.records import EvalResult

pytest.importorskip("openai")

CHILD = Path(__file__).with_name("eval_resume_worker.py")
WORKER_CONFIG = EvalConfig(users=4, heldout_sets=3, seed=5, concurrency=2)  # as in the child
ENV = {
    **os.environ,
    "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    "OPENAI_API_KEY": "",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def _reply(messages: list[dict[str, str]]) -> StubCompletion:
    """Deterministic in the conversation, whatever order requests arrive in."""
    n = sum(len(m["content"]) for m in messages) % 3
    logprobs = {str(i + 1): (-0.3 if i == n else -1.9) for i in range(3)}
    return StubCompletion(f"The best option is Flight {n + 1}.", label_logprobs=logprobs)


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if k != "resumed_results"}
    out["assistants"] = [
        {k: v for k, v in a.items() if k not in ("latency_s", "name")}
        for a in summary["assistants"]
    ]
    return out


def _results_in(log: Path) -> list[EvalResult]:
    return [r for r in read_trajectories(log).records if isinstance(r, EvalResult)]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    with StubServer(_reply, delay_s=0.02) as srv:
        url = srv.base_url
        whole = tmp_path / "whole"  # uninterrupted, in process (same code as the child)
        run = run_eval(WORKER_CONFIG, ["bayes", "random", f"openai:stub@{url}"], whole)
        uninterrupted = json.loads(json.dumps(run.summary))

        cut = tmp_path / "cut"
        proc = subprocess.Popen([sys.executable, str(CHILD), str(cut), url], env=ENV)
        log = cut / "results.jsonl"
        deadline = time.monotonic() + 120
        # wait until some LLM dialogues are done and another one is under way
        while time.monotonic() < deadline and proc.poll() is None:
            lines = log.read_text().splitlines() if log.is_file() else []
            done = [ln for ln in lines if '"kind":"eval_result"' in ln and "openai:" in ln]
            if len(done) >= 2 and lines and '"kind":"turn"' in lines[-1]:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _results_in(log)
        assert 2 <= sum(r.assistant.startswith("openai:") for r in before) < 4
        assert not (cut / "summary.json").exists()

        subprocess.run([sys.executable, str(CHILD), str(cut), url], env=ENV, check=True)

    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["resumed_results"] == len(before) > 0
    assert _comparable(resumed) == _comparable(uninterrupted)
    counts = Counter((r.assistant, r.user_id) for r in _results_in(log))
    assert len(counts) == 3 * 4 and set(counts.values()) == {1}
