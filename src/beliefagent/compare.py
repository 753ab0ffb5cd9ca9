"""``beliefagent compare-teaching``: the same model taught different ways, same budget, one table.

Flight (a choice domain)::

    simulate teaching users (disjoint from the evaluation users; the teacher answers, logged
    through the middleware)
      -> export three teaching sets from that one log: ``oracle`` (the user's choice),
         ``bayes`` (the teacher's recommendation, early wrong guesses included) and ``bayes-soft``
         (the teacher's predictive distribution)
      -> LoRA fine-tune the bundled SmolLM2 once per set, with the same recipe, steps, batch,
         learning rate and seed (hard targets: answer-token cross-entropy; soft: label KL)
      -> evaluate the base model, each tuned model, the teacher and random with the evaluation
         harness on the evaluation users -> report (accuracy by round with CIs, agreement with
         the teacher, predictive entropy, answer-position shares, plots).

Big Five (a questionnaire): the teaching dialogues are generated directly in the harness's
questionnaire format (respondents disjoint from the evaluation respondents; the teacher's
prediction of each next answer is the target), and the arms are ``bayes`` (hard, cross-entropy)
against ``bayes-soft`` (KL to the teacher's predictive) — the calibration question.

Every number in the report is what this run measured.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.domains import ChoiceDomain, QuestionnaireDomain, load_domain
from beliefagent.errors import ConfigError

__all__ = [
    "ARMS",
    "CompareSizes",
    "choice_teaching_sets",
    "compare_teaching",
    "comparison_markdown",
    "default_sizes",
    "questionnaire_teaching_rows",
]

logger = logging.getLogger(__name__)

ARMS: dict[str, tuple[str, str]] = {
    # arm name -> (teaching target, loss)
    "oracle-taught": ("oracle", "ce"),
    "bayes-hard": ("bayes", "ce"),
    "bayes-soft": ("bayes-soft", "kl"),
}
"""The teaching arms: which export target trains with which loss."""


@dataclass(frozen=True)
class CompareSizes:
    """The budget of a comparison; every arm gets the same."""

    train_users: int  # teaching dialogues (distinct users while the hypothesis space allows)
    train_rounds: int  # rounds per teaching dialogue (questionnaire: items)
    steps: int
    batch_size: int
    lr: float
    lora_r: int
    eval_users: int
    heldout_sets: int  # flight: held-out option sets; questionnaire: held-out items
    eval_rounds: int  # questionnaire only: items answered in an evaluation dialogue
    threads: int = 0  # torch CPU threads for training (0 = torch's default)

    def check(self) -> None:
        for name in ("train_users", "train_rounds", "steps", "batch_size", "eval_users"):
            if getattr(self, name) < 1:
                raise ConfigError("must be >= 1", field=name, value=getattr(self, name))
        if self.heldout_sets < 1:
            raise ConfigError("must be >= 1", field="heldout_sets", value=self.heldout_sets)
        if not self.lr > 0:
            raise ConfigError("must be > 0", field="lr", value=self.lr)


_DEFAULTS: dict[tuple[str, bool], CompareSizes] = {
    # the CPU budget: ~12 min of training per arm on 2 cores for flight
    ("choice", False): CompareSizes(
        train_users=48,
        train_rounds=5,
        steps=24,
        batch_size=2,
        lr=1e-3,
        lora_r=16,
        eval_users=8,
        heldout_sets=8,
        eval_rounds=10,
    ),
    # ~13 min of training per arm on 2 cores (a 10-item dialogue is ~560 tokens)
    ("questionnaire", False): CompareSizes(
        train_users=80,
        train_rounds=10,
        steps=40,
        batch_size=2,
        lr=1e-3,
        lora_r=16,
        eval_users=16,
        heldout_sets=10,
        eval_rounds=10,
    ),
    # smoke sizes for tests: the loop, not a result
    ("choice", True): CompareSizes(
        train_users=4,
        train_rounds=2,
        steps=1,
        batch_size=1,
        lr=1e-3,
        lora_r=8,
        eval_users=1,
        heldout_sets=1,
        eval_rounds=2,
    ),
    ("questionnaire", True): CompareSizes(
        train_users=4,
        train_rounds=3,
        steps=1,
        batch_size=1,
        lr=1e-3,
        lora_r=8,
        eval_users=2,
        heldout_sets=2,
        eval_rounds=2,
    ),
}


def default_sizes(domain: str, quick: bool = False) -> CompareSizes:
    """The default budget for ``domain`` (CPU-sized; ``quick`` = a smoke run)."""
    dom = load_domain(domain)
    kind = "questionnaire" if isinstance(dom, QuestionnaireDomain) else "choice"
    return _DEFAULTS[(kind, quick)]


# --- teaching data -------------------------------------------------------------------------


def choice_teaching_sets(
    domain: ChoiceDomain,
    eval_config: Any,
    sizes: CompareSizes,
    arms: Sequence[str],
    out: Path,
    seed: int,
    prompt_style: str = "paper",
) -> dict[str, Path]:
    """Simulate teaching users disjoint from the evaluation users and export one set per arm
    from the same log, rendered in ``prompt_style``. Returns arm -> train.jsonl."""
    from beliefagent.eval.harness import prepare_task
    from beliefagent.eval.tasks import ChoiceTask
    from beliefagent.export import export_teaching_set
    from beliefagent.middleware.runner import simulate_teacher_dialogues

    task = prepare_task(eval_config)
    assert isinstance(task, ChoiceTask)
    held = {tuple(w) for w in np.asarray(task.user_weights).tolist()}
    weights = domain.hypothesis_weights()
    pool = [i for i, w in enumerate(weights.tolist()) if tuple(w) not in held]
    if not pool:
        raise ConfigError(
            "no user is left once the evaluation users are held out",
            field="eval_users",
            value=sizes.eval_users,
        )
    # more dialogues than users (small hypothesis spaces): users repeat, each dialogue on its
    # own option sets
    users = np.random.default_rng(seed + 1).choice(
        pool, size=sizes.train_users, replace=sizes.train_users > len(pool)
    )
    log = out / "teaching-dialogues.jsonl"
    simulate_teacher_dialogues(
        domain, users.tolist(), log, seed=seed + 2, rounds=sizes.train_rounds
    )
    files = {}
    for arm in arms:
        target, _ = ARMS[arm]
        export_teaching_set(
            log,
            out / "teaching" / arm,
            target=target,
            fmt="chat",
            eval_fraction=0.0,
            seed=seed,
            prompt_style=prompt_style,
        )
        files[arm] = out / "teaching" / arm / "train.jsonl"
    return files


def questionnaire_teaching_rows(
    task: Any, traces: Sequence[Any], target: str
) -> list[dict[str, Any]]:
    """Teaching dialogues for a questionnaire, in exactly the evaluation harness's format.

    ``task`` is a :class:`~beliefagent.eval.tasks.QuestionnaireTask` (its respondents answer its
    items), ``traces`` the teacher on it. Each assistant turn predicts the next answer: the
    target is the teacher's prediction (``bayes``: its argmax; ``bayes-soft`` adds its predictive
    distribution as ``soft_targets``) or the respondent's actual answer (``oracle``). The next
    user turn gives the actual answer, as in evaluation."""
    from beliefagent.eval.tasks import QuestionnaireFormat

    if target not in ("bayes", "bayes-soft", "oracle"):
        raise ConfigError("must be bayes, bayes-soft or oracle", field="target", value=target)
    fmt = QuestionnaireFormat(task.domain)
    rows = []
    for u, trace in enumerate(traces):
        items = [int(i) for i in task.items[u]]
        answers = [int(a) for a in task.answers[u]]
        picks = (
            answers if target == "oracle" else [int(p) for p in trace.dialogue_pred[: len(items)]]
        )
        messages: list[dict[str, str]] = []
        last: tuple[int | None, int] | None = None
        for item, pick, answer in zip(items, picks, answers, strict=True):
            messages.append({"role": "user", "content": fmt.user_message(last, item)})
            messages.append({"role": "assistant", "content": fmt.answer_text(pick)})
            last = (pick, answer)
        row: dict[str, Any] = {
            "id": f"{task.domain.name}-{task.user_ids[u]}-{u}",
            "user_id": task.user_ids[u],
            "domain": task.domain.name,
            "target": target,
            "messages": messages,
            "targets": picks,
            "labels": fmt.labels,
            "answer_prefix": fmt.answer_prefix,
            "user_choices": answers,
        }
        if target == "bayes-soft":
            row["soft_targets"] = [
                [float(x) for x in p] for p in trace.dialogue_dist[: len(items)].tolist()
            ]
        rows.append(row)
    return rows


def _questionnaire_teaching_sets(
    eval_config: Any, sizes: CompareSizes, arms: Sequence[str], out: Path, seed: int
) -> dict[str, Path]:
    """Respondents disjoint from the evaluation respondents, one teaching file per arm."""
    from beliefagent.eval.harness import prepare_task
    from beliefagent.eval.tasks import QuestionnaireTask, make_questionnaire_task, teacher_traces

    eval_task = prepare_task(eval_config)
    assert isinstance(eval_task, QuestionnaireTask)
    domain = eval_task.domain
    held = set(eval_task.profiles.tolist())
    # draw extra respondents and drop the evaluation profiles
    want = sizes.train_users
    n_items = len(domain.items)
    task = make_questionnaire_task(
        domain,
        users=min(want + len(held), len(domain.hypothesis_weights())),
        heldout_items=max(1, n_items - sizes.train_rounds),
        rounds=sizes.train_rounds,
        seed=seed + 1,
    )
    keep = [u for u, p in enumerate(task.profiles.tolist()) if p not in held][:want]
    if len(keep) < want:
        raise ConfigError(
            f"only {len(keep)} respondents are left once the evaluation ones are held out",
            field="train_users",
            value=want,
        )
    sub = replace(
        task,
        user_ids=[task.user_ids[u] for u in keep],
        profiles=task.profiles[keep],
        items=task.items[keep],
        answers=task.answers[keep],
        truth=task.truth[keep],
    )
    traces = teacher_traces(sub)
    files = {}
    for arm in arms:
        target, _ = ARMS[arm]
        path = out / "teaching" / arm / "train.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for row in questionnaire_teaching_rows(sub, traces, target):
                f.write(json.dumps(row) + "\n")
        files[arm] = path
    return files


# --- the comparison --------------------------------------------------------------------------


def _cell(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def comparison_markdown(summary: dict[str, Any]) -> str:
    """The comparison as markdown: accuracy by round with 95 % CIs, then agreement with the
    teacher, predictive entropy (teacher's beside it), answer shares and training loss."""
    n = len(summary["teacher_accuracy_by_round"])
    sizes = summary["sizes"]
    lines = [
        f"# Teaching comparison: {summary['domain']}",
        "",
        f"{sizes['eval_users']} evaluation users x {sizes['heldout_sets']} held-out queries, "
        f"disjoint from the {sizes['train_users']} teaching dialogues; every arm: LoRA "
        f"r{sizes['lora_r']}, {sizes['steps']} steps x {sizes['batch_size']} dialogues, lr "
        f"{sizes['lr']:g}, seed {summary['seed']}. Chance {summary['chance']:.1f} %. Intervals: "
        "95 % bootstrap over users.",
        "",
        "| assistant | " + " | ".join(f"R{r}" for r in range(n)) + " |",
        "|---|" + "---|" * n,
        "| *Bayesian teacher* | "
        + " | ".join(f"{v:.1f}" for v in summary["teacher_accuracy_by_round"])
        + " |",
    ]
    for a in summary["arms"]:
        if a["name"] == "bayes":
            continue
        cells = [
            f"{m:.1f} [{lo:.0f}–{hi:.0f}]"
            for m, (lo, hi) in zip(a["accuracy_by_round"], a["accuracy_ci"], strict=True)
        ]
        lines.append(f"| {a['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| assistant | teaching target / loss | final train loss | agreement with teacher % "
        "(held-out, R1+) | in-dialogue accuracy % | predictive entropy, nats (teacher) "
        "| answer shares % |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in summary["arms"]:
        taught = f"{a['target']} / {a['loss']}" if "target" in a else "–"
        entropy = (
            f"{a['mean_entropy']:.3f} ({a['teacher_mean_entropy']:.3f})"
            if a.get("mean_entropy") is not None and a.get("teacher_mean_entropy") is not None
            else "–"
        )
        shares = "/".join(f"{v:.0f}" for v in a.get("answer_shares") or [])
        lines.append(
            f"| {a['name']} | {taught} | {_cell(a.get('final_train_loss'), '{:.3f}')} "
            f"| {_cell(a.get('agreement_heldout'))} | {_cell(a.get('dialogue_accuracy'))} "
            f"| {entropy} | {shares} |"
        )
    return "\n".join(lines) + "\n"


def _arm_row(summary: dict[str, Any], name: str) -> dict[str, Any]:
    for a in summary["assistants"]:
        if a["name"] == name:
            cal = a.get("calibration") or {}
            return {
                "name": name,
                "accuracy_by_round": a["accuracy_by_round"],
                "accuracy_ci": a["accuracy_ci"],
                "dialogue_accuracy": a["dialogue_accuracy"],
                "agreement_heldout": a.get("agreement_heldout"),
                "agreement_dialogue": a["agreement_dialogue"],
                "mean_entropy": cal.get("mean_entropy"),
                "teacher_mean_entropy": cal.get("teacher_mean_entropy"),
                "ece": cal.get("ece"),
                "answer_shares": a.get("answer_shares"),
                "invalid_rate": a["invalid_rate"],
            }
    raise KeyError(name)


def compare_teaching(
    out: str | Path,
    *,
    domain: str = "flight",
    arms: Sequence[str] | None = None,
    sizes: CompareSizes | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Run the comparison; returns the summary also written to ``<out>/comparison.json``.

    ``arms`` default: ``oracle-taught``, ``bayes-hard``, ``bayes-soft`` for a choice domain,
    ``bayes-hard``, ``bayes-soft`` for a questionnaire. ``sizes`` default:
    :func:`default_sizes`."""
    from beliefagent.adapters import LocalBackend
    from beliefagent.eval.harness import EvalConfig, run_eval
    from beliefagent.eval.report import write_report
    from beliefagent.finetune.config import FinetuneConfig, LoraSettings
    from beliefagent.finetune.train import finetune

    dom = load_domain(domain)
    questionnaire = isinstance(dom, QuestionnaireDomain)
    if arms is None:
        arms = ["bayes-hard", "bayes-soft"] if questionnaire else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms or len(set(arms)) != len(arms):
        raise ConfigError(f"arms are among {sorted(ARMS)}, each once", field="arm", value=arms)
    sizes = sizes or default_sizes(domain, quick)
    sizes.check()
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            "the output folder is not empty (give a new --out)", field="out", value=str(out_dir)
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    eval_config = EvalConfig(
        domain=domain,
        users=sizes.eval_users,
        heldout_sets=sizes.heldout_sets,
        rounds=sizes.eval_rounds,
        seed=seed,
        probe=False,
        concurrency=1,
    )
    say(f"1/3 teaching data: {sizes.train_users} users disjoint from the evaluation users ...")
    if questionnaire:
        files = _questionnaire_teaching_sets(eval_config, sizes, arms, out_dir, seed)
    else:
        assert isinstance(dom, ChoiceDomain)
        files = choice_teaching_sets(dom, eval_config, sizes, arms, out_dir, seed)
    timings["teaching_data_s"] = time.perf_counter() - t0

    trained: dict[str, Any] = {}
    for k, arm in enumerate(arms, start=1):
        target, loss = ARMS[arm]
        say(
            f"2/3 fine-tuning arm {k}/{len(arms)} {arm!r} ({target} targets, {loss} loss, "
            f"{sizes.steps} steps x {sizes.batch_size}) ..."
        )
        t = time.perf_counter()
        ft = FinetuneConfig(
            description=f"beliefagent compare-teaching: {domain}, arm {arm}",
            data=str(files[arm]),
            output_dir=str(out_dir / "adapters" / arm),
            method="lora",
            loss=loss,
            lr=sizes.lr,
            batch_size=sizes.batch_size,
            max_steps=sizes.steps,
            seed=seed,
            checkpoint_every=0,
            num_threads=sizes.threads,
            lora=LoraSettings(r=sizes.lora_r, alpha=2 * sizes.lora_r),
        )
        trained[arm] = finetune(
            ft, progress=progress, command=f"beliefagent compare-teaching --domain {domain}"
        )
        timings[f"finetune_{arm}_s"] = time.perf_counter() - t

    say("3/3 evaluating the teacher, random, the base model and every tuned model ...")
    t = time.perf_counter()
    backends = {arm: LocalBackend(adapter_path=trained[arm].output_dir, name=arm) for arm in arms}

    def on_progress(done: int, total: int, name: str) -> None:
        say(f"    {done}/{total} evaluated (last: {name})")

    run = run_eval(
        eval_config,
        ["bayes", "random", "local", *arms],
        out_dir / "eval",
        backends=backends,
        on_progress=on_progress,
    )
    report_files = write_report(run.summary, out_dir / "report")
    timings["eval_s"] = time.perf_counter() - t
    summary = {
        "domain": domain,
        "seed": seed,
        "sizes": asdict(sizes),
        "teacher_accuracy_by_round": run.summary["teacher_accuracy_by_round"],
        "chance": run.summary["chance"],
        "arms": [
            {
                **_arm_row(run.summary, name),
                **(
                    {
                        "target": ARMS[name][0],
                        "loss": ARMS[name][1],
                        "final_train_loss": trained[name].final_loss,
                        "train_examples_per_s": trained[name].examples_per_s,
                        "adapter": trained[name].output_dir,
                    }
                    if name in trained
                    else {}
                ),
            }
            for name in ["local", *arms, "bayes", "random"]
        ],
        "report": [str(p) for p in report_files],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "comparison.md").write_text(comparison_markdown(summary))
    return summary
