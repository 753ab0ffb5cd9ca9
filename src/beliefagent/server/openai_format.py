"""OpenAI chat-completion payloads: whole completions, and the same text as server-sent events
(``data: {chunk}\\n\\n`` lines ending with ``data: [DONE]``), plus the request fields the local
model honours."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from beliefagent.adapters.base import GenerationSettings
from beliefagent.errors import InputError

__all__ = [
    "chunk_encoder",
    "chunk_text",
    "completion_payload",
    "settings_from_body",
    "sse_events",
    "usage_payload",
]

_PIECES = re.compile(r"\s*\S+|\s+")


def chunk_text(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split ``text`` into pieces that join back to it: each word with its leading spaces."""
    words = _PIECES.findall(text)
    n = max(1, words_per_chunk)
    return ["".join(words[i : i + n]) for i in range(0, len(words), n)]


def usage_payload(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    p, c = prompt_tokens or 0, completion_tokens or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _ident() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def chunk_encoder(model: str, *, include_usage: bool) -> Callable[..., bytes]:
    """``event(choices, **fields) -> bytes``: one ``chat.completion.chunk`` SSE event of a
    stream (one id and creation time for the whole stream; ``usage: null`` on every chunk when
    the client asked for a usage chunk, as OpenAI does)."""
    ident, created = _ident(), int(time.time())

    def event(choices: list[dict[str, Any]], **fields: Any) -> bytes:
        payload: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = None
        payload.update(fields)
        return f"data: {json.dumps(payload)}\n\n".encode()

    return event


def completion_payload(
    model: str,
    text: str,
    *,
    finish_reason: str | None = "stop",
    usage: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object; ``extra`` adds top-level fields (the extension object)."""
    payload: dict[str, Any] = {
        "id": _ident(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": dict(usage) if usage is not None else usage_payload(None, None),
    }
    payload.update(extra or {})
    return payload


def sse_events(
    model: str,
    text: str,
    *,
    finish_reason: str | None = "stop",
    usage: Mapping[str, int] | None = None,
    include_usage: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[bytes]:
    """``text`` as ``chat.completion.chunk`` events: a role chunk, one chunk per word, a
    finish chunk carrying ``extra`` as top-level fields, a usage chunk when asked, ``[DONE]``."""
    event = chunk_encoder(model, include_usage=include_usage)

    yield event(
        [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    )
    for piece in chunk_text(text):
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": finish_reason}], **dict(extra or {}))
    if include_usage:
        yield event([], usage=dict(usage) if usage is not None else usage_payload(None, None))
    yield b"data: [DONE]\n\n"


def _int_field(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError("must be an int >= 1", field=name, value=value)
    return value


def settings_from_body(body: Mapping[str, Any], default_max_tokens: int) -> GenerationSettings:
    """Generation settings from an OpenAI request: ``max_completion_tokens`` or ``max_tokens``
    (default ``default_max_tokens``), ``temperature`` (default 0: greedy), ``seed``, ``stop``.
    ``n`` other than 1 is refused; other fields are ignored."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InputError("the local model answers with one choice (n=1)", field="n", value=n)
    max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
    temperature = body.get("temperature")
    if temperature is None:
        temperature = 0.0
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise InputError("must be a number", field="temperature", value=temperature)
    stop = body.get("stop")
    stops: tuple[str, ...]
    if stop is None:
        stops = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise InputError("must be a string or a list of strings", field="stop", value=stop)
    return GenerationSettings(
        max_tokens=max_tokens or default_max_tokens,
        temperature=float(temperature),
        seed=body.get("seed"),
        stop=stops,
    )
