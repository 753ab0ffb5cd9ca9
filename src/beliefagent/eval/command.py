"""``beliefagent eval``: several assistants, the paper's protocol, one report.

The command function is registered by the CLI (``app.command("eval")(eval_command)``); it owns
the terminal: progress (rich, with ETA) goes to stderr, and with ``--json`` stdout carries
exactly one JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from beliefagent.datasets import find_data_file
from beliefagent.errors import ConfigError, DataError
from beliefagent.eval.harness import EvalConfig, EvalRun, run_eval
from beliefagent.eval.report import write_report

__all__ = ["eval_command", "load_suite"]

logger = logging.getLogger(__name__)

DEFAULT_ASSISTANTS = ["bayes", "random"]
# a suite file sets the run's data fields (not the guard threshold) and may name itself
_SUITE_KEYS = {*EvalConfig._DATA_FIELDS, *EvalConfig._SELECTION_FIELDS, "name"} - {
    "guard_threshold"
}


def _suite_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    return [Path("eval"), here.parents[3] / "eval"]


def load_suite(name_or_path: str) -> dict[str, Any]:
    """Read a suite: a TOML file with optional ``assistants`` and one or more ``[[runs]]``
    tables (``domain``, ``users``, ``heldout_sets``, ``interactions``, ...). A bare name is
    looked up as ``eval/<name>.toml`` (the working directory, then the repository)."""
    path = Path(name_or_path)
    if not path.is_file():
        for d in _suite_dirs():
            if (d / f"{name_or_path}.toml").is_file():
                path = d / f"{name_or_path}.toml"
                break
        else:
            raise ConfigError("no such suite file or name", field="suite", value=name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read suite: {exc}", path=str(path)) from exc
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(
            "a suite needs at least one [[runs]] table", field="suite.runs", value=None
        )
    for i, run in enumerate(runs):
        unknown = sorted(set(run) - _SUITE_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key (known: {sorted(_SUITE_KEYS)})",
                field=f"suite.runs[{i}]",
                value=unknown[0],
            )
    return {"name": data.get("name", path.stem), "assistants": data.get("assistants"), "runs": runs}


def _resolve_file(name: str | None) -> str | None:
    return None if name is None else str(find_data_file(name))


def eval_command(
    assistant: Annotated[
        list[str] | None,
        typer.Option(
            "--assistant",
            "-a",
            help="An assistant to evaluate; repeat for several: bayes, random, oracle, local, "
            "local+lora:PATH, openai:MODEL@URL, vllm:ADAPTER@URL, with an optional #policy "
            "suffix (#guard, #hint, #bayes). Default: bayes and random (or the suite's).",
        ),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            "-d",
            help="flight, flight-K (K=2..8), hotel, bigfive, webshop (official files: "
            "--interactions and --heldout, a file or a folder), or a spec.",
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            help="A suite TOML (path, or a name in eval/: flight, flight-sweep, ...), or "
            "generalisation (flight-2..8, hotel, web shopping, real people: one report)."
        ),
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Users (simulated, or dialogues of a file). Default 20.")
    ] = None,
    heldout_sets: Annotated[
        int | None,
        typer.Option(help="Held-out option sets (Big Five: held-out items). Default 20."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Every user and 100 held-out sets (the paper's size).")
    ] = False,
    rounds: Annotated[
        int | None, typer.Option(help="Big Five: items answered in the dialogue (default 10).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the generated data (default 0).")
    ] = None,
    heldout: Annotated[
        str | None,
        typer.Option(help="Official held-out file (bare names are looked up in the data dirs)."),
    ] = None,
    interactions: Annotated[
        str | None,
        typer.Option(
            help="Interactions file (interaction_flight.jsonl; interaction_flight_human.jsonl "
            "alone runs the in-dialogue protocol)."
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="auto | heldout | dialogue (default auto).")
    ] = None,
    likelihood: Annotated[
        str | None, typer.Option(help="Teacher's user model: noise-free | epsilon | softmax.")
    ] = None,
    noise: Annotated[
        float | None, typer.Option(help="epsilon or temperature of the likelihood.")
    ] = None,
    probe: Annotated[
        bool, typer.Option("--probe/--no-probe", help="Ask LLMs for per-feature beliefs.")
    ] = True,
    selection: Annotated[
        str | None,
        typer.Option(
            help="Active elicitation: each round's options are chosen from a fresh random pool "
            "by random | eig | reward | mixed (see docs/selection.md)."
        ),
    ] = None,
    pool: Annotated[
        int | None, typer.Option(help="--selection: candidates per round (default 20).")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(help="--selection mixed: expected-reward margin, share of range (0.25)."),
    ] = None,
    user_noise: Annotated[
        float | None,
        typer.Option(help="--selection: chance a simulated user picks at random (default 0)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent requests to remote endpoints.")] = 4,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key.")
    ] = "OPENAI_API_KEY",
    price_per_1k_input: Annotated[
        float, typer.Option(help="USD per 1,000 prompt tokens (for the cost column).")
    ] = 0.0,
    price_per_1k_output: Annotated[
        float, typer.Option(help="USD per 1,000 completion tokens.")
    ] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Most tokens an LLM may generate.")] = 24,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 60.0,
    guard_threshold: Annotated[
        float, typer.Option(help="#guard: teacher confidence needed to override.")
    ] = 0.8,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (log, results, report). Reusing one resumes the run. "
            "Default: eval/runs/<domain>-<time>."
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    category: Annotated[
        list[str] | None,
        typer.Option(help="--domain webshop: only these categories (repeatable; default all)."),
    ] = None,
) -> None:
    """Evaluate assistants side by side with the paper's protocol; write a report."""
    from beliefagent.eval.suite import special_command, suite_kind

    if domain == "webshop" or (suite is not None and suite_kind(suite) == "generalisation"):
        special_command(
            domain=domain,
            suite=suite,
            assistants=assistant,
            interactions=interactions,
            heldout=heldout,
            categories=category,
            users=users,
            heldout_sets=heldout_sets,
            full=full,
            seed=seed,
            max_tokens=max_tokens,
            timeout=timeout,
            api_key_env=api_key_env,
            out=out,
            plots=plots,
            quiet=quiet,
            json_out=json_out,
        )
        return
    spec_suite = load_suite(suite) if suite else None
    runs: list[dict[str, Any]] = spec_suite["runs"] if spec_suite else [{}]
    names = assistant or (spec_suite or {}).get("assistants") or DEFAULT_ASSISTANTS
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    summaries: list[dict[str, Any]] = []
    for i, run_spec in enumerate(runs):
        cli: dict[str, Any] = {
            "domain": domain,
            "users": users,
            "heldout_sets": heldout_sets,
            "rounds": rounds,
            "seed": seed,
            "heldout": heldout,
            "interactions": interactions,
            "protocol": protocol,
            "likelihood": likelihood,
            "noise": noise,
            "selection": selection,
            "pool": pool,
            "selection_margin": margin,
            "user_epsilon": user_noise,
        }
        merged = {k: v for k, v in run_spec.items() if k != "name"}
        merged.update({k: v for k, v in cli.items() if v is not None})
        if full:
            merged["users"] = None
            if heldout_sets is None:
                merged["heldout_sets"] = 100
        merged.setdefault("domain", "flight")
        merged["heldout"] = _resolve_file(merged.get("heldout"))
        merged["interactions"] = _resolve_file(merged.get("interactions"))
        if not probe:
            merged["probe"] = False
        config = EvalConfig(
            concurrency=concurrency,
            api_key_env=api_key_env,
            price_per_1k_input=price_per_1k_input,
            price_per_1k_output=price_per_1k_output,
            max_tokens=max_tokens,
            timeout_s=timeout,
            guard_threshold=guard_threshold,
            **merged,
        )
        label = run_spec.get("name") or config.domain
        if out is None:
            run_dir = Path("eval") / "runs" / f"{Path(label).stem}-{stamp}"
        else:
            run_dir = out if len(runs) == 1 else out / str(Path(label).stem)
        run = _run_with_progress(
            config, list(names), run_dir, quiet, f"{label} ({i + 1}/{len(runs)})"
        )
        files = write_report(run.summary, run_dir, plots=plots)
        run.summary["out"] = str(run_dir)
        run.summary["report_files"] = [str(f) for f in files]
        summaries.append(run.summary)
        if not json_out:
            _print_table(run)
    selection_files: list[Path] = []
    if len(summaries) > 1 and any("selection" in s for s in summaries):
        from beliefagent.eval.selection_report import write_selection_report

        root = out or Path("eval") / "runs" / f"{(spec_suite or {}).get('name', 'suite')}-{stamp}"
        selection_files = write_selection_report(summaries, root, plots=plots)
    if json_out:
        payload: dict[str, Any] = dict(summaries[0]) if len(summaries) == 1 else {}
        if len(summaries) > 1:
            payload = {"suite": (spec_suite or {}).get("name"), "runs": summaries}
            if selection_files:
                payload["selection_report"] = [str(f) for f in selection_files]
        sys.stdout.write(json.dumps(payload) + "\n")


