"""The generalisation suite (``beliefagent eval --suite generalisation``) and web shopping on the
command line (``beliefagent eval --domain webshop``).

The suite (``eval/generalisation.toml``) runs flights with 2..8 features, hotels, web shopping
and the real people's flights for the chosen assistants, each on the first official file found
(generated data otherwise, saying which), and writes one report: ``report.md`` with a table per
task, ``results.json``, and ``accuracy_vs_features.png`` — accuracy after the last round against
the number of features, with 95 % CIs, like the paper's figure. Each task's own run directory
(``<out>/<task>/``) holds its full report and resumable log.
"""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from beliefagent.datasets import find_data_path
from beliefagent.errors import BeliefAgentError, ConfigError, DataError
from beliefagent.eval.harness import EvalConfig, run_eval
from beliefagent.eval.report import write_report
from beliefagent.eval.webshop import WebshopConfig, run_webshop_eval, write_webshop_report

__all__ = [
    "load_generalisation",
    "run_generalisation",
    "special_command",
    "suite_kind",
    "write_suite_report",
]

logger = logging.getLogger(__name__)

_TASK_KEYS = {
    "name",
    "kind",
    "domain",
    "interactions",
    "heldout",
    "protocol",
    "likelihood",
    "noise",
    "generate",
    "users",
    "heldout_sets",
}


def _suite_path(name_or_path: str) -> Path | None:
    path = Path(name_or_path)
    if path.is_file():
        return path
    here = Path(__file__).resolve()
    for d in (Path("eval"), here.parents[3] / "eval"):
        if (d / f"{name_or_path}.toml").is_file():
            return d / f"{name_or_path}.toml"
    return None


def suite_kind(name_or_path: str) -> str | None:
    """The ``kind`` a suite file declares (``None`` for plain ``[[runs]]`` suites)."""
    path = _suite_path(name_or_path)
    if path is None:
        return None
    try:
        kind = tomllib.loads(path.read_text()).get("kind")
    except (OSError, ValueError):
        return None
    return kind if isinstance(kind, str) else None


