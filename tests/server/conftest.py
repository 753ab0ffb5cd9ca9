"""Fixtures for the server tests: a StubServer upstream and a beliefagent server in front."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from server_helpers import ANSWER, free_port

from beliefagent.adapters import StubServer
from beliefagent.server import ModelRegistry, ServerConfig, create_app
from beliefagent.server.background import serving
from beliefagent.trajectories import TrajectoryWriter


@pytest.fixture
def stub() -> Iterator[StubServer]:
    """A stub upstream that always answers ``"The best option is Flight 2."``."""
    with StubServer(lambda _messages: ANSWER) as server:
        yield server


ServeFn = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def serve(tmp_path: Any) -> ServeFn:
    """``serve(registry, log=path, **config)``: a context manager yielding the server URL."""

    def make(registry: ModelRegistry, *, log: Any = None, **config: Any) -> Any:
        writer = TrajectoryWriter(log, fsync=False) if log is not None else None
        app = create_app(registry, ServerConfig(**config), log=writer)
        return serving(app)

    return make


@pytest.fixture
def redis_url(tmp_path: Any) -> Iterator[str]:
    """A real ``redis-server`` on a free loopback port (Debian's ``redis-server`` package, which
    ``.ci/run`` installs); skips where the binary or the ``redis`` client is missing."""
    pytest.importorskip("redis", reason="the redis client is not installed (the redis extra)")
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start: {proc.stderr}") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
