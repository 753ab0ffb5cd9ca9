"""Token streaming from a :class:`~beliefagent.adapters.local.LocalBackend`.

:class:`TokenStream` runs ``generate`` in a thread with a streamer that hands each new token
to the consumer through a queue; iterating the stream yields text pieces as soon as they
decode to whole characters (a token that ends inside a multi-byte character waits for the
next one). Stop strings are honoured: text from the first stop string on is never yielded
(the last ``len(stop) - 1`` characters are held back until they cannot start one). Closing the
stream early (a client that went away) stops the generation at the next token.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from beliefagent.adapters.base import GenerationSettings, Message, Reply
from beliefagent.errors import BackendError

if TYPE_CHECKING:
    from beliefagent.adapters.local import LocalBackend

__all__ = ["TokenStream"]

_DONE = object()


class _QueueStreamer:
    """What ``generate(streamer=...)`` calls: ``put`` with the prompt first, then each new
    token; ``end`` once."""

    def __init__(self, out: queue.Queue[Any]) -> None:
        self.out = out
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.out.put([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        return None


class _Cancel:
    """A stopping criterion that ends generation once the stream is closed."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool)


class TokenStream:
    """Text pieces of one reply as the model generates them; :attr:`reply` once done."""

    def __init__(
        self, backend: LocalBackend, messages: Sequence[Message], settings: GenerationSettings
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.reply: Reply | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancel = threading.Event()
        self._start = time.perf_counter()
        prompt = backend._render(list(messages), add_generation_prompt=True)
        self._prompt_ids = backend._encode(prompt)
        self._thread = threading.Thread(target=self._run, name="local-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import torch
        from transformers import StoppingCriteriaList

        try:
            with self.backend._lock, torch.inference_mode():
                generated = self.backend._generate(
                    self._prompt_ids,
                    self.settings,
                    streamer=_QueueStreamer(self._queue),
                    stopping_criteria=StoppingCriteriaList([_Cancel(self._cancel)]),
                )
            self._queue.put((_DONE, generated))
        except Exception as exc:
            self._queue.put((_DONE, exc))

    def close(self) -> None:
        """Stop generating (the consumer went away)."""
        self._cancel.set()

    def _text(self, ids: list[int]) -> tuple[str, bool]:
        """The decoded text of ``ids`` (end-of-sequence dropped) cut at a stop string, and
        whether a stop string was found."""
        eos = self.backend._eos_ids()
        content = ids[:-1] if ids and ids[-1] in eos else ids
        text = self.backend.tokenizer.decode(content, skip_special_tokens=True)
        cut = min((i for s in self.settings.stop if (i := text.find(s)) >= 0), default=-1)
        return (text[:cut], True) if cut >= 0 else (text, False)

    def __iter__(self) -> Iterator[str]:
        ids: list[int] = []
        sent = 0
        hold = max((len(s) - 1 for s in self.settings.stop), default=0)
        while True:
            item = self._queue.get()
            if isinstance(item, tuple) and item[0] is _DONE:
                break
            ids.extend(item)
            text, stopped = self._text(ids)
            safe = len(text) if stopped else len(text) - hold
            while safe > sent and text[safe - 1] == "\ufffd":  # inside a multi-byte character
                safe -= 1
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        result = item[1]
        if isinstance(result, Exception):
            raise BackendError(f"local generation failed: {result}") from result
        generated: list[int] = result
        text, stopped = self._text(generated)
        if len(text) > sent:
            yield text[sent:]
        finish = "length" if len(generated) >= self.settings.max_tokens else "stop"
        if stopped or (generated and generated[-1] in self.backend._eos_ids()):
            finish = "stop"
        self.reply = Reply(
            text=text,
            model=self.backend.model,
            finish_reason=finish,
            prompt_tokens=len(self._prompt_ids),
            completion_tokens=len(generated),
            latency_s=time.perf_counter() - self._start,
        )
