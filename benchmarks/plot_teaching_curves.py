"""Plot training label-NLL curves against the two reference levels that say whether a run
learned anything from the evidence:

- ``uniform``: ln K, the loss of answering every option with equal probability;
- ``prior``: the best loss reachable WITHOUT reading the options or the feedback, i.e. the
  entropy of the targets' label given only the round number (the position / label prior,
  computed from the teaching set itself).

A curve that stays at or above ``prior`` has learned only the label marginal.

    python benchmarks/plot_teaching_curves.py runs/paper/adapters/bayes-hard \\
        runs/paper/adapters/oracle-taught --out docs/img/paper-scale-curves.png [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


def prior_nll(teaching_set: str | Path) -> float:
    """Mean over answers of ``-log p(target label | round)``, ``p`` the set's own frequencies."""
    by_round: dict[int, Counter[int]] = {}
    for line in Path(teaching_set).read_text().splitlines():
        if not line.strip():
            continue
        for r, t in enumerate(json.loads(line)["targets"]):
            by_round.setdefault(r, Counter())[int(t)] += 1
    total = sum(sum(c.values()) for c in by_round.values())
    nll = 0.0
    for c in by_round.values():
        n = sum(c.values())
        nll -= sum(k * math.log(k / n) for k in c.values())
    return nll / total


def smooth(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def curve_summary(adapter: Path, window: int) -> dict[str, Any]:
    meta = json.loads((adapter / "training_meta.json").read_text())
    curve = meta["loss_curve"]
    nll = [c["label_nll"] for c in curve]
    batch = meta["recipe"]["batch_size"] * meta["recipe"].get("grad_accum", 1)
    data = meta["data"]["path"]
    prior = prior_nll(data)
    s = smooth(nll, window)
    return {
        "name": adapter.parent.name if adapter.name == "adapter" else adapter.name,
        "steps": [c["step"] for c in curve],
        "label_nll": nll,
        "smoothed": s.tolist(),
        "window": window,
        "dialogues_per_step": batch,
        "prior_nll": prior,
        "uniform_nll": math.log(3),
        "first_window_nll": float(np.mean(nll[:window])),
        "last_window_nll": float(np.mean(nll[-window:])),
        "min_smoothed_nll": float(s.min()) if len(s) else None,
        "below_prior": bool(len(s) and s[-1] < prior - 0.02),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("adapters", nargs="+", type=Path, help="adapter folders (training_meta.json)")
    p.add_argument("--out", type=Path, default=None, help="PNG to write")
    p.add_argument("--window", type=int, default=20, help="moving-average window (steps)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = [curve_summary(a, args.window) for a in args.adapters]
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for i, r in enumerate(rows):
            color = f"C{i}"
            x = np.asarray(r["steps"][r["window"] - 1 :]) * r["dialogues_per_step"]
            ax.plot(x[: len(r["smoothed"])], r["smoothed"], color=color, label=r["name"])
            ax.axhline(r["prior_nll"], color=color, ls=":", lw=1, label=f"{r['name']}: prior")
        ax.axhline(math.log(3), color="k", ls="--", lw=1, label="uniform (ln 3)")
        ax.set_xlabel("training dialogues seen")
        ax.set_ylabel(f"label NLL (moving mean of {args.window} steps)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=120)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "label_nll"} for r in rows]))
    else:
        for r in rows:
            print(
                f"{r['name']}: label NLL first {r['first_window_nll']:.3f} -> last "
                f"{r['last_window_nll']:.3f} (min {r['min_smoothed_nll']:.3f}); prior "
                f"{r['prior_nll']:.3f}, uniform {r['uniform_nll']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
