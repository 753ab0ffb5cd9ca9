"""Web shopping (the paper's transfer task): LLM assistants on the official WebShop files, per
category and pooled, with a random guess and the best-score oracle as bounds.

    config = WebshopConfig(interactions="data/webshop", heldout="data/webshop", users=5)
    summary = run_webshop_eval(config, ["random", "oracle", "local"], out="eval/runs/webshop")
    summary["pooled"]["assistants"][0]["accuracy_by_round"]   # percentages after rounds 0..R

There is no Bayesian teacher here (products have no feature vector), so ``bayes`` and the
``#guard``/``#hint``/``#bayes`` policies are refused; the assistants are ``random`` (the expected
accuracy of a uniform guess, exactly), ``oracle`` (the option with the best WebShop score, first
on ties) and any LLM spec of :mod:`beliefagent.eval.assistants` (base or tuned).

Protocol, for each user: the dialogue's R rounds are played with the assistant's own answers and
the user's feedback ("Your option Product 2 is incorrect. I prefer Product 3."); after each round
0..R the assistant answers the user's own held-out sets (the first ``heldout_sets`` of them) after
that history. Reported: held-out accuracy after each round (users with held-out lines) and
in-dialogue accuracy per round (every user), mean and 95 % bootstrap CI over users.

Every finished (assistant, category, user) is appended to ``<out>/results.jsonl`` (flushed and
synced); a rerun with the same configuration and ``out`` skips those (resume).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.adapters.base import Backend, Message
from beliefagent.datasets.webshop import (
    WebshopCategory,
    WebshopSet,
    WebshopUser,
    find_webshop_categories,
    load_webshop_category,
)
from beliefagent.errors import ConfigError
from beliefagent.eval.assistants import (
    AssistantSpec,
    Predictor,
    TokenTally,
    build_backend,
    parse_assistant,
)
from beliefagent.eval.metrics import CI_METHOD, bootstrap_ci
from beliefagent.middleware.parsing import parse_answer
from beliefagent.prompts import DialoguePrompts

__all__ = [
    "WEBSHOP_PROMPTS",
    "WebshopConfig",
    "render_webshop_markdown",
    "run_webshop_eval",
    "write_webshop_report",
]

logger = logging.getLogger(__name__)

WEBSHOP_PROMPTS = DialoguePrompts(
    item="Product",
    intro=(
        "Help me select the best products for my shopping. I have specific preferences for what "
        "I like and dislike in a product, and these preferences remain the same. You need to "
        "figure out my preferences and select the best products for me. Use your best judgment "
        "if you are unsure. Do not say you need more information."
    ),
    question="Which product is the best option?",
)
LOG_NAME = "results.jsonl"


@dataclass
class WebshopConfig:
    """A web-shopping run. ``interactions``/``heldout``: a file or a folder (see
    :func:`~beliefagent.datasets.webshop.find_webshop_categories`); ``users`` per category
    (``None``: all); ``heldout_sets`` per user and checkpoint (``None``: all of them)."""

    interactions: str
    heldout: str | None = None
    categories: list[str] | None = None
    users: int | None = 20
    heldout_sets: int | None = 20
    seed: int = 0
    max_tokens: int = 24
    timeout_s: float = 60.0
    api_key_env: str = "OPENAI_API_KEY"

    def run_key(self) -> str:
        data = {
            k: getattr(self, k)
            for k in ("interactions", "heldout", "categories", "users", "heldout_sets", "seed")
        }
        data["interactions"] = str(Path(self.interactions).resolve())
        data["heldout"] = str(Path(self.heldout).resolve()) if self.heldout else None
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _options_block(s: WebshopSet) -> str:
    # product texts span several lines: a blank line between products keeps them apart
    return f"{WEBSHOP_PROMPTS.question}\n\n" + "\n\n".join(s.options)


def _message(last: tuple[int | None, int] | None, s: WebshopSet) -> list[Message]:
    if last is None:
        text = f"{WEBSHOP_PROMPTS.intro}\n\n{_options_block(s)}"
    else:
        text = f"{WEBSHOP_PROMPTS.feedback(last[0], last[1])}\n\n{_options_block(s)}"
    return [{"role": "user", "content": text}]


def _check_assistants(assistants: Sequence[str], custom: Sequence[str]) -> list[AssistantSpec]:
    if not assistants:
        raise ConfigError("give at least one assistant", field="assistant", value=[])
    if len(set(assistants)) != len(assistants):
        raise ConfigError("an assistant is named twice", field="assistant", value=list(assistants))
    specs = [parse_assistant(a, tuple(custom)) for a in assistants]
    for s in specs:
        if s.kind == "bayes" or (s.is_llm and s.policy != "llm"):
            raise ConfigError(
                "web shopping has no Bayesian teacher (products have no feature vector): use "
                "random, oracle or a plain LLM assistant",
                field="assistant",
                value=s.name,
            )
    return specs


def _users(cat: WebshopCategory, n: int | None) -> list[WebshopUser]:
    """The first ``n`` users with held-out sets (then the others), a stable choice."""
    ranked = sorted(cat.users, key=lambda u: (not u.heldout, u.idx))
    return ranked if n is None else ranked[:n]


def _builtin_row(spec: AssistantSpec, user: WebshopUser, held: Sequence[WebshopSet]) -> dict:
    n_r = len(user.rounds)
    if spec.kind == "random":  # the exact expectation of a uniform guess
        h = [float(np.mean([1 / len(s.options) for s in held]))] * (n_r + 1) if held else []
        d = [1 / len(s.options) for s in user.rounds]
    else:  # oracle: the best WebShop score
        h = [float(np.mean([s.best == s.user_idx for s in held]))] * (n_r + 1) if held else []
        d = [float(s.best == s.user_idx) for s in user.rounds]
    return {"heldout": h, "dialogue": d, "n_queries": 0, "n_invalid": 0}


def _llm_row(predictor: Predictor, user: WebshopUser, held: Sequence[WebshopSet]) -> dict:
    tally = TokenTally()
    history: list[Message] = []
    last: tuple[int | None, int] | None = None
    h_acc: list[float] = []
    d_acc: list[float] = []
    n_queries = n_invalid = 0
    n_r = len(user.rounds)
    for c in range(n_r + 1):
        sets = [*held, user.rounds[c]] if c < n_r else list(held)
        queries = [_message(last, s) for s in sets]
        answers = predictor.predict(history, queries, tally)
        n_queries += len(answers)
        n_invalid += sum(a.choice is None for a in answers)
        if held:
            hits = [a.choice == s.user_idx for a, s in zip(answers, held, strict=False)]
            h_acc.append(float(np.mean(hits)))
        if c == n_r:
            break
        pick = answers[-1].choice
        choice = user.rounds[c].user_idx
        d_acc.append(float(pick == choice))
        prompt = [*history, *queries[-1]]
        answer = WEBSHOP_PROMPTS.answer_text(pick) if pick is not None else ""
        history = [*prompt, {"role": "assistant", "content": answer}]
        last = (pick, choice)
    return {
        "heldout": h_acc,
        "dialogue": d_acc,
        "n_queries": n_queries,
        "n_invalid": n_invalid,
        "prompt_tokens": tally.prompt_tokens,
        "completion_tokens": tally.completion_tokens,
        "latency_s": tally.latency_s,
    }


def _read_done(path: Path, key: str) -> dict[tuple[str, str, int], dict]:
    done: dict[tuple[str, str, int], dict] = {}
    if not path.is_file():
        return done
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            logger.warning("%s:%d: torn line skipped", path, n)
            continue
        if isinstance(row, dict) and row.get("run_key") == key:
            done[(row["assistant"], row["category"], int(row["user"]))] = row
    return done


def _append(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _series(rows: list[list[float]]) -> dict[str, Any]:
    if not rows:
        return {"mean": [], "ci": []}
    v = 100 * np.asarray(rows, dtype=np.float64)  # (U, K)
    return {
        "mean": [round(float(x), 2) for x in v.mean(axis=0)],
        "ci": [[round(float(a), 2), round(float(b), 2)] for a, b in bootstrap_ci(v)],
    }


def _summarise(specs: list[AssistantSpec], rows: list[dict]) -> dict[str, Any]:
    out = []
    for s in specs:
        mine = [r for r in rows if r["assistant"] == s.name]
        held = _series([r["heldout"] for r in mine if r["heldout"]])
        dial = _series([r["dialogue"] for r in mine])
        n_q = sum(r["n_queries"] for r in mine)
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                "n_users": len(mine),
                "n_users_heldout": sum(bool(r["heldout"]) for r in mine),
                "accuracy_by_round": held["mean"],
                "accuracy_ci": held["ci"],
                "dialogue_accuracy_by_round": dial["mean"],
                "dialogue_accuracy_ci": dial["ci"],
                "invalid_rate": round(100 * sum(r["n_invalid"] for r in mine) / n_q, 2)
                if n_q
                else 0.0,
                "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in mine),
                "completion_tokens": sum(r.get("completion_tokens", 0) for r in mine),
            }
        )
    return {"assistants": out}


def run_webshop_eval(
    config: WebshopConfig,
    assistants: Sequence[str],
    out: str | Path,
    *,
    backends: Mapping[str, Backend] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every assistant on every category; returns the summary (per category and
    pooled). ``backends`` maps extra assistant names to ready backends (tests)."""
    custom = dict(backends or {})
    specs = _check_assistants(assistants, tuple(custom))
    if config.users is not None and config.users < 1:
        raise ConfigError("must be >= 1", field="users", value=config.users)
    if config.heldout_sets is not None and config.heldout_sets < 1:
        raise ConfigError("must be >= 1", field="heldout_sets", value=config.heldout_sets)
    pairs = find_webshop_categories(config.interactions, config.heldout, config.categories)
    cats = [load_webshop_category(inter, held) for _, inter, held in pairs]
    plan = [(c, _users(c, config.users)) for c in cats]
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create: {exc}", field="out", value=str(out)) from exc
    key = config.run_key()
    log = out_dir / LOG_NAME
    done = _read_done(log, key)
    total = len(specs) * sum(len(us) for _, us in plan)
    count = 0
    rows: list[dict] = []
    local_cache: dict[str | None, Backend] = {}
    for spec in specs:
        predictor = None
        for cat, users in plan:
            for user in users:
                k = (spec.name, cat.name, user.idx)
                if k in done:
                    rows.append(done[k])
                    count += 1
                    continue
                held = list(user.heldout[: config.heldout_sets])
                if spec.is_llm:
                    if predictor is None:
                        backend = build_backend(
                            spec,
                            api_key_env=config.api_key_env,
                            timeout_s=config.timeout_s,
                            custom=custom,
                            local_cache=local_cache,
                        )
                        n_opt = max(len(s.options) for s in user.rounds)
                        predictor = Predictor(
                            backend,
                            [str(i + 1) for i in range(n_opt)],
                            WEBSHOP_PROMPTS.prefix(),
                            partial(parse_answer, n_options=n_opt, item=WEBSHOP_PROMPTS.item),
                            max_tokens=config.max_tokens,
                            timeout_s=config.timeout_s,
                        )
                    fields = _llm_row(predictor, user, held)
                else:
                    fields = _builtin_row(spec, user, held)
                row = {
                    "run_key": key,
                    "assistant": spec.name,
                    "category": cat.name,
                    "user": user.idx,
                    **fields,
                }
                _append(log, row)
                rows.append(row)
                count += 1
                if on_progress is not None:
                    on_progress(count, total, f"{spec.name} {cat.name}")
    per_cat = []
    for cat, users in plan:
        mine = [r for r in rows if r["category"] == cat.name]
        per_cat.append(
            {
                "category": cat.name,
                "interactions": cat.interactions,
                "heldout": cat.heldout,
                "n_users": len(users),
                "n_users_heldout": sum(bool(u.heldout) for u in users),
                "users_without_heldout": sum(not u.heldout for u in users),
                **_summarise(specs, mine),
            }
        )
    n_rounds = max(len(u.rounds) for _, us in plan for u in us) if plan else 0
    return {
        "task": "webshop",
        "source": "official",
        "config": asdict(config),
        "run_key": key,
        "n_rounds": n_rounds,
        "n_categories": len(cats),
        "n_users": sum(len(us) for _, us in plan),
        "ci_method": CI_METHOD,
        "categories": per_cat,
        "pooled": _summarise(specs, rows),
        "resumed_results": len(done),
    }


