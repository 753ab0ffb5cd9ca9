"""``beliefagent demo``: the whole loop on the bundled model, no API key, no GPU.

1. simulate users: dialogues where the Bayesian teacher answers, logged through the middleware;
2. export a Bayesian teaching set from that log (users disjoint from the evaluation users);
3. fine-tune the bundled SmolLM2 with LoRA on it;
4. serve the base model with the tuned adapter swapped in behind ``beliefagent serve``;
5. evaluate, with the paper's protocol on the same held-out users: the Bayesian teacher, random,
   the base model (and, by default, the base model behind the middleware's guard policy) and the
   tuned model (in process, label scoring) -> ``report/``; then the tuned model again through
   the server on fewer users (it generates text there) -> ``report-server/``;
6. write the reports (``report.md``, ``results.json``, PNG plots).

``quick`` sizes the run for a few minutes on 2 cores; the default is larger (about half an hour).
The numbers are whatever this run measures; at these sizes a 135M model's fine-tune moves little
(see docs/finetune.md) — the point of the demo is the loop, and the guard policy's row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.errors import ConfigError

__all__ = ["DemoSizes", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSizes:
    train_users: int
    eval_users: int
    heldout_sets: int
    finetune_steps: int
    batch_size: int
    policies: tuple[str, ...]
    server_users: int  # the tuned model through the server generates text: the slow part
    server_heldout_sets: int


# quick: a smoke run of the loop (its numbers are too small to mean anything); default: larger,
# about 20 minutes on 2 free cores by our estimate (fine-tuning ~30 s a step dominates).
QUICK = DemoSizes(
    train_users=32,
    eval_users=2,
    heldout_sets=2,
    finetune_steps=2,
    batch_size=1,
    policies=(),
    server_users=1,
    server_heldout_sets=1,
)
FULL = DemoSizes(
    train_users=300,
    eval_users=6,
    heldout_sets=6,
    finetune_steps=20,
    batch_size=2,
    policies=("guard",),
    server_users=2,
    server_heldout_sets=2,
)


class _Clock:
    """Seconds per named step, each measured from the end of the one before."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.steps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name], self.last = now - self.last, now

    def total(self) -> float:
        return time.perf_counter() - self.start


