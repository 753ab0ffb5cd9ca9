"""Benchmark: local evaluation, the float32 path against the default (bf16 where native, prefix
cache kept across rounds), through the real evaluation harness.

    python benchmarks/bench_local_eval.py [--json] [--users 2] [--heldout-sets 16]
        [--domain flight] [--threads 2] [--seed 0] [--profile]

One run measures, on the same users and held-out sets as
``beliefagent eval --assistant local --users 2 --heldout-sets 16 --no-probe``:

1. ``old``: ``LocalBackend(dtype="float32", prefix_cache=False)``, the float32 path where each
   round's history is run from scratch (one pass over the history, its KV cache expanded to
   the batch of held-out queries, one batched pass over the queries);
2. ``new``: ``LocalBackend()``, the default: ``dtype="auto"`` and the prefix cache kept across
   calls, so each round runs only the history's new turn before the batched queries;
3. ``new_float32``: the new path in float32, on the very calls the old path made (replayed in
   order), to show that batching and cache reuse change nothing but rounding.

Each of ``old`` and ``new`` runs the harness end to end (seconds per user include everything).
Agreement is counted on identical inputs: the old run's calls (each round's history and
queries) are replayed through ``new`` and the argmax answers compared; ``agreement_end_to_end``
compares the two harness runs' answers (there a differing dialogue answer changes the later
history). ``tokens_per_user`` counts the tokens the model must run per user (each round's new
history turn and every query's stem), and ``forward_tokens_per_s`` is a plain forward pass of the
new backend's model over one 512-token sequence: their quotient, ``floor_seconds_per_user``, is
what any exact scoring of these prompts costs at that speed (the bound on the speedup).
``--compact`` also runs the default backend with the compact prompt style (what an adapter trained
on compact prompts is evaluated with): ``compact_seconds_per_user``, ``compact_tokens_per_user``
and ``compact_speedup`` against the float32 paper-style path. ``--profile`` also profiles the
new backend on the old run's last call (the last round: the longest history) and reports the
share of CPU time of its top operators. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beliefagent.adapters import LocalBackend
from beliefagent.adapters.base import GenerationSettings, Message, Reply
from beliefagent.eval.harness import EvalConfig, run_eval

Call = tuple[list[Message], list[list[Message]], list[str], str]


class Recorder:
    """A backend that forwards to ``inner`` and records every ``score_queries`` call."""

    def __init__(self, inner: LocalBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.adapter = inner.adapter
        self.prompt_style = inner.prompt_style  # the harness asks in the backend's style
        self.calls: list[Call] = []
        self.results: list[list[dict[str, float]]] = []
        self.seconds = 0.0

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        return self.inner.complete(messages, settings)

    def score_queries(
        self,
        history: Sequence[Message],
        queries: Sequence[Sequence[Message]],
        candidates: Sequence[str],
        answer_prefix: str = "",
    ) -> list[dict[str, float]]:
        start = time.perf_counter()
        out = self.inner.score_queries(history, queries, candidates, answer_prefix)
        self.seconds += time.perf_counter() - start
        self.calls.append(
            (list(history), [list(q) for q in queries], list(candidates), answer_prefix)
        )
        self.results.append(out)
        return out


def harness(backend: LocalBackend, args: argparse.Namespace) -> tuple[Recorder, float, Any]:
    """Run the harness with ``backend``; return the recorder, seconds per user, the run."""
    rec = Recorder(backend)
    config = EvalConfig(
        domain=args.domain,
        users=args.users,
        heldout_sets=args.heldout_sets,
        seed=args.seed,
        probe=False,
        concurrency=1,
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = run_eval(config, ["local"], Path(tmp) / "run", backends={"local": rec})
        wall = time.perf_counter() - start
    return rec, wall / args.users, run


def replay(backend: LocalBackend, calls: list[Call]) -> tuple[list[list[dict[str, float]]], float]:
    start = time.perf_counter()
    out = [backend.score_queries(*call) for call in calls]
    return out, time.perf_counter() - start


def profile(backend: LocalBackend, call: Call, top: int = 6) -> list[tuple[str, float]]:
    """``[(operator, share of self CPU time)]`` of one ``score_queries`` call, largest first."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    backend._kept = None  # profile the whole call, history included
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        backend.score_queries(*call)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return [(e.key, round(e.self_cpu_time_total / total, 3)) for e in ranked]


def token_counts(backend: LocalBackend, calls: list[Call]) -> int:
    """Tokens the model must run for ``calls`` with a kept prefix cache: each call's history
    beyond the previous call's, plus every query's stem (its tokens after the history)."""
    total, prev = 0, ""
    for history, queries, _, prefix in calls:
        text = backend._render(history, add_generation_prompt=False) if history else ""
        common = len(_common(prev, text))
        total += len(backend._encode(text[common:])) if text[common:] else 0
        prev = text
        for q in queries:
            full = backend._render(history + q, add_generation_prompt=True) + prefix
            total += len(backend._encode(full[len(text) :]))
    return total


