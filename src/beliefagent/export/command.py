"""The ``beliefagent export`` command: trajectory logs in, a teaching set out.

Registered by the CLI with ``app.command("export")(export_command)``; library errors propagate
(the CLI's ``main`` prints them and exits 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.errors import ConfigError
from beliefagent.export.teaching import Format, Target, export_teaching_set
from beliefagent.prompts import check_prompt_style

__all__ = ["export_command"]


def export_command(
    logs: Annotated[
        list[Path],
        typer.Argument(
            help="Trajectory logs (JSONL); a directory stands for the *.jsonl files in it.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Directory for train.jsonl, eval.jsonl and manifest.json."
        ),
    ],
    target: Annotated[
        Target,
        typer.Option(
            help="Assistant turns: bayes = the teacher's recommendations (its early wrong "
            "guesses included); bayes-soft = also its predictive distribution per turn; "
            "oracle = the user's actual choices."
        ),
    ] = Target.BAYES,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="chat = messages plus targets, soft targets, labels and choices per line; "
            'openai = OpenAI fine-tuning lines {"messages": [...]} only (no soft targets).',
        ),
    ] = Format.CHAT,
    likelihood: Annotated[
        str,
        typer.Option(
            help="Teacher's user model: noise-free (the paper's) | epsilon:0.1 | softmax:0.1. "
            "Use a noise-aware one for real people."
        ),
    ] = "noise-free",
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            "-d",
            help="Read the logs with this domain (built-in name or spec path); sessions logged "
            "under another domain are skipped. Default: each session's logged domain.",
        ),
    ] = None,
    eval_fraction: Annotated[
        float,
        typer.Option(help="Share of users held out in eval.jsonl (split by user, seeded)."),
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for tie-breaking and the user split.")] = 0,
    keep_emptied: Annotated[
        bool,
        typer.Option(
            help="Keep sessions whose belief emptied (flagged emptied=true) instead of "
            "skipping them."
        ),
    ] = False,
    include_user_messages: Annotated[
        bool,
        typer.Option(
            help="Prepend each round's user message, scrubbed of personal data and "
            "credentials, to that round's user turn. Off by default."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing teaching set in --out.")
    ] = False,
    prompt_style: Annotated[
        str,
        typer.Option(
            help="Rendering of the chats: paper (the paper's wording) | compact (feature codes "
            "0-10, ~2.8x fewer tokens) | compact-echo (compact; the feedback restates the chosen "
            "option). A model tuned on a style is asked in it by serve/eval."
        ),
    ] = "paper",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the manifest as one JSON object on stdout.")
    ] = False,
) -> None:
    """Export a teaching set from trajectory logs: the Bayesian teacher is re-run over each
    logged dialogue (options and user choices) and its answers become the assistant turns."""
    dom: ChoiceDomain | None = None
    if domain is not None:
        loaded = load_domain(domain)
        if not isinstance(loaded, ChoiceDomain):
            raise ConfigError(
                "export needs a choice domain (flight, hotel, ...)", field="domain", value=domain
            )
        dom = loaded
    manifest = export_teaching_set(
        logs,
        out,
        target,
        fmt,
        eval_fraction,
        seed,
        likelihood=likelihood,
        domain=dom,
        keep_emptied=keep_emptied,
        include_user_messages=include_user_messages,
        overwrite=overwrite,
        prompt_style=check_prompt_style(prompt_style, "prompt-style"),
    )
    if json_out:
        print(json.dumps(manifest))
        return
    _print_summary(Console(), manifest, out)


def _print_summary(console: Console, manifest: dict[str, Any], out: Path) -> None:
    counts = manifest["counts"]
    table = Table(
        title=f"teaching set ({manifest['target']}, {manifest['format']}, teacher "
        f"{manifest['teacher']['likelihood']}) in {out}"
    )
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("logs / records", f"{counts['logs']} / {counts['records']}")
    table.add_row("sessions read", str(counts["sessions_read"]))
    table.add_row(
        "examples train / eval", f"{counts['examples']['train']} / {counts['examples']['eval']}"
    )
    table.add_row("users train / eval", f"{counts['users']['train']} / {counts['users']['eval']}")
    table.add_row("duplicates dropped", str(counts["duplicates_dropped"]))
    if counts["emptied_kept"]:
        table.add_row("emptied beliefs kept", str(counts["emptied_kept"]))
    for reason, n in counts["skipped"].items():
        table.add_row(f"skipped: {reason}", str(n))
    scrubbed = {k: v for k, v in manifest["pii_scrubbed"].items() if v}
    if scrubbed:
        table.add_row("scrubbed", ", ".join(f"{k} {v}" for k, v in scrubbed.items()))
    if manifest["ids_anonymised"]:
        table.add_row("ids anonymised", str(manifest["ids_anonymised"]))
    console.print(table)
