"""Benchmark: held-out scoring with the history's KV cache shared vs every query from scratch.

After ``--rounds`` rounds of the paper's dialogue (the history), ``--queries`` held-out questions
are scored with the bundled SmolLM2: once with ``LocalBackend.score_queries`` (one pass over the
history, its cache shared by the queries: what the evaluation harness does) and once with
``LocalBackend.score`` per query (the whole conversation each time). Both must give the same
label log-probabilities.

    python benchmarks/bench_eval_cache.py [--queries 8] [--rounds 5] [--json]

With --json the last line is one JSON object with ``cached_seconds``, ``uncached_seconds``,
``ratio`` (uncached / cached) and ``max_abs_diff``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from beliefagent.adapters import LocalBackend
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.eval.tasks import ChoiceFormat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=8, help="held-out queries")
    parser.add_argument("--rounds", type=int, default=5, help="dialogue rounds in the history")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    fmt = ChoiceFormat(domain)
    rng = np.random.default_rng(args.seed)
    sets = domain.random_option_sets(rng, args.rounds + args.queries)  # (R + Q, O, F)
    history: list[dict[str, str]] = []
    last: tuple[int | None, int] | None = None
    for r in range(args.rounds):
        history.append({"role": "user", "content": fmt.user_message(last, sets[r])})
        answer, choice = int(rng.integers(3)), int(rng.integers(3))
        history.append({"role": "assistant", "content": fmt.answer_text(answer)})
        last = (answer, choice)
    queries = [
        [{"role": "user", "content": fmt.user_message(last, s)}] for s in sets[args.rounds :]
    ]
    backend = LocalBackend(dtype="float32", prefix_cache=False)  # the float32 path, no reuse
    backend.score(history[:1], fmt.labels, fmt.answer_prefix)  # warm-up

    start = time.perf_counter()
    cached = backend.score_queries(history, queries, fmt.labels, fmt.answer_prefix)
    cached_s = time.perf_counter() - start

    start = time.perf_counter()
    uncached = [backend.score([*history, *q], fmt.labels, fmt.answer_prefix) for q in queries]
    uncached_s = time.perf_counter() - start

    diff = max(abs(a[c] - b[c]) for a, b in zip(cached, uncached, strict=True) for c in fmt.labels)
    ratio = uncached_s / cached_s
    print(f"history: {args.rounds} rounds; {args.queries} held-out queries; labels {fmt.labels}")
    print(f"shared history cache (score_queries): {cached_s:8.2f} s")
    print(f"each query from scratch (score):      {uncached_s:8.2f} s")
    print(f"speed-up: {ratio:.2f}x   max |logprob difference|: {diff:.2e}")
    if args.json:
        print(
            json.dumps(
                {
                    "cached_seconds": round(cached_s, 4),
                    "uncached_seconds": round(uncached_s, 4),
                    "ratio": round(ratio, 3),
                    "max_abs_diff": diff,
                    "queries": args.queries,
                    "rounds": args.rounds,
                }
            )
        )


if __name__ == "__main__":
    main()
