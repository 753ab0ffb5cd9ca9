"""``serve`` as a process: SIGTERM and SIGINT flush the log and, with the in-process session
store, close the open sessions (a durable store keeps them open: see test_server_durable)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import option_texts

from beliefagent.adapters import StubServer
from beliefagent.trajectories import read_trajectories

_RUN = "import typer; from beliefagent.server import serve_command; typer.run(serve_command)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_sessions_and_flushes_the_log(tmp_path: Path, signum: int) -> None:
    log = tmp_path / "serve.jsonl"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    rounds = option_texts(seed=11, rounds=2)
    with StubServer(lambda _m: "The best option is Flight 3.") as stub:
        argv = [sys.executable, "-c", _RUN, "--upstream", stub.base_url]
        argv += ["--upstream-model", stub.model, "--log", str(log), "--port", str(port)]
        argv += ["--log-level", "warning", "--session-store", "memory"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-upstream"}
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            _wait_healthy(url, proc)
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
