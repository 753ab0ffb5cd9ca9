"""The evaluation harness: several assistants, the same users, one resumable run.

    config = EvalConfig(domain="flight", users=20, heldout_sets=20, seed=0)
    run = run_eval(config, ["bayes", "random", "local", "local#guard"], out="eval/runs/x")
    run.summary["assistants"][0]["accuracy_by_round"]      # percentages after rounds 0..R

For each (assistant, user) the harness plays the whole dialogue and, after each round 0..R, asks
the held-out queries. The history an LLM sees is its *own* dialogue so far (its answers and the
user's feedback, in the paper's format); the held-out question follows it. One checkpoint is one
batch: the held-out queries plus the next round's question, all after the same history (the local
model scores them in one pass over the history, sharing its KV cache). The answer shown in the
dialogue goes through the assistant's policy (:func:`~beliefagent.middleware.policies.decide`).

Resuming: every finished (assistant, user) streams as an :class:`EvalResult` record (plus the
dialogue's :class:`Turn` records) to ``<out>/results.jsonl`` through a crash-safe
:class:`TrajectoryWriter`. A restarted run with the same ``out`` and configuration skips every
(assistant, user_id) that has a result; dialogues cut short by a crash are run again from the
start. ``<out>/config.json`` records the configuration; a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.adapters.base import Backend, Message
from beliefagent.belief import ChoiceModel, argmax_first, choice_model_from_name
from beliefagent.domains import ChoiceDomain, QuestionnaireDomain, load_domain
from beliefagent.errors import ConfigError, DataError
from beliefagent.eval.assistants import (
    Answer,
    AssistantSpec,
    Predictor,
    TokenTally,
    build_backend,
    parse_assistant,
)
from beliefagent.eval.metrics import summarize
from beliefagent.eval.records import parse_scale, turn_record
from beliefagent.eval.tasks import (
    ChoiceFormat,
    ChoiceTask,
    QuestionnaireFormat,
    Task,
    UserTrace,
    make_choice_task,
    make_questionnaire_task,
    teacher_traces,
)
from beliefagent.middleware.policies import check_policy, decide
from beliefagent.trajectories import (
    SessionStart,
    TrajectoryWriter,
    read_trajectories,
)
from beliefagent.trajectories.records import EvalResult

__all__ = ["EvalConfig", "EvalRun", "load_results", "prepare_task", "run_eval"]

logger = logging.getLogger(__name__)

LOG_NAME = "results.jsonl"
CONFIG_NAME = "config.json"
_DIST_DECIMALS = 5


@dataclass
class EvalConfig:
    """Everything that defines an evaluation run's data and how assistants are queried.

    ``users=None`` takes every user (every hypothesis, or every dialogue of a file).
    ``protocol``: ``auto`` (questionnaire for questionnaire domains, ``dialogue`` when only
    ``interactions`` is given, else ``heldout``), ``heldout``, ``dialogue``.
    """

    domain: str = "flight"
    protocol: str = "auto"
    users: int | None = 20
    heldout_sets: int = 20
    rounds: int = 10  # questionnaire only: items answered in the dialogue
    seed: int = 0
    heldout: str | None = None
    interactions: str | None = None
    likelihood: str = "noise-free"
    noise: float | None = None
    probe: bool = True
    concurrency: int = 4
    max_tokens: int = 24
    timeout_s: float = 60.0
    guard_threshold: float = 0.8
    api_key_env: str = "OPENAI_API_KEY"
    price_per_1k_input: float = 0.0
    price_per_1k_output: float = 0.0
    selection: str | None = None  # active elicitation: random | eig | reward | mixed
    pool: int = 20  # candidates a round's options are selected from
    selection_margin: float = 0.25  # mixed: expected-reward margin (share of the pool's range)
    user_epsilon: float = 0.0  # selection runs: chance a simulated user picks at random

    _SELECTION_FIELDS = ("selection", "pool", "selection_margin", "user_epsilon")
    _DATA_FIELDS = (
        "domain",
        "protocol",
        "users",
        "heldout_sets",
        "rounds",
        "seed",
        "heldout",
        "interactions",
        "likelihood",
        "noise",
        "probe",
        "guard_threshold",
    )

    def resolved_protocol(self, domain: ChoiceDomain | QuestionnaireDomain) -> str:
        if isinstance(domain, QuestionnaireDomain):
            return "questionnaire"
        if self.protocol != "auto":
            return self.protocol
        return "dialogue" if self.interactions and not self.heldout else "heldout"

    def run_key(self) -> str:
        """A hash of the fields that change the data or the answers (not concurrency, prices)."""
        data = {k: getattr(self, k) for k in self._DATA_FIELDS}
        if self.selection is not None:  # only then, so keys of earlier runs stay valid
            data.update({k: getattr(self, k) for k in self._SELECTION_FIELDS})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def choice_model(self) -> ChoiceModel:
        return choice_model_from_name(self.likelihood, self.noise)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_task(config: EvalConfig) -> Task:
    """Build the task (users, rounds, held-out queries) the configuration names."""
    domain = load_domain(config.domain)
    protocol = config.resolved_protocol(domain)
    if config.selection is not None or config.user_epsilon:
        from beliefagent.eval.selection import selection_task

        return selection_task(config, domain, protocol)
    if isinstance(domain, QuestionnaireDomain):
        return make_questionnaire_task(
            domain,
            users=config.users,
            heldout_items=config.heldout_sets,
            rounds=config.rounds,
            seed=config.seed,
        )
    return make_choice_task(
        domain,
        protocol=protocol,
        heldout=config.heldout,
        interactions=config.interactions,
        users=config.users,
        heldout_sets=config.heldout_sets,
        seed=config.seed,
    )


@dataclass
class EvalRun:
    """What :func:`run_eval` returns: the task, the teacher's traces, every result (one per
    (assistant, user), ordered by assistant then user) and where they are stored."""

    config: EvalConfig
    task: Task
    specs: list[AssistantSpec]
    traces: list[UserTrace]
    results: dict[str, list[EvalResult]]
    out: Path
    resumed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def _round_dist(dist: Sequence[float] | None) -> list[float] | None:
    return None if dist is None else [round(float(p), _DIST_DECIMALS) for p in dist]


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


# ---------------------------------------------------------------------------- built-in rows


def _builtin_result(
    spec: AssistantSpec, task: Task, u: int, trace: UserTrace, config: EvalConfig
) -> dict[str, Any]:
    """bayes / random / oracle for user ``u``: no backend, computed directly."""
    n_c, n_s = trace.heldout_pred.shape
    n_r = trace.dialogue_pred.shape[0]
    labels = task.n_labels
    probe: dict[str, float] | None = None
    names = task.domain.feature_names
    if spec.kind == "bayes":
        held = trace.heldout_pred.tolist()
        dialogue = trace.dialogue_pred.tolist()
        d_dist = trace.dialogue_dist.tolist()
        probe = dict(zip(names, trace.mean_weights[-1].tolist(), strict=True))
        # the teacher's held-out distributions are recomputed from the data, not stored
        return {
            "heldout_predictions": held,
            "dialogue_predictions": dialogue,
            "dialogue_shown": dialogue,
            "dialogue_distributions": [_round_dist(d) for d in d_dist],
            "probe": probe if isinstance(task, ChoiceTask) else None,
        }
    if spec.kind == "random":
        rng = np.random.default_rng(_stable_seed(config.seed, spec.name, task.user_ids[u]))
        held_r = rng.integers(0, labels, size=(n_c, n_s))
        dial_r = rng.integers(0, labels, size=n_r)
        if isinstance(task, ChoiceTask):
            grid = np.unique(task.domain.hypothesis_weights())
            probe = dict(zip(names, rng.choice(grid, size=len(names)).tolist(), strict=True))
        return {
            "heldout_predictions": held_r.tolist(),
            "dialogue_predictions": dial_r.tolist(),
            "dialogue_shown": dial_r.tolist(),
            "probe": probe,
        }
    # oracle: knows the user's true reward (or true profile)
    if isinstance(task, ChoiceTask):
        w = task.user_weights[u]  # (F,)
        d = task.domain
        held_o = argmax_first(d.codes(task.heldout) @ w).astype(int).tolist() if n_s else []  # (S,)
        dial_o = argmax_first(d.codes(task.rounds[u]) @ w).astype(int).tolist()  # (R,)
        probe = dict(zip(names, w.tolist(), strict=True))
    else:
        qd = task.domain
        p = task.profiles[u]
        held_o = [int(np.argmax(qd.answer_probs(int(i))[p])) for i in task.heldout]
        dial_o = [int(np.argmax(qd.answer_probs(int(i))[p])) for i in task.items[u]]
    return {
        "heldout_predictions": [held_o] * n_c,
        "dialogue_predictions": dial_o,
        "dialogue_shown": dial_o,
        "probe": probe,
    }


# ---------------------------------------------------------------------------- LLM dialogues


def _apply_policy(
    policy: str,
    answer: Answer,
    teacher_dist: np.ndarray | None,
    teacher_choice: int,
    threshold: float,
) -> int | None:
    """The answer shown after the policy. A plain model (``llm``) gets no teacher fallback."""
    scored = int(np.argmax(answer.distribution)) if answer.distribution is not None else None
    if policy == "llm":
        return answer.choice
    conf = float(teacher_dist[teacher_choice]) if teacher_dist is not None else None
    return decide(
        check_policy(policy, threshold),
        answer.choice,
        teacher_choice,
        conf,
        llm_scored_choice=scored,
        threshold=threshold,
    ).shown


def _prompt_style(predictor: Predictor | None) -> str:
    """The style the assistant's model is asked in (a tuned adapter's own; else the paper's)."""
    return getattr(getattr(predictor, "backend", None), "prompt_style", "paper")


