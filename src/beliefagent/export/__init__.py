"""Teaching-data export: re-run the Bayesian teacher over logged dialogues and write its answers
(or the users' choices) as fine-tuning chats, split by user, deduplicated, scrubbed of personal
data, with a manifest. See ``docs/export.md``.

The CLI command lives in :mod:`beliefagent.export.command` (``export_command``), imported lazily
so that the library does not pull in the terminal UI.
"""

from __future__ import annotations

from typing import Any

from beliefagent.export.scrub import PII_KINDS, Scrubber, iban_valid, luhn_valid, scrub_text
from beliefagent.export.teaching import (
    Format,
    LogSessions,
    Skip,
    SkipReason,
    SourceReport,
    Target,
    TeachingExample,
    TeachingSession,
    build_examples,
    export_teaching_set,
    likelihood_from_spec,
    session_seed,
    sessions_from_log,
)

__all__ = [
    "PII_KINDS",
    "Format",
    "LogSessions",
    "Scrubber",
    "Skip",
    "SkipReason",
    "SourceReport",
    "Target",
    "TeachingExample",
    "TeachingSession",
    "build_examples",
    "export_command",
    "export_teaching_set",
    "iban_valid",
    "likelihood_from_spec",
    "luhn_valid",
    "scrub_text",
    "session_seed",
    "sessions_from_log",
]


def __getattr__(name: str) -> Any:
    if name == "export_command":
        from beliefagent.export.command import export_command

        return export_command
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
