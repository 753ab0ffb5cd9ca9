"""Benchmark: choosing 3 of N candidates by expected information gain, exact vs greedy.

For ``--users`` simulated users of the flight domain, each round draws a pool of ``--pool``
random candidates and selects 3 by EIG twice on the same posterior: ``exact`` (every one of the
``C(N, 3)`` subsets, 161,700 for N = 100) and ``greedy`` (the documented seeded greedy search
with swaps). Two dialogues run per user on the same pools, one following each search, and both
are scored on the same held-out sets (the paper's protocol), so the figures are paired:

- time per round of each search (mean, p95, max) and their ratio;
- the EIG greedy loses against the exact optimum on the same posterior (% of the optimum), and
  how often it finds the optimum;
- held-out accuracy after rounds 0..5 following each, and the difference in points.

    python benchmarks/bench_selection.py [--users 30] [--pool 100] [--epsilon 0] [--json]

``--epsilon E`` makes the users ε-noisy and the teacher's likelihood ε-greedy. Times are
wall-clock (``time.perf_counter``) and CPU (``time.process_time``: on a machine whose cores are
shared, the time this process actually computed) around the selection call only. With --json
the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from beliefagent.belief import (
    Belief,
    ChoiceModel,
    EpsilonGreedy,
    NoiseFree,
    SelectionConfig,
    select_subset,
)
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.eval.selection import random_pool
from beliefagent.eval.teacher import generate_heldout
from beliefagent.teachers import heldout_accuracy_by_round, sample_users


def _dialogue(
    domain: ChoiceDomain,
    w: np.ndarray,
    uid: int,
    seed: int,
    pool: int,
    lik: ChoiceModel,
    eps: float,
    follow: str,
) -> dict[str, list]:
    """One user's dialogue following ``follow``'s selections; both searches run every round."""
    hyp = domain.hypothesis_weights()
    pools = np.random.default_rng([seed, 1, uid])
    noise = np.random.default_rng([seed, 2, uid])
    belief = Belief(len(hyp))
    out: dict[str, list] = {"rounds": [], "choices": [], "ms": [], "gain": [], "round": []}
    out.update({"ms_exact": [], "ms_greedy": [], "gain_exact": [], "gain_greedy": []})
    out.update({"cpu_exact": [], "cpu_greedy": []})
    k = domain.n_options
    for r in range(domain.rounds):
        cands = random_pool(domain, pools, pool)
        x = domain.codes(cands)
        util = hyp @ x.T  # (H, N)
        picks = {}
        for search in ("exact", "greedy"):
            t0, c0 = time.perf_counter(), time.process_time()
            sel = select_subset(belief.probs, util, k, lik, SelectionConfig("eig", search=search))
            out[f"ms_{search}"].append(1000 * (time.perf_counter() - t0))
            out[f"cpu_{search}"].append(1000 * (time.process_time() - c0))
            out[f"gain_{search}"].append(sel.information_gain)
            picks[search] = np.asarray(sel.indices)
        shown = picks[follow]
        true = x[shown] @ w
        tied = true >= true.max() - TIE_TOL
        favourite = int(np.argmax(np.where(tied, noise.random(k), -1.0)))
        coin, other = noise.random(), int(noise.integers(k))
        choice = other if coin < eps else favourite
        out["rounds"].append(cands[shown])
        out["choices"].append(choice)
        out["round"].append(r)
        belief.update(lik.probs(util[:, shown]), choice)
    return out


def _stats(ms: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(ms.mean()), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "max": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--heldout-sets", type=int, default=100)
    parser.add_argument("--epsilon", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    lik: ChoiceModel = EpsilonGreedy(args.epsilon) if args.epsilon > 0 else NoiseFree()
    rng = np.random.default_rng(args.seed)
    idx = sample_users(domain, args.users, rng)
    weights = domain.hypothesis_weights()[idx]
    held = generate_heldout(domain, weights, args.heldout_sets, rng)
    # warm-up (first-call costs: the subset table, imports)
    select_subset(np.full(624, 1 / 624), np.zeros((624, args.pool)), 3, lik)

    runs = {
        follow: [
            _dialogue(
                domain, weights[u], int(idx[u]), args.seed, args.pool, lik, args.epsilon, follow
            )
            for u in range(len(idx))
        ]
        for follow in ("exact", "greedy")
    }
    acc = {}
    for follow, dialogues in runs.items():
        rounds = np.stack([np.stack(d["rounds"]) for d in dialogues])  # (U, R, O, F)
        choices = np.array([d["choices"] for d in dialogues], dtype=np.int64)
        a = heldout_accuracy_by_round(
            domain, weights, rounds, choices, held.option_sets, held.truth, lik
        )
        acc[follow] = [round(100 * float(v), 2) for v in a]
    every = [d for ds in runs.values() for d in ds]
    ms_e = np.array([m for d in every for m in d["ms_exact"]])
    ms_g = np.array([m for d in every for m in d["ms_greedy"]])
    cpu_e = np.array([m for d in every for m in d["cpu_exact"]])
    cpu_g = np.array([m for d in every for m in d["cpu_greedy"]])
    g_e = np.array([g for d in every for g in d["gain_exact"]])
    g_g = np.array([g for d in every for g in d["gain_greedy"]])
    rnd = np.array([r for d in every for r in d["round"]])
    loss = 100 * (1 - g_g / g_e)
    diff = [round(g - e, 2) for g, e in zip(acc["greedy"], acc["exact"], strict=True)]
    result = {
        "users": len(idx),
        "pool": args.pool,
        "epsilon": args.epsilon,
        "selections": len(ms_e),
        "exact_ms": _stats(ms_e),
        "greedy_ms": _stats(ms_g),
        "exact_ms_round0": _stats(ms_e[rnd == 0]),
        "greedy_ms_round0": _stats(ms_g[rnd == 0]),
        "exact_cpu_ms": _stats(cpu_e),
        "greedy_cpu_ms": _stats(cpu_g),
        "greedy_cpu_within_50ms": round(100 * float((cpu_g <= 50).mean()), 1),
        "speedup_mean": round(float(ms_e.mean() / ms_g.mean()), 1),
        "greedy_within_50ms": round(100 * float((ms_g <= 50).mean()), 1),
        "eig_loss_pct_mean": round(float(loss.mean()), 3),
        "eig_loss_pct_max": round(float(loss.max()), 3),
        "greedy_optimal_pct": round(100 * float((loss <= 1e-6).mean()), 1),
        "accuracy_exact": acc["exact"],
        "accuracy_greedy": acc["greedy"],
        "accuracy_greedy_minus_exact": diff,
    }
    print(f"flight, pool {args.pool}, {len(idx)} users, epsilon {args.epsilon}:")
    print(f"{len(ms_e)} selections of 3 of {args.pool}, both searches on the same posterior")
    for name, key in (("exact ", "exact_ms"), ("greedy", "greedy_ms")):
        s, s0 = result[key], result[f"{key.split('_')[0]}_ms_round0"]
        print(
            f"  {name}: {s['mean']:8.1f} ms mean, p95 {s['p95']:8.1f}, max {s['max']:8.1f}"
            f"  (round 0, every hypothesis alive: mean {s0['mean']:.1f}, max {s0['max']:.1f})"
        )
    print(
        f"  exact / greedy time: {result['speedup_mean']}x;"
        f" greedy rounds within 50 ms: {result['greedy_within_50ms']}%"
    )
    print(
        f"  EIG greedy loses vs exact: mean {result['eig_loss_pct_mean']:.3f}% of the optimum,"
        f" max {result['eig_loss_pct_max']:.3f}%; optimum found in"
        f" {result['greedy_optimal_pct']}% of rounds"
    )
    print("  held-out accuracy (%) after rounds 0..5, following each search:")
    print("    exact  ", acc["exact"])
    print("    greedy ", acc["greedy"])
    print("    greedy - exact (points)", diff)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
