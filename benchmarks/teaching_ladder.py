"""The positive control and its ladder toward the real task: does LoRA fine-tuning of the bundled
SmolLM2 teach a content-dependent choice, and how many examples does each step need?

Rungs (each trains a fresh adapter with the same recipe and evaluates on held-out dialogues):

    price      options show only their price; the user always wants the cheapest (oracle targets)
    price-random  price only, but each dialogue's user wants the cheapest OR the dearest flight
               (a random weight); 3 rounds, Bayesian targets: the first rung where the answer
               depends on the evidence in the dialogue
    price-cued the same random users, one round, and the first message says which the user wants
               ("I want the cheapest." / "I want the dearest."; oracle targets): a conditional
               choice with the condition stated, not inferred -- separates "can it learn a
               choice that depends on the context" from "can it infer that context from feedback"
    two        duration and price; the same user (duration is a distractor)
    fixed4     the paper's four features; the same user
    random4    the real task: a random user from the 624, Bayesian-teacher targets, 5 rounds

For each rung it prints the held-out accuracy (against the user's choice), agreement with the
targets, the evidence-free ceiling by round (the best accuracy of one fixed rule that ignores
the dialogue; ``--ceiling-only`` prints just that), the label NLL against ln 3 (uniform) and
the number of training examples seen when the running training label NLL first fell below
``--threshold`` x ln 3 ("examples needed"; None if it never did). ``--style`` picks the prompt
rendering (``compact``, ``compact-echo`` or ``paper``).

    python benchmarks/teaching_ladder.py --rung price --examples 1200 --json

``--init-adapter`` starts from a saved adapter (a curriculum: e.g. the price rung's adapter, then
price-random). Runs checkpoint every ``--checkpoint-every`` steps under ``--out``; the same command
again resumes an interrupted run (the data are regenerated from ``--seed``, identically).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.export import build_examples
from beliefagent.finetune import FinetuneConfig, finetune
from beliefagent.prompts import PROMPT_STYLES, DialoguePrompts

RUNGS = {
    "price": (["price"], 1),
    "price-random": (["price"], 3),
    "price-cued": (["price"], 1),
    "two": (["duration", "price"], 1),
    "fixed4": (None, 1),
    "random4": (None, 5),
}
RANDOM_USERS = ("price-random", "price-cued", "random4")  # a random user each dialogue
CUED = ("price-cued",)  # the user's direction is stated in the first message: oracle targets
LN3 = math.log(3)


def rung_domain(rung: str) -> ChoiceDomain:
    names, _ = RUNGS[rung]
    flight = load_domain("flight")
    return flight if names is None else flight.subset(names)


def make_sessions(
    domain: ChoiceDomain, rung: str, n: int, rng: np.random.Generator, rounds: int, offset: int
) -> list[tuple[Any, ...]]:
    """``n`` sessions of ``rounds`` rounds: ``(session_id, user_id, option_sets, choices)``."""
    weights = domain.hypothesis_weights()
    fixed = np.zeros(domain.n_features)
    fixed[list(domain.feature_names).index("price")] = -1.0  # the cheapest flight
    sessions = []
    for i in range(n):
        w = fixed if rung not in RANDOM_USERS else weights[int(rng.integers(len(weights)))]
        sets = domain.random_option_sets(rng, rounds)  # (R, O, F)
        rewards = domain.codes(sets) @ w  # (R, O)
        choices = [int(np.flatnonzero(r >= r.max() - 1e-9)[0]) for r in rewards]
        sessions.append((f"s{offset + i}", f"u{offset + i}", sets, choices))
    return sessions


def price_cue(session: tuple[Any, ...]) -> str:
    """What a ``price-cued`` user says first: whether its first choice was the dearest option
    (prices within a set are distinct, so the choice tells the user's sign)."""
    prices = np.asarray(session[2])[0, :, 0]
    return (
        "I want the dearest." if session[3][0] == int(prices.argmax()) else "I want the cheapest."
    )


def write_set(
    path: Path,
    domain: ChoiceDomain,
    sessions: list[Any],
    target: str,
    style: str,
    cues: list[str] | None = None,
) -> int:
    """The teaching set of ``sessions``; ``cues`` (one per session) open its first message."""
    prompts = DialoguePrompts.for_domain(domain, style)
    examples, _ = build_examples(domain, sessions, target, seed=0, prompts=prompts)
    by_user = {s[1]: i for i, s in enumerate(sessions)}
    with path.open("w") as f:
        for e in examples:
            row = e.to_chat()
            if cues is not None:
                first = row["messages"][0]
                first["content"] = f"{cues[by_user[str(e.user_id)]]} {first['content']}"
            f.write(json.dumps(row) + "\n")
    return len(examples)


def evidence_free_ceiling(domain: ChoiceDomain, sessions: list[Any]) -> list[float]:
    """Held-out accuracy by round (%) of the best rule that ignores the dialogue: the one user
    weight vector of the domain's hypotheses that, applied to every dialogue alike, matches the
    users' choices best. A model above it at rounds 2+ uses the evidence."""
    weights = domain.hypothesis_weights()  # (H, F)
    sets = np.stack([s[2] for s in sessions])  # (N, R, O, F)
    choices = np.array([s[3] for s in sessions])  # (N, R)
    rewards = np.einsum("nrof,hf->hnro", domain.codes(sets), weights)  # (H, N, R, O)
    # ties go to the first option, as make_sessions breaks them for the users
    picks = (rewards >= rewards.max(-1, keepdims=True) - 1e-9).argmax(-1)  # (H, N, R)
    hits = picks == choices[None]
    best = int(hits.mean(axis=(1, 2)).argmax())
    return [round(100 * float(v), 1) for v in hits[best].mean(axis=0)]


def examples_needed(curve: list[dict[str, float]], batch: int, threshold: float) -> int | None:
    """Examples seen when a 5-step running mean of the label NLL first fell below the mark."""
    vals = [c["label_nll"] for c in curve]
    for i in range(len(vals)):
        window = vals[max(0, i - 4) : i + 1]
        if len(window) == 5 and np.mean(window) < threshold * LN3:
            return int(curve[i]["step"]) * batch
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    domain = rung_domain(args.rung)
    rounds = args.rounds or RUNGS[args.rung][1]
    rng = np.random.default_rng(args.seed)
    target = "oracle" if args.rung not in RANDOM_USERS or args.rung in CUED else args.target
    out = Path(args.out or tempfile.mkdtemp(prefix=f"ladder-{args.rung}-"))
    out.mkdir(parents=True, exist_ok=True)
    n_train = args.examples // rounds  # examples = supervised answers
    train = make_sessions(domain, args.rung, n_train, rng, rounds, 0)
    held = make_sessions(domain, args.rung, args.eval_dialogues, rng, rounds, 10**6)
    ceiling = evidence_free_ceiling(domain, held)
    if args.ceiling_only:
        return {"rung": args.rung, "evidence_free_ceiling_by_round": ceiling}
    for name, sessions in (("train", train), ("eval", held)):
        cues = [price_cue(x) for x in sessions] if args.rung in CUED else None
        write_set(out / f"{name}.jsonl", domain, sessions, target, args.style, cues)
    steps = math.ceil(n_train / args.batch_size)
    config = FinetuneConfig(
        data=str(out / "train.jsonl"),
        eval_data=str(out / "eval.jsonl"),
        output_dir=str(out / "adapter"),
        lr=args.lr,
        batch_size=args.batch_size,
        max_steps=steps,
        schedule="constant" if args.constant_lr else "cosine",
        warmup_ratio=0.05,
        dtype=args.dtype,
        loss="kl" if target == "bayes-soft" else "ce",
        num_threads=args.threads,
        eval_base=False,
        seed=args.seed,
        method=args.method,
        init_adapter=args.init_adapter,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=2,
        resume="latest",  # a rerun with the same arguments continues an interrupted run
    )
    config.lora.r = args.rank
    config.lora.alpha = args.alpha or 2 * args.rank
    if args.all_modules:
        config.lora.target_modules = [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    t0 = time.perf_counter()
    res = finetune(config, progress=not args.quiet)
    ev = res.eval or {}
    return {
        "rung": args.rung,
        "style": args.style,
        "dtype": args.dtype,
        "target": target,
        "train_dialogues": n_train,
        "train_examples": n_train * rounds,
        "steps": steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "rank": args.rank,
        "alpha": config.lora.alpha,
        "method": args.method,
        "init_adapter": args.init_adapter,
        "wall_s": round(time.perf_counter() - t0, 1),
        "examples_per_s": round(res.examples_per_s * rounds, 2),
        "heldout_accuracy": ev.get("accuracy"),
        "heldout_accuracy_by_round": ev.get("accuracy_by_round"),
        "evidence_free_ceiling_by_round": ceiling,
        "agreement": ev.get("agreement"),
        "target_accuracy": ev.get("target_accuracy"),
        "position_shares": ev.get("position_shares"),
        "label_nll": ev.get("label_nll"),
        "ln3": LN3,
        "examples_needed": examples_needed(
            res.loss_curve, args.batch_size * rounds, args.threshold
        ),
        "loss_curve": [{"step": c["step"], "label_nll": c["label_nll"]} for c in res.loss_curve],
        "out": str(out),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rung", choices=list(RUNGS), default="price")
    p.add_argument("--style", choices=list(PROMPT_STYLES), default="compact")
    p.add_argument("--examples", type=int, default=1200, help="supervised answers to train on")
    p.add_argument("--rounds", type=int, default=0, help="rounds per dialogue (0: the rung's)")
    p.add_argument("--eval-dialogues", type=int, default=100)
    p.add_argument("--target", default="bayes", help="random users: bayes | bayes-soft | oracle")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--constant-lr", action="store_true")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, default=0, help="LoRA alpha (0: 2 x rank, i.e. 32 at r16)")
    p.add_argument("--all-modules", action="store_true", help="LoRA on all seven projections")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 autocast where the CPU has native bf16, else float32), float32, bfloat16",
    )
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument(
        "--init-adapter", default=None, help="start from this adapter (a curriculum's stage 2)"
    )
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps; 0: never")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.8, help="fraction of ln 3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument(
        "--ceiling-only",
        action="store_true",
        help="print the held-out evidence-free ceiling by round and stop (no training)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        curve = result.pop("loss_curve")
        for k, v in result.items():
            print(f"{k:28s} {v}")
        print("label NLL by step:", " ".join(f"{c['label_nll']:.2f}" for c in curve[::5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
