"""A dialogue runner killed with SIGKILL mid-run loses no completed turn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from beliefagent.trajectories import read_trajectories

CHILD = Path(__file__).with_name("crash_dialogue.py")


def test_sigkill_mid_dialogue_loses_no_completed_turn(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(log)], stdout=subprocess.PIPE, text=True, env=env
    )
    reported: list[tuple[str, int]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(reported) < 23 and time.monotonic() < deadline:  # stop mid-dialogue (23 = 4*5+3)
        line = proc.stdout.readline()
        if not line:
            break
        sid, rnd = line.split()
        reported.append((sid, int(rnd)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # turns logged between our last read and the kill
        sid, rnd = line.split()
        reported.append((sid, int(rnd)))
    assert len(reported) >= 23

    read = read_trajectories(log)
    assert len(read.torn) <= 1 and not read.invalid
    logged = {(r.session_id, r.round) for r in read.records if r.kind == "turn"}
    assert set(reported) <= logged
    # completed sessions are closed; the one in flight has no end record
    ends = {r.session_id for r in read.records if r.kind == "session_end"}
    assert {"s0", "s1", "s2", "s3"} <= ends
