"""Writing a teaching set: from trajectory logs to ``train.jsonl``, ``eval.jsonl`` and
``manifest.json`` (:func:`export_teaching_set`): split by user, deduplicated, scrubbed of personal
data, every skipped session counted.

The export is three concepts, one module each:

- :mod:`beliefagent.export.examples` — targets and the pure core :func:`build_examples` (the
  Bayesian teacher re-run over a session's rounds; ``bayes``, ``bayes-soft``, ``oracle``);
- :mod:`beliefagent.export.logs` — :func:`sessions_from_log`, a trajectory log read into sessions;
- this module — the written set and its manifest.

Every public name of the three is importable from here and from :mod:`beliefagent.export`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beliefagent.belief import ChoiceModel
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ConfigError, DataError
from beliefagent.export.examples import (
    MAX_SKIP_DETAILS,
    Format,
    Skip,
    SkipReason,
    Target,
    TeachingExample,
    TeachingSession,
    _check_target,
    _likelihood_settings,
    build_examples,
    likelihood_from_spec,
    session_seed,
)
from beliefagent.export.logs import LogSessions, SourceReport, sessions_from_log
from beliefagent.export.scrub import Scrubber
from beliefagent.prompts import DialoguePrompts
from beliefagent.trajectories import LogRead

__all__ = [
    "Format",
    "LogSessions",
    "Skip",
    "SkipReason",
    "SourceReport",
    "Target",
    "TeachingExample",
    "TeachingSession",
    "build_examples",
    "export_teaching_set",
    "likelihood_from_spec",
    "session_seed",
    "sessions_from_log",
]

logger = logging.getLogger(__name__)


class _IdMap:
    """Ids as written: unchanged unless scrubbing finds personal data in them (a user id that is
    an email address), then ``anon-<kind>-<n>``, numbered by first appearance."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.map: dict[tuple[str, str], str] = {}
        self.anonymised = 0

    def __call__(self, kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        key = (kind, value)
        if key not in self.map:
            if self.scrubber.scrub(value) == value:
                self.map[key] = value
            else:
                self.anonymised += 1
                self.map[key] = f"anon-{kind}-{self.anonymised}"
        return self.map[key]


def _user_key(example: TeachingExample) -> str:
    """What the split groups by: the user id, or the session for sessions without one."""
    return f"user:{example.user_id}" if example.user_id is not None else f"session:{example.id}"


def _split_users(keys: Iterable[str], eval_fraction: float, seed: int) -> set[str]:
    """The users that go to eval: ``round(eval_fraction * n_users)`` of them (at least one when
    the fraction is positive and there are two users or more; never all), chosen by a seeded
    hash of each user's key, so the choice does not depend on input order."""
    users = sorted(set(keys))
    n = len(users)
    if eval_fraction <= 0 or n < 2:
        return set()
    n_eval = min(n - 1, max(1, round(eval_fraction * n)))
    ranked = sorted(users, key=lambda k: hashlib.sha256(f"{seed}\x00{k}".encode()).hexdigest())
    return set(ranked[:n_eval])


def _expand_logs(
    logs: Sequence[str | os.PathLike[str] | LogRead],
) -> list[str | os.PathLike[str] | LogRead]:
    out: list[str | os.PathLike[str] | LogRead] = []
    for log in logs:
        if not isinstance(log, LogRead) and Path(log).is_dir():
            found = sorted(Path(log).glob("*.jsonl"))
            if not found:
                raise DataError("no *.jsonl trajectory logs in this directory", path=str(log))
            out.extend(found)
        else:
            out.append(log)
    return out


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    n = size = 0
    with tmp.open("wb") as fh:
        for row in rows:
            line = (
                json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
            ).encode("utf-8")
            fh.write(line)
            digest.update(line)
            n += 1
            size += len(line)
    os.replace(tmp, path)
    return {"sha256": digest.hexdigest(), "bytes": size, "examples": n}


def export_teaching_set(
    logs: str | os.PathLike[str] | LogRead | Sequence[str | os.PathLike[str] | LogRead],
    out_dir: str | os.PathLike[str],
    target: str | Target = Target.BAYES,
    fmt: str | Format = Format.CHAT,
    eval_fraction: float = 0.1,
    seed: int = 0,
    *,
    likelihood: str | ChoiceModel | None = "noise-free",
    domain: ChoiceDomain | None = None,
    keep_emptied: bool = False,
    include_user_messages: bool = False,
    overwrite: bool = False,
    prompt_style: str = "paper",
) -> dict[str, Any]:
    """Export a teaching set from trajectory logs; returns the manifest (also written).

    ``logs`` are log files (a directory stands for its ``*.jsonl`` files) or
    :class:`~beliefagent.trajectories.LogRead`\\ s. Writes ``train.jsonl``, ``eval.jsonl``
    (``fmt``: ``chat`` or ``openai``) and ``manifest.json`` in ``out_dir``:

    - examples are built with :func:`build_examples` per log and domain;
    - ids are scrubbed (an id holding personal data is written as ``anon-user-<n>``);
    - identical message lists are written once (the first seen is kept);
    - users (sessions without a user id count as their own user) are split between train and
      eval by a seeded hash: no user lands in both.

    Existing output files are only replaced with ``overwrite``. Nothing is written before every
    log has been read and every example built.
    """
    tgt = _check_target(target)
    try:
        form = Format(fmt)
    except ValueError as exc:
        raise ConfigError("unknown format (chat, openai)", field="format", value=fmt) from exc
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError("must be in [0, 1)", field="eval_fraction", value=eval_fraction)
    lik = likelihood_from_spec(likelihood)
    out = Path(out_dir)
    names = ("train.jsonl", "eval.jsonl", "manifest.json")
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{existing[0]} already exists there (pass overwrite=True / --overwrite)",
            field="out_dir",
            value=str(out),
        )
    log_list = [logs] if isinstance(logs, str | os.PathLike | LogRead) else list(logs)
    if not log_list:
        raise ConfigError("give at least one trajectory log", field="logs", value=[])

    scrubber = Scrubber()
    ids = _IdMap(scrubber)
    sources: list[SourceReport] = []
    skipped: list[Skip] = []
    examples: list[TeachingExample] = []
    domains_seen: Counter[str] = Counter()
    for log in _expand_logs(log_list):
        read = sessions_from_log(log, domain)
        sources.append(read.source)
        skipped += read.skipped
        for name, sessions in read.sessions.items():
            domains_seen[name] += len(sessions)
            built, skips = build_examples(
                read.domains[name],
                sessions,
                tgt,
                likelihood=lik,
                seed=seed,
                keep_emptied=keep_emptied,
                include_user_messages=include_user_messages,
                scrubber=scrubber,
                prompts=DialoguePrompts.for_domain(read.domains[name], prompt_style),
            )
            examples += built
            skipped += [replace(s, source=read.source.path) for s in skips]

    # Dedup (first seen wins), then split by user.
    seen: set[str] = set()
    unique: list[TeachingExample] = []
    for ex in examples:
        key = hashlib.sha256(
            json.dumps(ex.messages, ensure_ascii=False, sort_keys=True).encode("utf-8")
        ).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(ex)
    eval_users = _split_users((_user_key(ex) for ex in unique), eval_fraction, seed)
    splits: dict[str, list[TeachingExample]] = {"train": [], "eval": []}
    for ex in unique:
        written = replace(ex, id=ids("session", ex.id) or ex.id, user_id=ids("user", ex.user_id))
        splits["eval" if _user_key(ex) in eval_users else "train"].append(written)

    # Everything free-form that reaches the manifest is scrubbed too.
    skip_rows = [
        {
            **s.to_dict(),
            "session_id": ids("session", s.session_id),
            "detail": scrubber.scrub(s.detail),
        }
        for s in skipped[:MAX_SKIP_DETAILS]
    ]
    for s in skipped[MAX_SKIP_DETAILS:]:
        ids("session", s.session_id)  # ids are anonymised consistently even if not listed
    source_rows = [
        {
            "path": src.path,
            "records": src.records,
            "sessions": src.sessions,
            "torn_lines": len(src.torn_lines),
            "invalid_lines": len(src.invalid_lines),
            "torn_line_numbers": src.torn_lines[:100],
            "invalid": [[n, scrubber.scrub(r)] for n, r in src.invalid_lines[:100]],
            "ignored_fields": src.ignored_fields,
            "sessions_without_end": src.without_end,
            "sessions_truncated": src.truncated,
        }
        for src in sources
    ]

    out.mkdir(parents=True, exist_ok=True)
    to_row = TeachingExample.to_chat if form is Format.CHAT else TeachingExample.to_openai
    files = {
        f"{split}.jsonl": _write_jsonl(out / f"{split}.jsonl", (to_row(ex) for ex in rows))
        for split, rows in splits.items()
    }
    by_reason = Counter(str(s.reason) for s in skipped)
    manifest: dict[str, Any] = {
        "beliefagent_export": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": str(tgt),
        "format": str(form),
        "seed": seed,
        "eval_fraction": eval_fraction,
        "prompt_style": prompt_style,
        "teacher": {
            **_likelihood_settings(lik),
            "prediction": {
                Target.BAYES: "argmax of posterior expected reward, ties at random",
                Target.BAYES_SOFT: "predictive distribution; hard target: its argmax, ties random",
                Target.ORACLE: "the user's choice (the teacher only checks for emptied beliefs)",
            }[tgt],
            "tie_seed": "session_seed(seed, session_id)",
            "keep_emptied": keep_emptied,
        },
        "include_user_messages": include_user_messages,
        "counts": {
            "logs": len(sources),
            "records": sum(s.records for s in sources),
            "sessions_read": sum(s.sessions for s in sources),
            "sessions_exported": len(examples),
            "duplicates_dropped": len(examples) - len(unique),
            "examples": {split: len(rows) for split, rows in splits.items()},
            "users": {
                "train": len({_user_key(ex) for ex in unique} - eval_users),
                "eval": len(eval_users),
            },
            "emptied_kept": sum(ex.emptied for ex in unique),
            "skipped": dict(sorted(by_reason.items())),
            "torn_lines": sum(len(s.torn_lines) for s in sources),
            "invalid_lines": sum(len(s.invalid_lines) for s in sources),
        },
        "domains": dict(domains_seen),
        "files": files,
        "sources": source_rows,
        "skipped": skip_rows,
        "skipped_listed": len(skip_rows),
        "pii_scrubbed": dict(scrubber.counts),
        "ids_anonymised": ids.anonymised,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    logger.info(
        "exported %d train / %d eval examples to %s (%d skipped)",
        len(splits["train"]),
        len(splits["eval"]),
        out,
        len(skipped),
    )
    return manifest
