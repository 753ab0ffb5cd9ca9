"""A crash-safe, append-only JSONL store for trajectory records.

Writing
-------
:class:`TrajectoryWriter` turns each record into exactly one line (secrets scrubbed with
:func:`~beliefagent.trajectories.redact.redact`) and appends it with a single ``os.write`` on an
``O_APPEND`` descriptor while holding an exclusive ``fcntl.flock`` on the file, then ``fsync``\\s.
Several processes, and several threads of one process, may append to the same file: whole lines
never interleave. ``flock`` only excludes other open file descriptions, so each writer also holds
a thread lock around its own writes.

A process killed mid-write can leave a *torn* last line (no trailing newline). Before every
append, still under the lock, the writer looks at the file's last byte and, if it is not a
newline, prefixes its line with one. The torn fragment thus becomes a line of its own that readers
skip and report, and the new record stays parseable. (Checking before every write, not only at
open, matters when another writer dies while this one is running.)

Reading
-------
:func:`read_trajectories` returns a :class:`LogRead`: the records, the line numbers of torn lines
(a truncated final line, or a truncated fragment an appender has since terminated), and the other
unreadable lines with a reason. ``strict=True`` raises :class:`~beliefagent.errors.DataError`
naming the path and line on the first invalid line instead (torn lines are an expected leftover of
a crash and are never fatal). :func:`iter_records` streams the same records, logging what it
skips. Reading a log another process is appending to is safe; a line still being written shows up
as torn.

Line numbers are 1-based. Blank lines are skipped silently. Lines are UTF-8; a lone surrogate
in a string (undecodable bytes kept by ``surrogateescape``) is written as U+FFFD.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import pydantic_core
from pydantic import ValidationError

from beliefagent.errors import DataError, InputError
from beliefagent.trajectories.records import (
    SessionEnd,
    SessionStart,
    Turn,
    _first_input_error,
    parse_record,
)
from beliefagent.trajectories.redact import redact

__all__ = [
    "LogRead",
    "TrajectoryWriter",
    "completed_session_ids",
    "dialogue_keys",
    "group_sessions",
    "iter_records",
    "read_trajectories",
]

logger = logging.getLogger(__name__)

_RECORD_TYPES = (SessionStart, Turn, SessionEnd)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _serialise(record: SessionStart | Turn | SessionEnd) -> bytes:
    """One record as one redacted JSON line, newline included. Raises InputError if the record
    does not validate."""
    data = redact(record.model_dump(mode="json"))
    if not record.checked:
        try:
            # What is written must read back: catch records that may have been put into an
            # invalid state without validation (model_copy(update=...), model_construct). A
            # record built by its constructor and changed only by (validated) assignment is
            # valid already; redaction only replaces values with strings in free-form fields.
            type(record).model_validate(data)
        except ValidationError as exc:
            raise _first_input_error(exc) from exc
    try:
        # pydantic's Rust serialiser: compact UTF-8 JSON, control characters escaped (so no raw
        # newline), several times faster than json.dumps on a turn record.
        line = pydantic_core.to_json(data)
    except pydantic_core.PydanticSerializationError:
        line = b""  # e.g. a lone surrogate: the json module's path below handles it
    if line and b"NaN" not in line and b"Infinity" not in line:
        return line + b"\n"
    # json.dumps refuses NaN (allow_nan=False), and escapes every control character.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (bytes smuggled in by surrogateescape decoding) is not valid UTF-8
        # nor valid JSON text for most readers: store U+FFFD instead.
        return _SURROGATE.sub("\ufffd", text).encode("utf-8") + b"\n"


class TrajectoryWriter:
    """Append records to a JSONL trajectory log, one line each, safely across processes.

    >>> with TrajectoryWriter("runs/log.jsonl") as log:  # doctest: +SKIP
    ...     log.write(SessionStart(session_id="s1", domain="flights", policy="advise"))

    Parent directories are created. Durability:

    - ``fsync=True`` (default), ``fsync_interval=0``: every record is fsynced before
      :meth:`write` returns (survives a power loss; costs a disk flush per record, except that
      threads writing at the same time share one: the fsync runs outside the write lock and
      covers every line written before it).
    - ``fsync=True``, ``fsync_interval=t > 0``: group commit — :meth:`write` returns once the
      line is written (so a killed process loses nothing) and a background thread fsyncs at
      most every ``t`` seconds when something was written; :meth:`close` fsyncs what is left.
      A power loss can lose the last ``t`` seconds.
    - ``fsync=False``: records reach the OS page cache only (survive a killed process, not a
      power loss).

    OS failures (disk full, permissions) raise :class:`~beliefagent.errors.DataError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = True, fsync_interval: float = 0.0
    ) -> None:
        if not fsync_interval >= 0:
            raise InputError("must be >= 0 seconds", field="fsync_interval", value=fsync_interval)
        self.path = Path(path)
        self.fsync = fsync
        self.fsync_interval = float(fsync_interval) if fsync else 0.0
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0  # lines written by this writer
        self._synced = 0  # of which fsynced (per-record mode)
        self._dirty = False
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            # Opened read-write so the torn-tail check can pread the last byte. O_APPEND makes
            # every write land at the end of the file, whoever else appended meanwhile.
            self._fd: int | None = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            if created and fsync:
                # Make the new directory entry durable too, not only the file's contents.
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise DataError(
                f"cannot open trajectory log for writing: {exc}", path=str(path)
            ) from exc
        if self.fsync_interval > 0:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="trajectory-fsync", daemon=True
            )
            self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            self._sync_pending()

    def _sync_pending(self) -> None:
        """fsync if anything was written since the last one (group commit)."""
        with self._lock:
            if not self._dirty or self._fd is None:
                return
            self._dirty = False
            fd = os.dup(self._fd)  # fsync outside the lock: writers need not wait for the disk
        try:
            os.fsync(fd)
        except OSError:
            logger.exception("fsync of %s failed", self.path)
            with self._lock:
                self._dirty = True
        finally:
            os.close(fd)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._fd is None

    def write(self, record: SessionStart | Turn | SessionEnd) -> None:
        """Append ``record`` as one line; returns once it is written (and, without a group
        commit interval, fsynced)."""
        if not isinstance(record, _RECORD_TYPES):
            raise InputError(
                "expected a SessionStart, Turn or SessionEnd", field="record", value=record
            )
        line = _serialise(record)
        sync_fd = None
        with self._lock:
            fd = self._fd
            if fd is None:
                raise InputError("the writer is closed", field="writer", value=str(self.path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    _write_all(fd, _heal_prefix(fd) + line)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._written += 1
                mine = self._written
                if self.fsync_interval > 0:
                    self._dirty = True
                elif self.fsync:
                    sync_fd = os.dup(fd)  # fsync outside the write lock (see _sync_upto)
            except OSError as exc:
                raise DataError(
                    f"cannot append to trajectory log: {exc}", path=str(self.path)
                ) from exc
        if sync_fd is not None:
            try:
                self._sync_upto(sync_fd, mine)
            except OSError as exc:
                raise DataError(f"cannot fsync trajectory log: {exc}", path=str(self.path)) from exc
            finally:
                os.close(sync_fd)

    def _sync_upto(self, fd: int, mine: int) -> None:
        """fsync so that write number ``mine`` is durable. Writers that wait here together share
        one fsync: it covers every line written before it started, so a thread whose line an
        earlier fsync already covered returns without one."""
        with self._sync_lock:
            if self._synced >= mine:
                return
            target = self._written  # every write counted here has completed
            os.fsync(fd)
            self._synced = max(self._synced, target)

    def close(self) -> None:
        """fsync what a group commit has pending, then close the file; further writes raise.
        Closing twice is harmless."""
        if self._syncer is not None:
            self._stop.set()
            self._syncer.join()
            self._syncer = None
        with self._lock:
            if self._fd is not None:
                try:
                    if self._dirty:
                        os.fsync(self._fd)
                        self._dirty = False
                finally:
                    os.close(self._fd)
                    self._fd = None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        interval = f", fsync_interval={self.fsync_interval}" if self.fsync_interval else ""
        return f"TrajectoryWriter({str(self.path)!r}, fsync={self.fsync}{interval}, {state})"


def _heal_prefix(fd: int) -> bytes:
    """``b"\\n"`` if the file ends in a torn line (last byte not a newline), else ``b""``.
    Must be called with the flock held."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    return b"" if os.pread(fd, 1, size - 1) == b"\n" else b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` fully. One ``os.write`` in practice; a short write is continued."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass
