"""Helpers for the server tests: run an app with uvicorn on a loopback port in a thread, build
option sets, and small in-process backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from beliefagent.adapters import GenerationSettings, Message, Reply, StubServer
from beliefagent.domains import load_domain
from beliefagent.server import Canary, HTTPUpstream, ModelRegistry, ModelRoute
from beliefagent.teachers import BayesianTeacher

FLIGHT = load_domain("flight")
ANSWER = "The best option is Flight 2."


def option_texts(seed: int = 0, rounds: int = 5) -> list[list[str]]:
    """``rounds`` rendered flight option sets (without the "Flight N:" labels)."""
    sets = FLIGHT.random_option_sets(np.random.default_rng(seed), rounds)
    return [[t.split(": ", 1)[1] for t in FLIGHT.render_options(s)] for s in sets]


def option_values(seed: int = 0) -> list[dict[str, str]]:
    """One option set as ``{feature: value}`` objects."""
    (levels,) = FLIGHT.random_option_sets(np.random.default_rng(seed), 1)
    return [FLIGHT.feature_values(row) for row in levels]


class FnBackend:
    """A minimal in-process backend (unlike ScriptedBackend, calls are not serialised)."""

    def __init__(
        self,
        fn: Callable[[Sequence[Message]], str],
        *,
        name: str = "fn",
        model: str = "fn-model",
        adapter: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.model = model
        self.adapter = adapter

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        return Reply(text=self.fn(messages), model=self.model, finish_reason="stop")


def stub_registry(
    stub: StubServer,
    *,
    tuned: tuple[str, ...] = ("tuned",),
    canary: Canary | None = None,
    timeout_s: float = 10.0,
    retries: int = 0,
) -> ModelRegistry:
    """Routes for ``stub``: its model as the base, ``tuned`` as adapters it serves by name."""
    http = HTTPUpstream(stub.base_url, timeout_s=timeout_s)
    routes = [ModelRoute(stub.model, http, http.backend(stub.model, retries=retries))]
    for name in tuned:
        backend = http.backend(stub.model, adapter=name, retries=retries)
        routes.append(ModelRoute(name, http, backend, parent=stub.model))
    return ModelRegistry(routes, canary=canary)


RUN_SERVE = "import typer; from beliefagent.server import serve_command; typer.run(serve_command)"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Wait until ``url/health`` answers 200 (fails if ``proc`` exits first)."""
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


def start_serve(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``beliefagent serve ARGS --port PORT`` as a process, once healthy."""
    argv = [sys.executable, "-c", RUN_SERVE, *args, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# --- playing sessions through a server (durable and Redis tests) -----------------------------
ROUNDS = option_texts(seed=21, rounds=6)


def play_choice(sid: str, r: int) -> int:
    return (sum(map(ord, sid)) + 2 * r) % 3


def turn_body(model: str, sid: str, r: int, *, choice: bool = True) -> dict[str, Any]:
    ext: dict[str, Any] = {"session_id": sid, "options": ROUNDS[r]}
    if r and choice:
        ext["choice"] = play_choice(sid, r - 1)
    return {"model": model, "messages": [], "beliefagent": ext}


def play_turn(url: str, model: str, sid: str, r: int, **headers: str) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/v1/chat/completions", json=turn_body(model, sid, r), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    ext = response.json()["beliefagent"]
    assert ext["round"] == r
    return ext


def belief_of(ext: dict[str, Any]) -> tuple[Any, ...]:
    return (ext["round"], ext["entropy"], ext["n_alive"], tuple(ext["bayes_distribution"]))


def reference_beliefs(sid: str, rounds: int) -> list[tuple[Any, ...]]:
    """The belief each round shows, computed by the teacher alone."""
    teacher = BayesianTeacher(FLIGHT)
    out = []
    for r in range(rounds):
        levels = FLIGHT.parse_option_set(ROUNDS[r])
        rec = teacher.recommend(levels)
        s = teacher.summary()
        out.append((r, s.entropy, s.n_alive, tuple(rec.predictive)))
        teacher.observe(levels, play_choice(sid, r))
    return out
