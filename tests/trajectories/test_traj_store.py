"""The JSONL store: round trips, redaction on disk, torn lines, concurrent appenders, a crash."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import beliefagent
from beliefagent.errors import DataError, InputError
from beliefagent.trajectories import (
    Message,
    SessionEnd,
    SessionStart,
    TrajectoryWriter,
    Turn,
    completed_session_ids,
    group_sessions,
    iter_records,
    read_trajectories,
)

from .builders import make_session, make_turn

SK_KEY = "sk-proj-Zy9Xw8Vu7Ts6Rq5Po4Nm3"
BEARER = "abcDEF123ghiJKL456mnoPQR"


def _write(path: Path, records: list[SessionStart | Turn | SessionEnd]) -> None:
    with TrajectoryWriter(path, fsync=False) as log:
        for record in records:
            log.write(record)


def test_round_trip_of_every_kind(log_path: Path) -> None:
    records = make_session("s1", 3)
    _write(log_path, records)
    result = read_trajectories(log_path)
    assert result.records == records
    assert result.clean and result.torn == [] and result.invalid == []
    assert list(iter_records(log_path)) == records
    raw = log_path.read_bytes()
    assert raw.count(b"\n") == len(records) and raw.endswith(b"\n")


def test_writer_appends_to_an_existing_log(log_path: Path) -> None:
    _write(log_path, make_session("s1", 1))
    _write(log_path, make_session("s2", 2))
    assert [r.session_id for r in read_trajectories(log_path).records] == ["s1"] * 3 + ["s2"] * 4


def test_secrets_never_reach_the_file(log_path: Path) -> None:
    start = SessionStart(
        session_id="s1",
        domain="flights",
        policy="advise",
        settings={
            "api_key": "plain-secret-value",
            "headers": {"Authorization": f"Bearer {BEARER}"},
        },
        meta={"note": f"called with {SK_KEY}"},
    )
    turn = make_turn(
        prompt=[
            Message(role="system", content=f"Authorization: Bearer {BEARER}"),
            Message(role="user", content=f"my key is {SK_KEY}, which flight?"),
        ],
        raw_replies=[f"echo {SK_KEY}"],
        errors=[f"HTTP 401 for Bearer {BEARER}"],
    )
    _write(log_path, [start, turn])
    raw = log_path.read_bytes()
    for secret in (SK_KEY, BEARER, "plain-secret-value"):
        assert secret.encode() not in raw
    assert b"[REDACTED]" in raw
    back = read_trajectories(log_path)
    assert back.clean
    back_turn = back.records[1]
    assert isinstance(back_turn, Turn)
    assert back_turn.prompt is not None
    assert back_turn.prompt[1].content == "my key is [REDACTED], which flight?"
    assert back_turn.options == turn.options  # only secrets change
    assert start.meta["note"] == f"called with {SK_KEY}"  # the record itself is not modified


def test_torn_last_line_is_skipped_and_reported(log_path: Path) -> None:
    records = make_session("s1", 2, end=False)
    _write(log_path, records)
    partial = make_turn("s1", 2).model_dump_json().encode()[:150]
    with log_path.open("ab") as handle:
        handle.write(partial)
    result = read_trajectories(log_path)
    assert result.records == records
    assert result.torn == [4]
    assert result.invalid == []
    assert list(iter_records(log_path)) == records
    # strict mode does not fail on a torn line: it is the expected leftover of a crash
    assert read_trajectories(log_path, strict=True).records == records


def test_writer_terminates_a_torn_line_before_appending(log_path: Path) -> None:
    _write(log_path, make_session("s1", 2, end=False))
    with log_path.open("ab") as handle:
        handle.write(make_turn("s1", 2).model_dump_json().encode()[:150])
    more: list[SessionStart | Turn | SessionEnd] = [
        make_turn("s1", 2),
        SessionEnd(session_id="s1", rounds=3),
    ]
    _write(log_path, more)
    result = read_trajectories(log_path)
    assert result.torn == [4]  # the healed fragment is still reported as torn, mid-file
    assert result.invalid == []
    assert result.records[-2:] == more
    assert [t.round for t in group_sessions(result.records)["s1"]] == [0, 1, 2]
    assert completed_session_ids(result.records) == {"s1"}


def test_torn_multibyte_character_counts_as_torn(log_path: Path) -> None:
    _write(log_path, [make_turn(user_message="préféré ✈")])
    line = make_turn(user_message="✈✈✈").model_dump_json().encode()
    cut = line.index("✈".encode()) + 1  # in the middle of a 3-byte character
    with log_path.open("ab") as handle:
        handle.write(line[:cut])
    result = read_trajectories(log_path)
    assert len(result.records) == 1 and result.torn == [2] and result.invalid == []


def test_complete_last_line_without_newline_is_read(log_path: Path) -> None:
    turn = make_turn()
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(turn.model_dump_json().encode())
    result = read_trajectories(log_path)
    assert result.records == [turn] and result.clean


def test_invalid_lines_are_reported_or_raise_in_strict_mode(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_session("s1", 1)
    bad_choice = json.loads(make_turn().model_dump_json())
    bad_choice["user_choice"] = 9
    lines = [
        good[0].model_dump_json(),
        "this is not json",
        json.dumps(bad_choice),
        "",
        json.dumps({"kind": "feedback", "session_id": "s1"}),
        '{"kind": "turn", "round": ' + "7" * 5000 + ', "garbage',  # json.loads: ValueError
        good[1].model_dump_json(),
    ]
    log_path.parent.mkdir(parents=True)
    log_path.write_text("\n".join(lines) + "\n")
    result = read_trajectories(log_path)
    assert result.records == good[:2]
    assert result.torn == []
    assert [line for line, _ in result.invalid] == [2, 3, 5, 6]
    reasons = dict(result.invalid)
    assert "user_choice=9: out of range for 3 option(s)" in reasons[3]
    assert "unknown record kind 'feedback'" in reasons[5]
    with pytest.raises(DataError) as info:
        read_trajectories(log_path, strict=True)
    assert info.value.path == str(log_path) and info.value.line == 2
    assert f"{log_path}:2" in str(info.value)
    with caplog.at_level(logging.WARNING):
        assert list(iter_records(log_path)) == good[:2]
    assert sum("skipped invalid line" in rec.getMessage() for rec in caplog.records) == 4
    with pytest.raises(DataError, match=":2: Invalid JSON"):
        for _ in iter_records(log_path, strict=True):
            pass


def test_fields_from_a_newer_writer_are_dropped_and_reported(log_path: Path) -> None:
    data = json.loads(make_turn().model_dump_json())
    data["sentiment"] = 0.3
    log_path.parent.mkdir(parents=True)
    log_path.write_text(json.dumps(data) + "\n")
    result = read_trajectories(log_path)
    assert result.clean and len(result.records) == 1
    assert result.ignored_fields == {"Turn.sentiment"}


def test_missing_log_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read trajectory log") as info:
        read_trajectories(tmp_path / "nope.jsonl")
    assert info.value.path == str(tmp_path / "nope.jsonl")


def test_writer_rejects_non_records_and_writes_after_close(log_path: Path) -> None:
    log = TrajectoryWriter(log_path, fsync=False)
    with pytest.raises(InputError, match="record="):
        log.write({"kind": "turn"})  # type: ignore[arg-type]
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(InputError, match="closed"):
        log.write(make_turn())


def test_writer_rechecks_records_mutated_without_validation(log_path: Path) -> None:
    broken = make_turn().model_copy(update={"user_choice": 8})
    with (
        TrajectoryWriter(log_path, fsync=False) as log,
        pytest.raises(InputError, match="user_choice=8"),
    ):
        log.write(broken)
    assert log_path.read_bytes() == b""


def test_lone_surrogates_are_written_as_replacement_characters(log_path: Path) -> None:
    turn = make_turn(user_message="bad byte \udcff here, fine ✈")
    _write(log_path, [turn])
    (back,) = read_trajectories(log_path).records
    assert isinstance(back, Turn)
    assert back.user_message == "bad byte \ufffd here, fine ✈"


def test_group_sessions_orders_by_round_and_keeps_empty_sessions() -> None:
    a = make_session("a", 3)
    b = make_session("b", 0, end=False)
    records = [a[0], b[0], a[3], a[1], a[2], a[4]]
    groups = group_sessions(records)
    assert list(groups) == ["a", "b"]
    assert [t.round for t in groups["a"]] == [0, 1, 2]
    assert groups["b"] == []
    assert completed_session_ids(records) == {"a"}


def test_threads_sharing_writers_never_interleave(log_path: Path) -> None:
    filler = "y" * 5000
    shared = TrajectoryWriter(log_path, fsync=False)
    other = TrajectoryWriter(log_path, fsync=False)

    def work(writer: TrajectoryWriter, name: str) -> None:
        for i in range(50):
            writer.write(make_turn(name, i, user_message=filler))

    threads = [threading.Thread(target=work, args=(shared, f"t{k}")) for k in range(3)]
    threads.append(threading.Thread(target=work, args=(other, "t3")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    other.close()
    result = read_trajectories(log_path)
    assert result.clean and len(result.records) == 200
    groups = group_sessions(result.records)
    assert {name: len(turns) for name, turns in groups.items()} == {f"t{k}": 50 for k in range(4)}


def _append_many(path: str, worker: int, count: int) -> None:
    """Process body for the multi-process test (module level so ``spawn`` can import it)."""
    filler = f"{worker}" * 8000  # large lines make interleaving likely if locking were broken
    with TrajectoryWriter(path, fsync=False) as log:
        for i in range(count):
            log.write(make_turn(f"w{worker}", i, user_message=filler))


def test_processes_appending_concurrently_never_interleave(log_path: Path) -> None:
    workers, per_worker = 4, 200
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_append_many, args=(str(log_path), w, per_worker))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    raw = log_path.read_bytes()
    assert raw.count(b"\n") == workers * per_worker
    result = read_trajectories(log_path)
    assert result.clean
    groups = group_sessions(result.records)
    for w in range(workers):
        turns = groups[f"w{w}"]
        assert [t.round for t in turns] == list(range(per_worker))
        assert all(t.user_message == f"{w}" * 8000 for t in turns)
    # each worker's records keep their order within the file
    order = [r.round for r in result.records if isinstance(r, Turn) and r.session_id == "w0"]
    assert order == list(range(per_worker))


def test_killed_writer_loses_nothing_it_reported(log_path: Path) -> None:
    src_dir = Path(beliefagent.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src_dir), os.environ.get("PYTHONPATH", "")]),
    }
    script = Path(__file__).with_name("crash_writer.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log_path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    reported = 0
    try:
        while reported < 40:
            line = proc.stdout.readline()
            assert line, f"child exited early with {proc.poll()}"
            reported = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        tail = proc.stdout.read().split()
        proc.stdout.close()
    reported = max([reported, *map(int, tail)])
    assert proc.returncode == -signal.SIGKILL

    result = read_trajectories(log_path)
    assert result.invalid == []
    assert len(result.torn) <= 1
    rounds = [r.round for r in result.records if isinstance(r, Turn)]
    assert rounds[:reported] == list(range(reported))  # every reported record is present
    # a new writer appends after whatever the crash left, and the log stays readable
    _write(log_path, [SessionEnd(session_id="crash", rounds=len(rounds))])
    after = read_trajectories(log_path)
    assert after.invalid == [] and after.torn == result.torn
    assert completed_session_ids(after.records) == {"crash"}


def test_group_commit_fsyncs_in_batches_and_on_close(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    records = make_session("s1", 40)
    log = TrajectoryWriter(log_path, fsync=True, fsync_interval=3600.0)
    for record in records:
        log.write(record)
    # written (a killed process loses nothing) but not one fsync per record
    assert read_trajectories(log_path).records == records
    assert len(synced) <= 1  # at most the new file's directory entry
    log.close()
    assert len(synced) >= 1 and read_trajectories(log_path).records == records
    # a short interval syncs from the background thread while the writer stays open
    synced.clear()
    with TrajectoryWriter(log_path, fsync=True, fsync_interval=0.01) as log:
        log.write(records[0])
        deadline = time.monotonic() + 5
        while not synced and time.monotonic() < deadline:
            time.sleep(0.01)
        assert synced, "the background thread fsynced the pending record"
        assert "fsync_interval=0.01" in repr(log)


def test_per_record_fsync_is_the_default(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")  # an existing file: no directory fsync
    with TrajectoryWriter(log_path) as log:
        for record in make_session("s1", 2):
            log.write(record)
    assert len(synced) == 4


def test_negative_fsync_interval_names_the_field(log_path: Path) -> None:
    with pytest.raises(InputError) as info:
        TrajectoryWriter(log_path, fsync_interval=-1)
    assert info.value.field == "fsync_interval" and info.value.value == -1


def test_concurrent_fsynced_writes_share_fsyncs(log_path: Path, monkeypatch) -> None:
    """Per-record fsync: every write returns fsynced, but threads writing at the same time
    share one fsync instead of queueing one each behind the write lock."""
    calls = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.01)  # a disk flush
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    writer = TrajectoryWriter(log_path, fsync=True)
    calls.clear()  # the directory fsync at creation
    threads = [
        threading.Thread(target=lambda i=i: writer.write(make_turn(f"s{i}", 0))) for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sorted(r.session_id for r in read_trajectories(log_path).records) == sorted(
        f"s{i}" for i in range(16)
    )
    assert 1 <= len(calls) < 16