def _row(a: dict[str, Any], key: str) -> str:
    cis = a[key.replace("_by_round", "_ci")]
    return " | ".join(f"{v:.1f} [{c[0]:.0f}, {c[1]:.0f}]" for v, c in zip(a[key], cis, strict=True))


def _table(block: dict[str, Any], n_rounds: int, heldout: bool) -> list[str]:
    lines = []
    if heldout:
        head = " | ".join(f"R{r}" for r in range(n_rounds + 1))
        lines += [
            f"| assistant | users | {head} | invalid % |",
            "|---|---|" + "---|" * (n_rounds + 2),
        ]
        for a in block["assistants"]:
            if a["accuracy_by_round"]:
                lines.append(
                    f"| {a['name']} | {a['n_users_heldout']} | {_row(a, 'accuracy_by_round')} | "
                    f"{a['invalid_rate']:.1f} |"
                )
        lines.append("")
    head = " | ".join(f"round {r + 1}" for r in range(n_rounds))
    lines += [
        "In-dialogue accuracy (predicting each round's pick from the rounds before):",
        "",
        f"| assistant | users | {head} |",
        "|---|---|" + "---|" * n_rounds,
    ]
    for a in block["assistants"]:
        lines.append(f"| {a['name']} | {a['n_users']} | {_row(a, 'dialogue_accuracy_by_round')} |")
    return [*lines, ""]