def _llm_result(
    spec: AssistantSpec,
    predictor: Predictor | None,
    task: Task,
    u: int,
    trace: UserTrace,
    config: EvalConfig,
    writer: TrajectoryWriter,
    session_id: str,
) -> dict[str, Any]:
    """Play user ``u``'s dialogue with an LLM assistant, asking the held-out queries after each
    round; writes the dialogue's turns to ``writer``."""
    fmt: ChoiceFormat | QuestionnaireFormat
    if isinstance(task, ChoiceTask):
        fmt = ChoiceFormat(task.domain, _prompt_style(predictor))
        round_q: list[Any] = list(task.rounds[u])
        held_q: list[Any] = list(task.heldout)
        truth_d = task.choices[u]
    else:
        fmt = QuestionnaireFormat(task.domain)
        round_q = [int(i) for i in task.items[u]]
        held_q = [int(i) for i in task.heldout]
        truth_d = task.answers[u]
    n_r = len(round_q)
    tally = TokenTally()
    history: list[Message] = []
    last: tuple[int | None, int] | None = None
    last_query: Any = None  # the query ``last`` answered
    held_pred: list[list[int | None]] = []
    held_dist: list[list[list[float]]] = []
    has_dist = True
    d_pred: list[int | None] = []
    d_shown: list[int | None] = []
    d_dist: list[list[float]] = []
    n_queries = n_invalid = n_errors = 0

    def message(query: Any, dist: np.ndarray | None, choice: int) -> list[Message]:
        text = fmt.user_message(last, query, last_query)
        if spec.policy == "hint" and dist is not None:
            text = f"{text}\n\n{fmt.hint(dist, choice)}"
        return [{"role": "user", "content": text}]

    for c in range(n_r + 1):
        queries: list[list[Message]] = []
        teacher: list[tuple[np.ndarray | None, int]] = []
        for s in range(len(held_q)):
            t_dist = trace.heldout_dist[c, s] if trace.heldout_dist is not None else None
            teacher.append((t_dist, int(trace.heldout_pred[c, s])))
        if c < n_r:
            teacher.append((trace.dialogue_dist[c], int(trace.dialogue_pred[c])))
        all_q = [*held_q, round_q[c]] if c < n_r else list(held_q)
        queries = [message(q, td, tc) for q, (td, tc) in zip(all_q, teacher, strict=True)]
        if spec.asks_llm:
            assert predictor is not None
            answers = predictor.predict(history, queries, tally)
        else:
            answers = [Answer(None) for _ in queries]
        n_errors += sum(a.error is not None for a in answers)
        n_queries += len(answers) if spec.asks_llm else 0
        n_invalid += sum(a.choice is None for a in answers) if spec.asks_llm else 0
        shown = [
            _apply_policy(spec.policy, a, td, tc, config.guard_threshold)
            for a, (td, tc) in zip(answers, teacher, strict=True)
        ]
        if held_q:
            held_pred.append(shown[: len(held_q)])
            if all(a.distribution is not None for a in answers[: len(held_q)]):
                held_dist.append(
                    [_round_dist(a.distribution) or [] for a in answers[: len(held_q)]]
                )
            else:
                has_dist = False
        if c == n_r:
            break
        a, pick = answers[-1], shown[-1]
        choice = int(truth_d[c])
        d_pred.append(a.choice)
        d_shown.append(pick)
        if a.distribution is not None:
            d_dist.append(_round_dist(a.distribution) or [])
        prompt = [*history, *queries[-1]]
        history = [*prompt, {"role": "assistant", "content": fmt.answer_text(pick)}]
        writer.write(turn_record(spec, task, u, c, session_id, prompt, a, pick, choice, trace, fmt))
        last, last_query = (pick, choice), round_q[c]
    probe = None
    if config.probe and spec.asks_llm and last is not None and isinstance(task, ChoiceTask):
        assert predictor is not None
        probe_fmt = fmt
        assert isinstance(probe_fmt, ChoiceFormat)
        probe_pred = Predictor(
            predictor.backend,
            ["1", "2", "3", "4", "5"],
            "",
            parse_scale,
            max_tokens=config.max_tokens,
            timeout_s=config.timeout_s,
        )
        answers = probe_pred.predict(
            history, [[m] for m in probe_fmt.probe_messages(last, last_query)], tally
        )
        probe = {}
        for f, ans in zip(task.domain.feature_names, answers, strict=True):
            if ans.distribution is not None:
                value = float(np.dot(ans.distribution, np.arange(1, 6)))
            elif ans.choice is not None:
                value = float(ans.choice + 1)
            else:
                continue
            probe[f] = (value - 3.0) / 2.0
    return {
        "heldout_predictions": held_pred,
        "heldout_distributions": held_dist if (held_q and has_dist) else None,
        "dialogue_predictions": d_pred,
        "dialogue_shown": d_shown,
        "dialogue_distributions": d_dist if len(d_dist) == n_r else None,
        "probe": probe,
        "n_queries": n_queries,
        "n_invalid": n_invalid,
        "prompt_tokens": tally.prompt_tokens,
        "completion_tokens": tally.completion_tokens,
        "latency_s": tally.latency_s,
        "extra": {"requests": tally.requests, "backend_errors": n_errors},
    }


