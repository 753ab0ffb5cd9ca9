"""OpenAI-format payloads for the adapter tests (chat completions, token logprobs)."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "sk-test-SECRET-0123456789abcdef"


def chat_completion(
    text: str = "Flight 2",
    *,
    logprobs: list[dict[str, Any]] | None = None,
    choices: list[dict[str, Any]] | None = None,
    usage: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An OpenAI chat.completion body (``extra`` adds top-level fields, e.g. vLLM's)."""
    if choices is None:
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None if logprobs is None else {"content": logprobs},
                "finish_reason": "stop",
            }
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "test-model",
        "choices": choices,
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        **extra,
    }


def token(tok: str, logprob: float, top: dict[str, float] | None = None) -> dict[str, Any]:
    """One entry of ``logprobs.content``; ``top`` defaults to the token alone."""
    alts = top if top is not None else {tok: logprob}
    return {
        "token": tok,
        "logprob": logprob,
        "bytes": list(tok.encode()),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts.items()
        ],
    }
