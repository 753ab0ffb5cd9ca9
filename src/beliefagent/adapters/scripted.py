"""A scripted backend: a test double shipped in the library for users' own tests.

>>> backend = ScriptedBackend(lambda messages: "Flight 2")
>>> backend.complete([{"role": "user", "content": "Which?"}], GenerationSettings()).text
'Flight 2'
>>> cycling = ScriptedBackend.from_replies(["1", "2"])
>>> [cycling.complete([{"role": "user", "content": "?"}], GenerationSettings()).text
...  for _ in range(3)]
['1', '2', '1']
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from beliefagent.adapters.base import GenerationSettings, Message, Reply, validate_messages
from beliefagent.errors import ConfigError

__all__ = ["ScriptedBackend"]

ScriptFn = Callable[[list[Message]], "str | Reply"]


class ScriptedBackend:
    """A backend whose replies come from ``fn(messages)`` (a ``str`` or a full :class:`Reply`).

    Every call is recorded in :attr:`calls` as ``(messages, settings)``. Stop strings in
    ``settings.stop`` cut a ``str`` reply as a real server would. Candidate scores are whatever a
    returned :class:`Reply` carries; a ``str`` reply gives ``candidate_logprobs=None``.
    An exception raised by ``fn`` propagates unchanged, so a script can simulate failures by
    raising :class:`~beliefagent.errors.BackendError` subclasses.
    """

    def __init__(
        self,
        fn: ScriptFn,
        *,
        name: str = "scripted",
        model: str = "scripted",
        adapter: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError("must be callable", field="fn", value=fn)
        self.fn = fn
        self.name = name
        self.model = model
        self.adapter = adapter
        self.calls: list[tuple[list[Message], GenerationSettings]] = []
        self._lock = threading.Lock()

    @classmethod
    def from_replies(
        cls,
        replies: Iterable[str | Reply],
        *,
        cycle: bool = True,
        name: str = "scripted",
        model: str = "scripted",
        adapter: str | None = None,
    ) -> ScriptedBackend:
        """A backend that answers with ``replies`` in order, starting over when they run out
        (``cycle=True``) or raising :class:`ConfigError` then (``cycle=False``)."""
        items = list(replies)
        if not items:
            raise ConfigError("must contain at least one reply", field="replies", value=items)
        source = itertools.cycle(items) if cycle else iter(items)

        def next_reply(_messages: list[Message]) -> str | Reply:
            try:
                return next(source)
            except StopIteration:
                raise ConfigError(
                    f"all {len(items)} scripted replies were used", field="replies", value=items
                ) from None

        return cls(next_reply, name=name, model=model, adapter=adapter)

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """Return the scripted reply for ``messages``."""
        checked = validate_messages(messages)
        start = time.perf_counter()
        with self._lock:
            self.calls.append((checked, settings))
            out = self.fn([dict(m) for m in checked])
        latency = time.perf_counter() - start
        if isinstance(out, Reply):
            return replace(out, latency_s=out.latency_s or latency)
        if not isinstance(out, str):
            raise ConfigError("scripted reply must be a str or a Reply", field="fn", value=out)
        text = _apply_stop(out, settings.stop)
        return Reply(text=text, model=self.model, finish_reason="stop", latency_s=latency)

    def __repr__(self) -> str:
        return f"ScriptedBackend(name={self.name!r}, model={self.model!r})"


def _apply_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string, as OpenAI-compatible servers do."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
    return text[:cut] if cut >= 0 else text
