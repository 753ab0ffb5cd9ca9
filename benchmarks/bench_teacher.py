"""Benchmark: the full paper evaluation of the Bayesian teacher (624 users x 6 checkpoints x 100
held-out sets), vectorised vs a straightforward per-hypothesis Python implementation, in the same
run; then time and peak memory of one belief update for hypothesis spaces from 624 (4 features)
up to 390,624 (8 features): the teacher's update (``BayesianTeacher.observe``: the chosen
option's likelihood only, computed blockwise) beside the simplest one (the full likelihood table,
then a log-space update of the whole array), in the same run.

    python benchmarks/bench_teacher.py [--json] [--repeat 5]

Uses the official files in ../shared/data/qiu2026 when present, else generated data.
With --json the last line is one JSON object with ``seconds``, ``naive_seconds``, ``ratio``,
``updates`` (per size: ``ms_per_update``, the teacher's, and ``table_ms_per_update``, the
simplest) and ``update_ms_390624`` / ``table_update_ms_390624``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc

import numpy as np

from beliefagent.belief import Belief, NoiseFree
from beliefagent.datasets import load_heldout, load_interactions
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.errors import DataError
from beliefagent.eval.teacher import generate_heldout, generate_interactions
from beliefagent.teachers import BayesianTeacher, heldout_accuracy_by_round


def naive_accuracy_by_round(weights, rounds_x, choices, held_x, truth):
    """One hypothesis at a time, plain Python lists and loops (the simplest correct code)."""
    hyps = weights.tolist()
    n_users, n_rounds = len(choices), len(choices[0])
    correct = [0.0] * (n_rounds + 1)
    for u in range(n_users):
        post = [1.0 / len(hyps)] * len(hyps)
        for r in range(n_rounds + 1):
            mean = [
                sum(p * w[j] for p, w in zip(post, hyps, strict=True)) for j in range(len(hyps[0]))
            ]
            hits = 0
            for k, opts in enumerate(held_x):
                scores = [sum(m * x for m, x in zip(mean, o, strict=True)) for o in opts]
                best = max(scores)
                pred = next(i for i, s in enumerate(scores) if s >= best - 1e-9)
                hits += pred == truth[u][k]
            correct[r] += hits / len(held_x)
            if r == n_rounds:
                break
            opts = rounds_x[u][r]
            c = choices[u][r]
            new = []
            for p, w in zip(post, hyps, strict=True):
                utils = [sum(wi * xi for wi, xi in zip(w, o, strict=True)) for o in opts]
                best = max(utils)
                tied = [x >= best - 1e-9 for x in utils]
                new.append(p * (1.0 / sum(tied) if tied[c] else 0.0))
            total = sum(new)
            if total > 0:
                post = [p / total for p in new]
    return [c / n_users for c in correct]


def load_data(domain: ChoiceDomain):
    try:
        held = load_heldout("heldout_flight.json", domain)
        inter = load_interactions("interaction_flight.jsonl", domain)
        return (
            inter.user_weights,
            inter.rounds,
            inter.choices,
            held.option_sets,
            held.truth,
            "official",
        )
    except DataError:
        rng = np.random.default_rng(0)
        inter = generate_interactions(domain, None, rng)
        held = generate_heldout(domain, inter.user_weights, 100, rng)
        return (
            inter.user_weights,
            inter.rounds,
            inter.choices,
            held.option_sets,
            held.truth,
            "generated",
        )


def bench_update(domain: ChoiceDomain, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    weights = domain.hypothesis_weights()
    sets = domain.random_option_sets(rng, repeat + 1)
    model = NoiseFree()
    teacher = BayesianTeacher(domain)  # builds the shared tables, outside the timing
    teacher.observe(sets[-1], 0)  # warm up
    table_belief = Belief(len(weights))
    table_belief.update(model.probs(weights @ domain.codes(sets[-1]).T), 0)
    fast, table = [], []
    for s in sets[:repeat]:  # interleaved, so load drifts hit both alike
        teacher.reset()
        t0 = time.perf_counter()
        teacher.observe(s, 0)
        fast.append(time.perf_counter() - t0)
        belief = Belief(len(weights))
        t0 = time.perf_counter()
        belief.update(model.probs(weights @ domain.codes(s).T), 0)
        table.append(time.perf_counter() - t0)
        assert np.allclose(np.exp(belief.log_post), np.exp(teacher.belief.log_post))
    teacher.reset()
    tracemalloc.start()  # a separate pass: tracing slows large allocations down
    teacher.observe(sets[0], 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    belief = Belief(len(weights))
    tracemalloc.start()
    belief.update(model.probs(weights @ domain.codes(sets[0]).T), 0)
    _, table_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n_hypotheses": len(weights),
        "ms_per_update": 1000 * float(np.median(fast)),
        "table_ms_per_update": 1000 * float(np.median(table)),
        "peak_mib": peak / 2**20,
        "table_peak_mib": table_peak / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    domain = load_domain("flight")
    weights, rounds, choices, held, truth, source = load_data(domain)

    fast = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        acc = heldout_accuracy_by_round(domain, weights, rounds, choices, held, truth)
        fast.append(time.perf_counter() - t0)
    seconds = float(np.median(fast))

    t0 = time.perf_counter()
    naive = naive_accuracy_by_round(
        domain.hypothesis_weights(),
        domain.codes(rounds).tolist(),
        choices.tolist(),
        domain.codes(held).tolist(),
        truth.tolist(),
    )
    naive_seconds = time.perf_counter() - t0
    assert np.allclose(acc, naive), (acc, naive)

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"full paper evaluation ({source} data, {len(choices)} users x {rounds.shape[1] + 1} "
        f"checkpoints x {len(held)} held-out sets), {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={threads}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"  vectorised: {seconds:.4f} s (median of {args.repeat})")
    print(f"  naive per-hypothesis Python: {naive_seconds:.1f} s")
    ratio = naive_seconds / seconds
    met = seconds <= 0.05 and ratio >= 100
    print(
        f"  ratio naive/vectorised: {ratio:.0f}x   target <= 0.05 s and >= 100x: "
        f"{'met' if met else 'NOT met'}"
    )
    print("  accuracy by round:", " / ".join(f"{100 * a:.1f}" for a in acc))
    scaling = []
    print(
        "one belief update (noise-free), by hypothesis-space size: the teacher's (chosen option,"
        " blockwise) vs the full likelihood table, medians of "
        f"{max(args.repeat, 9)}"
    )
    for k in range(4, 9):
        row = bench_update(load_domain(f"flight-{k}"), max(args.repeat, 9))
        scaling.append({"features": k, **row})
        print(
            f"  {k} features, {row['n_hypotheses']:>7,} hypotheses: "
            f"{row['ms_per_update']:7.2f} ms (table: {row['table_ms_per_update']:7.2f} ms, "
            f"{row['table_ms_per_update'] / row['ms_per_update']:.1f}x), peak "
            f"{row['peak_mib']:6.1f} MiB (table: {row['table_peak_mib']:6.1f} MiB)"
        )
    last = scaling[-1]
    print(
        f"  target <= 20 ms at {last['n_hypotheses']:,}: "
        f"{'met' if last['ms_per_update'] <= 20 else 'NOT met'}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "naive_seconds": naive_seconds,
                    "ratio": naive_seconds / seconds,
                    "source": source,
                    "accuracy_by_round": [100 * a for a in acc],
                    "updates": scaling,
                    "update_ms_390624": last["ms_per_update"],
                    "table_update_ms_390624": last["table_ms_per_update"],
                    "omp_num_threads": threads,
                    "load_average_1min": os.getloadavg()[0],
                }
            )
        )


if __name__ == "__main__":
    main()