class LogRead:
    """What :func:`read_trajectories` found in a log."""

    path: Path
    records: list[SessionStart | Turn | SessionEnd] = field(default_factory=list)
    torn: list[int] = field(default_factory=list)
    """Line numbers of torn lines (truncated by a crash), skipped."""
    invalid: list[tuple[int, str]] = field(default_factory=list)
    """``(line number, reason)`` of other lines that could not be read, skipped."""
    ignored_fields: set[str] = field(default_factory=set)
    """Fields, as ``"Model.field"``, present in the log but unknown to this version (dropped)."""

    @property
    def clean(self) -> bool:
        """True when every non-blank line was read."""
        return not self.torn and not self.invalid


_Problem = tuple[Literal["torn", "invalid"], int, str]


def _is_truncated(raw: bytes) -> bool:
    """Whether ``raw`` looks like the start of a JSON line cut short (what a crash leaves)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.pos >= len(text.rstrip())
    except (ValueError, RecursionError):  # e.g. a 5000-digit number in garbage, deep nesting
        return False
    return False


def _scan(
    path: Path, ignored: set[str]
) -> Iterator[tuple[int, SessionStart | Turn | SessionEnd | None, _Problem | None]]:
    """Yield ``(line_no, record, None)`` or ``(line_no, None, problem)`` for each non-blank line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read trajectory log: {exc}", path=str(path)) from exc
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            terminated = raw.endswith(b"\n")
            body = raw.rstrip(b"\r\n")
            if not body.strip():
                continue
            try:
                record = parse_record(body, ignored=ignored)
            except DataError as exc:
                if not terminated or _is_truncated(body):
                    yield line_no, None, ("torn", line_no, "torn line (truncated by a crash?)")
                else:
                    yield line_no, None, ("invalid", line_no, str(exc))
                continue
            yield line_no, record, None


