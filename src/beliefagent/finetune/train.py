"""The training script: LoRA (or full) fine-tuning on a teaching set, in named steps.

    finetune(config):
        start      precision, accelerator, seeds, output folder, recipe.toml
        load       base model (+ LoRA)                                 _load_model
        data       encode the teaching (and held-out) dialogues        _load_data
        evaluate   score the base model on the held-out dialogues      _evaluate
        checkpoint resume from one if asked                            checkpoint.py
        loop       for each optimizer step: grad_accum micro-batches   _train_loop
                   (forward whole dialogues, loss on the answers, backward), clip, AdamW step,
                   schedule step, log, maybe checkpoint
        save       adapter (vLLM-ready) + score the tuned model + training_meta.json   _save

Precision: ``dtype = "auto"`` (the default) computes in bfloat16 where the hardware does so
natively (a CPU with AVX512-BF16 or AMX, a bf16-capable GPU) and in float32 elsewhere; the
weights stay float32 (bf16 autocast), so the trained parameters have float32 master copies.
``dtype = "bfloat16"`` loads the base weights in bf16 as well (a 7-9B model never exists in
float32 in memory; LoRA weights stay float32). See :func:`training_precision`.

Multi-GPU: run the same entry point under ``accelerate launch``; each process takes its slice of
every global micro-batch and gradients are averaged by DDP. On one CPU the result is seeded and
deterministic (same seed, data and thread count -> the same adapter), resume included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from beliefagent.adapters.models import resolve_dtype, warn_if_emulated_bf16
from beliefagent.errors import ConfigError
from beliefagent.finetune.artifacts import (
    RECIPE_FILE,
    TrainResult,
    vllm_adapter_problems,
    write_meta,
    write_recipe,
)
from beliefagent.finetune.checkpoint import (
    checkpoint_folder,
    load_checkpoint,
    prune_checkpoints,
    resume_folder,
    save_checkpoint,
)
from beliefagent.finetune.config import FinetuneConfig
from beliefagent.finetune.data import (
    IGNORE_INDEX,
    EncodedExample,
    collate,
    encode_examples,
    load_examples,
    prompt_style_of,
)
from beliefagent.finetune.evaluate import evaluate_choices, label_logits
from beliefagent.finetune.losses import answer_cross_entropy, label_kl, label_log_probs

__all__ = [
    "Precision",
    "TrainResult",
    "evaluate_choices",
    "finetune",
    "training_precision",
    "vllm_adapter_problems",
    "write_recipe",
]

logger = logging.getLogger(__name__)


# --- start: precision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``requested`` (the recipe's ``dtype``), ``compute`` (the matrix
    products' dtype: ``bfloat16`` means bf16 autocast) and ``weights`` (the base weights' dtype
    as loaded)."""

    requested: str
    compute: str
    weights: str

    def to_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "compute": self.compute, "weights": self.weights}


def training_precision(dtype: str, device: str, *, cpuinfo: str | None = None) -> Precision:
    """Resolve a recipe's ``dtype`` once: ``auto`` -> bf16 autocast over float32 weights where
    :func:`~beliefagent.adapters.models.resolve_dtype` finds native bf16, else float32;
    ``bfloat16`` -> bf16 weights and autocast; ``float32`` -> float32 throughout."""
    compute = resolve_dtype(dtype, device, cpuinfo=cpuinfo)
    warn_if_emulated_bf16(dtype, device, cpuinfo=cpuinfo)
    weights = "bfloat16" if dtype == "bfloat16" else "float32"
    return Precision(requested=dtype, compute=compute, weights=weights)