# ---------------------------------------------------------------------------------- the run


def load_results(path: Path, run_key: str) -> dict[tuple[str, str], EvalResult]:
    """The finished results in a run log, first per (assistant, user_id), for ``run_key``."""
    if not path.is_file():
        return {}
    done: dict[tuple[str, str], EvalResult] = {}
    for record in read_trajectories(path).records:
        if isinstance(record, EvalResult) and record.run_key == run_key:
            done.setdefault((record.assistant, record.user_id), record)
    return done


def _check_out_dir(out: Path, config: EvalConfig) -> None:
    path = out / CONFIG_NAME
    key = config.run_key()
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError as exc:
            raise DataError(f"unreadable run config: {exc}", path=str(path)) from exc
        if old.get("run_key") != key:
            raise ConfigError(
                "this run directory holds a run with a different configuration; "
                "use a new --out (or the same options to resume)",
                field="out",
                value=str(out),
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_key": key, "config": config.to_dict()}, indent=2))


def run_eval(
    config: EvalConfig,
    assistants: Sequence[str],
    out: str | Path,
    *,
    backends: Mapping[str, Backend] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> EvalRun:
    """Evaluate every assistant on the same task; resumable (see the module docstring).

    ``backends`` maps extra assistant names to ready backends (``{"mine": backend}`` lets
    ``"mine"`` and ``"mine#guard"`` be used as specs). ``on_progress(done, total, name)`` is
    called after each finished (assistant, user), resumed ones included at the start.
    """
    if not assistants:
        raise ConfigError("give at least one assistant", field="assistant", value=[])
    if len(set(assistants)) != len(assistants):
        raise ConfigError("an assistant is named twice", field="assistant", value=assistants)
    if config.concurrency < 1:
        raise ConfigError("must be >= 1", field="concurrency", value=config.concurrency)
    custom = dict(backends or {})
    specs = [parse_assistant(a, tuple(custom)) for a in assistants]
    task = prepare_task(config)
    if task.n_rounds == 0:
        raise ConfigError("the task has no rounds", field="rounds", value=0)
    out_dir = Path(out)
    _check_out_dir(out_dir, config)
    key = config.run_key()
    log_path = out_dir / LOG_NAME
    done = load_results(log_path, key)
    lik = config.choice_model()
    traces = teacher_traces(task, lik)
    total = len(specs) * task.n_users
    results: dict[tuple[str, str], EvalResult] = {}
    for spec in specs:
        for uid in task.user_ids:
            if (spec.name, uid) in done:
                results[(spec.name, uid)] = done[(spec.name, uid)]
    resumed = len(results)
    progress_lock = threading.Lock()
    counter = [resumed]
    if on_progress is not None and resumed:
        on_progress(resumed, total, "resumed")
    local_cache: dict[str | None, Backend] = {}

    with TrajectoryWriter(log_path) as writer:

        def finish(spec: AssistantSpec, u: int, fields: dict[str, Any], sid: str) -> None:
            record = EvalResult(
                session_id=sid,
                rounds=task.n_rounds,
                run_key=key,
                suite=task.protocol,
                domain=task.domain.name,
                assistant=spec.name,
                user_id=task.user_ids[u],
                user_index=u,
                **fields,
            )
            writer.write(record)
            with progress_lock:
                results[(spec.name, task.user_ids[u])] = record
                counter[0] += 1
                if on_progress is not None:
                    on_progress(counter[0], total, spec.name)

        def run_one(spec: AssistantSpec, predictor: Predictor | None, u: int) -> None:
            sid = f"eval-{key}-{uuid.uuid4().hex[:12]}"
            if not spec.is_llm:
                finish(spec, u, _builtin_result(spec, task, u, traces[u], config), sid)
                return
            writer.write(
                SessionStart(
                    session_id=sid,
                    user_id=task.user_ids[u],
                    domain=task.domain.name,
                    policy=spec.policy,
                    backend=spec.kind,
                    model=spec.model,
                    adapter=spec.adapter,
                    meta={"eval_run": key, "assistant": spec.name},
                )
            )
            fields = _llm_result(spec, predictor, task, u, traces[u], config, writer, sid)
            finish(spec, u, fields, sid)

        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            futures = []
            for spec in specs:
                todo = [u for u in range(task.n_users) if (spec.name, task.user_ids[u]) not in done]
                if not todo:
                    continue
                predictor = None
                if spec.asks_llm:
                    backend = build_backend(
                        spec,
                        api_key_env=config.api_key_env,
                        timeout_s=config.timeout_s,
                        custom=custom,
                        local_cache=local_cache,
                    )
                    fmt = (
                        ChoiceFormat(task.domain, getattr(backend, "prompt_style", "paper"))
                        if isinstance(task, ChoiceTask)
                        else QuestionnaireFormat(task.domain)
                    )
                    predictor = Predictor(
                        backend,
                        fmt.labels,
                        fmt.answer_prefix,
                        fmt.parse,
                        max_tokens=config.max_tokens,
                        timeout_s=config.timeout_s,
                    )
                if spec.remote or spec.kind == "custom":
                    futures += [pool.submit(run_one, spec, predictor, u) for u in todo]
                else:  # in process: sequential (the local model batches inside each call)
                    for u in todo:
                        run_one(spec, predictor, u)
            for fut in as_completed(futures):
                fut.result()

    ordered = {spec.name: [results[(spec.name, uid)] for uid in task.user_ids] for spec in specs}
    run = EvalRun(config, task, specs, traces, ordered, out_dir, resumed)
    run.summary = summarize(
        task,
        traces,
        [(spec.name, spec.kind, ordered[spec.name]) for spec in specs],
        price_in=config.price_per_1k_input,
        price_out=config.price_per_1k_output,
    )
    run.summary["seed"] = config.seed
    run.summary["run_key"] = key
    run.summary["resumed_results"] = resumed
    for entry, spec in zip(run.summary["assistants"], specs, strict=True):
        entry["policy"] = spec.policy if spec.is_llm else None
    if config.selection is not None:
        from beliefagent.eval.selection import selection_summary

        selection_summary(run.summary, task)
    return run
