"""The side-by-side report of several active-elicitation runs (one per strategy and condition).

``write_selection_report(summaries, out)`` writes, from the summaries of runs with ``--selection``
(a suite such as ``eval/selection.toml``):

- ``selection.md`` — per run: strategy, pool, user noise, held-out accuracy after rounds 3 and 5,
  rounds to reach 81 % (the paper's five-round figure for random sets), regret by round and its
  mean, posterior entropy after round 5, and selection time per round;
- ``selection_accuracy_by_round.png`` — held-out accuracy by round, every strategy, one panel
  per (pool, user noise) condition;
- ``selection_regret_by_round.png`` — the regret by round, laid out the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TARGET_ACCURACY", "rounds_to", "selection_rows", "write_selection_report"]

logger = logging.getLogger(__name__)

TARGET_ACCURACY = 81.0
"""The Bayesian teacher's held-out accuracy after five random rounds in the paper."""


def rounds_to(accuracy_by_round: Sequence[float], target: float = TARGET_ACCURACY) -> int | None:
    """The first round after which accuracy reaches ``target`` (None: never within the run)."""
    for r, a in enumerate(accuracy_by_round):
        if a >= target:
            return r
    return None


def selection_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, assistant) of the runs that used selection."""
    rows = []
    for s in summaries:
        sel = s.get("selection")
        if not sel:
            continue
        for a in s["assistants"]:
            acc = a["accuracy_by_round"]
            rows.append(
                {
                    "strategy": sel["strategy"],
                    "pool": sel["pool"],
                    "user_epsilon": sel["user_epsilon"],
                    "assistant": a["name"],
                    "accuracy_by_round": acc,
                    "accuracy_r3": acc[3] if len(acc) > 3 else None,
                    "accuracy_r5": acc[5] if len(acc) > 5 else None,
                    "rounds_to_81": rounds_to(acc),
                    "regret_by_round": a["regret_by_round"],
                    "regret_mean": sel["regret_mean"],
                    "entropy_last": sel["entropy_by_round"][-1],
                    "select_ms_mean": sel["select_ms_mean"],
                    "select_ms_p95": sel["select_ms_p95"],
                    "n_users": s["n_users"],
                }
            )
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    n_users = sorted({r["n_users"] for r in rows})
    lines = [
        "# Active elicitation: options selected from a random pool each round",
        "",
        f"Users per run: {', '.join(map(str, n_users))}. Held-out accuracy (%) on the paper's "
        "protocol; regret = best true reward in the pool minus the true reward of the option "
        "the user picked from those shown (rewards are w . phi, in [-4, 4] for flight).",
        "",
        "| strategy | pool | user ε | assistant | R3 | R5 | rounds to 81 % | regret R1..R5 "
        "| mean regret | entropy R5 (nats) | ms / round (mean, p95) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        to81 = "–" if r["rounds_to_81"] is None else str(r["rounds_to_81"])
        regret = ", ".join(f"{v:.2f}" for v in r["regret_by_round"])
        lines.append(
            f"| {r['strategy']} | {r['pool']} | {r['user_epsilon']:g} | {r['assistant']} | "
            f"{r['accuracy_r3']:.1f} | {r['accuracy_r5']:.1f} | {to81} | {regret} | "
            f"{r['regret_mean']:.3f} | {r['entropy_last']:.2f} | "
            f"{r['select_ms_mean']:.1f}, {r['select_ms_p95']:.1f} |"
        )
    lines += [
        "",
        "![accuracy by round](selection_accuracy_by_round.png)",
        "",
        "![regret by round](selection_regret_by_round.png)",
        "",
    ]
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], key: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = sorted({(r["pool"], r["user_epsilon"]) for r in rows})
    cols = min(2, len(conditions))
    nrows = (len(conditions) + cols - 1) // cols
    fig, axes = plt.subplots(
        nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False, sharey=True
    )
    for ax, (pool, eps) in zip(axes.flat, conditions, strict=False):
        for r in rows:
            if (r["pool"], r["user_epsilon"]) != (pool, eps):
                continue
            values = r[key]
            start = 0 if key == "accuracy_by_round" else 1
            label = (
                r["strategy"] if r["assistant"] == "bayes" else f"{r['strategy']} {r['assistant']}"
            )
            ax.plot(range(start, start + len(values)), values, marker="o", label=label)
            ax.set_xticks(range(start, start + len(values)))
        if key == "accuracy_by_round":
            ax.axhline(TARGET_ACCURACY, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"pool {pool}, user ε = {eps:g}")
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(conditions) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_selection_report(
    summaries: Sequence[dict[str, Any]], out: str | Path, *, plots: bool = True
) -> list[Path]:
    """Write ``selection.md`` (and the two plots) into ``out``; returns the files written."""
    rows = selection_rows(summaries)
    if not rows:
        return []
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "selection.md"]
    files[0].write_text(_markdown(rows))
    if plots:
        for key, ylabel, name in (
            ("accuracy_by_round", "held-out accuracy (%)", "selection_accuracy_by_round.png"),
            ("regret_by_round", "regret (reward)", "selection_regret_by_round.png"),
        ):
            _plot(rows, key, ylabel, out_dir / name)
            files.append(out_dir / name)
    logger.info("selection report in %s", out_dir)
    return files
