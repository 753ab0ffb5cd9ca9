"""Scale-out on Redis: two ``serve`` processes share sessions through a real redis-server, one
session's turns alternate between them, and nothing is lost, doubled or mixed up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    ROUNDS,
    belief_of,
    free_port,
    play_choice,
    play_turn,
    reference_beliefs,
    start_serve,
    stop,
    turn_body,
)

from beliefagent.adapters import StubServer
from beliefagent.server.redis_store import RedisStore
from beliefagent.server.store import StoreConflict
from beliefagent.trajectories import Turn, read_trajectories

SESSIONS = ("alt-0", "alt-1", "alt-2", "alt-3")
N_ROUNDS = len(ROUNDS)


def _check_log(log: Path, sessions: tuple[str, ...], rounds: int) -> None:
    """Each session's rounds 0..rounds-1 exactly once, with the options and choice sent."""
    read = read_trajectories(log)
    assert read.clean
    starts = sorted(r.session_id for r in read.records if r.kind == "session_start")
    assert starts == sorted(sessions)
    turns = [t for t in read.records if isinstance(t, Turn)]
    got = sorted((t.session_id, t.round) for t in turns)
    assert got == [(sid, r) for sid in sorted(sessions) for r in range(rounds)]
    for t in turns:
        assert t.user_choice == play_choice(t.session_id, t.round)
        assert [o.text.split(": ", 1)[1] for o in t.options] == ROUNDS[t.round]


def test_store_version_check_refuses_a_stale_save(redis_url: str) -> None:
    store = RedisStore(redis_url)
    state = {"status": "open", "last_used": 1.0}
    store.save("s", state, 1)
    store.save("s", state, 2)
    try:
        store.save("s", state, 2)  # a writer that lost its lock and missed version 2
    except StoreConflict as exc:
        assert "version 2" in str(exc)
    else:
        raise AssertionError("a stale save went through")
    assert store.load("s") == (2, state)
    assert store.count_open() == 1 and store.idle(2.0, 10) == ["s"]
    store.save("s", {"status": "closed", "last_used": 3.0}, 3)
    assert store.count_open() == 0
    store.close()


def test_two_processes_serve_one_sessions_alternating_turns(redis_url: str, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    ports = (free_port(), free_port())
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with StubServer(lambda _m: "The best option is Flight 2.") as stub:
        args = ["--upstream", stub.base_url, "--upstream-model", stub.model, "--log", str(log)]
        args += ["--session-store", redis_url]
        env = {"OPENAI_API_KEY": "sk-upstream"}
        procs = [start_serve(args, port, env) for port in ports]
        try:

            def play(index: int) -> list[dict[str, Any]]:
                sid = SESSIONS[index]
                # round r on server (r + index) % 2: every turn changes process
                return [
                    play_turn(urls[(r + index) % 2], stub.model, sid, r) for r in range(N_ROUNDS)
                ]

            with ThreadPoolExecutor(len(SESSIONS)) as pool:
                played = list(pool.map(play, range(len(SESSIONS))))
            # the last round's choice through the choice endpoint, on the other process
            for index, sid in enumerate(SESSIONS):
                url = urls[(N_ROUNDS + index) % 2]
                choice = play_choice(sid, N_ROUNDS - 1)
                reply = httpx.post(
                    f"{url}/v1/beliefagent/sessions/{sid}/choice", json={"choice": choice}
                )
                assert reply.status_code == 200, reply.text
            health = [httpx.get(f"{u}/health").json()["sessions"] for u in urls]
            assert health == [len(SESSIONS)] * 2
        finally:
            for proc in procs:
                stop(proc)
    for sid, exts in zip(SESSIONS, played, strict=True):
        assert [belief_of(e) for e in exts] == reference_beliefs(sid, N_ROUNDS)
    _check_log(log, SESSIONS, N_ROUNDS)


def test_one_turn_sent_to_both_processes_at_once_is_played_once(redis_url: str, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    ports = (free_port(), free_port())
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with StubServer(lambda _m: "The best option is Flight 2.") as stub:
        args = ["--upstream", stub.base_url, "--upstream-model", stub.model, "--log", str(log)]
        args += ["--session-store", redis_url]
        env = {"OPENAI_API_KEY": "sk-upstream"}
        procs = [start_serve(args, port, env) for port in ports]
        try:
            sid = "race"
            play_turn(urls[0], stub.model, sid, 0)
            for r in range(1, 4):
                body = turn_body(stub.model, sid, r)
                with ThreadPoolExecutor(4) as pool:
                    replies = list(
                        pool.map(
                            lambda u, b=body: httpx.post(
                                f"{u}/v1/chat/completions", json=b, timeout=30
                            ),
                            urls * 2,
                        )
                    )
                assert [x.status_code for x in replies] == [200] * 4
                exts = [x.json()["beliefagent"] for x in replies]
                assert all(e == exts[0] for e in exts) and exts[0]["round"] == r
        finally:
            for proc in procs:
                stop(proc)
    _check_log(log, (sid,), 3)


@pytest.mark.slow  # spawns uvicorn's worker processes: slow to start on a loaded machine
def test_serve_workers_share_sessions_on_redis(redis_url: str, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with StubServer(lambda _m: "The best option is Flight 2.") as stub:
        args = ["--upstream", stub.base_url, "--upstream-model", stub.model, "--log", str(log)]
        args += ["--session-store", redis_url, "--workers", "2"]
        proc = start_serve(args, port, {"OPENAI_API_KEY": "sk-upstream"})
        try:
            children = [
                int(c)
                for task in Path(f"/proc/{proc.pid}/task").iterdir()
                for c in (task / "children").read_text().split()
            ]
            assert len(children) >= 2  # the worker processes (and multiprocessing's helpers)

            def play(sid: str) -> list[dict[str, Any]]:
                # a new connection per request, so the kernel spreads them over the workers
                return [play_turn(url, stub.model, sid, r) for r in range(N_ROUNDS)]

            with ThreadPoolExecutor(len(SESSIONS)) as pool:
                played = list(pool.map(play, SESSIONS))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            stop(proc)
    for sid, exts in zip(SESSIONS, played, strict=True):
        assert [belief_of(e) for e in exts] == reference_beliefs(sid, N_ROUNDS)
    _check_log(log, SESSIONS, N_ROUNDS - 1)
