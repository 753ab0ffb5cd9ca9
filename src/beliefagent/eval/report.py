"""Writing a run's report directory: ``results.json``, ``report.md`` and PNG plots.

Plots (matplotlib, Agg backend, no display needed):

- ``accuracy_by_round.png`` — accuracy after each round per assistant with its 95 % CI band,
  the Bayesian teacher (dashed) and chance (dotted);
- ``informativity.png`` — belief change per tertile of the option sets' expected information
  gain, per assistant;
- ``calibration.png`` — reliability curves of the assistants that give label probabilities
  (written only when at least one does);
- ``entropy_by_round.png`` — mean predictive entropy after each round of those assistants, with
  the teacher's on the same queries (dashed) and the uniform guess (dotted).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from beliefagent.errors import ConfigError

__all__ = ["render_markdown", "write_report"]

logger = logging.getLogger(__name__)


def _fmt_ci(mean: float, ci: list[float]) -> str:
    return f"{mean:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def _opt(value: Any, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def render_markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown: one row per assistant."""
    rounds = len(summary["teacher_accuracy_by_round"])
    heldout = summary["n_heldout"] > 0
    first = 0 if heldout else 1
    what = (
        f"held-out accuracy (%) after each round, {summary['n_heldout']} held-out queries"
        if heldout
        else "in-dialogue accuracy (%) of each round (predicting the user's choice)"
    )
    lines = [
        f"# Evaluation: {summary['domain']} ({summary['protocol']} protocol)",
        "",
        f"{summary['n_users']} users ({summary['source']} data), {summary['rounds']} rounds; "
        f"chance {summary['chance']:.1f}%. Intervals: {summary['ci_method']}.",
        "",
        f"## Accuracy by round: {what}",
        "",
        "| assistant | " + " | ".join(f"R{first + r}" for r in range(rounds)) + " |",
        "|---|" + "---|" * rounds,
    ]
    teacher = summary["teacher_accuracy_by_round"]
    lines.append("| *Bayesian teacher* | " + " | ".join(f"{a:.1f}" for a in teacher) + " |")
    for a in summary["assistants"]:
        cells = [
            _fmt_ci(m, c) for m, c in zip(a["accuracy_by_round"], a["accuracy_ci"], strict=True)
        ]
        lines.append(f"| {a['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Other metrics",
        "",
        "| assistant | in-dialogue acc % | agree w/ teacher (held-out) % | agree w/ teacher "
        "(dialogue) % | invalid % | probe r (true) | probe r (teacher) | probe sign acc % "
        "| entropy (teacher) | ECE | answer shares % | tokens in/out | cost $ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in summary["assistants"]:
        probe = a.get("probe") or {}
        cal = a.get("calibration") or {}
        ent = (
            f"{cal['mean_entropy']:.3f} ({cal.get('teacher_mean_entropy', float('nan')):.3f})"
            if cal
            else "–"
        )
        lines.append(
            f"| {a['name']} | {_fmt_ci(a['dialogue_accuracy'], a['dialogue_accuracy_overall_ci'])}"
            f" | {_opt(a.get('agreement_heldout'))} | {_opt(a['agreement_dialogue'])}"
            f" | {a['invalid_rate']:.1f} | {_opt(probe.get('corr_true'), '{:.2f}')}"
            f" | {_opt(probe.get('corr_teacher'), '{:.2f}')}"
            f" | {_opt(probe.get('sign_accuracy_true'))} | {ent}"
            f" | {_opt(cal.get('ece'), '{:.3f}')}"
            f" | {'/'.join(f'{v:.0f}' for v in a.get('answer_shares', []))}"
            f" | {a['tokens']['prompt']}/{a['tokens']['completion']} | {a['cost_usd']:.4f} |"
        )
    if heldout:
        lines += [
            "",
            "## Sensitivity to informativity",
            "",
            "Rounds binned by the teacher's expected information gain (EIG, nats) of their option "
            "set; belief change = % of held-out predictions that changed over the round; "
            "accuracy change in points.",
            "",
            "| assistant | low EIG: change / Δacc | mid EIG | high EIG | corr(EIG, change) |",
            "|---|---|---|---|---|",
        ]
        for a in summary["assistants"]:
            inf = a.get("informativity")
            if not inf:
                continue
            cells = [
                f"{_opt(b['belief_change'])} / {_opt(b['accuracy_change'], '{:+.1f}')}"
                for b in inf["bins"]
            ]
            lines.append(
                f"| {a['name']} | "
                + " | ".join(cells)
                + f" | {_opt(inf['corr_eig_belief_change'], '{:.2f}')} |"
            )
    lines += [
        "",
        "Plots: accuracy_by_round.png, informativity.png, calibration.png, entropy_by_round.png.",
        "",
    ]
    return "\n".join(lines)


def _plots(summary: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install 'beliefagent[plot]')")
        return []
    written: list[str] = []

    def save(fig: Any, ax: Any, name: str) -> None:
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    heldout = summary["n_heldout"] > 0
    first = 0 if heldout else 1
    teacher = summary["teacher_accuracy_by_round"]
    xs = list(range(first, first + len(teacher)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in summary["assistants"]:
        lo = [c[0] for c in a["accuracy_ci"]]
        hi = [c[1] for c in a["accuracy_ci"]]
        (line,) = ax.plot(xs, a["accuracy_by_round"], marker="o", label=a["name"])
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.plot(xs, teacher, "k--", label="Bayesian teacher")
    ax.axhline(summary["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("after round" if heldout else "round")
    ax.set_ylabel("held-out accuracy (%)" if heldout else "in-dialogue accuracy (%)")
    ax.set_title(f"{summary['domain']}: {summary['n_users']} users (95% CI over users)")
    ax.set_ylim(0, 103)
    ax.set_xticks(xs)
    save(fig, ax, "accuracy_by_round.png")

    with_inf = [a for a in summary["assistants"] if a.get("informativity")]
    if with_inf:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        width = 0.8 / len(with_inf)
        for i, a in enumerate(with_inf):
            vals = [b["belief_change"] or 0.0 for b in a["informativity"]["bins"]]
            ax.bar([b + i * width for b in range(3)], vals, width, label=a["name"])
        ax.set_xticks([b + 0.4 - width / 2 for b in range(3)])
        ax.set_xticklabels(["low EIG", "mid EIG", "high EIG"])
        ax.set_ylabel("held-out predictions changed (%)")
        ax.set_title("Belief change vs informativity of the round's option set")
        save(fig, ax, "informativity.png")

    with_cal = [a for a in summary["assistants"] if a.get("calibration")]
    if with_cal:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
        for a in with_cal:
            curve = a["calibration"]["reliability"]
            ax.plot(
                [c["confidence"] for c in curve],
                [c["accuracy"] for c in curve],
                marker="o",
                label=f"{a['name']} (ECE {a['calibration']['ece']:.3f})",
            )
        ax.set_xlabel("confidence (max label probability)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title("Reliability on held-out queries")
        save(fig, ax, "calibration.png")

    with_ent = [a for a in with_cal if a["calibration"].get("entropy_by_round")]
    if with_ent:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        teacher_ent = None
        for a in with_ent:
            cal = a["calibration"]
            ys = cal["entropy_by_round"]
            ax.plot(range(len(ys)), ys, marker="o", label=a["name"])
            teacher_ent = teacher_ent or cal.get("teacher_entropy_by_round")
        if teacher_ent:
            ax.plot(range(len(teacher_ent)), teacher_ent, "k--", label="Bayesian teacher")
        n_labels = round(100 / summary["chance"])
        ax.axhline(math.log(n_labels), color="grey", linestyle=":", label="uniform guess")
        ax.set_xlabel("after round")
        ax.set_ylabel("mean predictive entropy (nats)")
        ax.set_title("Predictive entropy on held-out queries")
        save(fig, ax, "entropy_by_round.png")
    return written


def write_report(summary: dict[str, Any], out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write ``results.json``, ``report.md`` and (with ``plots``) the PNGs into ``out``;
    returns the paths written."""
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create: {exc}", field="out", value=str(out)) from exc
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_markdown(summary))
    names = ["results.json", "report.md"]
    if plots:
        names += _plots(summary, out_dir)
    return [out_dir / n for n in names]
