"""Backends: the one-method protocol (``complete(messages, settings) -> Reply``) and its
implementations.

=============================  ===================================================
:class:`Backend`               the protocol; :class:`WrapperBackend` for middleware
:class:`RetryingBackend`       backoff with full jitter around any backend
:class:`ScriptedBackend`       a test double for users' own tests
:class:`OpenAICompatibleBackend`  OpenAI, vLLM (LoRA adapters by name), any compatible server
:class:`LocalBackend`          transformers in process (the embedded SmolLM2 by default)
:class:`StubServer`            a real OpenAI-compatible HTTP server on loopback, for tests
=============================  ===================================================

Importing this package needs none of the optional dependencies: ``openai`` is imported when an
:class:`OpenAICompatibleBackend` is built, torch and transformers when a :class:`LocalBackend`
is.
"""

from __future__ import annotations

from beliefagent.adapters.base import (
    Backend,
    GenerationSettings,
    Message,
    Reply,
    WrapperBackend,
    validate_messages,
)
from beliefagent.adapters.local import LocalBackend
from beliefagent.adapters.models import load_model
from beliefagent.adapters.openai_compat import OpenAICompatibleBackend
from beliefagent.adapters.retry import RetryingBackend
from beliefagent.adapters.scripted import ScriptedBackend
from beliefagent.adapters.stub_server import StubCompletion, StubHTTPError, StubServer

__all__ = [
    "Backend",
    "GenerationSettings",
    "LocalBackend",
    "Message",
    "OpenAICompatibleBackend",
    "Reply",
    "RetryingBackend",
    "ScriptedBackend",
    "StubCompletion",
    "StubHTTPError",
    "StubServer",
    "WrapperBackend",
    "load_model",
    "validate_messages",
]
