"""Durable sessions: a restarted server (kill -9 included) resumes every open session with the
same belief; closed ids stay closed across restarts and keys; resent turns are idempotent; and
export never stitches two dialogues that share an id."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from server_helpers import (
    FLIGHT,
    ROUNDS,
    belief_of,
    free_port,
    play_choice,
    play_turn,
    reference_beliefs,
    start_serve,
    stop,
    stub_registry,
    turn_body,
)

from beliefagent.adapters import StubServer
from beliefagent.export import sessions_from_log
from beliefagent.server import ServerConfig, create_app
from beliefagent.server.background import serving
from beliefagent.server.store import SQLiteStore, default_store_path
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import SessionStart, TrajectoryWriter, Turn, read_trajectories


@contextmanager
def _server(stub: StubServer, log: Path, **config: Any) -> Iterator[str]:
    """An in-process server on ``log`` with the SQLite store next to it (a new process's
    worth of state each time: a new app, writer and store)."""
    writer = TrajectoryWriter(log, fsync=False)
    store = SQLiteStore(default_store_path(log))
    app = create_app(stub_registry(stub), ServerConfig(**config), log=writer, store=store)
    with serving(app) as url:
        yield url


def test_restart_resumes_every_session_with_the_samebelief_of(stub: StubServer, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    # each round on a fresh server: every request finds its session only in the store
    for r in range(4):
        with _server(stub, log) as url:
            for sid in seen:
                seen[sid].append(play_turn(url, stub.model, sid, r))
    for sid, exts in seen.items():
        assert [belief_of(e) for e in exts] == reference_beliefs(sid, 4)
    read = read_trajectories(log)
    starts = [rec for rec in read.records if isinstance(rec, SessionStart)]
    assert sorted(s.session_id for s in starts) == ["a", "b"]  # never started twice
    assert not [rec for rec in read.records if rec.kind == "session_end"]  # shutdown keeps them
    turns = sorted(
        (t.session_id, t.round, t.user_choice) for t in read.records if isinstance(t, Turn)
    )
    assert turns == [(sid, r, play_choice(sid, r)) for sid in ("a", "b") for r in range(3)]
    # the pending round survived too: its choice goes through the choice endpoint
    with _server(stub, log) as url:
        state = httpx.get(f"{url}/v1/beliefagent/sessions/a").json()
        assert state["round"] == 3 and state["awaiting_choice"] is True
        reply = httpx.post(f"{url}/v1/beliefagent/sessions/a/choice", json={"choice": 1})
        assert reply.status_code == 200 and reply.json()["round"] == 3


def test_closed_ids_stay_closed_and_owned_ids_stay_owned(stub: StubServer, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    keys = ("key-a", "key-b")
    a, b = ({"authorization": f"Bearer {k}"} for k in keys)
    with _server(stub, log, api_keys=keys) as url:
        play_turn(url, stub.model, "closed-one", 0, **a)
        assert httpx.delete(f"{url}/v1/beliefagent/sessions/closed-one", headers=a).is_success
        play_turn(url, stub.model, "owned", 0, **a)
    for _restart in range(2):
        with _server(stub, log, api_keys=keys) as url:
            for headers in (a, b):
                again = httpx.post(
                    f"{url}/v1/chat/completions",
                    json=turn_body(stub.model, "closed-one", 0),
                    headers=headers,
                )
                assert again.status_code == 409, again.text
                assert again.json()["error"]["code"] == "session_closed"
            other = httpx.post(
                f"{url}/v1/chat/completions", json=turn_body(stub.model, "owned", 1), headers=b
            )
            assert other.status_code == 403 and other.json()["error"]["code"] == "session_forbidden"
            assert httpx.get(f"{url}/v1/beliefagent/sessions/owned", headers=b).status_code == 403
    starts = [r for r in read_trajectories(log).records if isinstance(r, SessionStart)]
    assert sorted(s.session_id for s in starts) == ["closed-one", "owned"]


def test_a_resent_turn_gets_the_same_answer_once(stub: StubServer, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    with _server(stub, log) as url:
        play_turn(url, stub.model, "r", 0)
        first = play_turn(url, stub.model, "r", 1)
        calls = len(stub.requests)
        again = play_turn(url, stub.model, "r", 1)  # the client never saw the answer: resends
        assert again == first
        assert len(stub.requests) == calls  # answered from the store, not asked again
        play_turn(url, stub.model, "r", 2)
    turns = [(t.round, t.user_choice) for t in read_trajectories(log).records if t.kind == "turn"]
    assert turns == [(0, play_choice("r", 0)), (1, play_choice("r", 1))]


class _CrashAfterLog(SQLiteStore):
    """A store whose save fails once armed: the process 'dies' after the turn was logged."""

    armed = False

    def save(self, session_id: str, state: dict[str, Any], version: int) -> None:
        if self.armed:
            raise RuntimeError("killed")
        super().save(session_id, state, version)


def test_a_turn_logged_before_a_crash_is_recovered_not_doubled(stub: StubServer, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    writer = TrajectoryWriter(log, fsync=False)
    store = _CrashAfterLog(default_store_path(log))
    app = create_app(stub_registry(stub), ServerConfig(), log=writer, store=store)
    with serving(app) as url:
        play_turn(url, stub.model, "c", 0)
        store.armed = True  # round 0's choice gets logged, then the process is gone
        response = httpx.post(f"{url}/v1/chat/completions", json=turn_body(stub.model, "c", 1))
        assert response.status_code == 500
        store.armed = False
    assert [t.round for t in read_trajectories(log).records if t.kind == "turn"] == [0]
    with _server(stub, log) as url:  # the restart reads the log: round 0 was answered
        exts = [play_turn(url, stub.model, "c", r) for r in (1, 2)]
    assert [belief_of(e) for e in exts] == reference_beliefs("c", 3)[1:]
    turns = [(t.round, t.user_choice) for t in read_trajectories(log).records if t.kind == "turn"]
    assert turns == [(0, play_choice("c", 0)), (1, play_choice("c", 1))]


def test_sessions_from_a_log_without_a_store_are_rebuilt(stub: StubServer, tmp_path) -> None:
    log = tmp_path / "serve.jsonl"
    with _server(stub, log) as url:
        for r in range(3):
            play_turn(url, stub.model, "old", r)
    default_store_path(log).unlink()  # e.g. a log written before the store existed
    with _server(stub, log) as url:
        state = httpx.get(f"{url}/v1/beliefagent/sessions/old").json()
        assert state["round"] == 2 and state["awaiting_choice"] is False  # pending was not logged
        body = turn_body(stub.model, "old", 3, choice=False)
        ext = httpx.post(f"{url}/v1/chat/completions", json=body).json()["beliefagent"]
    teacher = BayesianTeacher(FLIGHT)
    for r in range(2):
        teacher.observe(FLIGHT.parse_option_set(ROUNDS[r]), play_choice("old", r))
    assert ext["round"] == 2 and ext["entropy"] == teacher.summary().entropy


def test_export_keeps_apart_two_dialogues_under_one_id(tmp_path) -> None:
    """The case a server without a session store produced: after a restart a request without
    a choice started a fresh dialogue under the old id; export stitched round 0 of the new one
    to round 1 of the old one."""
    log = tmp_path / "reused.jsonl"
    sets = [FLIGHT.parse_option_set(o) for o in ROUNDS]

    def turn(r: int, options: np.ndarray, choice: int) -> Turn:
        texts = FLIGHT.render_options(options)
        feats = [FLIGHT.feature_values(row) for row in options]
        return Turn(
            session_id="s",
            domain="flight",
            round=r,
            options=[{"text": t, "features": f} for t, f in zip(texts, feats, strict=True)],
            user_choice=choice,
        )

    with TrajectoryWriter(log, fsync=False) as writer:
        writer.write(SessionStart(session_id="s", domain="flight", policy="llm"))
        writer.write(turn(0, sets[0], 0))
        writer.write(turn(1, sets[1], 1))
        writer.write(SessionStart(session_id="s", domain="flight", policy="llm"))  # restart
        writer.write(turn(0, sets[2], 2))
    sessions = sessions_from_log(log).sessions["flight"]
    got = {s.session_id: (s.user_choices, s.option_sets.tolist()) for s in sessions}
    assert got == {
        "s": ([0, 1], np.stack(sets[:2]).tolist()),
        "s#2": ([2], np.stack(sets[2:3]).tolist()),
    }


@pytest.mark.parametrize("signum", [signal.SIGKILL])
def test_kill_9_mid_dialogue_then_restart(tmp_path: Path, signum: int) -> None:
    log = tmp_path / "serve.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with StubServer(lambda _m: "The best option is Flight 2.") as stub:
        args = ["--upstream", stub.base_url, "--upstream-model", stub.model, "--log", str(log)]
        env = {"OPENAI_API_KEY": "sk-upstream"}
        exts: dict[str, list[dict[str, Any]]] = {"k1": [], "k2": []}
        proc = start_serve(args, port, env)
        try:
            for r in range(3):
                for sid in exts:
                    exts[sid].append(play_turn(url, stub.model, sid, r))
            os.kill(proc.pid, signum)
            proc.wait(timeout=30)
        finally:
            stop(proc)
        proc = start_serve(args, port, env)
        try:
            for r in range(3, 5):
                for sid in exts:
                    exts[sid].append(play_turn(url, stub.model, sid, r))
        finally:
            stop(proc)
    for sid, got in exts.items():
        assert [belief_of(e) for e in got] == reference_beliefs(sid, 5)
    read = read_trajectories(log)
    assert sorted(r.session_id for r in read.records if r.kind == "session_start") == ["k1", "k2"]
    rounds = sorted((t.session_id, t.round) for t in read.records if t.kind == "turn")
    assert rounds == [(sid, r) for sid in ("k1", "k2") for r in range(4)]
