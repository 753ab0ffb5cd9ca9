"""The paper-scale Bayesian-teaching run on the CPU, in resumable stages.

    data   simulate teaching dialogues (teacher-answered, logged through the middleware) for
           users disjoint from the evaluation users; export an oracle and a Bayesian teaching
           set from the one log, in ``--prompt-style`` (default compact)
    train  fine-tune one arm with ``finetune/cpu_paper.toml`` (checkpoints; a rerun resumes)
    eval   the evaluation harness on the held-out users: teacher, random, the base model and
           every trained arm -> report/ (accuracy by round with 95 % CIs, agreement, entropy)

Each stage skips what is already done, so an interrupted run continues where it stopped::

    python benchmarks/paper_scale.py data  --out runs/paper
    python benchmarks/paper_scale.py train --out runs/paper --arm bayes-hard &
    python benchmarks/paper_scale.py train --out runs/paper --arm oracle-taught &
    python benchmarks/paper_scale.py eval  --out runs/paper
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from beliefagent.compare import ARMS, CompareSizes, choice_teaching_sets, comparison_markdown
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.eval.harness import EvalConfig
from beliefagent.finetune import finetune, load_config
from beliefagent.prompts import PROMPT_STYLES

RECIPE = Path(__file__).resolve().parent.parent / "finetune" / "cpu_paper.toml"


def eval_config(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        domain="flight",
        users=args.eval_users,
        heldout_sets=args.heldout_sets,
        seed=args.seed,
        probe=False,
        concurrency=1,
    )


def stage_data(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if all((out / "teaching" / a / "train.jsonl").is_file() for a in args.arms):
        print("data: already exported", file=sys.stderr)
        return
    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    sizes = CompareSizes(
        train_users=args.dialogues,
        train_rounds=5,
        steps=1,
        batch_size=1,
        lr=1e-3,
        lora_r=16,
        eval_users=args.eval_users,
        heldout_sets=args.heldout_sets,
        eval_rounds=5,
    )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    choice_teaching_sets(
        domain, eval_config(args), sizes, args.arms, out, args.seed, prompt_style=args.prompt_style
    )
    print(f"data: {args.dialogues} dialogues in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def stage_train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    target, loss = ARMS[args.arm]
    config = replace(
        load_config(args.recipe),
        data=str(out / "teaching" / args.arm / "train.jsonl"),
        output_dir=str(out / "adapters" / args.arm),
        loss=loss,
        resume="latest",
    )
    if args.threads:
        config = replace(config, num_threads=args.threads)
    if (Path(config.output_dir) / "adapter_model.safetensors").is_file():
        print(f"train {args.arm}: already trained", file=sys.stderr)
        return
    result = finetune(
        config,
        progress=True,
        command=f"python benchmarks/paper_scale.py train --out {args.out} --arm {args.arm}",
    )
    print(json.dumps({"arm": args.arm, "target": target, **result.to_dict()}, indent=1))


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    """The budget as ``comparison_markdown`` prints it (from the recipe; trained dialogues =
    steps x batch)."""
    cfg = load_config(args.recipe)
    # max_steps = 0: the recipe runs its epochs over every exported dialogue
    steps = cfg.max_steps or math.ceil(
        args.dialogues * cfg.epochs / (cfg.batch_size * cfg.grad_accum)
    )
    return {
        "train_users": min(steps * cfg.batch_size * cfg.grad_accum, args.dialogues),
        "eval_users": args.eval_users,
        "heldout_sets": args.heldout_sets,
        "lora_r": cfg.lora.r,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
    }


def stage_eval(args: argparse.Namespace) -> None:
    from beliefagent.adapters import LocalBackend
    from beliefagent.eval.harness import run_eval
    from beliefagent.eval.report import write_report

    out = Path(args.out)
    arms = [a for a in args.arms if (out / "adapters" / a / "adapter_model.safetensors").is_file()]
    wanted = set(args.only or []) or None

    def load(name: str) -> bool:
        return wanted is None or name in wanted

    backends: dict[str, Any] = {
        a: LocalBackend(adapter_path=out / "adapters" / a, name=a) for a in arms if load(a)
    }
    if args.base and load("local-compact"):
        # the base model in the arms' style (and, with --paper-base, in the paper's prose)
        backends["local-compact"] = LocalBackend(name="local-compact", prompt_style="compact")
    base = (["local"] if args.paper_base else []) + ["local-compact"]
    names = ["bayes", "random", *(base if args.base else []), *arms]
    if args.only:  # a share of the assistants (run two shares side by side, then all: resumes)
        names = [n for n in names if n in args.only]
        backends = {k: v for k, v in backends.items() if k in names}
    run = run_eval(eval_config(args), names, out / "eval", backends=backends)
    if args.only:
        return
    files = write_report(run.summary, out / "report")
    rows = []
    for a in run.summary["assistants"]:
        meta_file = out / "adapters" / a["name"] / "training_meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        cal = a.get("calibration") or {}
        rows.append(
            {
                "name": a["name"],
                "accuracy_by_round": a["accuracy_by_round"],
                "accuracy_ci": a["accuracy_ci"],
                "dialogue_accuracy": a["dialogue_accuracy"],
                "agreement_heldout": a.get("agreement_heldout"),
                "agreement_dialogue": a["agreement_dialogue"],
                "mean_entropy": cal.get("mean_entropy"),
                "teacher_mean_entropy": cal.get("teacher_mean_entropy"),
                "answer_shares": a.get("answer_shares"),
                "invalid_rate": a["invalid_rate"],
                **(
                    {
                        "target": ARMS[a["name"]][0],
                        "loss": ARMS[a["name"]][1],
                        "final_train_loss": meta.get("final_loss"),
                        "train_examples_per_s": meta.get("examples_per_s"),
                        "adapter": str(meta_file.parent),
                    }
                    if meta
                    else {}
                ),
            }
        )
    summary = {
        "domain": "flight",
        "seed": args.seed,
        "sizes": _sizes(args),
        "teacher_accuracy_by_round": run.summary["teacher_accuracy_by_round"],
        "chance": run.summary["chance"],
        "arms": rows,
        "report": [str(p) for p in files],
    }
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "comparison.md").write_text(comparison_markdown(summary))
    print((out / "comparison.md").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stage", choices=["data", "train", "eval"])
    p.add_argument("--out", default="runs/paper")
    p.add_argument("--recipe", default=str(RECIPE))
    p.add_argument("--arm", choices=list(ARMS), default="bayes-hard")
    p.add_argument("--arms", nargs="+", default=["bayes-hard", "oracle-taught"])
    p.add_argument("--dialogues", type=int, default=6240, help="teaching dialogues (5 rounds)")
    p.add_argument("--eval-users", type=int, default=64)
    p.add_argument("--heldout-sets", type=int, default=16)
    p.add_argument("--prompt-style", choices=list(PROMPT_STYLES), default="compact")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-base", dest="base", action="store_false", help="skip the base model")
    p.add_argument(
        "--paper-base",
        action="store_true",
        help="also the base model in the paper's prose (~2.8x longer prompts than compact)",
    )
    p.add_argument("--only", nargs="+", help="eval: run only these assistants, no report")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    {"data": stage_data, "train": stage_train, "eval": stage_eval}[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
