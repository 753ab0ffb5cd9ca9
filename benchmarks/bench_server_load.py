"""Load test of ``beliefagent serve`` on loopback: concurrent belief sessions through the server
in front of a stub upstream, checking the trajectory log afterwards.

    python benchmarks/bench_server_load.py                      # closed loop, 50 sessions x 5
    python benchmarks/bench_server_load.py --rate 100           # open loop: 100 turns/s offered
    python benchmarks/bench_server_load.py --workers 2          # serve --workers 2 on Redis
    python benchmarks/bench_server_load.py --json               # ends with one JSON object

What runs: a :class:`~beliefagent.adapters.StubServer` in its own process answers every chat
completion; ``beliefagent serve --upstream <stub>`` runs as its own process (as in production,
with ``--log``, fsync on unless ``--no-fsync``, its default session store — SQLite next to the
log — or ``--session-store``; ``--workers N`` > 1 starts a redis-server and uses it); client
threads in this process each play one session of ``--rounds`` rounds (the previous round's
choice sent with each request, the last one through the choice endpoint), then close it.

Closed loop (default): each session sends its next turn as soon as the previous one answered.
Open loop (``--rate R``): turns are scheduled at R per second in all (each session every
``sessions / R`` seconds, sessions staggered), and a turn's latency runs from its scheduled
time, so a server that falls behind is charged for the queueing too.

Latency: the stub's own latency is measured directly in the same run, with the same requests the
server sent upstream (same messages, logprobs, concurrency, and in open loop the same schedule).
"Added" latency is a percentile of the server round-trip minus the same percentile of the direct
stub round-trip; the ratio is server p50 / stub p50.

Log check: every session must have rounds 0..rounds-1 exactly once, each with the choice the
client sent and the options it sent (no turn lost, duplicated or mixed up between sessions),
and a session_end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from beliefagent.adapters import StubServer
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.trajectories import read_trajectories

ANSWER = "The best option is Flight 2."
_RUN = "import typer; from beliefagent.server import serve_command; typer.run(serve_command)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _option_sets(n_sessions: int, rounds: int, seed: int) -> list[list[list[str]]]:
    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sessions):
        sets = domain.random_option_sets(rng, rounds)  # (rounds, n_options, n_features)
        out.append([[t.split(": ", 1)[1] for t in domain.render_options(s)] for s in sets])
    return out


def _choice(session: int, round_: int) -> int:
    return (session * 7 + round_ * 3) % 3


def _percentiles(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values) * 1000.0  # ms
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _direct_stub(
    base_url: str, bodies: list[list[dict[str, Any]]], rate: float | None = None
) -> list[float]:
    """Round-trips straight to the stub, one thread per session, same request shape (and in
    open loop the same schedule)."""
    t0 = time.perf_counter() + 0.5

    def run(index: int) -> list[float]:
        session_bodies = bodies[index]
        out = []
        with httpx.Client(timeout=60) as client:
            # open the keep-alive connection first (the stub's listen backlog is small), as the
            # server's upstream pool is open by the time it is measured
            for _attempt in range(20):
                try:
                    client.post(f"{base_url}/chat/completions", json=session_bodies[0])
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            for r, body in enumerate(session_bodies):
                start = _wait_turn(t0, index, r, len(bodies), rate)
                response = client.post(f"{base_url}/chat/completions", json=body)
                out.append(time.perf_counter() - start)
                response.raise_for_status()
        return out

    with ThreadPoolExecutor(len(bodies)) as pool:
        return [t for ts in pool.map(run, range(len(bodies))) for t in ts]


def _wait_turn(t0: float, index: int, r: int, n_sessions: int, rate: float | None) -> float:
    """Closed loop: now. Open loop: sleep until the turn's scheduled time and return it."""
    if rate is None:
        return time.perf_counter()
    scheduled = t0 + index / rate + r * n_sessions / rate
    delay = scheduled - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    return scheduled


