"""Benchmark: training throughput and peak memory of the CPU recipe (a short run).

    python benchmarks/bench_finetune.py [--json] [--steps 4] [--recipe finetune/cpu_quick.toml]
        [--dialogues 8] [--rounds 5] [--domain flight-2] [--threads 2]

Builds a small teaching set with the exporter (simulated noise-free users, Bayesian soft
targets), runs ``--steps`` optimizer steps of the recipe on it (no evaluation), and prints
training dialogues (and answer turns) per second and the process's peak RSS. With --json the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_teaching_set(path: Path, domain_name: str, n: int, rounds: int, seed: int) -> None:
    from beliefagent.domains import load_domain
    from beliefagent.export import build_examples

    domain = load_domain(domain_name)
    rng = np.random.default_rng(seed)
    weights = domain.hypothesis_weights()
    sessions = []
    for i in range(n):
        u = int(rng.integers(len(weights)))
        sets = domain.random_option_sets(rng, rounds)  # (R, O, F)
        choices = (domain.codes(sets) @ weights[u]).argmax(-1)  # (R,)
        sessions.append((f"s{i}", f"u{u}", sets, choices.tolist()))
    examples, _ = build_examples(domain, sessions, "bayes-soft", seed=seed)
    path.write_text("".join(json.dumps(e.to_chat()) + "\n" for e in examples))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="finetune/cpu_quick.toml")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dialogues", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--domain", default="flight-2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from beliefagent.finetune import finetune, load_config

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "teach.jsonl"
        make_teaching_set(data, args.domain, args.dialogues, args.rounds, seed=0)
        cfg = load_config(
            args.recipe,
            data=str(data),
            output_dir=str(Path(tmp) / "out"),
            max_steps=args.steps,
            num_threads=args.threads,
            checkpoint_every=0,
        ).replace(eval_data="", eval_base=False)
        t0 = time.perf_counter()
        result = finetune(cfg, progress=not args.json)
        wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {
        "recipe": args.recipe,
        "domain": args.domain,
        "rounds": args.rounds,
        "steps": result.steps,
        "batch_size": cfg.batch_size * cfg.grad_accum,
        "method": cfg.method,
        "loss": cfg.loss,
        "threads": args.threads,
        "examples_per_s": round(result.examples_per_s, 4),
        "answers_per_s": round(result.examples_per_s * args.rounds, 4),
        "wall_s_including_load": round(wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            sys.stdout.write(f"{k:>24}: {v}\n")


if __name__ == "__main__":
    main()