def render_webshop_markdown(summary: dict[str, Any]) -> str:
    """The report: pooled first, then one table per category (mean [95 % CI] in %)."""
    n_r = summary["n_rounds"]
    heldout = summary["config"]["heldout"] is not None
    lines = [
        "# Web shopping: accuracy after each round",
        "",
        f"{summary['n_categories']} categories, {summary['n_users']} users (official files). "
        "Held-out accuracy after rounds 0..R on each user's own held-out sets; random is the "
        "exact expectation of a uniform guess, oracle picks the best WebShop score. "
        f"CI: {summary['ci_method']}.",
        "",
        "## Pooled over categories",
        "",
        *_table(summary["pooled"], n_r, heldout),
    ]
    for cat in summary["categories"]:
        note = (
            f", {cat['users_without_heldout']} without held-out sets"
            if cat["users_without_heldout"]
            else ""
        )
        lines += [
            f"## {cat['category']} ({cat['n_users']} users{note})",
            "",
            *_table(cat, n_r, heldout and cat["n_users_heldout"] > 0),
        ]
    return "\n".join(lines)


def write_webshop_report(
    summary: dict[str, Any], out: str | Path, *, plots: bool = True
) -> list[Path]:
    """``results.json``, ``report.md`` and (with ``plots``) ``accuracy_by_round.png``."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_webshop_markdown(summary))
    written = [out_dir / "results.json", out_dir / "report.md"]
    pooled = [a for a in summary["pooled"]["assistants"] if a["accuracy_by_round"]]
    if not (plots and pooled):
        return written
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots")
        return written
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = list(range(summary["n_rounds"] + 1))
    for a in pooled:
        (line,) = ax.plot(xs, a["accuracy_by_round"], marker="o", label=a["name"])
        ax.fill_between(
            xs,
            [c[0] for c in a["accuracy_ci"]],
            [c[1] for c in a["accuracy_ci"]],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("after round")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"Web shopping, {summary['n_categories']} categories (95% CI over users)")
    ax.set_ylim(0, 103)
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_by_round.png", dpi=110)
    plt.close(fig)
    return [*written, out_dir / "accuracy_by_round.png"]