def read_trajectories(path: str | os.PathLike[str], *, strict: bool = False) -> LogRead:
    """Read every record of a log, skipping and reporting torn and invalid lines.

    With ``strict=True`` the first invalid line raises :class:`~beliefagent.errors.DataError`
    with the path and line number; torn lines are still only reported. A missing or unreadable
    file raises DataError.
    """
    result = LogRead(path=Path(path))
    for line_no, record, problem in _scan(result.path, result.ignored_fields):
        if record is not None:
            result.records.append(record)
            continue
        assert problem is not None
        kind, _, reason = problem
        if kind == "torn":
            result.torn.append(line_no)
        elif strict:
            raise DataError(reason, path=str(result.path), line=line_no)
        else:
            result.invalid.append((line_no, reason))
    if result.torn or result.invalid:
        logger.warning(
            "%s: skipped %d torn and %d invalid line(s)",
            result.path,
            len(result.torn),
            len(result.invalid),
        )
    if result.ignored_fields:
        logger.info(
            "%s: ignored fields unknown to this version: %s",
            result.path,
            ", ".join(sorted(result.ignored_fields)),
        )
    return result


def iter_records(
    path: str | os.PathLike[str], *, strict: bool = False
) -> Iterator[SessionStart | Turn | SessionEnd]:
    """Stream the records of a log without holding them all in memory.

    Torn and invalid lines are skipped with a warning logged for each (or, for invalid lines with
    ``strict=True``, raise :class:`~beliefagent.errors.DataError`). Use
    :func:`read_trajectories` to get the skipped lines back as data.
    """
    log_path = Path(path)
    for line_no, record, problem in _scan(log_path, set()):
        if record is not None:
            yield record
            continue
        assert problem is not None
        kind, _, reason = problem
        if kind == "invalid" and strict:
            raise DataError(reason, path=str(log_path), line=line_no)
        logger.warning("%s:%d: skipped %s line: %s", log_path, line_no, kind, reason)


def dialogue_keys(records: Iterable[SessionStart | Turn | SessionEnd]) -> Iterator[str]:
    """The dialogue each record belongs to: its ``session_id``, except that a second
    :class:`SessionStart` under an id already seen starts a new dialogue, keyed
    ``"<session_id>#2"`` (then ``#3``, ...), and the records after it belong to that one. So a
    log where one id was reused (e.g. by a server that forgot its sessions on restart) never
    stitches two dialogues together."""
    starts: dict[str, int] = {}
    for record in records:
        sid = record.session_id
        if isinstance(record, SessionStart):
            starts[sid] = starts.get(sid, 0) + 1
        n = starts.get(sid, 1)
        yield sid if n <= 1 else f"{sid}#{n}"


def group_sessions(records: Iterable[SessionStart | Turn | SessionEnd]) -> dict[str, list[Turn]]:
    """The turns of each dialogue, ordered by round (stable: repeated rounds keep log order).

    Dialogues are keyed as :func:`dialogue_keys` says (the session id, ``"<id>#2"`` for an id
    that was started again) and appear in the order first seen; a session with a start but no
    turns maps to ``[]``.
    """
    sessions: dict[str, list[Turn]] = {}
    records = list(records)
    for key, record in zip(dialogue_keys(records), records, strict=True):
        turns = sessions.setdefault(key, [])
        if isinstance(record, Turn):
            turns.append(record)
    for turns in sessions.values():
        turns.sort(key=lambda turn: turn.round)
    return sessions


def completed_session_ids(records: Iterable[SessionStart | Turn | SessionEnd]) -> set[str]:
    """Ids of the sessions that have a :class:`SessionEnd` (whatever its reason): the ones a
    resumed run skips."""
    return {record.session_id for record in records if isinstance(record, SessionEnd)}
