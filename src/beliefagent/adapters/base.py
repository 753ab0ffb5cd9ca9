"""The one-method backend protocol: ``complete(messages, settings) -> Reply``.

Every LLM beliefagent talks to (an OpenAI-compatible endpoint, vLLM with LoRA adapters, a
transformers model in process, a scripted test double) is a :class:`Backend`. Retries, logging
and belief tracking wrap a backend and are backends themselves (see :class:`WrapperBackend`).

Label scoring. When ``settings.candidates`` is non-empty, a backend that can score returns
``Reply.candidate_logprobs``: for each candidate string, the log-probability that the assistant's
answer is that string (for the recommendation task the candidates are option labels such as
``"1"``, ``"2"``, ``"3"``). A backend that cannot score leaves it ``None`` and the caller falls
back to parsing ``Reply.text``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from beliefagent.errors import ConfigError, InputError

__all__ = [
    "Backend",
    "GenerationSettings",
    "Message",
    "Reply",
    "WrapperBackend",
    "validate_messages",
]

Message = dict[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

_ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate one reply. Invalid values raise :class:`ConfigError` naming the field.

    Attributes:
        max_tokens: most tokens to generate (>= 1).
        temperature: 0 means greedy decoding (>= 0).
        seed: sampling seed for backends that support one; ``None`` for none.
        stop: strings at which generation stops; the stop string is not part of the reply.
        timeout_s: seconds a backend may take for one request (> 0).
        candidates: answers to score; when non-empty, a backend that can score fills
            ``Reply.candidate_logprobs`` (see the module docstring).
        answer_prefix: the fixed text every answer starts with ("The best option is Flight ");
            a backend that scores by forward pass scores the candidates after it, one that
            reads log-probabilities off generated tokens may ignore it.
    """

    max_tokens: int = 32
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    timeout_s: float = 60.0
    candidates: tuple[str, ...] = ()
    answer_prefix: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise ConfigError("must be an int", field="max_tokens", value=self.max_tokens)
        if self.max_tokens < 1:
            raise ConfigError("must be >= 1", field="max_tokens", value=self.max_tokens)
        if not _is_real(self.temperature) or not math.isfinite(self.temperature):
            raise ConfigError(
                "must be a finite number", field="temperature", value=self.temperature
            )
        if self.temperature < 0:
            raise ConfigError("must be >= 0", field="temperature", value=self.temperature)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError("must be an int or None", field="seed", value=self.seed)
        if not _is_real(self.timeout_s) or not self.timeout_s > 0:
            raise ConfigError("must be a number > 0", field="timeout_s", value=self.timeout_s)
        _check_strings(self.stop, "stop")
        _check_strings(self.candidates, "candidates")
        if len(set(self.candidates)) != len(self.candidates):
            raise ConfigError("must not repeat", field="candidates", value=self.candidates)
        if not isinstance(self.answer_prefix, str):
            raise ConfigError("must be a string", field="answer_prefix", value=self.answer_prefix)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_strings(values: object, name: str) -> None:
    if not isinstance(values, tuple):
        raise ConfigError("must be a tuple of strings", field=name, value=values)
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item:
            raise ConfigError("must be a non-empty string", field=f"{name}[{i}]", value=item)


@dataclass
class Reply:
    """What a backend answered.

    Attributes:
        text: the assistant's reply (stop strings removed).
        model: the model that answered, as the backend reports it.
        finish_reason: ``"stop"``, ``"length"``, or whatever the server said; ``None`` if unknown.
        prompt_tokens, completion_tokens: token counts when the backend reports them.
        latency_s: wall-clock seconds the request took.
        candidate_logprobs: ``{candidate: log-probability}`` when candidates were requested and
            the backend can score them, else ``None``.
    """

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    candidate_logprobs: dict[str, float] | None = field(default=None)


@runtime_checkable
class Backend(Protocol):
    """An LLM that answers a chat: one method, :meth:`complete`.

    Attributes (read-only as far as the protocol is concerned, so both plain attributes and
    properties satisfy it):
        name: a short label for logs and reports (e.g. ``"openai"``, ``"local"``).
        model: the model identifier (API model name or local path).
        adapter: the LoRA adapter in use (name or path), ``None`` for the base model.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def adapter(self) -> str | None: ...

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """Answer ``messages``; raise a :class:`~beliefagent.errors.BackendError` on failure."""
        ...


class WrapperBackend:
    """Base for backends that wrap another one (retries, logging, belief tracking).

    Forwards ``name``, ``model``, ``adapter`` and ``prompt_style`` (the dialogue rendering a
    tuned model expects; ``"paper"`` when the wrapped backend has none) to the wrapped backend
    and, by default, ``complete`` too; subclasses override :meth:`complete`.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def adapter(self) -> str | None:
        return self.inner.adapter

    @property
    def prompt_style(self) -> str:
        return str(getattr(self.inner, "prompt_style", "paper"))

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """Delegate to the wrapped backend."""
        return self.inner.complete(messages, settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def validate_messages(messages: Sequence[Message]) -> list[Message]:
    """Check that ``messages`` is a non-empty list of ``{"role", "content"}`` string dicts.

    Returns a plain list of plain dicts (a copy). Raises :class:`InputError` naming the first
    offending message field.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InputError("must be a sequence of messages", field="messages", value=messages)
    if not messages:
        raise InputError("must contain at least one message", field="messages", value=messages)
    out: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputError("must be a dict", field=f"messages[{i}]", value=message)
        role = message.get("role")
        content = message.get("content")
        if role not in _ROLES:
            raise InputError(
                f"must be one of {sorted(_ROLES)}", field=f"messages[{i}].role", value=role
            )
        if not isinstance(content, str):
            raise InputError("must be a string", field=f"messages[{i}].content", value=content)
        out.append({"role": role, "content": content})
    return out
