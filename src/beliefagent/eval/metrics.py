"""Metrics of an evaluation run, with 95 % confidence intervals over users.

Confidence intervals are **bootstrap percentile intervals over users**: users are resampled with
replacement (2,000 resamples, fixed seed) and the 2.5th and 97.5th percentiles of the resampled
mean are reported. Every percentage is a mean of per-user values, so users weigh equally.

Per assistant (``C = R + 1`` checkpoints, ``S`` held-out queries):

- ``accuracy_by_round`` — held-out accuracy after rounds 0..R (the paper's protocol); for the
  ``dialogue`` protocol (real people), in-dialogue accuracy of rounds 1..R instead.
- ``dialogue_accuracy_by_round`` / ``dialogue_accuracy`` — predicting each round's choice from the
  history (the answer shown, after the policy).
- ``agreement_heldout_by_round`` / ``agreement_dialogue`` — same answer as the Bayesian teacher.
- ``invalid_rate`` — share of the model's answers that named no valid option (LLMs only).
- ``answer_shares`` — share of the answers (held-out predictions, or the dialogue's answers under
  the dialogue protocol) on each option position / answer label: a collapsed model answers one.
- ``informativity`` — per round, the teacher's expected information gain (EIG) of that round's
  option set, binned in tertiles; per bin the assistant's belief change (share of held-out
  predictions that changed over the round) and accuracy change; and their correlation with EIG.
- ``probe`` — stated per-feature preferences in [-1, 1] against the true weights and the
  teacher's posterior mean weights: Pearson r over (user, feature) pairs, and sign accuracy on
  features whose true weight is not 0.
- ``calibration`` — where the assistant gives label probabilities: mean predictive entropy
  (nats) beside the teacher's on the same queries, a reliability curve (10 confidence bins) and
  the expected calibration error (ECE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.belief import entropy
from beliefagent.eval.tasks import ChoiceTask, Task, UserTrace
from beliefagent.trajectories.records import EvalResult

__all__ = ["CI_METHOD", "bootstrap_ci", "summarize"]

FloatArray = npt.NDArray[np.float64]

CI_METHOD = "bootstrap percentile over users, 2000 resamples, 95%"
_N_BOOT = 2000
_BINS = 10


def bootstrap_ci(values: FloatArray, n_boot: int = _N_BOOT, seed: int = 0) -> FloatArray:
    """95 % percentile CI of the mean over axis 0 of ``values (U, K)`` -> ``(K, 2)``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n = v.shape[0]
    if n == 0:
        return np.full((v.shape[1], 2), np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (B, U)
    means = v[idx].mean(axis=1)  # (B, K)
    return np.stack([np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)], -1)


def _pct(x: FloatArray) -> list[float]:
    return [round(float(v) * 100, 2) for v in np.atleast_1d(x)]


def _series(per_user: FloatArray) -> dict[str, Any]:
    """Mean and CI (percent) of ``per_user (U, K)``."""
    ci = bootstrap_ci(per_user)
    return {"mean": _pct(per_user.mean(axis=0)), "ci": [_pct(row) for row in ci]}


def _matrix(rows: Sequence[Sequence[int | None]], width: int) -> npt.NDArray[np.int64]:
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = [-1 if v is None else v for v in row]
    return out


def _shares(values: npt.NDArray[np.int64], n_labels: int) -> list[float]:
    """Percent of the valid (>= 0) entries of ``values`` on each label 0..n_labels-1."""
    valid = values[values >= 0]
    if not valid.size:
        return [0.0] * n_labels
    return _pct(np.bincount(valid, minlength=n_labels)[:n_labels] / valid.size)


def _corr(a: FloatArray, b: FloatArray) -> float | None:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def _informativity(
    pred: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], gains: FloatArray, edges: FloatArray
) -> dict[str, Any]:
    """``pred (U, C, S)``, ``truth (U, S)``, ``gains (U, R)``, tertile ``edges (2,)``."""
    change = (pred[:, 1:] != pred[:, :-1]).mean(axis=2)  # (U, R)
    acc = (pred == truth[:, None, :]).mean(axis=2)  # (U, C)
    d_acc = acc[:, 1:] - acc[:, :-1]  # (U, R)
    which = np.digitize(gains, edges)  # (U, R) in 0..2
    bounds = [float(gains.min()), *edges.tolist(), float(gains.max())]
    bins = []
    for b in range(3):
        m = which == b
        bins.append(
            {
                "eig_low": round(bounds[b], 4),
                "eig_high": round(bounds[b + 1], 4),
                "n": int(m.sum()),
                "belief_change": round(float(change[m].mean()) * 100, 2) if m.any() else None,
                "accuracy_change": round(float(d_acc[m].mean()) * 100, 2) if m.any() else None,
            }
        )
    return {
        "bins": bins,
        "corr_eig_belief_change": _corr(gains.ravel(), change.ravel()),
        "corr_eig_accuracy_change": _corr(gains.ravel(), d_acc.ravel()),
    }


