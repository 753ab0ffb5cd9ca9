"""Benchmark: memory a belief session keeps of its own, per domain, beside the simplest
alternative (every session building its own copy of the domain's tables, as the teacher did
before the tables were shared), in the same run.

    python benchmarks/bench_session_memory.py [--sessions 16] [--json]

For each domain (``flight``: 624 hypotheses; ``flight8``: 390,624), ``--sessions`` middleware
sessions are opened (the bundled scripted backend answers; the shared tables are built by a
first session outside the measurement) and each plays one round; the growth of traced Python
memory (tracemalloc) and of the process's resident memory, divided by the number of sessions,
is the per-session figure. The same is then measured for sessions whose teacher builds a
private one-hot marginal table and weight copy (the old layout). The server's estimate
(``beliefagent.server.memory.session_bytes``, used by ``--max-session-memory``) is printed
beside the measurement. With --json the last line is one JSON object keyed by domain.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from beliefagent.adapters import ScriptedBackend
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.middleware import Session
from beliefagent.teachers.tables import domain_tables

MIB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PrivateTables:
    """The simplest layout: a one-hot table of every feature value per teacher (what
    ``teacher._marginals._onehot`` was), and a private copy of the weights."""

    def __init__(self, domain: ChoiceDomain) -> None:
        weights = domain.hypothesis_weights().copy()  # (n_hyp, n_features)
        support, inverse = np.unique(weights, return_inverse=True)
        inverse = inverse.reshape(weights.shape)
        n_hyp, n_cols = weights.shape
        onehot = np.zeros((n_hyp, n_cols * len(support)))  # (n_hyp, n_cols * n_support)
        onehot[np.arange(n_hyp)[:, None], np.arange(n_cols) * len(support) + inverse] = 1.0
        self.weights, self.onehot = weights, onehot


def _open(domain: ChoiceDomain, rng: np.random.Generator, private: bool) -> Any:
    session = Session(domain, ScriptedBackend(lambda _m: "The best option is Flight 2."))
    levels = domain.random_option_sets(rng, 1)[0]
    session.recommend(levels)
    session.observe(1)
    if private:
        session.private_tables = _PrivateTables(domain)  # type: ignore[attr-defined]
    return session


def _measure(make: Callable[[], Any], n: int) -> tuple[float, float]:
    """(traced bytes, resident bytes) per object that ``make`` builds, ``n`` kept alive."""
    gc.collect()
    tracemalloc.start()
    base_traced, base_rss = tracemalloc.get_traced_memory()[0], _rss()
    kept = [make() for _ in range(n)]
    traced, rss = tracemalloc.get_traced_memory()[0], _rss()
    tracemalloc.stop()
    assert len(kept) == n
    del kept
    gc.collect()
    return (traced - base_traced) / n, (rss - base_rss) / n


def main() -> None:
    from beliefagent.server.memory import session_bytes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print(
        f"per-session memory, {args.sessions} sessions per figure, one round each; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    out: dict[str, Any] = {}
    for name in ("flight", "flight8"):
        domain = load_domain(name)
        assert isinstance(domain, ChoiceDomain)
        rng = np.random.default_rng(0)
        _open(domain, rng, private=False)  # builds the shared tables, outside the measurement
        shared = domain_tables(domain, domain.feature_names)
        own, own_rss = _measure(lambda d=domain, g=rng: _open(d, g, private=False), args.sessions)
        n_private = max(2, min(args.sessions, 3)) if name == "flight8" else args.sessions
        priv, priv_rss = _measure(lambda d=domain, g=rng: _open(d, g, private=True), n_private)
        estimate = session_bytes(domain)
        n_hyp = len(domain.hypothesis_weights())
        print(f"  {name} ({n_hyp:,} hypotheses):")
        print(
            f"    shared tables (once per process): {shared.nbytes / MIB:.2f} MiB of codes + "
            f"{domain.hypothesis_weights().nbytes / MIB:.2f} MiB of weights (the domain's)"
        )
        print(
            f"    own state per session: {own / MIB:.3f} MiB traced, {own_rss / MIB:.3f} MiB "
            f"resident; with private tables: {priv / MIB:.3f} MiB traced, "
            f"{priv_rss / MIB:.3f} MiB resident ({priv / max(own, 1):.0f}x)"
        )
        print(
            f"    the server's estimate per session: {estimate / MIB:.3f} MiB "
            f"({'covers' if estimate >= own else 'BELOW'} the measurement)"
        )
        out[name] = {
            "n_hypotheses": n_hyp,
            "own_mib_per_session": own / MIB,
            "own_rss_mib_per_session": own_rss / MIB,
            "private_tables_mib_per_session": priv / MIB,
            "private_tables_rss_mib_per_session": priv_rss / MIB,
            "shared_tables_mib": shared.nbytes / MIB,
            "estimate_mib_per_session": estimate / MIB,
            "sessions": args.sessions,
        }
    goals = (
        out["flight8"]["own_mib_per_session"] <= 4 and out["flight"]["own_mib_per_session"] <= 0.1
    )
    print(f"  targets (flight8 <= 4 MiB, flight <= 0.1 MiB): {'met' if goals else 'NOT met'}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