def _run_with_progress(
    config: EvalConfig, names: list[str], out: Path, quiet: bool, label: str
) -> EvalRun:
    if quiet:
        return run_eval(config, names, out)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task_id = bar.add_task(f"eval {label}", total=None)

        def update(done: int, total: int, name: str) -> None:
            bar.update(task_id, completed=done, total=total, description=f"eval {label}: {name}")

        return run_eval(config, names, out, on_progress=update)


def _print_table(run: EvalRun) -> None:
    from rich.console import Console
    from rich.table import Table

    s = run.summary
    table = Table(
        title=f"{s['domain']} ({s['protocol']}): {s['n_users']} users, {s['n_heldout']} held-out;"
        f" report in {run.out}"
    )
    table.add_column("assistant")
    for r in range(len(s["teacher_accuracy_by_round"])):
        table.add_column(f"R{r if s['n_heldout'] else r + 1}", justify="right")
    for col in ("dialogue %", "agree %", "invalid %"):
        table.add_column(col, justify="right")
    table.add_row(
        "[i]Bayesian teacher[/i]", *[f"{a:.1f}" for a in s["teacher_accuracy_by_round"]], "", "", ""
    )
    for a in s["assistants"]:
        table.add_row(
            a["name"],
            *[f"{v:.1f}" for v in a["accuracy_by_round"]],
            f"{a['dialogue_accuracy']:.1f}",
            f"{a.get('agreement_heldout', a['agreement_dialogue']):.1f}",
            f"{a['invalid_rate']:.1f}",
        )
    Console().print(table)
