"""A memory budget for open sessions (``beliefagent serve --max-session-memory``).

What a session holds of its own grows with its domain's hypothesis space: its posterior is
``8 * n_hyp`` bytes (5 KB for ``flight``, 3 MiB for ``flight8``); the domain's tables are shared
by every session of the process (:mod:`beliefagent.teachers.tables`) and are not counted. A
session's cost is estimated before it opens, from its domain
(:meth:`~beliefagent.teachers.BayesianTeacher.session_nbytes` plus the middleware's bookkeeping
and a dialogue's history), and a session that would take the open sessions past the budget is
refused with 503 ``session_memory_exhausted`` and ``Retry-After``: the server says no before it
runs out, whatever domain clients pick. ``benchmarks/bench_session_memory.py`` measures the
real figures.
"""

from __future__ import annotations

from collections.abc import Iterable

from beliefagent.domains import ChoiceDomain
from beliefagent.server.http_errors import APIError
from beliefagent.teachers import BayesianTeacher

__all__ = ["SESSION_OVERHEAD_BYTES", "SessionMemoryBudget", "session_bytes"]

SESSION_OVERHEAD_BYTES = 64 * 1024
"""Bytes a session holds besides its teacher: the middleware's state, the chat history of a
full dialogue (the prompts are a few KB), the server's bookkeeping."""


def session_bytes(domain: ChoiceDomain) -> int:
    """The estimated bytes one open session of ``domain`` holds of its own."""
    return BayesianTeacher.session_nbytes(domain) + SESSION_OVERHEAD_BYTES


class SessionMemoryBudget:
    """Refuses a new session when the open ones plus it would exceed ``limit`` bytes
    (``0``: no budget)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._cost: dict[int, int] = {}  # id(domain) -> bytes; domains are cached per process

    def cost(self, domain: ChoiceDomain) -> int:
        key = id(domain)
        if key not in self._cost:
            self._cost[key] = session_bytes(domain)
        return self._cost[key]

    def admit(self, domain: ChoiceDomain, open_domains: Iterable[ChoiceDomain]) -> None:
        """Raise 503 if a session of ``domain`` does not fit beside the open ones."""
        if self.limit <= 0:
            return
        need = self.cost(domain)
        used = sum(self.cost(d) for d in open_domains)
        if used + need > self.limit:
            raise APIError(
                503,
                f"session memory budget: a {domain.name} session needs about {need:,} bytes;"
                f" {used:,} of {self.limit:,} are in use. Close sessions or retry later",
                type="server_error",
                code="session_memory_exhausted",
                headers={"Retry-After": "5"},
            )
