"""Server-sent events from a model that streams tokens (the local model's
:class:`~beliefagent.adapters.local_stream.TokenStream`): each piece goes out as a
``chat.completion.chunk`` as soon as the model produced it, the same event sequence as
:func:`~beliefagent.server.openai_format.sse_events` (role chunk, content chunks, finish
chunk, usage chunk when asked, ``[DONE]``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.concurrency import iterate_in_threadpool

from beliefagent.adapters.local_stream import TokenStream
from beliefagent.server.openai_format import chunk_encoder, usage_payload

__all__ = ["token_events"]


async def token_events(
    model: str, stream: TokenStream, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """The SSE body for ``stream``; closing it early (client gone) stops the generation."""
    event = chunk_encoder(model, include_usage=include_usage)

    try:
        yield event(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
        async for piece in iterate_in_threadpool(iter(stream)):
            yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        reply = stream.reply
        assert reply is not None
        yield event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if include_usage:
            yield event([], usage=usage_payload(reply.prompt_tokens, reply.completion_tokens))
        yield b"data: [DONE]\n\n"
    finally:
        stream.close()
