"""Trajectory logs: the record schema, secret redaction, and a crash-safe JSONL store.

Every turn of every dialogue is logged as a :class:`Turn` between a :class:`SessionStart` and a
:class:`SessionEnd`; :class:`TrajectoryWriter` appends them, scrubbed of secrets, to a JSONL file
that several processes may share, and :func:`read_trajectories` reads them back, reporting the
lines a crash left torn.
"""

from __future__ import annotations

from beliefagent.trajectories.records import (
    SCHEMA_VERSION,
    BeliefSnapshot,
    Decision,
    DecisionSource,
    Message,
    OptionRecord,
    Record,
    SelectionRecord,
    SessionEnd,
    SessionStart,
    Turn,
    parse_record,
    utc_now,
)
from beliefagent.trajectories.redact import REDACTED, is_secret_key, redact, redact_text
from beliefagent.trajectories.store import (
    LogRead,
    TrajectoryWriter,
    completed_session_ids,
    dialogue_keys,
    group_sessions,
    iter_records,
    read_trajectories,
)

__all__ = [
    "REDACTED",
    "SCHEMA_VERSION",
    "BeliefSnapshot",
    "Decision",
    "DecisionSource",
    "LogRead",
    "Message",
    "OptionRecord",
    "Record",
    "SelectionRecord",
    "SessionEnd",
    "SessionStart",
    "TrajectoryWriter",
    "Turn",
    "completed_session_ids",
    "dialogue_keys",
    "group_sessions",
    "is_secret_key",
    "iter_records",
    "parse_record",
    "read_trajectories",
    "redact",
    "redact_text",
    "utc_now",
]