def load_generalisation(name_or_path: str = "generalisation") -> dict[str, Any]:
    """Read a ``kind = "generalisation"`` suite: defaults and one ``[[tasks]]`` table a task."""
    path = _suite_path(name_or_path)
    if path is None:
        raise ConfigError("no such suite file or name", field="suite", value=name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read suite: {exc}", path=str(path)) from exc
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ConfigError("needs at least one [[tasks]] table", field="suite.tasks", value=None)
    for i, t in enumerate(tasks):
        unknown = sorted(set(t) - _TASK_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key (known: {sorted(_TASK_KEYS)})",
                field=f"suite.tasks[{i}]",
                value=unknown[0],
            )
        if "name" not in t or ("domain" not in t and t.get("kind") != "webshop"):
            raise ConfigError(
                "a task needs a name and a domain", field=f"suite.tasks[{i}]", value=t
            )
    return {
        "name": data.get("name", path.stem),
        "assistants": data.get("assistants") or ["bayes", "random", "oracle"],
        "users": data.get("users", 20),
        "heldout_sets": data.get("heldout_sets", 20),
        "tasks": tasks,
    }


def _choice_task(
    task: dict[str, Any], names: list[str], users: int | None, sets: int, out: Path
) -> dict[str, Any]:
    inter = find_data_path(list(task.get("interactions", [])))
    held = find_data_path(list(task.get("heldout", []))) if inter else None
    protocol = task.get("protocol", "heldout")
    if inter is None and task.get("generate", True) is False:
        return {"status": "skipped", "reason": "no official file found", "source": None}
    if inter is None:
        source = "generated (no official file found)"
    elif held is None and protocol == "heldout":
        source = f"official interactions ({inter}); held-out sets generated for those users"
    elif held is None:
        source = f"official interactions ({inter})"
    else:
        source = f"official ({inter}, {held})"
    config = EvalConfig(
        domain=task["domain"],
        protocol=protocol,
        users=task.get("users", users),
        heldout_sets=task.get("heldout_sets", sets),
        interactions=str(inter) if inter else None,
        heldout=str(held) if held else None,
        likelihood=task.get("likelihood", "noise-free"),
        noise=task.get("noise"),
        probe=False,
    )
    run = run_eval(config, names, out)
    write_report(run.summary, out, plots=True)
    s = run.summary
    from beliefagent.domains import load_domain

    features = list(getattr(load_domain(task["domain"]), "feature_names", []))
    return {
        "status": "done",
        "source": source,
        "protocol": s["protocol"],
        "n_users": s["n_users"],
        "n_heldout": s["n_heldout"],
        "features": features,
        "teacher_accuracy_by_round": s["teacher_accuracy_by_round"],
        "assistants": [
            {
                "name": a["name"],
                "accuracy_by_round": a["accuracy_by_round"],
                "accuracy_ci": a["accuracy_ci"],
            }
            for a in s["assistants"]
        ],
    }


def _webshop_task(
    task: dict[str, Any], names: list[str], users: int | None, sets: int | None, out: Path
) -> dict[str, Any]:
    inter = find_data_path(list(task.get("interactions", [])))
    held = find_data_path(list(task.get("heldout", [])))
    if inter is None:
        return {"status": "skipped", "reason": "no official file found", "source": None}
    usable = [n for n in names if n != "bayes" and "#" not in n]
    config = WebshopConfig(
        interactions=str(inter),
        heldout=str(held) if held else None,
        users=task.get("users", users),
        heldout_sets=task.get("heldout_sets", sets),
    )
    summary = run_webshop_eval(config, usable, out)
    write_webshop_report(summary, out)
    pooled = summary["pooled"]["assistants"]
    n_held = max((a["n_users_heldout"] for a in pooled), default=0)
    return {
        "status": "done",
        "source": f"official ({inter}); {n_held} of {summary['n_users']} users have held-out sets"
        if held
        else f"official ({inter})",
        "protocol": "heldout" if held and n_held else "dialogue",
        "n_users": n_held if held and n_held else summary["n_users"],
        "n_categories": summary["n_categories"],
        "features": None,
        "note": "no Bayesian teacher (products have no feature vector); bayes and #policies "
        "are left out",
        "assistants": [
            {
                "name": a["name"],
                "accuracy_by_round": a["accuracy_by_round"] or a["dialogue_accuracy_by_round"],
                "accuracy_ci": a["accuracy_ci"] or a["dialogue_accuracy_ci"],
            }
            for a in pooled
        ],
    }


def run_generalisation(
    out: str | Path,
    *,
    assistants: list[str] | None = None,
    users: int | None = None,
    heldout_sets: int | None = None,
    full: bool = False,
    suite: str = "generalisation",
) -> dict[str, Any]:
    """Run every task of the suite into ``out/<task>/`` and write the suite report into ``out``.
    A task that fails (bad file, unreachable endpoint) is reported with its error; the others
    still run."""
    spec = load_generalisation(suite)
    names = list(assistants or spec["assistants"])
    n_users = None if full else (users if users is not None else spec["users"])
    n_sets = heldout_sets if heldout_sets is not None else (100 if full else spec["heldout_sets"])
    out_dir = Path(out)
    rows = []
    for task in spec["tasks"]:
        task_out = out_dir / task["name"]
        logger.info("generalisation suite: %s", task["name"])
        try:
            if task.get("kind") == "webshop":
                res = _webshop_task(task, names, n_users, None if full else n_sets, task_out)
            else:
                res = _choice_task(task, names, n_users, n_sets, task_out)
        except BeliefAgentError as exc:
            res = {"status": "failed", "reason": str(exc), "source": None}
        rows.append({"task": task["name"], "out": str(task_out), **res})
    summary = {"suite": spec["name"], "assistants": names, "tasks": rows}
    summary["report_files"] = [str(p) for p in write_suite_report(summary, out_dir)]
    return summary


def _fmt(values: list[float], cis: list[list[float]]) -> str:
    return " | ".join(f"{v:.1f} [{c[0]:.0f}, {c[1]:.0f}]" for v, c in zip(values, cis, strict=True))


def render_suite_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# {summary['suite']}: accuracy after each round, per task",
        "",
        "Mean [95% CI over users], in %. Held-out protocol: accuracy on held-out option sets "
        "after rounds 0..R; dialogue protocol (real people): predicting each round's choice "
        "from the rounds before. Each task's full report is in its own folder.",
        "",
        "![accuracy vs number of features](accuracy_vs_features.png)",
        "",
    ]
    for t in summary["tasks"]:
        lines += [f"## {t['task']}", ""]
        if t["status"] != "done":
            lines += [f"{t['status']}: {t.get('reason')}", ""]
            continue
        n_feat = len(t["features"]) if t.get("features") else None
        extra = f", {n_feat} features" if n_feat else ""
        lines += [
            f"Data: {t['source']}; {t['n_users']} users{extra}, protocol {t['protocol']}.",
            "",
        ]
        if t.get("note"):
            lines += [f"Note: {t['note']}.", ""]
        width = max(len(a["accuracy_by_round"]) for a in t["assistants"])
        first = 0 if t["protocol"] == "heldout" else 1
        head = " | ".join(f"R{r}" for r in range(first, first + width))
        lines += [f"| assistant | {head} |", "|---|" + "---|" * width]
        for a in t["assistants"]:
            lines.append(f"| {a['name']} | {_fmt(a['accuracy_by_round'], a['accuracy_ci'])} |")
        lines.append("")
    return "\n".join(lines)


