"""Where belief sessions live between requests: one small store interface and its embedded
implementations (Redis is in :mod:`beliefagent.server.redis_store`).

A store keeps, per session id, a JSON-able state (see :mod:`beliefagent.server.durable`) with
a version number, and gives mutual exclusion per session id:

========================  ====================================================================
``lock(session_id)``      a context manager; while it is held no other request, in this process
                          or another one sharing the store, works on that session
``load(session_id)``      ``(version, state)`` or ``None``
``save(id, state, v)``    write version ``v``; the stored version must be ``v - 1`` (``v == 1``:
                          none stored), else :class:`StoreConflict` — a check that catches a
                          lock lost to its timeout instead of silently overwriting
``idle(before, limit)``   ids of open sessions last used before ``before`` (wall-clock seconds)
``count_open()``          how many sessions are open
========================  ====================================================================

Implementations:

* :class:`MemoryStore` — a dict in this process; nothing survives a restart (the choice when
  the server has no ``--log``).
* :class:`SQLiteStore` — SQLite in WAL mode, by default next to the trajectory log
  (``<log>.sessions.sqlite``); a single server needs nothing else. ``synchronous=NORMAL``: a
  killed server loses nothing, a power loss may lose the last commits. One process only (its
  session locks are threads' locks); several processes use Redis.
* :class:`~beliefagent.server.redis_store.RedisStore` — ``redis://host:port/db``, for
  ``--workers N`` or several replicas.

:func:`open_store` turns ``--session-store`` into one of them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from beliefagent.errors import BeliefAgentError, ConfigError

__all__ = [
    "MemoryStore",
    "SQLiteStore",
    "SessionStore",
    "StoreConflict",
    "StoreError",
    "StoreLockTimeout",
    "dumps",
    "loads",
    "open_store",
]


class StoreError(BeliefAgentError):
    """The session store failed (unreachable, corrupt)."""


class StoreConflict(StoreError):
    """A save found another version than the one it expected (the session changed meanwhile)."""


class StoreLockTimeout(StoreError):
    """A session's lock could not be taken in time (another request holds it)."""


