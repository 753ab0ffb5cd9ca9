"""The ``beliefagent finetune`` command (registered by ``beliefagent.cli``).

Imports torch only when it runs, so ``beliefagent --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from beliefagent.errors import BeliefAgentError
from beliefagent.finetune.config import load_config

__all__ = ["finetune_command"]


def finetune_command(
    recipe: Annotated[
        Path,
        typer.Option("--recipe", "-r", help="TOML recipe, e.g. finetune/cpu_quick.toml."),
    ],
    data: Annotated[
        str | None, typer.Option("--data", help="Teaching set JSONL (overrides the recipe).")
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option("--eval-data", help="Held-out teaching set (other users) to score."),
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", "-o", help="Where the adapter and meta go.")
    ] = None,
    model_path: Annotated[
        str | None,
        typer.Option("--model", help="Base model folder or .gguf; default: the recipe's."),
    ] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="ce | kl | ce+kl.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="lora | full.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data.")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Optimizer steps (0 = from epochs).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Checkpoint folder, or 'latest' under the output dir."),
    ] = None,
    num_threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (0 = default).")
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
) -> None:
    """Fine-tune a model on a teaching set (Bayesian teaching) with LoRA or full updates."""
    from rich.console import Console

    err = Console(stderr=True)
    try:
        config = load_config(
            recipe,
            data=data,
            eval_data=eval_data,
            output_dir=output_dir,
            model_path=model_path,
            loss=loss,
            method=method,
            lr=lr,
            epochs=epochs,
            max_steps=max_steps,
            seed=seed,
            resume=resume,
            num_threads=num_threads,
        )
        from beliefagent.finetune.train import finetune

        command = "beliefagent " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        result = finetune(config, progress=not no_progress, command=command)
    except BeliefAgentError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    summary = {k: v for k, v in result.to_dict().items() if k != "loss_curve"}
    if json_out:
        print(json.dumps(summary))
        return
    err.print(f"saved to {result.output_dir} after {result.steps} steps")
    err.print(f"final loss {result.final_loss:.4f} ({result.examples_per_s:.2f} dialogues/s)")
    for name, ev in (("base", result.eval_base), ("tuned", result.eval)):
        if ev:
            err.print(
                f"{name}: accuracy {ev['accuracy']:.1f} %, agreement with targets "
                f"{ev['agreement']:.1f} %, position shares {ev['position_shares']}"
            )