def _calibration(
    dist: FloatArray, truth: npt.NDArray[np.int64], teacher: FloatArray | None
) -> dict[str, Any]:
    """``dist (U, C, S, O)`` the assistant's label probabilities; ``teacher`` the same shape."""
    conf = dist.max(axis=-1).ravel()  # (N,)
    hit = (dist.argmax(axis=-1) == truth[:, None, :]).ravel()
    edges = np.linspace(0.0, 1.0, _BINS + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, _BINS - 1)
    curve, ece = [], 0.0
    for b in range(_BINS):
        m = which == b
        if not m.any():
            continue
        c, a = float(conf[m].mean()), float(hit[m].mean())
        ece += m.mean() * abs(a - c)
        curve.append({"confidence": round(c, 4), "accuracy": round(a, 4), "n": int(m.sum())})
    ent = entropy(dist)  # (U, C, S)
    out: dict[str, Any] = {
        "mean_entropy": round(float(ent.mean()), 4),
        "entropy_by_round": [round(float(v), 4) for v in ent.mean(axis=(0, 2))],
        "reliability": curve,
        "ece": round(float(ece), 4),
    }
    if teacher is not None:
        t_ent = entropy(teacher)
        out["teacher_mean_entropy"] = round(float(t_ent.mean()), 4)
        out["teacher_entropy_by_round"] = [round(float(v), 4) for v in t_ent.mean(axis=(0, 2))]
    return out


def _probe(
    probes: list[dict[str, float] | None],
    names: Sequence[str],
    true: FloatArray,
    teacher: FloatArray,
) -> dict[str, Any] | None:
    rows = [i for i, p in enumerate(probes) if p and all(n in p for n in names)]
    if not rows:
        return None
    stated = np.array([[probes[i][n] for n in names] for i in rows])  # type: ignore[index]
    t, m = true[rows], teacher[rows]  # (U', F)
    nz = t != 0
    return {
        "n_users": len(rows),
        "corr_true": _corr(stated.ravel(), t.ravel()),
        "corr_teacher": _corr(stated.ravel(), m.ravel()),
        "sign_accuracy_true": round(float((np.sign(stated[nz]) == np.sign(t[nz])).mean()) * 100, 2)
        if nz.any()
        else None,
        "mean_by_feature": {
            n: round(float(v), 3) for n, v in zip(names, stated.mean(0), strict=True)
        },
    }


