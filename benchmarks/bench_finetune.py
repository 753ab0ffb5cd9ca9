"""Benchmark: training throughput and peak memory of the CPU recipe (short runs), in the
recipe's precision and in float32.

    python benchmarks/bench_finetune.py [--json] [--steps 4] [--recipe finetune/cpu_quick.toml]
        [--dialogues 8] [--rounds 5] [--domain flight-2] [--threads 2] [--no-float32]
        [--also-bfloat16]

Builds a small teaching set with the exporter (simulated noise-free users, Bayesian soft
targets), runs ``--steps`` optimizer steps of the recipe on it (no evaluation), then the same
steps with ``dtype = "float32"``, and prints training dialogues (and answer turns, and tokens)
per second of each, ``bf16_speedup`` (recipe tokens/s over float32 tokens/s; 1.0 when the
recipe's dtype resolves to float32, e.g. ``auto`` on a CPU without bf16) and the process's peak
RSS; ``--also-bfloat16`` adds a run with bf16 base weights. The first step of each run is a
warm-up (oneDNN kernel set-up) whose tokens are not timed. With --json the last line is one JSON
object; its top-level throughput keys describe the recipe's run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    ap.add_argument("--no-float32", action="store_true", help="skip the float32 comparison run")
    ap.add_argument(
        "--also-bfloat16",
        action="store_true",
        help='also run dtype = "bfloat16" (bf16 base weights) and report its tokens/s',
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from beliefagent.finetune import finetune, load_config

    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "teach.jsonl"
        make_teaching_set(data, args.domain, args.dialogues, args.rounds, seed=0)
        cfg = load_config(
            args.recipe,
            data=str(data),
            output_dir=str(Path(tmp) / "out"),
            max_steps=args.steps + 1,
            num_threads=args.threads,
            checkpoint_every=0,
        ).replace(eval_data="", eval_base=False)
        variants = [("recipe", cfg)]
        if not args.no_float32:
            variants.append(("float32", cfg.replace(dtype="float32", output_dir=f"{tmp}/fp32")))
        if args.also_bfloat16:
            variants.append(("bfloat16", cfg.replace(dtype="bfloat16", output_dir=f"{tmp}/bf16")))
        for label, run_cfg in variants:
            t0 = time.perf_counter()
            result = finetune(run_cfg, progress=not args.json)
            runs[label] = {"result": result, "wall": time.perf_counter() - t0}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    main_run, result = runs["recipe"], runs["recipe"]["result"]
    out: dict[str, Any] = {
        "recipe": args.recipe,
        "domain": args.domain,
        "rounds": args.rounds,
        "steps": args.steps,
        "batch_size": cfg.batch_size * cfg.grad_accum,
        "method": cfg.method,
        "loss": cfg.loss,
        "threads": args.threads,
        "examples_per_s": round(result.examples_per_s, 4),
        "answers_per_s": round(result.examples_per_s * args.rounds, 4),
        "wall_s_including_load": round(main_run["wall"], 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "dtype": cfg.dtype,
        "dtype_resolved": result.precision["compute"],
        "precision": result.precision,
        "tokens_per_s": round(result.tokens_per_s, 1),
    }
    if "float32" in runs:
        fp32 = runs["float32"]["result"]
        out["float32_tokens_per_s"] = round(fp32.tokens_per_s, 1)
        out["float32_examples_per_s"] = round(fp32.examples_per_s, 4)
        out["bf16_speedup"] = round(result.tokens_per_s / fp32.tokens_per_s, 3)
        out["loss_curve"] = [round(c["loss"], 4) for c in result.loss_curve]
        out["float32_loss_curve"] = [round(c["loss"], 4) for c in fp32.loss_curve]
    if "bfloat16" in runs:
        bf16 = runs["bfloat16"]["result"]
        out["bfloat16_weights_tokens_per_s"] = round(bf16.tokens_per_s, 1)
        out["bfloat16_weights_loss_curve"] = [round(c["loss"], 4) for c in bf16.loss_curve]
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            sys.stdout.write(f"{k:>24}: {v}\n")


if __name__ == "__main__":
    main()