def _autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a bf16-compute run (no-op for float32)."""
    if precision.compute != "bfloat16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# --- load ------------------------------------------------------------------------------------


def _load_model(config: FinetuneConfig, precision: Precision) -> tuple[Any, Any]:
    """The base model in ``precision.weights``, with a fresh (or ``init_adapter``) LoRA on top
    for ``method = "lora"``, or every weight trainable for ``method = "full"``."""
    from beliefagent.adapters.models import load_model

    model: Any
    tokenizer: Any
    model, tokenizer = load_model(config.model_path, dtype=precision.weights)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, tokenizer
    from peft import LoraConfig, PeftModel, get_peft_model

    # peft keeps the adapter weights in float32 over a bf16 base (autocast_adapter_dtype)
    if config.init_adapter:
        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    else:
        lc = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=list(config.lora.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lc)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    return model, tokenizer


# --- data ------------------------------------------------------------------------------------


def _load_data(
    config: FinetuneConfig, tokenizer: Any
) -> tuple[list[EncodedExample], int, list[EncodedExample], str]:
    """``(train_set, n_skipped, eval_set, prompt_style)``: the dialogues tokenized whole, and
    the one prompt style they are written in."""
    rows = load_examples(config.data)
    prompt_style = prompt_style_of(rows)
    train_set, skipped = encode_examples(rows, tokenizer, max_length=config.max_length)
    if not train_set:
        raise ConfigError(
            "no dialogue fits in max_length", field="max_length", value=config.max_length
        )
    eval_set: list[EncodedExample] = []
    if config.eval_data:
        eval_set, _ = encode_examples(
            load_examples(config.eval_data), tokenizer, max_length=config.max_length
        )
    return train_set, skipped, eval_set, prompt_style


@dataclass(frozen=True)
class _Plan:
    """Which dialogues each micro-batch holds: a seeded permutation per epoch, sliced into
    global batches, each process taking every ``world``-th dialogue of a global batch."""

    n: int
    global_batch: int
    micro_per_epoch: int
    total_steps: int
    seed: int
    rank: int
    world: int

    @classmethod
    def make(cls, config: FinetuneConfig, n: int, rank: int, world: int) -> _Plan:
        global_batch = config.batch_size * world
        micro = max(1, n // global_batch if world > 1 else math.ceil(n / global_batch))
        total = config.max_steps or max(1, math.ceil(config.epochs * micro / config.grad_accum))
        return cls(n, global_batch, micro, total, config.seed, rank, world)

    def micro_batch(self, index: int) -> list[int]:
        epoch, j = divmod(index, self.micro_per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.n, generator=g)
        chunk = order[j * self.global_batch : (j + 1) * self.global_batch]
        return chunk[self.rank :: self.world].tolist()


def _scheduler(config: FinetuneConfig, optimizer: Any, total: int) -> Any:
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    warmup = round(config.warmup_ratio * total)
    if config.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if config.schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


# --- loss ------------------------------------------------------------------------------------


def _batch_loss(
    model: Any, batch: dict[str, torch.Tensor], loss_kind: str, kl_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    if loss_kind == "kl":
        logits, pos = label_logits(model, batch)  # (B, P, V), (B, A)
    else:
        # logits only where the next token is an answer token (the LM head is ~20 % of a
        # small model's compute; the prompt's positions carry no loss)
        labels = batch["labels"]  # (B, T)
        keep = torch.nonzero((labels[:, 1:] != IGNORE_INDEX).any(0))[:, 0]  # (P,) sorted
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            logits_to_keep=keep,
        ).logits  # (B, P, V)
        pos = torch.searchsorted(keep, batch["label_positions"])  # (B, A)
        next_tokens = labels[:, keep + 1]  # (B, P): what each kept position predicts
    log_q = label_log_probs(logits, pos, batch["label_token_ids"])  # (B, A, K)
    kl = label_kl(log_q, batch["soft_targets"], batch["label_mask"])
    m = batch["label_mask"]
    nll = -(log_q.gather(-1, batch["hard_targets"][..., None])[..., 0] * m).sum() / m.sum()
    stats = {"label_kl": float(kl.detach()), "label_nll": float(nll.detach())}
    if loss_kind == "kl":
        return kl, stats
    ce = answer_cross_entropy(logits, next_tokens, shifted=True)
    stats["answer_ce"] = float(ce.detach())
    return (ce if loss_kind == "ce" else ce + kl_weight * kl), stats


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _Run:
    """What the steps share: the config, the accelerator, where outputs go, the precision."""

    config: FinetuneConfig
    accel: Any
    out: Path
    precision: Precision
    pad_id: int = 0

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return _autocast(self.precision, self.accel.device)


@dataclass
class _LoopStats:
    """``dialogues``/``seconds`` over every step; ``tokens``/``token_seconds`` over the steps
    after the first (its one-time kernel set-up would dominate a short run) unless there is
    only one."""

    curve: list[dict[str, float]]
    dialogues: int = 0
    seconds: float = 0.0
    tokens: int = 0
    token_seconds: float = 0.0


def _start(config: FinetuneConfig) -> _Run:
    """Threads, precision, the accelerator, seeds; create the output folder with its recipe."""
    from accelerate import Accelerator

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = training_precision(config.dtype, device)
    # The steps enter bf16 autocast themselves (_Run.autocast), so accelerate's own mixed
    # precision stays off: its state is per process, and one process may run several
    # fine-tunings in different precisions (bench_finetune.py: the recipe's, then float32).
    accel = Accelerator(mixed_precision="no")
    out = Path(config.output_dir)
    if accel.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_recipe(config, out / RECIPE_FILE)
    logger.info("precision: %s", precision.to_dict())
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    return _Run(config, accel, out, precision)


def _evaluate(run: _Run, model: Any, eval_set: list[EncodedExample]) -> dict[str, Any]:
    with run.autocast():
        return evaluate_choices(model, eval_set, pad_token_id=run.pad_id)


@contextlib.contextmanager
def _progress_bar(run: _Run, total: int, start: int, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=start,
        file=sys.stderr,
        desc="finetune",
        disable=not enabled or not run.accel.is_main_process,
    )
    try:
        yield bar
    finally:
        bar.close()


def _maybe_checkpoint(
    run: _Run, model: Any, optimizer: Any, scheduler: Any, done: int, total: int, curve: list[Any]
) -> None:
    config, accel = run.config, run.accel
    if not config.checkpoint_every or done % config.checkpoint_every or done >= total:
        return
    accel.wait_for_everyone()
    if accel.is_main_process:
        folder = checkpoint_folder(run.out, done)
        save_checkpoint(folder, accel.unwrap_model(model), optimizer, scheduler, done, curve)
        prune_checkpoints(run.out, config.keep_checkpoints)


def _train_loop(
    run: _Run,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    params: list[torch.nn.Parameter],
    train_set: list[EncodedExample],
    plan: _Plan,
    start: int,
    curve: list[dict[str, float]],
    progress: bool,
) -> _LoopStats:
    config, accel = run.config, run.accel
    stats_out = _LoopStats(curve)
    t0 = time.perf_counter()
    with _progress_bar(run, plan.total_steps, start, progress) as bar:
        for step in range(start, plan.total_steps):
            t_step = time.perf_counter()
            step_tokens = 0
            sums: dict[str, float] = {}
            total_loss = 0.0
            for a in range(config.grad_accum):
                chosen = plan.micro_batch(step * config.grad_accum + a)
                batch = {
                    k: v.to(accel.device)
                    for k, v in collate([train_set[i] for i in chosen], run.pad_id).items()
                }
                last = a == config.grad_accum - 1
                sync = accel.no_sync(model) if plan.world > 1 and not last else None
                with sync or contextlib.nullcontext(), run.autocast():
                    loss, stats = _batch_loss(model, batch, config.loss, config.kl_weight)
                accel.backward(loss / config.grad_accum)
                total_loss += float(loss.detach()) / config.grad_accum
                for key, v in stats.items():
                    sums[key] = sums.get(key, 0.0) + v / config.grad_accum
                stats_out.dialogues += batch["input_ids"].size(0) * plan.world
                step_tokens += int(batch["attention_mask"].sum()) * plan.world
            if config.max_grad_norm > 0:
                accel.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % config.log_every == 0 or done == plan.total_steps:
                curve.append(
                    {
                        "step": done,
                        "loss": total_loss,
                        "lr": scheduler.get_last_lr()[0],
                        **{k: round(v, 5) for k, v in sums.items()},
                    }
                )
            if step > start or plan.total_steps - start == 1:
                stats_out.tokens += step_tokens
                stats_out.token_seconds += time.perf_counter() - t_step
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss:.4f}", nll=f"{sums['label_nll']:.3f}")
            _maybe_checkpoint(run, model, optimizer, scheduler, done, plan.total_steps, curve)
    stats_out.seconds = time.perf_counter() - t0
    return stats_out


def _save(
    run: _Run,
    model: Any,
    tokenizer: Any,
    eval_set: list[EncodedExample],
    result: TrainResult,
    command: str | None,
) -> None:
    """Write the adapter (or full model), score it on the held-out set, write the meta."""
    if not run.accel.is_main_process:
        return
    model.save_pretrained(str(run.out))
    if run.config.method == "full":
        tokenizer.save_pretrained(str(run.out))
    if eval_set:
        result.eval = _evaluate(run, model, eval_set)
    write_meta(run.config, result, run.out, command)


def finetune(
    config: FinetuneConfig, *, progress: bool = True, command: str | None = None
) -> TrainResult:
    """Fine-tune per ``config``; write the adapter (or full model), ``recipe.toml`` and
    ``training_meta.json`` under ``config.output_dir``; return the run's numbers.

    ``command``: how the run was started, recorded for reproduction (default: the
    ``beliefagent finetune --recipe <output_dir>/recipe.toml`` equivalent).
    """
    if not config.data:
        raise ConfigError("give a teaching set", field="data", value=config.data)
    started = time.perf_counter()
    run = _start(config)
    accel = run.accel

    model, tokenizer = _load_model(config, run.precision)
    run.pad_id = int(tokenizer.pad_token_id)
    train_set, skipped, eval_set, prompt_style = _load_data(config, tokenizer)
    plan = _Plan.make(config, len(train_set), accel.process_index, accel.num_processes)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _scheduler(config, optimizer, plan.total_steps)

    eval_base = None
    if eval_set and config.eval_base and config.method == "lora" and accel.is_main_process:
        with model.disable_adapter():
            eval_base = _evaluate(run, model, eval_set)

    model.train()
    model, optimizer = accel.prepare(model, optimizer)
    start, curve = 0, cast(list[dict[str, float]], [])
    resume_from = resume_folder(config)
    if resume_from is not None:
        start, curve = load_checkpoint(resume_from, accel.unwrap_model(model), optimizer, scheduler)
        logger.info("resumed from %s at step %d", resume_from, start)

    loop = _train_loop(
        run, model, optimizer, scheduler, params, train_set, plan, start, curve, progress
    )
    accel.wait_for_everyone()
    tail = loop.curve[-max(1, len(loop.curve) // 10) :]
    result = TrainResult(
        output_dir=str(run.out),
        steps=plan.total_steps,
        final_loss=float(np.mean([c["loss"] for c in tail])) if tail else float("nan"),
        loss_curve=loop.curve,
        n_train=len(train_set),
        n_skipped=skipped,
        wall_s=time.perf_counter() - started,
        examples_per_s=loop.dialogues / loop.seconds if loop.seconds > 0 else 0.0,
        eval_base=eval_base,
        tokens_per_s=loop.tokens / loop.token_seconds if loop.token_seconds > 0 else 0.0,
        precision=run.precision.to_dict(),
        extra={"prompt_style": prompt_style},
    )
    _save(run, accel.unwrap_model(model), tokenizer, eval_set, result, command)
    return result
