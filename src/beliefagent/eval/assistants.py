"""Assistant specs: the names ``beliefagent eval --assistant`` takes, and what each one runs.

==========================  ==================================================================
``bayes``                   the Bayesian teacher (the paper's Bayesian Assistant)
``random``                  a uniformly random answer (seeded per user)
``oracle``                  knows the user's true reward: the ceiling
``local``                   the bundled SmolLM2 in process (:class:`LocalBackend`)
``local+lora:PATH``         the bundled model with a LoRA adapter folder on top
``openai:MODEL@URL``        any OpenAI-compatible endpoint (``openai:MODEL`` for OpenAI itself)
``vllm:ADAPTER@URL``        a LoRA adapter served by vLLM, addressed by name
==========================  ==================================================================

An LLM spec may end in ``#POLICY`` (``local#guard``, ``openai:gpt-4.1-mini@URL#hint``): the
model then answers through that middleware policy (see :mod:`beliefagent.middleware.policies`),
so the policies can be compared with plain models without any training.

:class:`Predictor` turns a backend into answers for a batch of queries that follow one history:
with :class:`LocalBackend` through ``score_queries`` (one pass over the history, its KV cache
shared by the queries), else one ``complete`` per query, reading the label distribution when the
backend scores and parsing the text otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from beliefagent.adapters.base import Backend, GenerationSettings, Message
from beliefagent.errors import BackendError, ConfigError
from beliefagent.middleware.policies import POLICIES

__all__ = [
    "Answer",
    "AssistantSpec",
    "Predictor",
    "TokenTally",
    "build_backend",
    "parse_assistant",
]

logger = logging.getLogger(__name__)

AssistantKind = Literal["bayes", "random", "oracle", "local", "openai", "vllm", "custom"]
BUILTIN = ("bayes", "random", "oracle")


@dataclass(frozen=True)
class AssistantSpec:
    """A parsed ``--assistant`` value. ``name`` is the spec exactly as given."""

    name: str
    kind: AssistantKind
    model: str | None = None
    base_url: str | None = None
    adapter: str | None = None
    policy: str = "llm"

    @property
    def is_llm(self) -> bool:
        return self.kind not in BUILTIN

    @property
    def asks_llm(self) -> bool:
        """Whether the backend is queried at all (``#bayes`` lets the teacher answer alone)."""
        return self.is_llm and self.policy != "bayes"

    @property
    def remote(self) -> bool:
        """Whether requests go over the network (and may run concurrently)."""
        return self.kind in ("openai", "vllm")


def _split_url(rest: str, spec: str) -> tuple[str, str | None]:
    head, at, url = rest.rpartition("@")
    if at and url.startswith(("http://", "https://")):
        if not head:
            raise ConfigError("missing the model name before '@'", field="assistant", value=spec)
        return head, url
    return rest, None


def _builtin(base: str) -> Literal["random", "oracle"]:
    return "random" if base == "random" else "oracle"


def parse_assistant(spec: str, custom: Sequence[str] = ()) -> AssistantSpec:
    """Parse an assistant spec (see the module docstring). Names in ``custom`` stand for
    backends the caller passes in (e.g. a :class:`ScriptedBackend` in tests)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("must be a non-empty string", field="assistant", value=spec)
    base, hash_, policy = spec.rpartition("#")
    if not hash_:
        base, policy = spec, "llm"
    elif policy not in POLICIES:
        raise ConfigError(
            f"unknown policy after '#' (one of {', '.join(POLICIES)})",
            field="assistant",
            value=spec,
        )
    if base in ("bayes", "random", "oracle"):
        if hash_:
            raise ConfigError(
                f"'{base}' is not an LLM; a #policy suffix needs an LLM assistant",
                field="assistant",
                value=spec,
            )
        return AssistantSpec(spec, "bayes" if base == "bayes" else _builtin(base))
    if base in custom:
        return AssistantSpec(spec, "custom", model=base, policy=policy)
    if base == "local":
        return AssistantSpec(spec, "local", policy=policy)
    if base.startswith("local+lora:"):
        path = base.removeprefix("local+lora:")
        if not path:
            raise ConfigError("local+lora: needs an adapter path", field="assistant", value=spec)
        return AssistantSpec(spec, "local", adapter=path, policy=policy)
    remote: tuple[Literal["openai", "vllm"], ...] = ("openai", "vllm")
    for kind in remote:
        if base.startswith(kind + ":"):
            model, url = _split_url(base.removeprefix(kind + ":"), spec)
            if not model:
                raise ConfigError(f"{kind}: needs a model name", field="assistant", value=spec)
            if kind == "vllm" and url is None:
                raise ConfigError(
                    "vllm:ADAPTER@URL needs the server URL", field="assistant", value=spec
                )
            return AssistantSpec(
                spec,
                kind,
                model=model,
                base_url=url,
                adapter=model if kind == "vllm" else None,
                policy=policy,
            )
    raise ConfigError(
        "unknown assistant (bayes, random, oracle, local, local+lora:PATH, openai:MODEL@URL, "
        "vllm:ADAPTER@URL; optional #llm|#hint|#guard|#bayes)",
        field="assistant",
        value=spec,
    )


def build_backend(
    spec: AssistantSpec,
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 60.0,
    custom: Mapping[str, Backend] | None = None,
    local_cache: dict[str | None, Backend] | None = None,
) -> Backend:
    """The backend an LLM spec names. ``local_cache`` shares one loaded local model between
    specs with the same adapter (``local`` and ``local#guard`` load it once)."""
    if spec.kind == "custom":
        assert custom is not None and spec.model is not None
        return custom[spec.model]
    if spec.kind == "local":
        if local_cache is not None and spec.adapter in local_cache:
            return local_cache[spec.adapter]
        from beliefagent.adapters import LocalBackend

        backend: Backend = LocalBackend(adapter_path=spec.adapter, name=spec.name)
        if local_cache is not None:
            local_cache[spec.adapter] = backend
        return backend
    if spec.kind in ("openai", "vllm"):
        from beliefagent.adapters import OpenAICompatibleBackend, RetryingBackend

        assert spec.model is not None
        inner = OpenAICompatibleBackend(
            spec.model,
            base_url=spec.base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            name=spec.kind,
            adapter=spec.adapter,
        )
        # RetryingBackend forwards name/model/adapter as read-only properties, which the
        # Backend protocol (plain attributes) does not accept structurally.
        return cast(Backend, RetryingBackend(inner))
    raise ConfigError("not an LLM assistant", field="assistant", value=spec.name)


@dataclass
class Answer:
    """One answer to one query: ``choice`` 0-based (``None`` when invalid) and, when the
    backend scores, ``distribution`` over the labels ``(n_labels,)``."""

    choice: int | None
    distribution: list[float] | None = None
    text: str | None = None
    error: str | None = None


@dataclass
class TokenTally:
    """Tokens, requests and seconds spent, accumulated per dialogue."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, prompt: int | None, completion: int | None, latency: float) -> None:
        with self._lock:
            self.prompt_tokens += prompt or 0
            self.completion_tokens += completion or 0
            self.requests += 1
            self.latency_s += latency


def _distribution(scores: Mapping[str, float] | None, labels: Sequence[str]) -> list[float] | None:
    if not scores:
        return None
    logp = np.array([scores.get(lb, -math.inf) for lb in labels], dtype=np.float64)  # (L,)
    if not np.isfinite(logp).any():
        return None
    p = np.exp(logp - logp.max())
    return [float(v) for v in p / p.sum()]


class Predictor:
    """Answers queries that follow one history with one backend.

    ``parse(text) -> int | None`` reads a 0-based label from generated text; ``labels`` are the
    candidates scored after ``answer_prefix``. With ``score=True`` (default) a backend that
    offers ``score_queries`` (the local model) answers by label scoring alone, without
    generating; others generate, with the label scores requested too.
    """

    def __init__(
        self,
        backend: Backend,
        labels: Sequence[str],
        answer_prefix: str,
        parse: Callable[[str], int | None],
        *,
        max_tokens: int = 24,
        timeout_s: float = 60.0,
        score: bool = True,
    ) -> None:
        self.backend = backend
        self.labels = list(labels)
        self.parse = parse
        self.answer_prefix = answer_prefix
        self.settings = GenerationSettings(
            max_tokens=max_tokens,
            timeout_s=timeout_s,
            candidates=tuple(self.labels),
            answer_prefix=answer_prefix,
        )
        scorer: Any = getattr(backend, "score_queries", None)
        self._score_queries = scorer if score and callable(scorer) else None

    def predict(
        self, history: Sequence[Message], queries: Sequence[Sequence[Message]], tally: TokenTally
    ) -> list[Answer]:
        """One :class:`Answer` per query (``history + query`` is the conversation)."""
        if not queries:
            return []
        if self._score_queries is not None:
            start = time.perf_counter()
            rows = self._score_queries(history, queries, self.labels, self.answer_prefix)
            out = []
            for row in rows:
                dist = _distribution(row, self.labels)
                choice = int(np.argmax(dist)) if dist is not None else None
                out.append(Answer(choice, dist))
            tally.add(None, None, time.perf_counter() - start)
            return out
        return [self._complete([*history, *query], tally) for query in queries]

    def _complete(self, messages: list[Message], tally: TokenTally) -> Answer:
        try:
            reply = self.backend.complete(messages, self.settings)
        except BackendError as exc:
            logger.warning("%s: request failed: %s", getattr(self.backend, "name", "?"), exc)
            tally.add(None, None, 0.0)
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        tally.add(reply.prompt_tokens, reply.completion_tokens, reply.latency_s)
        dist = _distribution(reply.candidate_logprobs, self.labels)
        if dist is not None:
            return Answer(int(np.argmax(dist)), dist, reply.text)
        return Answer(self.parse(reply.text), None, reply.text)