def _through_server(
    url: str,
    model: str,
    sets: list[list[list[str]]],
    prefix: str = "bench",
    rate: float | None = None,
) -> tuple[list[float], list[str]]:
    t0 = time.perf_counter() + 0.5

    def run(index: int) -> tuple[list[float], list[str]]:
        sid = f"{prefix}-{index:03d}"
        times, errors = [], []
        with httpx.Client(timeout=60) as client:
            for r, options in enumerate(sets[index]):
                ext: dict[str, Any] = {"session_id": sid, "options": options}
                if r:
                    ext["choice"] = _choice(index, r - 1)
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": "Which flight?"}],
                    "beliefagent": ext,
                }
                start = _wait_turn(t0, index, r, len(sets), rate)
                response = client.post(f"{url}/v1/chat/completions", json=body)
                times.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{sid} round {r}: {response.status_code} {response.text[:200]}")
                elif response.json()["beliefagent"]["round"] != r:
                    errors.append(f"{sid} round {r}: server says round {response.json()}")
            last = len(sets[index]) - 1
            done = client.post(
                f"{url}/v1/beliefagent/sessions/{sid}/choice",
                json={"choice": _choice(index, last)},
            )
            if done.status_code != 200:
                errors.append(f"{sid} final choice: {done.status_code} {done.text[:200]}")
            client.delete(f"{url}/v1/beliefagent/sessions/{sid}")
        return times, errors

    with ThreadPoolExecutor(len(sets)) as pool:
        results = list(pool.map(run, range(len(sets))))
    return [t for ts, _ in results for t in ts], [e for _, es in results for e in es]