def run_demo(
    out: str | Path = "runs/demo",
    *,
    quick: bool = False,
    seed: int = 0,
    say: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Run the loop; returns the summary also written to ``<out>/demo.json``."""
    sizes = QUICK if quick else FULL
    out_dir = _fresh_folder(out)
    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    clock = _Clock()
    eval_config, server_config = _eval_configs(sizes, seed)
    train_users = _training_users(domain, (eval_config, server_config), sizes, seed)

    say(f"1/5 simulating {len(train_users)} users (the teacher answers; logged) ...")
    log = _simulate(domain, train_users, out_dir, seed)
    clock.lap("simulate_s")
    say("2/5 exporting a Bayesian teaching set from the log ...")
    manifest = _export(log, out_dir, seed)
    clock.lap("export_s")
    say(f"3/5 LoRA fine-tuning the bundled SmolLM2 ({sizes.finetune_steps} steps) ...")
    trained = _finetune(out_dir, sizes, seed, quick)
    clock.lap("finetune_s")
    say("4/5 evaluating the teacher, random, the base and the tuned model ...")
    base, tuned = _backends(trained.output_dir)
    run, report_files = _evaluate(eval_config, sizes, tuned, out_dir, say)
    clock.lap("eval_s")
    say(
        "5/5 swapping the adapter in behind beliefagent serve (loopback) and evaluating the "
        "tuned model through it ..."
    )
    server_run = _evaluate_through_server(server_config, base, tuned, out_dir, say)
    clock.lap("serve_eval_s")

    summary = {
        "quick": quick,
        "seed": seed,
        "sizes": asdict(sizes),
        "teaching_set": {k: manifest.get(k) for k in ("counts", "files") if k in manifest},
        "finetune": {
            "steps": trained.steps,
            "final_loss": trained.final_loss,
            "adapter": trained.output_dir,
            "examples_per_s": trained.examples_per_s,
        },
        "through_server": _accuracies(server_run.summary),
        "assistants": _accuracies(run.summary),
        "report": [str(p) for p in report_files],
        "timings_s": {k: round(v, 1) for k, v in clock.steps.items()},
        "total_s": round(clock.total(), 1),
    }
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _fresh_folder(out: str | Path) -> Path:
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            "the output folder is not empty (give a new --out)", field="out", value=str(out_dir)
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _eval_configs(sizes: DemoSizes, seed: int) -> tuple[Any, Any]:
    """The in-process evaluation's config and the smaller one for the run through the server."""
    from beliefagent.eval.harness import EvalConfig

    config = EvalConfig(
        domain="flight",
        users=sizes.eval_users,
        heldout_sets=sizes.heldout_sets,
        seed=seed,
        probe=False,
        concurrency=2,
    )
    server = replace(config, users=sizes.server_users, heldout_sets=sizes.server_heldout_sets)
    return config, server


def _training_users(
    domain: ChoiceDomain, configs: tuple[Any, ...], sizes: DemoSizes, seed: int
) -> list[int]:
    """Simulated users to teach from, disjoint from every evaluation user."""
    from beliefagent.eval.harness import prepare_task
    from beliefagent.eval.tasks import ChoiceTask

    eval_rows: set[tuple[float, ...]] = set()
    for cfg in configs:
        task = prepare_task(cfg)
        assert isinstance(task, ChoiceTask)
        eval_rows |= {tuple(w) for w in np.asarray(task.user_weights).tolist()}
    weights = domain.hypothesis_weights()
    pool = np.array([i for i, w in enumerate(weights.tolist()) if tuple(w) not in eval_rows])
    rng = np.random.default_rng(seed + 1)
    return [int(u) for u in rng.choice(pool, size=sizes.train_users, replace=False)]


def _simulate(domain: ChoiceDomain, users: list[int], out_dir: Path, seed: int) -> Path:
    from beliefagent.middleware.runner import simulate_teacher_dialogues

    log = out_dir / "simulated.jsonl"
    simulate_teacher_dialogues(domain, users, log, seed=seed)
    return log


def _export(log: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    from beliefagent.export import export_teaching_set

    return export_teaching_set(
        log, out_dir / "teaching", target="bayes", fmt="chat", eval_fraction=0.1, seed=seed
    )


def _finetune(out_dir: Path, sizes: DemoSizes, seed: int, quick: bool) -> Any:
    from beliefagent.finetune.config import FinetuneConfig, LoraSettings
    from beliefagent.finetune.train import finetune

    config = FinetuneConfig(
        description="beliefagent demo: Bayesian teaching of SmolLM2-135M (LoRA)",
        data=str(out_dir / "teaching" / "train.jsonl"),
        output_dir=str(out_dir / "adapter"),
        method="lora",
        loss="ce",
        lr=1e-3,
        batch_size=sizes.batch_size,
        max_steps=sizes.finetune_steps,
        seed=seed,
        checkpoint_every=0,
        lora=LoraSettings(r=16, alpha=32),
    )
    return finetune(
        config, progress=True, command="beliefagent demo" + (" --quick" if quick else "")
    )


def _backends(adapter_dir: str) -> tuple[Any, Any]:
    """The bundled base model and the same model with the tuned adapter."""
    from beliefagent.adapters import LocalBackend

    return LocalBackend(), LocalBackend(adapter_path=adapter_dir, name="tuned")


def _progress(say: Callable[[str], None]) -> Callable[[int, int, str], None]:
    def progress(done: int, total: int, name: str) -> None:
        say(f"    {done}/{total} dialogues evaluated (last: {name})")

    return progress


def _evaluate(
    config: Any, sizes: DemoSizes, tuned: Any, out_dir: Path, say: Callable[[str], None]
) -> tuple[Any, list[Path]]:
    """Teacher, random, base (and its guard policy), tuned: in process, label scoring."""
    from beliefagent.eval.harness import run_eval
    from beliefagent.eval.report import write_report

    assistants = ["bayes", "random", "local", *(f"local#{p}" for p in sizes.policies), "tuned"]
    run = run_eval(
        config, assistants, out_dir / "eval", backends={"tuned": tuned}, on_progress=_progress(say)
    )
    return run, list(write_report(run.summary, out_dir / "report"))


def _evaluate_through_server(
    config: Any, base: Any, tuned: Any, out_dir: Path, say: Callable[[str], None]
) -> Any:
    """The tuned adapter swapped in behind ``beliefagent serve`` on loopback, asked over HTTP."""
    from beliefagent.adapters import OpenAICompatibleBackend
    from beliefagent.eval.harness import run_eval
    from beliefagent.eval.report import write_report
    from beliefagent.server import LocalUpstream, ModelRegistry, ModelRoute, create_app
    from beliefagent.server.background import serving

    upstream = LocalUpstream(default_max_tokens=24)
    registry = ModelRegistry(
        [
            ModelRoute(name="smollm2", upstream=upstream, backend=base),
            ModelRoute(name="smollm2-bayes", upstream=upstream, backend=tuned, parent="smollm2"),
        ]
    )
    with serving(create_app(registry)) as url:
        via_server = OpenAICompatibleBackend(
            "smollm2-bayes", base_url=f"{url}/v1", name="tuned-via-server", request_logprobs=False
        )
        server_run = run_eval(
            config,
            ["bayes", "tuned-via-server"],
            out_dir / "eval-server",
            backends={"tuned-via-server": via_server},
            on_progress=_progress(say),
        )
    write_report(server_run.summary, out_dir / "report-server")
    return server_run


def _accuracies(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": a["name"], "accuracy_by_round": a["accuracy_by_round"]}
        for a in summary["assistants"]
    ]