def dumps(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"), allow_nan=False)


def loads(data: str | bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise StoreError(f"a stored session state is not an object: {type(value).__name__}")
    return value


class SessionStore(Protocol):
    """Session state and per-session mutual exclusion (see the module docstring)."""

    durable: bool
    """Whether sessions survive a restart of the server (then shutdown leaves them open)."""
    shared: bool
    """Whether several processes may use the store at once."""

    def lock(self, session_id: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """Hold ``session_id``'s lock (raises :class:`StoreLockTimeout` after ``timeout_s``)."""
        ...

    def load(self, session_id: str) -> tuple[int, dict[str, Any]] | None: ...

    def save(self, session_id: str, state: dict[str, Any], version: int) -> None: ...

    def idle(self, before: float, limit: int) -> list[str]: ...

    def count_open(self) -> int: ...

    def close(self) -> None: ...


def _is_open(state: dict[str, Any]) -> bool:
    return state.get("status") == "open"


class _StripedLocks:
    """Per-session thread locks for one process: a fixed array of locks indexed by a hash of
    the session id (bounded memory; two sessions on one stripe just take turns)."""

    def __init__(self, stripes: int = 4096) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextlib.contextmanager
    def hold(self, session_id: str, timeout_s: float) -> Iterator[None]:
        lock = self._locks[zlib.crc32(session_id.encode()) % len(self._locks)]
        if not lock.acquire(timeout=timeout_s):
            raise StoreLockTimeout(
                f"session {session_id!r} is busy (another request on it held its lock for"
                f" {timeout_s:g} s)"
            )
        try:
            yield
        finally:
            lock.release()


class MemoryStore:
    """Sessions in this process only; lost on restart."""

    durable = False
    shared = False

    def __init__(self) -> None:
        self._states: dict[str, tuple[int, dict[str, Any], float]] = {}
        self._guard = threading.Lock()
        self._locks = _StripedLocks()

    def lock(self, session_id: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        return self._locks.hold(session_id, timeout_s)

    def load(self, session_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._guard:
            found = self._states.get(session_id)
        return None if found is None else (found[0], found[1])

    def save(self, session_id: str, state: dict[str, Any], version: int) -> None:
        with self._guard:
            current = self._states.get(session_id)
            _check_version(session_id, current[0] if current else 0, version)
            self._states[session_id] = (version, state, float(state.get("last_used", 0.0)))

    def idle(self, before: float, limit: int) -> list[str]:
        with self._guard:
            found = [
                sid for sid, (_, st, used) in self._states.items() if _is_open(st) and used < before
            ]
        return found[:limit]

    def count_open(self) -> int:
        with self._guard:
            return sum(1 for _, st, _ in self._states.values() if _is_open(st))

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "MemoryStore()"


def _check_version(session_id: str, current: int, version: int) -> None:
    if current + 1 != version:
        raise StoreConflict(
            f"session {session_id!r} is at version {current}, not {version - 1}: it changed"
            " meanwhile; send the request again"
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    open INTEGER NOT NULL,
    last_used REAL NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_open_used ON sessions (open, last_used);
"""


class SQLiteStore:
    """Sessions in an SQLite file (WAL mode), for one server process."""

    durable = True
    shared = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the session store {str(self.path)!r}: {exc}") from exc
        self._guard = threading.Lock()
        self._locks = _StripedLocks()

    def lock(self, session_id: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        return self._locks.hold(session_id, timeout_s)

    def load(self, session_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._guard:
            row = self._db.execute(
                "SELECT version, state FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else (int(row[0]), loads(row[1]))

    def save(self, session_id: str, state: dict[str, Any], version: int) -> None:
        text = dumps(state)
        row = (version, int(_is_open(state)), float(state.get("last_used", 0.0)), text)
        with self._guard:
            try:
                if version == 1:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO sessions (version, open, last_used, state, id)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (*row, session_id),
                    )
                else:
                    cursor = self._db.execute(
                        "UPDATE sessions SET version = ?, open = ?, last_used = ?, state = ?"
                        " WHERE id = ? AND version = ?",
                        (*row, session_id, version - 1),
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot save session {session_id!r}: {exc}") from exc
            if cursor.rowcount != 1:
                found = self._db.execute(
                    "SELECT version FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                _check_version(session_id, int(found[0]) if found else 0, version)

    def idle(self, before: float, limit: int) -> list[str]:
        with self._guard:
            rows = self._db.execute(
                "SELECT id FROM sessions WHERE open = 1 AND last_used < ? LIMIT ?", (before, limit)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def count_open(self) -> int:
        with self._guard:
            (n,) = self._db.execute("SELECT COUNT(*) FROM sessions WHERE open = 1").fetchone()
        return int(n)

    def close(self) -> None:
        with self._guard:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"


def default_store_path(log: Path) -> Path:
    """Where the embedded store of a server logging to ``log`` lives."""
    return log.with_name(log.name + ".sessions.sqlite")


def open_store(spec: str | None, log: Path | None) -> SessionStore:
    """The store ``--session-store`` names.

    ``None``: SQLite next to ``log`` (``<log>.sessions.sqlite``) when there is a log, else
    in-process memory. ``"memory"``; ``"sqlite:///path"`` or ``"sqlite:path"``;
    ``"redis://host:port/db"`` (needs the ``redis`` extra)."""
    if spec is None:
        return SQLiteStore(default_store_path(log)) if log is not None else MemoryStore()
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise ConfigError("sqlite: needs a file path", field="session_store", value=spec)
        return SQLiteStore(path)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from beliefagent.server.redis_store import RedisStore

        return RedisStore(spec)
    raise ConfigError(
        "expected memory, sqlite:///PATH or redis://HOST:PORT/DB", field="session_store", value=spec
    )


def now() -> float:
    """Wall-clock seconds (shared by processes, unlike the monotonic clock)."""
    return time.time()