def _plot(summary: dict[str, Any], path: Path) -> bool:
    points = [
        t
        for t in summary["tasks"]
        if t["status"] == "done" and t.get("features") and t["protocol"] == "heldout"
    ]
    if not points:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, name in enumerate(summary["assistants"]):
        for family, marker in (("flight", "o"), ("hotel", "s")):
            xs, ys, lo, hi = [], [], [], []
            for t in points:
                if (t["task"] == "hotel") != (family == "hotel"):
                    continue
                a = next((a for a in t["assistants"] if a["name"] == name), None)
                if a is None or not a["accuracy_by_round"]:
                    continue
                shift = 0.15 if family == "hotel" else 0.0
                xs.append(len(t["features"]) + shift + (k - 1) * 0.06)
                ys.append(a["accuracy_by_round"][-1])
                lo.append(a["accuracy_by_round"][-1] - a["accuracy_ci"][-1][0])
                hi.append(a["accuracy_ci"][-1][1] - a["accuracy_by_round"][-1])
            if not xs:
                continue
            order = sorted(range(len(xs)), key=lambda i: xs[i])
            ax.errorbar(
                [xs[i] for i in order],
                [ys[i] for i in order],
                yerr=[[lo[i] for i in order], [hi[i] for i in order]],
                marker=marker,
                capsize=3,
                linestyle="-" if family == "flight" else "none",
                color=f"C{k}",
                label=name if family == "flight" else f"{name} (hotel)",
            )
    ax.set_xlabel("number of features")
    ax.set_ylabel("held-out accuracy after the last round (%)")
    ax.set_title("Generalisation: accuracy vs number of features (95% CI over users)")
    ax.set_ylim(0, 103)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_suite_report(summary: dict[str, Any], out: str | Path) -> list[Path]:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "report.md"]
    written[0].write_text(json.dumps(summary, indent=2) + "\n")
    written[1].write_text(render_suite_markdown(summary))
    if _plot(summary, out_dir / "accuracy_vs_features.png"):
        written.append(out_dir / "accuracy_vs_features.png")
    return written


def special_command(
    *,
    domain: str | None,
    suite: str | None,
    assistants: list[str] | None,
    interactions: str | None,
    heldout: str | None,
    categories: list[str] | None,
    users: int | None,
    heldout_sets: int | None,
    full: bool,
    seed: int | None,
    max_tokens: int,
    timeout: float,
    api_key_env: str,
    out: Path | None,
    plots: bool,
    quiet: bool,
    json_out: bool,
) -> None:
    """``beliefagent eval`` for web shopping and the generalisation suite (the CLI owns the
    terminal: a table, or one JSON object with ``--json``)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if suite is not None:
        run_dir = out or Path("eval") / "runs" / f"generalisation-{stamp}"
        summary = run_generalisation(
            run_dir,
            assistants=assistants,
            users=users,
            heldout_sets=heldout_sets,
            full=full,
            suite=suite,
        )
        summary["out"] = str(run_dir)
    else:
        if interactions is None:
            raise ConfigError(
                "--domain webshop needs --interactions (a category file or a folder of them)",
                field="interactions",
                value=None,
            )
        inter = find_data_path([interactions])
        held = find_data_path([heldout]) if heldout else None
        if inter is None or (heldout and held is None):
            raise DataError("no such file or folder", path=str(heldout if inter else interactions))
        config = WebshopConfig(
            interactions=str(inter),
            heldout=str(held) if held else None,
            categories=categories,
            users=None if full else (users if users is not None else 20),
            heldout_sets=None if full else (heldout_sets if heldout_sets is not None else 20),
            seed=seed or 0,
            max_tokens=max_tokens,
            timeout_s=timeout,
            api_key_env=api_key_env,
        )
        run_dir = out or Path("eval") / "runs" / f"webshop-{stamp}"
        names = assistants or ["random", "oracle"]
        if quiet:
            summary = run_webshop_eval(config, names, run_dir)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
            ) as bar:
                task_id = bar.add_task("webshop", total=None)

                def update(done: int, total: int, name: str) -> None:
                    bar.update(task_id, completed=done, total=total, description=f"webshop {name}")

                summary = run_webshop_eval(config, names, run_dir, on_progress=update)
        summary["out"] = str(run_dir)
        summary["report_files"] = [
            str(p) for p in write_webshop_report(summary, run_dir, plots=plots)
        ]
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    from rich.console import Console

    Console().print(f"report: {Path(summary['out']) / 'report.md'}")
