"""``beliefagent serve``: an OpenAI-compatible server that keeps an exact Bayesian belief per
session in front of any upstream (an OpenAI-compatible URL, vLLM with LoRA adapters, or the
local default model).

=============================  ===================================================
:func:`create_app`             the starlette app over a :class:`ModelRegistry`
:class:`ServerConfig`          auth keys, limits, session defaults
:class:`ModelRegistry`         model routes (base first, tuned after) and the canary
:class:`HTTPUpstream`          pass-through to an OpenAI-compatible URL
:class:`LocalUpstream`         the in-process model
:func:`serve_command`          the typer command (``beliefagent serve``)
=============================  ===================================================

Needs the ``server`` extra (starlette, uvicorn) and, for HTTP upstreams, ``openai``; they are
imported on first use of a name here, so ``from beliefagent.server.command import
serve_command`` is cheap and works without them until the command runs. See ``docs/serve.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beliefagent.server.app import ServerConfig, create_app
    from beliefagent.server.command import build_registry, serve_command
    from beliefagent.server.sessions import EXTENSION_FIELD
    from beliefagent.server.upstream import (
        Canary,
        HTTPUpstream,
        LocalUpstream,
        ModelRegistry,
        ModelRoute,
    )

_WHERE = {
    "EXTENSION_FIELD": "sessions",
    "Canary": "upstream",
    "HTTPUpstream": "upstream",
    "LocalUpstream": "upstream",
    "ModelRegistry": "upstream",
    "ModelRoute": "upstream",
    "ServerConfig": "app",
    "build_registry": "command",
    "create_app": "app",
    "serve_command": "command",
}

__all__ = [
    "EXTENSION_FIELD",
    "Canary",
    "HTTPUpstream",
    "LocalUpstream",
    "ModelRegistry",
    "ModelRoute",
    "ServerConfig",
    "build_registry",
    "create_app",
    "serve_command",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'beliefagent.server' has no attribute {name!r}")
    return getattr(import_module(f"beliefagent.server.{module}"), name)
