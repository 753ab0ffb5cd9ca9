"""The Redis session store: several server processes or replicas share their sessions.

Keys (``prefix`` defaults to ``beliefagent:``):

==========================  ===============================================================
``<prefix>s:<id>``          a hash: ``v`` (version), ``d`` (the state, JSON)
``<prefix>open``            a sorted set of the open session ids, scored by last use
``<prefix>lock:<id>``       the session's lock (redis-py's ``Lock``: a token with a TTL, so
                            a process killed while holding it frees it after ``lock_ttl_s``)
==========================  ===============================================================

A save is one Lua script: it checks the stored version, writes the new one and updates the
open set atomically, so a request whose lock expired under it fails with
:class:`~beliefagent.server.store.StoreConflict` instead of overwriting a newer state.
Needs the ``redis`` extra (``pip install 'beliefagent[redis]'``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

from beliefagent.errors import ConfigError
from beliefagent.server.store import (
    StoreConflict,
    StoreError,
    StoreLockTimeout,
    _is_open,
    dumps,
    loads,
)

__all__ = ["RedisStore"]

_SAVE = """
local current = redis.call('HGET', KEYS[1], 'v')
current = current and tonumber(current) or 0
if current + 1 ~= tonumber(ARGV[1]) then return current end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return -1
"""


class RedisStore:
    """Sessions in Redis (``url``: ``redis://host:port/db``)."""

    durable = True
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "beliefagent:",
        lock_ttl_s: float = 300.0,
        client: Any = None,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigError(
                "the Redis store needs the redis client: pip install 'beliefagent[redis]'",
                field="session_store",
                value=url,
            ) from exc
        self._redis = redis
        self.url = url
        self.prefix = prefix
        self.lock_ttl_s = lock_ttl_s
        try:
            self._client = client or redis.Redis.from_url(url, socket_timeout=30)
            self._client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"cannot reach the session store {url}: {exc}") from exc
        self._save = self._client.register_script(_SAVE)
        self._open_key = f"{prefix}open"

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    @contextlib.contextmanager
    def lock(self, session_id: str, timeout_s: float) -> Iterator[None]:
        lock = self._client.lock(
            f"{self.prefix}lock:{session_id}",
            timeout=max(self.lock_ttl_s, timeout_s),
            sleep=0.002,
            blocking_timeout=timeout_s,
        )
        try:
            acquired = lock.acquire()
        except self._redis.RedisError as exc:
            raise StoreError(f"session store {self.url}: {exc}") from exc
        if not acquired:
            raise StoreLockTimeout(
                f"session {session_id!r} is busy (another request on it held its lock for"
                f" {timeout_s:g} s)"
            )
        try:
            yield
        finally:
            with contextlib.suppress(self._redis.exceptions.LockError):
                lock.release()  # a lock that expired meanwhile is simply gone

    def load(self, session_id: str) -> tuple[int, dict[str, Any]] | None:
        try:
            found = self._client.hmget(self._key(session_id), "v", "d")
        except self._redis.RedisError as exc:
            raise StoreError(f"session store {self.url}: {exc}") from exc
        if found[0] is None:
            return None
        return int(found[0]), loads(cast(bytes, found[1]))

    def save(self, session_id: str, state: dict[str, Any], version: int) -> None:
        args: list[str | int | float] = [
            version,
            dumps(state),
            "1" if _is_open(state) else "0",
            float(state.get("last_used", 0.0)),
            session_id,
        ]
        try:
            result = self._save(keys=[self._key(session_id), self._open_key], args=args)
        except self._redis.RedisError as exc:
            raise StoreError(f"cannot save session {session_id!r}: {exc}") from exc
        if int(result) != -1:
            raise StoreConflict(
                f"session {session_id!r} is at version {int(result)}, not {version - 1}: it"
                " changed meanwhile; send the request again"
            )

    def idle(self, before: float, limit: int) -> list[str]:
        ids = self._client.zrangebyscore(self._open_key, "-inf", f"({before}", start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def count_open(self) -> int:
        return int(self._client.zcard(self._open_key))

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"
