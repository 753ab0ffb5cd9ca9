"""Benchmark: the middleware's overhead per turn, against calling the same local stub server
directly with the same prompts, in the same run.

    python benchmarks/bench_middleware.py [--dialogues 40] [--json]

Both paths go through the same OpenAICompatibleBackend to a StubServer on loopback (real HTTP,
label log-probabilities in the reply). The middleware path adds: option validation and
rendering, the exact Bayesian update and recommendation (624 hypotheses), answer parsing, the
policy, and one trajectory record per turn (measured with fsync per record — the default —,
with a group commit every 50 ms (``fsync_interval``), and with fsync off).
The overhead is measured two ways: the difference of median turn times (direct vs middleware,
noisy when the machine is loaded), and, per turn, the middleware's turn time minus the time spent
inside the backend call during that turn (robust to load; the headline figure).
Targets: under 1 ms or 5 % per turn with fsync; at most 1 ms per turn without fsync. With
--json the last line is one JSON object holding ``overhead_ms_per_turn`` (fsync on), ``ratio``
and the rest (``no_fsync_target_met``, ``load_average_1min``, ... added later).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from beliefagent.adapters import (
    GenerationSettings,
    OpenAICompatibleBackend,
    ScriptedBackend,
    StubCompletion,
    StubServer,
)
from beliefagent.domains import load_domain
from beliefagent.middleware import Session
from beliefagent.teachers import SimulatedUser
from beliefagent.trajectories import TrajectoryWriter

REPLY = "The best option is Flight 2."
LABELS = {"1": math.log(0.2), "2": math.log(0.5), "3": math.log(0.3)}


class TimedBackend:
    """Forwards to a backend and adds the time spent in ``complete`` to ``spent``."""

    def __init__(self, inner: OpenAICompatibleBackend) -> None:
        self.inner = inner
        self.name, self.model, self.adapter = inner.name, inner.model, inner.adapter
        self.spent = 0.0

    def complete(self, messages, settings):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return self.inner.complete(messages, settings)
        finally:
            self.spent += time.perf_counter() - t0


GROUP_COMMIT_S = 0.05  # fsync_interval of the group-commit path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialogues", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    flight = load_domain("flight")
    rng = np.random.default_rng(0)
    weights = flight.hypothesis_weights()
    dialogues = [
        (flight.random_option_sets(rng, 5), SimulatedUser(flight, weights[i % 624], seed=i))
        for i in range(args.dialogues)
    ]
    choices = [[u.choose(s) for s in sets] for sets, u in dialogues]

    # the exact prompts and settings the middleware sends, captured once
    recorder = ScriptedBackend(lambda _m: REPLY)
    for (sets, _), cs in zip(dialogues, choices, strict=True):
        session = Session(flight, recorder)
        for s, c in zip(sets, cs, strict=True):
            session.recommend(s)
            session.observe(c)
    calls = recorder.calls
    settings = calls[0][1]
    assert isinstance(settings, GenerationSettings)

    tmp = Path(tempfile.mkdtemp())
    with StubServer(lambda _m: StubCompletion(REPLY, label_logprobs=LABELS)) as srv:
        backend = OpenAICompatibleBackend("stub-model", base_url=srv.base_url)
        for messages, st in calls[:20]:  # warm up connections and code paths
            backend.complete(messages, st)

        def direct() -> list[float]:
            times = []
            for messages, st in calls:
                t0 = time.perf_counter()
                backend.complete(messages, st)
                times.append(time.perf_counter() - t0)
            return times

        timed = TimedBackend(backend)
        own: dict[str, list[float]] = {"fsync": [], "nofsync": [], "group": []}

        def middleware(fsync: bool, interval: float = 0.0) -> list[float]:
            times = []
            key = ("group" if interval else "fsync") if fsync else "nofsync"
            path = tmp / f"log-{key}-{time.time_ns()}.jsonl"
            with TrajectoryWriter(path, fsync=fsync, fsync_interval=interval) as log:
                for (sets, _), cs in zip(dialogues, choices, strict=True):
                    session = Session(flight, timed, log=log)
                    for s, c in zip(sets, cs, strict=True):
                        timed.spent = 0.0
                        t0 = time.perf_counter()
                        session.recommend(s)
                        session.observe(c)
                        elapsed = time.perf_counter() - t0
                        times.append(elapsed)
                        own[key].append(elapsed - timed.spent)
                    session.close()
            return times

        # interleave the paths so drift in machine load hits both alike
        runs: dict[str, list[float]] = {"direct": [], "fsync": [], "nofsync": [], "group": []}
        for _ in range(3):
            runs["direct"] += direct()
            runs["fsync"] += middleware(True)
            runs["nofsync"] += middleware(False)
            runs["group"] += middleware(True, GROUP_COMMIT_S)

    def ms(xs: list[float]) -> float:
        return 1000 * statistics.median(xs)

    base = ms(runs["direct"])
    own_fsync, own_nofsync, own_group = ms(own["fsync"]), ms(own["nofsync"]), ms(own["group"])
    diff_fsync = ms(runs["fsync"]) - base
    n_turns = len(runs["direct"])
    print(f"{n_turns} turns each ({args.dialogues} dialogues x 5 rounds x 3 passes), medians:")
    print(f"  direct call to the stub server:    {base:8.2f} ms per turn")
    print(
        f"  through the middleware, fsync on:  {ms(runs['fsync']):8.2f} ms per turn "
        f"(difference {diff_fsync:+.2f} ms)"
    )
    print(f"  through the middleware, fsync off: {ms(runs['nofsync']):8.2f} ms per turn")
    print(
        f"  through the middleware, group commit every {GROUP_COMMIT_S * 1000:.0f} ms: "
        f"{ms(runs['group']):8.2f} ms per turn"
    )
    print(
        f"  middleware's own time per turn (turn minus backend call): fsync on "
        f"{own_fsync:.2f} ms ({100 * own_fsync / base:.1f} % of a direct call), fsync off "
        f"{own_nofsync:.2f} ms ({100 * own_nofsync / base:.1f} %), group commit "
        f"{own_group:.2f} ms ({100 * own_group / base:.1f} %)"
    )
    ratio = (base + own_fsync) / base
    met = own_fsync < 1.0 or own_fsync / base < 0.05
    print(
        f"  ratio (direct + overhead) / direct: {ratio:.3f}; target (< 1 ms or < 5 %, fsync "
        f"on): {'met' if met else 'NOT met'}"
    )
    met_no_fsync = own_nofsync <= 1.0
    load = os.getloadavg()[0]
    print(
        f"  target without fsync (<= 1 ms per turn): {'met' if met_no_fsync else 'NOT met'}"
        f" ({os.cpu_count()} CPUs, load average {load:.1f})"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "overhead_ms_per_turn": own_fsync,
                    "ratio": ratio,
                    "direct_ms_per_turn": base,
                    "middleware_ms_per_turn": ms(runs["fsync"]),
                    "median_difference_ms": diff_fsync,
                    "overhead_ms_per_turn_no_fsync": own_nofsync,
                    "overhead_ms_per_turn_group_commit": own_group,
                    "group_commit_interval_s": GROUP_COMMIT_S,
                    "turns": n_turns,
                    "no_fsync_target_met": met_no_fsync,
                    "ratio_no_fsync": (base + own_nofsync) / base,
                    "load_average_1min": load,
                }
            )
        )


if __name__ == "__main__":
    main()