def _common(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def forward_rate(backend: LocalBackend, length: int = 512, repeats: int = 3) -> float:
    """Tokens/s of the backend's own forward pass over one sequence, with no cache before it."""
    import torch

    ids = torch.randint(100, 10_000, (1, length), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        backend._forward(ids, cache=None, keep=1)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            backend._forward(ids, cache=None, keep=1)
    return length * repeats / (time.perf_counter() - start)


def argmax(row: dict[str, float]) -> str:
    return max(row, key=lambda k: row[k])


def paired(
    xs: list[list[dict[str, float]]], ys: list[list[dict[str, float]]]
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """The per-query score rows of two runs over the same calls, side by side."""
    return [(a, b) for rx, ry in zip(xs, ys, strict=True) for a, b in zip(rx, ry, strict=True)]


def answers(run: Any) -> list[int | None]:
    flat: list[int | None] = []
    for result in run.results["local"]:
        for held in result.heldout_predictions:
            flat += held
        flat += result.dialogue_predictions
    return flat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2)
    ap.add_argument("--heldout-sets", type=int, default=16)
    ap.add_argument("--domain", default="flight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="profile the last round's call")
    ap.add_argument("--compact", action="store_true", help="also time the compact prompt style")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    old_backend = LocalBackend(dtype="float32", prefix_cache=False, name="local")
    new_backend = LocalBackend(name="local")
    exact_backend = LocalBackend(dtype="float32", name="local")
    warm = [[{"role": "user", "content": "Which flight?"}]]
    for b in (old_backend, new_backend, exact_backend):  # first-call kernel set-up, untimed
        b.score_queries([], warm, ["1", "2", "3"])

    old, old_s, old_run = harness(old_backend, args)
    new, new_s, new_run = harness(new_backend, args)
    same_input, _ = replay(new_backend, old.calls)
    exact, _ = replay(exact_backend, old.calls)

    pairs = paired(old.results, same_input)
    agree = sum(argmax(a) == argmax(b) for a, b in pairs) / len(pairs)
    max_diff_bf16 = max(abs(a[k] - b[k]) for a, b in pairs for k in a)
    exact_pairs = paired(old.results, exact)
    max_diff = max(abs(a[k] - b[k]) for a, b in exact_pairs for k in a)
    exact_agree = sum(argmax(a) == argmax(b) for a, b in exact_pairs) / len(exact_pairs)
    e2e_old, e2e_new = answers(old_run), answers(new_run)
    e2e = sum(x == y for x, y in zip(e2e_old, e2e_new, strict=True)) / len(e2e_old)

    out = {
        "domain": args.domain,
        "users": args.users,
        "heldout_sets": args.heldout_sets,
        "threads": args.threads,
        "queries": len(pairs),
        "new_dtype": str(new_backend.dtype).removeprefix("torch."),
        "old_seconds_per_user": round(old_s, 2),
        "new_seconds_per_user": round(new_s, 2),
        "speedup": round(old_s / new_s, 3) if new_s > 0 else math.nan,
        "old_scoring_seconds": round(old.seconds, 2),
        "new_scoring_seconds": round(new.seconds, 2),
        "agreement": round(agree, 4),
        "agreement_end_to_end": round(e2e, 4),
        "max_abs_logprob_diff_new_vs_old": max_diff_bf16,
        "max_abs_logprob_diff_float32_batched": max_diff,
        "agreement_float32_batched": round(exact_agree, 4),
    }
    tokens = token_counts(new_backend, old.calls) / args.users
    rate = forward_rate(new_backend)
    out["tokens_per_user"] = round(tokens)
    out["forward_tokens_per_s"] = round(rate, 1)
    out["floor_seconds_per_user"] = round(tokens / rate, 2)
    out["floor_speedup"] = round(old_s * rate / tokens, 3)
    if args.compact:
        compact_backend = LocalBackend(name="local", prompt_style="compact")
        compact_backend.score_queries([], warm, ["1", "2", "3"])
        compact, compact_s, _ = harness(compact_backend, args)
        out["compact_seconds_per_user"] = round(compact_s, 2)
        compact_tokens = token_counts(compact_backend, compact.calls) / args.users
        out["compact_tokens_per_user"] = round(compact_tokens)
        out["compact_speedup"] = round(old_s / compact_s, 3) if compact_s > 0 else math.nan
    if args.profile:
        out["profile_last_call"] = profile(new_backend, old.calls[-1])
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            sys.stdout.write(f"{k:>38}: {v}\n")


if __name__ == "__main__":
    main()
