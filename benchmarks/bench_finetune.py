"""Benchmark: training throughput and peak memory of the CPU recipe (short runs), in the
recipe's precision and in float32.

    python benchmarks/bench_finetune.py [--json] [--steps 4] [--recipe finetune/cpu_quick.toml]
        [--dialogues 8] [--rounds 5] [--domain flight-2] [--threads 2] [--no-float32]
        [--also-bfloat16] [--matmul-only]

Builds a small teaching set with the exporter (simulated noise-free users, Bayesian soft
targets), runs ``--steps`` optimizer steps of the recipe on it (no evaluation), then the same
steps with ``dtype = "float32"``, and prints training dialogues (and answer turns, and tokens)
per second of each, ``bf16_speedup`` (recipe tokens/s over float32 tokens/s; 1.0 when the
recipe's dtype resolves to float32, e.g. ``auto`` on a CPU without bf16) and the process's peak
RSS; ``--also-bfloat16`` adds a run with bf16 base weights. Every run also reports
``native_bf16`` (the CPU flags) and a seconds-long probe of one projection in bf16 against
float32 (``bf16_matmul_speedup``, ``bf16_input_grad_speedup``); ``--matmul-only`` runs just
that. The first step of each run is a warm-up (oneDNN kernel set-up) whose tokens are not
timed. With --json the last line is one JSON object; its top-level throughput keys describe the
recipe's run.
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


def matmul_probe(threads: int, seconds: float = 1.0, tokens: int = 2400) -> dict[str, Any]:
    """Time one of the model's projections (``tokens`` x 576 -> 1536, SmolLM2-135M's MLP)
    forward and its input-gradient product (the backward pass's), in float32 and in bf16.

    Where the CPU has no native bf16, PyTorch runs bf16 products through a slow fallback; the
    ratios (float32 time / bf16 time; > 1 = bf16 faster) show it in seconds, before a training
    run would."""
    import torch

    from beliefagent.adapters.models import cpu_has_native_bf16

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(tokens, 576, generator=gen), torch.randn(1536, 576, generator=gen)
    g = torch.randn(tokens, 1536, generator=gen)

    def per_call(fn: Any) -> float:
        fn()  # warm-up (kernel selection)
        t0, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        return (time.perf_counter() - t0) / n

    ms: dict[str, dict[str, float]] = {}
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b, gg = x.to(dt), w.to(dt), g.to(dt)
        ms[name] = {
            "forward_ms": 1e3 * per_call(lambda a=a, b=b: torch.nn.functional.linear(a, b)),
            "input_grad_ms": 1e3 * per_call(lambda gg=gg, b=b: gg @ b),
        }
    return {
        "native_bf16": cpu_has_native_bf16(),
        "matmul_ms": {k: {n: round(t, 2) for n, t in v.items()} for k, v in ms.items()},
        "bf16_matmul_speedup": round(ms["float32"]["forward_ms"] / ms["bfloat16"]["forward_ms"], 3),
        "bf16_input_grad_speedup": round(
            ms["float32"]["input_grad_ms"] / ms["bfloat16"]["input_grad_ms"], 3
        ),
    }


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
    ap.add_argument(
        "--matmul-only",
        action="store_true",
        help="only the bf16-vs-float32 projection probe (seconds; no training runs)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    probe = matmul_probe(args.threads)
    if args.matmul_only:
        print(
            json.dumps(probe) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in probe.items())
        )
        return

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
        **probe,
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
