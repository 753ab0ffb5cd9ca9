"""The error tree of beliefagent. Every error the library raises on purpose derives from
:class:`BeliefAgentError`; errors from lower layers (httpx, json, OS) are mapped at the boundary
with ``raise ... from exc``.

    BeliefAgentError
    ├── InputError                 bad input from the caller; carries ``field`` and ``value``
    │   ├── SpecError              a domain spec that cannot be used
    │   ├── OptionError            an option (or option set) that does not fit the domain
    │   ├── ChoiceError            a choice index out of range
    │   ├── EmptyHypothesisSpaceError
    │   └── ConfigError            a bad setting (CLI flag, recipe, policy, backend option)
    ├── DataError                  an unreadable data or log file; carries ``path``, ``line``
    └── BackendError               an LLM backend failed at run time; carries ``status_code``,
        │                          ``body``, ``retryable``, ``retry_after``
        ├── BackendTimeoutError
        ├── BackendConnectionError
        └── BackendResponseError   the backend answered, but not with something usable
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BeliefAgentError",
    "ChoiceError",
    "ConfigError",
    "DataError",
    "EmptyHypothesisSpaceError",
    "InputError",
    "OptionError",
    "SpecError",
    "short_repr",
    "short_text",
]

SHORT_LIMIT = 200
"""Characters of a value shown in an error message; longer ones are cut, with their length."""


def short_text(text: str, limit: int = SHORT_LIMIT) -> str:
    """``text`` itself, or its first ``limit`` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def short_repr(value: Any, limit: int = SHORT_LIMIT) -> str:
    """``repr(value)`` cut by :func:`short_text`; a long string is measured by its own
    length, so a 900,000-character option reads ``'Flight 1: ...'... (900,000 characters)``."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    return short_text(repr(value), limit)


def _short(value: Any, limit: int = 120) -> str:
    return short_repr(value, limit)


class BeliefAgentError(Exception):
    """Root of every error beliefagent raises on purpose."""


class InputError(BeliefAgentError, ValueError):
    """Bad input: the message names the offending ``field`` and ``value``."""

    def __init__(self, message: str, *, field: str, value: Any = None) -> None:
        self.field = field
        self.value = value
        self.reason = message
        super().__init__(f"{field}={_short(value)}: {message}")


class SpecError(InputError):
    """A domain spec (features, levels, weight grid, prompts) that cannot be used."""


class OptionError(InputError):
    """An option or option set that does not fit the domain (unknown feature, off-grid value,
    wrong number of options, text that does not parse)."""


class ChoiceError(InputError):
    """A choice index outside ``0 .. n_options - 1``."""


class EmptyHypothesisSpaceError(InputError):
    """A hypothesis space with no hypotheses in it."""


class ConfigError(InputError):
    """A setting that cannot be used (CLI flag, recipe field, policy, backend option)."""


class DataError(BeliefAgentError):
    """A data file or log that cannot be read."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if path and line else (path or "")
        super().__init__(f"{where}: {message}" if where else message)


class BackendError(BeliefAgentError):
    """An LLM backend failed at run time."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.retryable = retryable
        self.retry_after = retry_after
        prefix = f"HTTP {status_code}: " if status_code is not None else ""
        super().__init__(prefix + message)


class BackendTimeoutError(BackendError):
    """The backend did not answer in time."""


class BackendConnectionError(BackendError):
    """The backend could not be reached."""


class BackendResponseError(BackendError):
    """The backend answered with something unusable (malformed JSON, no choices)."""