def summarize_assistant(
    name: str,
    kind: str,
    results: list[EvalResult],
    task: Task,
    traces: list[UserTrace],
    *,
    price_in: float = 0.0,
    price_out: float = 0.0,
) -> dict[str, Any]:
    """Every metric of one assistant (see the module docstring)."""
    n_u, n_r, n_s = task.n_users, task.n_rounds, task.n_heldout
    truth_d = task.choices if isinstance(task, ChoiceTask) else task.answers  # (U, R)
    shown = _matrix([r.dialogue_shown for r in results], n_r)  # (U, R)
    t_dial = np.stack([t.dialogue_pred for t in traces])  # (U, R)
    d_hit = (shown == truth_d).astype(np.float64)
    out: dict[str, Any] = {"name": name, "kind": kind, "n_users": n_u}
    d_series = _series(d_hit)
    out["dialogue_accuracy_by_round"] = d_series["mean"]
    out["dialogue_accuracy_ci"] = d_series["ci"]
    dial_mean = d_hit.mean(axis=1)
    out["dialogue_accuracy"] = _pct(np.array(dial_mean.mean()))[0]
    out["dialogue_accuracy_overall_ci"] = _pct(bootstrap_ci(dial_mean[:, None])[0])
    out["agreement_dialogue"] = _pct(np.array((shown == t_dial).mean()))[0]
    if n_s:
        pred = np.stack([_matrix(r.heldout_predictions, n_s) for r in results])  # (U, C, S)
        truth = task.truth  # (U, S)
        hit = (pred == truth[:, None, :]).mean(axis=2)  # (U, C)
        series = _series(hit)
        out["accuracy_by_round"] = series["mean"]
        out["accuracy_ci"] = series["ci"]
        t_pred = np.stack([t.heldout_pred for t in traces])  # (U, C, S)
        agree = (pred == t_pred).mean(axis=2)  # (U, C)
        out["agreement_heldout_by_round"] = _pct(agree.mean(axis=0))
        out["agreement_heldout"] = _pct(np.array(agree[:, 1:].mean()))[0]
        out["answer_shares"] = _shares(pred, task.n_labels)
        gains = np.stack([t.info_gain for t in traces])  # (U, R)
        edges = np.quantile(gains, [1 / 3, 2 / 3])
        out["informativity"] = _informativity(pred, truth, gains, edges)
        t_dists = [t.heldout_dist for t in traces]
        t_dist = (
            np.stack([d for d in t_dists if d is not None])  # (U, C, S, O)
            if all(d is not None for d in t_dists)
            else None
        )
        dists = [r.heldout_distributions for r in results]
        if all(d is not None for d in dists):
            dist = np.array(dists, dtype=np.float64)  # (U, C, S, O)
            out["calibration"] = _calibration(dist, truth, t_dist)
        elif kind == "bayes" and t_dist is not None:  # the teacher's own, not stored
            out["calibration"] = _calibration(t_dist, truth, t_dist)
    else:  # dialogue protocol: no held-out queries
        out["accuracy_by_round"] = out["dialogue_accuracy_by_round"]
        out["accuracy_ci"] = out["dialogue_accuracy_ci"]
        out["answer_shares"] = _shares(shown, task.n_labels)
    if isinstance(task, ChoiceTask):
        probe = _probe(
            [r.probe for r in results],
            task.domain.feature_names,
            task.user_weights,
            np.stack([t.mean_weights[-1] for t in traces]),
        )
        if probe is not None:
            out["probe"] = probe
    queries = sum(r.n_queries for r in results)
    invalid = sum(r.n_invalid for r in results)
    out["invalid_rate"] = round(100 * invalid / queries, 2) if queries else 0.0
    counts = [r.extra.get("backend_errors") for r in results]
    out["backend_errors"] = sum(c for c in counts if isinstance(c, int))
    p_tok = sum(r.prompt_tokens for r in results)
    c_tok = sum(r.completion_tokens for r in results)
    out["tokens"] = {"prompt": p_tok, "completion": c_tok, "queries": queries}
    out["cost_usd"] = round(p_tok / 1000 * price_in + c_tok / 1000 * price_out, 6)
    out["latency_s"] = round(sum(r.latency_s for r in results), 3)
    return out


def summarize(
    task: Task,
    traces: list[UserTrace],
    assistants: Sequence[tuple[str, str, list[EvalResult]]],
    *,
    price_in: float = 0.0,
    price_out: float = 0.0,
) -> dict[str, Any]:
    """The run's summary: the task, the teacher and chance lines, and every assistant."""
    summary: dict[str, Any] = {
        "domain": task.domain.name,
        "protocol": task.protocol,
        "source": task.source,
        "n_users": task.n_users,
        "n_heldout": task.n_heldout,
        "rounds": task.n_rounds,
        "chance": round(100 / task.n_labels, 2),
        "ci_method": CI_METHOD,
    }
    if task.n_heldout:
        t_pred = np.stack([t.heldout_pred for t in traces])  # (U, C, S)
        t_hit = (t_pred == task.truth[:, None, :]).mean(axis=2)
        summary["teacher_accuracy_by_round"] = _pct(t_hit.mean(axis=0))
    else:
        truth_d = task.choices if isinstance(task, ChoiceTask) else task.answers
        t_dial = np.stack([t.dialogue_pred for t in traces])
        summary["teacher_accuracy_by_round"] = _pct((t_dial == truth_d).mean(axis=0))
    summary["teacher_emptied_dialogues"] = int(sum(t.emptied for t in traces))
    summary["assistants"] = [
        summarize_assistant(
            name, kind, results, task, traces, price_in=price_in, price_out=price_out
        )
        for name, kind, results in assistants
    ]
    return summary