def _check_log(log: Path, sets: list[list[list[str]]]) -> dict[str, int]:
    read = read_trajectories(log)
    turns: dict[tuple[str, int], list[Any]] = {}
    ends: set[str] = set()
    for record in read.records:
        if not record.session_id.startswith("bench-"):
            continue  # the warm-up sessions
        if record.kind == "turn":
            turns.setdefault((record.session_id, record.round), []).append(record)
        elif record.kind == "session_end":
            ends.add(record.session_id)
    lost = duplicated = mixed = 0
    for index, session_sets in enumerate(sets):
        sid = f"bench-{index:03d}"
        for r, options in enumerate(session_sets):
            found = turns.pop((sid, r), [])
            if not found:
                lost += 1
                continue
            duplicated += len(found) - 1
            turn = found[0]
            texts = [o.text.split(": ", 1)[1] for o in turn.options]
            if turn.user_choice != _choice(index, r) or texts != options:
                mixed += 1
    return {
        "lost_turns": lost,
        "duplicated_turns": duplicated,
        "mixed_turns": mixed,
        "unexpected_turns": sum(len(v) for v in turns.values()),
        "missing_session_ends": len(sets)
        - len(ends & {f"bench-{i:03d}" for i in range(len(sets))}),
        "unreadable_lines": len(read.torn) + len(read.invalid),
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants (Linux /proc).
    Unlike latency it hardly depends on what else runs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _stub_process(record: Path) -> int:
    """The stub upstream as its own process: prints its base URL, serves until stdin closes,
    then writes every request body it received to ``record`` (JSONL)."""
    with StubServer(lambda _m: ANSWER) as stub:
        print(stub.base_url, flush=True)
        sys.stdin.read()
        with record.open("w") as out:
            for body in stub.requests:
                out.write(json.dumps(body) + "\n")
    return 0


def _start_stub(record: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--stub-process", str(record)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _stop_stub(proc: subprocess.Popen[str], record: Path) -> list[dict[str, Any]]:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=60)
    return [json.loads(line) for line in record.read_text().splitlines()]


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--workers above 1 needs redis-server (apt-get install redis-server)")
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(tmp)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fsync", action="store_true", help="log without fsync")
    parser.add_argument(
        "--fsync-interval", type=float, default=0.0, help="group commit: fsync every N s"
    )
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (Redis if > 1)")
    parser.add_argument("--session-store", default=None, help="serve --session-store")
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop: turns per second offered in all"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--stub-process", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub_process is not None:
        return _stub_process(args.stub_process)

    sets = _option_sets(args.sessions, args.rounds, args.seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "bench.jsonl"
        record = tmp / "stub-requests.jsonl"
        redis_proc = None
        store = args.session_store
        if args.workers > 1 and store is None:
            redis_proc, store = _start_redis(tmp)
        stub_proc, stub_url = _start_stub(record)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-c", _RUN, "--upstream", stub_url]
        argv += ["--upstream-model", "stub-model", "--log", str(log), "--port", str(port)]
        argv += ["--log-level", "warning", "--upstream-retries", "0"]
        argv += ["--workers", str(args.workers)]
        argv += ["--session-store", store] if store else []
        argv += ["--no-log-fsync"] if args.no_fsync else []
        argv += ["--log-fsync-interval", str(args.fsync_interval)] if args.fsync_interval else []
        proc = subprocess.Popen(argv, env={**os.environ, "OPENAI_API_KEY": "sk-bench"})
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("serve did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            # warm up (imports, every worker's upstream connection pool) outside the
            # measurement, with sessions of their own
            _through_server(url, "stub-model", [s[:1] for s in sets], prefix="warmup")
            cpu_before = _cpu_seconds(proc.pid)
            stub_cpu_before = _cpu_seconds(stub_proc.pid)
            start = time.perf_counter()
            server_times, errors = _through_server(url, "stub-model", sets, rate=args.rate)
            wall = time.perf_counter() - start
            server_cpu = _cpu_seconds(proc.pid) - cpu_before
            stub_cpu = _cpu_seconds(stub_proc.pid) - stub_cpu_before
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        sent = _stop_stub(stub_proc, record)[len(sets) :]  # past the warm-up requests
        # the same upstream requests the server sent, now straight to a fresh stub process
        by_session = [sent[i :: args.sessions] for i in range(args.sessions)]
        stub_proc, stub_url = _start_stub(record)
        try:
            stub_times = _direct_stub(stub_url, by_session, rate=args.rate)
        finally:
            _stop_stub(stub_proc, record)
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(timeout=10)
        checks = _check_log(log, sets)

    s50, s99 = _percentiles(server_times)
    d50, d99 = _percentiles(stub_times)
    fsync = (
        "off"
        if args.no_fsync
        else (f"group commit {args.fsync_interval:g} s" if args.fsync_interval else "every record")
    )
    result = {
        "sessions": args.sessions,
        "rounds": args.rounds,
        "turns": args.sessions * args.rounds,
        "fsync": not args.no_fsync,
        "fsync_mode": fsync,
        "workers": args.workers,
        "session_store": store or "sqlite (default, next to the log)",
        "mode": "open loop" if args.rate else "closed loop",
        "rate": args.rate,
        "p50_ms": round(s50 - d50, 2),
        "p99_ms": round(s99 - d99, 2),
        "server_p50_ms": round(s50, 2),
        "server_p99_ms": round(s99, 2),
        "stub_p50_ms": round(d50, 2),
        "stub_p99_ms": round(d99, 2),
        "ratio_p50": round(s50 / d50, 2) if d50 > 0 else None,
        "turns_per_s": round(len(server_times) / wall, 1),
        # requests = turns + the final choice and the close of each session
        "server_cpu_ms_per_turn": round(1000 * server_cpu / len(server_times), 2),
        "stub_cpu_ms_per_turn": round(1000 * stub_cpu / len(server_times), 2),
        "errors": len(errors),
        **checks,
    }
    for error in errors[:5]:
        print(error, file=sys.stderr)
    print(
        f"{args.sessions} sessions x {args.rounds} rounds, {result['mode']}"
        f"{f' at {args.rate:g} turns/s' if args.rate else ''}, {args.workers} worker(s),"
        f" fsync {fsync}: server p50 {s50:.1f} ms, p99 {s99:.1f} ms; stub alone p50"
        f" {d50:.1f} ms, p99 {d99:.1f} ms; added p50 {s50 - d50:.1f} ms, p99 {s99 - d99:.1f} ms"
        f" (x{result['ratio_p50']}); {result['turns_per_s']} turns/s; server CPU"
        f" {result['server_cpu_ms_per_turn']} ms a turn (stub {result['stub_cpu_ms_per_turn']} ms)"
    )
    print(
        f"log: lost {checks['lost_turns']}, duplicated {checks['duplicated_turns']}, mixed"
        f" {checks['mixed_turns']}, unexpected {checks['unexpected_turns']}, missing ends"
        f" {checks['missing_session_ends']}, unreadable {checks['unreadable_lines']}"
    )
    if args.json:
        print(json.dumps(result))
    bad = errors or any(checks.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
