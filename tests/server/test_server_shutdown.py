"""``serve`` as a process: SIGTERM and SIGINT flush the log and, with the in-process session
store, close the open sessions (a durable store keeps them open: see test_server_durable)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port, option_texts, wait_healthy

from beliefagent.adapters import StubServer
from beliefagent.trajectories import read_trajectories

_RUN = "import typer; from beliefagent.server import serve_command; typer.run(serve_command)"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_sessions_and_flushes_the_log(tmp_path: Path, signum: int) -> None:
    log = tmp_path / "serve.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rounds = option_texts(seed=11, rounds=2)
    with StubServer(lambda _m: "The best option is Flight 3.") as stub:
        argv = [sys.executable, "-c", _RUN, "--upstream", stub.base_url]
        argv += ["--upstream-model", stub.model, "--log", str(log), "--port", str(port)]
        argv += ["--log-level", "warning", "--session-store", "memory"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-upstream"}
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            wait_healthy(url, proc, timeout=60)
            for sid in ("a", "b"):
                for r, options in enumerate(rounds):
                    ext = {"session_id": sid, "options": options, **({"choice": 2} if r else {})}
                    body = {"model": stub.model, "messages": [], "beliefagent": ext}
                    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
                    assert response.status_code == 200, response.text
            proc.send_signal(signum)
            # uvicorn shuts down gracefully, then re-raises the signal to its old handler
            assert proc.wait(timeout=30) in (0, -signum, 128 + signum, 1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert stub.requests[0]["model"] == stub.model
    read = read_trajectories(log)
    assert read.clean
    ends = [r for r in read.records if r.kind == "session_end"]
    assert sorted(e.session_id for e in ends) == ["a", "b"]
    assert all(e.reason == "server_shutdown" and e.rounds == 1 for e in ends)
    turns = [r for r in read.records if r.kind == "turn"]
    assert sorted((t.session_id, t.round, t.user_choice) for t in turns) == [
        ("a", 0, 2),
        ("b", 0, 2),
    ]
