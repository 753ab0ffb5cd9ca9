"""The ``beliefagent`` command line. The CLI owns the terminal: tables and progress go to stderr
or stdout here, never from library code; ``--json`` prints one JSON object on stdout."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from beliefagent.domains.choice import ChoiceDomain
from beliefagent.errors import BeliefAgentError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact Bayesian beliefs beside chat LLMs: evaluate, log, teach, serve.",
)
out = Console()
err = Console(stderr=True)

DomainOpt = Annotated[
    str, typer.Option("--domain", "-d", help="Built-in domain name or path to a spec file.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
LikelihoodOpt = Annotated[
    str,
    typer.Option(
        "--likelihood", help="User model for belief updates: noise-free | epsilon | softmax."
    ),
]
NoiseOpt = Annotated[
    float | None,
    typer.Option(
        "--noise", help="epsilon (for epsilon) or temperature (for softmax); default 0.1."
    ),
]


def _choice_domain(name: str) -> ChoiceDomain:
    from beliefagent.domains import load_domain

    domain = load_domain(name)
    if not isinstance(domain, ChoiceDomain):
        raise ConfigError(
            "this command needs a choice domain (flight, hotel, ...)", field="domain", value=name
        )
    return domain


@app.command("domains")
def domains_cmd(json_out: JsonOpt = False) -> None:
    """List the built-in domains."""
    from beliefagent.domains import builtin_domains, load_domain

    rows: list[dict[str, Any]] = []
    for name in builtin_domains():
        d = load_domain(name)
        rows.append(
            {
                "name": name,
                "kind": d.kind,
                "features": list(d.feature_names),
                "n_hypotheses": len(d.hypothesis_weights()),
            }
        )
    if json_out:
        print(json.dumps({"domains": rows}))
        return
    table = Table("domain", "kind", "hypotheses", "features")
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r["n_hypotheses"]), ", ".join(r["features"]))
    out.print(table)


@app.command("teacher-eval")
def teacher_eval_cmd(
    domain: DomainOpt = "flight",
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="Official held-out file (e.g. heldout_flight.json); a bare name is also looked up "
            "in $BELIEFAGENT_DATA and ../shared/data/qiu2026."
        ),
    ] = None,
    interactions: Annotated[
        Path | None,
        typer.Option(help="Official interactions file (e.g. interaction_flight.jsonl)."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(help="Generated data: number of users (default: every hypothesis)."),
    ] = None,
    heldout_sets: Annotated[int, typer.Option(help="Generated data: held-out sets.")] = 100,
    seed: Annotated[int, typer.Option(help="Generated data: random seed.")] = 0,
    likelihood: LikelihoodOpt = "noise-free",
    noise: NoiseOpt = None,
    tie_tol: Annotated[
        float,
        typer.Option(
            help="Expected rewards closer than this tie (first option wins). 0 = plain argmax."
        ),
    ] = 1e-9,
    json_out: JsonOpt = False,
) -> None:
    """Accuracy of the Bayesian teacher on held-out option sets after each round."""
    from beliefagent.belief import choice_model_from_name
    from beliefagent.eval.teacher import run_teacher_eval

    res = run_teacher_eval(
        _choice_domain(domain),
        heldout=heldout,
        interactions=interactions,
        users=users,
        heldout_sets=heldout_sets,
        seed=seed,
        likelihood=choice_model_from_name(likelihood, noise),
        tie_tol=tie_tol,
    )
    if json_out:
        print(json.dumps(res.to_dict()))
        return
    table = Table(
        title=f"Bayesian teacher, {res.domain} ({res.source} data: {res.n_users} users, "
        f"{res.n_heldout} held-out sets)"
    )
    table.add_column("after round", justify="right")
    table.add_column("accuracy %", justify="right")
    for r, a in enumerate(res.accuracy_by_round):
        table.add_row(str(r), f"{a:.1f}")
    out.print(table)


@app.command("teacher-dialogues")
def teacher_dialogues_cmd(
    interactions: Annotated[
        Path,
        typer.Option(
            help="Interactions file, e.g. interaction_flight_human.jsonl (real people's choices)."
        ),
    ],
    domain: DomainOpt = "flight",
    likelihood: Annotated[
        list[str] | None,
        typer.Option("--likelihood", help="One or more: noise-free, epsilon:0.1, softmax:0.1, ..."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """In-dialogue accuracy of the teacher (predict each round's choice from the rounds before)
    and how often its posterior empties, under several likelihoods."""
    from beliefagent.belief import choice_model_from_spec
    from beliefagent.datasets import load_interactions
    from beliefagent.eval.teacher import dialogue_accuracy, stated_reward_agreement

    d = _choice_domain(domain)
    data = load_interactions(interactions, d)
    specs = likelihood or ["noise-free", "epsilon:0.1", "epsilon:0.3", "softmax:0.1", "softmax:0.3"]
    rows: list[dict[str, Any]] = []
    for spec in specs:
        res = dialogue_accuracy(d, data, choice_model_from_spec(spec))
        res["likelihood"] = spec
        rows.append(res)
    agree = stated_reward_agreement(d, data)
    if json_out:
        print(
            json.dumps(
                {
                    "n_dialogues": len(data.choices),
                    "stated_reward_agreement": agree,
                    "teachers": rows,
                }
            )
        )
        return
    table = Table(
        title=f"{len(data.choices)} dialogues; choices agree with the stated reward "
        f"{agree:.1f}% of the time"
    )
    for col in ("likelihood", "in-dialogue acc %", "by round %", "posterior emptied"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["likelihood"]),
            f"{r['accuracy']:.1f}",
            " / ".join(f"{a:.0f}" for a in r["accuracy_by_round"]),
            f"{r['emptied_dialogues']} ({r['emptied_share']:.1f}%)",
        )
    out.print(table)


@app.command("demo")
def demo_cmd(
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder, new or empty (default: runs/demo-<date>-<time>)."),
    ] = None,
    quick: Annotated[bool, typer.Option(help="A few minutes on 2 cores instead of ~30.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """The whole loop on the bundled model: simulate, teach, fine-tune, serve, evaluate, report."""
    import time

    from beliefagent.demo import run_demo

    out = out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    summary = run_demo(out, quick=quick, seed=seed, say=lambda m: err.print(f"[bold]{m}[/bold]"))
    if json_out:
        print(json.dumps(summary))
        return
    table = Table(title="accuracy (%) on held-out option sets after each round")
    table.add_column("assistant")
    n = len(summary["assistants"][0]["accuracy_by_round"])
    for r in range(n):
        table.add_column(f"R{r}", justify="right")
    for a in summary["assistants"]:
        table.add_row(a["name"], *(f"{v:.1f}" for v in a["accuracy_by_round"]))
    for a in summary["through_server"]:
        if a["name"] != "bayes":
            table.add_row(
                f"{a['name']} ({summary['sizes']['server_users']} users)",
                *(f"{v:.1f}" for v in a["accuracy_by_round"]),
            )
    out_console = Console()
    out_console.print(table)
    out_console.print(f"report: {out / 'report' / 'report.md'}  ({summary['total_s']:.0f} s)")


@app.command("compare-teaching")
def compare_teaching_cmd(
    domain: Annotated[str, typer.Option(help="flight (or flight-K, hotel) or bigfive.")] = "flight",
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder, new or empty (default: runs/compare-<domain>-<time>)."),
    ] = None,
    arm: Annotated[
        list[str] | None,
        typer.Option(
            help="Teaching arms: oracle-taught, bayes-hard, bayes-soft (repeatable; default: all "
            "three for a choice domain, bayes-hard and bayes-soft for a questionnaire)."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Smoke sizes: the loop, no result.")] = False,
    steps: Annotated[int | None, typer.Option(help="Training steps per arm.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Dialogues per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    train_users: Annotated[int | None, typer.Option(help="Teaching users (dialogues).")] = None,
    eval_users: Annotated[int | None, typer.Option(help="Evaluation users.")] = None,
    heldout_sets: Annotated[
        int | None, typer.Option(help="Held-out option sets (questionnaire: items) per user.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads for training.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Base model vs oracle-taught vs Bayesian-taught (hard, soft), same budget, one report."""
    import dataclasses
    import time

    from beliefagent.compare import compare_teaching, default_sizes

    sizes = default_sizes(domain, quick)
    changes: dict[str, Any] = {
        k: v
        for k, v in dict(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            train_users=train_users,
            eval_users=eval_users,
            heldout_sets=heldout_sets,
            threads=threads,
        ).items()
        if v is not None
    }
    sizes = dataclasses.replace(sizes, **changes)
    out = out or Path("runs") / time.strftime(f"compare-{domain}-%Y%m%d-%H%M%S")
    summary = compare_teaching(
        out,
        domain=domain,
        arms=arm or None,
        sizes=sizes,
        seed=seed,
        progress=not json_out,
        say=lambda m: err.print(f"[bold]{m}[/bold]"),
    )
    if json_out:
        print(json.dumps(summary))
        return
    table = Table(title=f"{domain}: held-out accuracy (%) after each round")
    table.add_column("assistant")
    n = len(summary["teacher_accuracy_by_round"])
    for r in range(n):
        table.add_column(f"R{r}", justify="right")
    table.add_column("agree %", justify="right")
    table.add_column("entropy", justify="right")
    table.add_column("answer shares %", justify="right")
    for a in summary["arms"]:
        ent = a["mean_entropy"]
        table.add_row(
            a["name"],
            *(f"{v:.1f}" for v in a["accuracy_by_round"]),
            f"{a['agreement_heldout']:.1f}" if a["agreement_heldout"] is not None else "-",
            f"{ent:.3f}" if ent is not None else "-",
            "/".join(f"{v:.0f}" for v in a["answer_shares"] or []),
        )
    out_console = Console()
    out_console.print(table)
    out_console.print(f"report: {out / 'report' / 'report.md'}  ({summary['total_s']:.0f} s)")


def _register_optional_commands() -> None:
    """Commands that live beside the modules they drive."""
    from beliefagent.eval.command import eval_command
    from beliefagent.export.command import export_command
    from beliefagent.finetune.command import finetune_command
    from beliefagent.server.command import serve_command

    app.command("eval", help="Evaluate assistants side by side with the paper's protocol.")(
        eval_command
    )
    app.command("export", help="Export a teaching set from trajectory logs.")(export_command)
    app.command("finetune", help="LoRA fine-tune a model on a teaching set.")(finetune_command)
    app.command("serve", help="OpenAI-compatible belief server in front of an upstream.")(
        serve_command
    )


_register_optional_commands()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except BeliefAgentError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
