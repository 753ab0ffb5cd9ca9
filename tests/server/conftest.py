"""Fixtures for the server tests: a StubServer upstream and a beliefagent server in front."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from server_helpers import ANSWER

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
