"""Fixtures for the adapter tests: an OpenAI-compatible backend over mocked HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from adapter_payloads import SECRET_KEY

Handler = Callable[[Any], Any]


@pytest.fixture
def mock_backend() -> Callable[..., Any]:
    """``mock_backend(handler, **kwargs)``: an OpenAICompatibleBackend whose HTTP goes to
    ``handler(Request) -> Response`` (never a network; httpx2's types for openai 3.x, httpx's
    before)."""
    pytest.importorskip("openai")
    from beliefagent.adapters.openai_compat import OpenAICompatibleBackend, openai_http_module

    hx = openai_http_module()  # httpx2 for openai 3.x, httpx before

    def make(handler: Handler, **kwargs: Any) -> OpenAICompatibleBackend:
        client = hx.Client(transport=hx.MockTransport(handler))
        kwargs.setdefault("api_key", SECRET_KEY)
        return OpenAICompatibleBackend(
            kwargs.pop("model", "test-model"),
            base_url="http://mock.invalid/v1",
            http_client=client,
            **kwargs,
        )

    return make
