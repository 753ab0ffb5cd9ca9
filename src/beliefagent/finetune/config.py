"""Typed fine-tuning recipes.

A recipe is a TOML file (see the top-level ``finetune/`` folder) loaded into
:class:`FinetuneConfig`; every field carries ``metadata={"help": ...}`` and is validated on
construction, raising :class:`~beliefagent.errors.ConfigError` with the field and the value::

    model_path = ""            # "" or absent: the bundled SmolLM2-135M-Instruct
    data = "teach.jsonl"
    output_dir = "runs/smollm2"
    loss = "kl"
    lr = 1e-3

    [lora]
    r = 16
    alpha = 32
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from beliefagent.errors import ConfigError

__all__ = [
    "ALLOWED_TARGET_MODULES",
    "VLLM_LORA_RANKS",
    "FinetuneConfig",
    "LoraSettings",
    "load_config",
]

ALLOWED_TARGET_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
"""Projection modules a LoRA may wrap: the ones vLLM's LoRA layers support in Llama-style models
(Llama, Qwen2, Gemma2, SmolLM2)."""

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256)
"""LoRA ranks vLLM accepts (``--max-lora-rank`` choices)."""

LOSSES = ("ce", "kl", "ce+kl")
METHODS = ("lora", "full")
SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class LoraSettings:
    """LoRA adapter shape (used when ``method = "lora"``)."""

    r: int = field(default=16, metadata=_help("LoRA rank; vLLM accepts 8, 16, 32, 64, 128, 256."))
    alpha: int = field(default=32, metadata=_help("LoRA scaling numerator (scale = alpha / r)."))
    dropout: float = field(default=0.0, metadata=_help("Dropout on the LoRA input, in [0, 1)."))
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata=_help("Projections to adapt, among q/k/v/o/gate/up/down_proj."),
    )

    def __post_init__(self) -> None:
        if self.r not in VLLM_LORA_RANKS:
            raise ConfigError(
                f"must be one of vLLM's LoRA ranks {VLLM_LORA_RANKS}", field="lora.r", value=self.r
            )
        if not self.alpha > 0:
            raise ConfigError("must be > 0", field="lora.alpha", value=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("must be in [0, 1)", field="lora.dropout", value=self.dropout)
        mods = list(self.target_modules)
        bad = [m for m in mods if m not in ALLOWED_TARGET_MODULES]
        if not mods or bad or len(set(mods)) != len(mods):
            raise ConfigError(
                f"give distinct names among {', '.join(ALLOWED_TARGET_MODULES)}",
                field="lora.target_modules",
                value=mods,
            )
        self.target_modules = mods


@dataclass
class FinetuneConfig:
    """One fine-tuning run. Build it from a recipe with :func:`load_config`."""

    description: str = field(default="", metadata=_help("What this recipe is for."))
    data: str = field(
        default="", metadata=_help("Teaching set: JSONL lines as written by `beliefagent export`.")
    )
    output_dir: str = field(
        default="runs/finetune", metadata=_help("Where the adapter, checkpoints and meta go.")
    )
    model_path: str | None = field(
        default=None,
        metadata=_help("Base model folder or .gguf file; None/empty = bundled SmolLM2-135M."),
    )
    eval_data: str | None = field(
        default=None, metadata=_help("Held-out teaching set (other users) scored after training.")
    )
    method: str = field(
        default="lora", metadata=_help("lora (adapter only) or full (every weight).")
    )
    loss: str = field(
        default="ce",
        metadata=_help(
            "ce: cross-entropy on answer tokens; kl: KL(teacher || model) over the label "
            "tokens; ce+kl: both."
        ),
    )
    kl_weight: float = field(default=1.0, metadata=_help("Weight of the KL term in ce+kl."))
    lora: LoraSettings = field(default_factory=LoraSettings, metadata=_help("LoRA shape."))
    init_adapter: str | None = field(
        default=None,
        metadata=_help("Start from this saved LoRA adapter (curricula: stage 2 after stage 1)."),
    )
    lr: float = field(default=1e-4, metadata=_help("Peak learning rate (AdamW)."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    schedule: str = field(
        default="cosine", metadata=_help("Learning-rate schedule: cosine, linear or constant.")
    )
    warmup_ratio: float = field(
        default=0.1, metadata=_help("Share of the steps spent warming the learning rate up.")
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping; 0 = off."))
    batch_size: int = field(default=4, metadata=_help("Dialogues per micro-batch (per device)."))
    grad_accum: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    epochs: float = field(default=1.0, metadata=_help("Passes over the data (if max_steps is 0)."))
    max_steps: int = field(default=0, metadata=_help("Optimizer steps; 0 = derive from epochs."))
    max_length: int = field(
        default=2048, metadata=_help("Token limit; later turns of longer dialogues are dropped.")
    )
    seed: int = field(default=0, metadata=_help("Seed for weights init, order and dropout."))
    dtype: str = field(
        default="auto",
        metadata=_help(
            "auto: bf16 autocast over float32 weights where the CPU (avx512_bf16, amx_bf16) or GPU "
            "computes bf16 natively, else float32; float32; bfloat16: bf16 weights too (7-9B GPUs)."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations to save memory (large models).")
    )
    checkpoint_every: int = field(
        default=0, metadata=_help("Save a resumable checkpoint every N steps; 0 = never.")
    )
    keep_checkpoints: int = field(
        default=2, metadata=_help("How many recent checkpoints to keep; 0 = all.")
    )
    resume: str | None = field(
        default=None,
        metadata=_help("Checkpoint folder to resume from, or 'latest' under output_dir."),
    )
    log_every: int = field(default=1, metadata=_help("Record the loss every N steps."))
    num_threads: int = field(default=0, metadata=_help("torch CPU threads; 0 = torch's default."))
    eval_base: bool = field(
        default=True, metadata=_help("Also score the base model (adapter off) on eval_data.")
    )

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = _build(LoraSettings, self.lora, prefix="lora.")
        self.model_path = self.model_path or None
        self.eval_data = self.eval_data or None
        self.init_adapter = self.init_adapter or None
        self.resume = self.resume or None
        _one_of("method", self.method, METHODS)
        _one_of("loss", self.loss, LOSSES)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("dtype", self.dtype, DTYPES)
        if self.method == "full" and self.init_adapter:
            raise ConfigError(
                "init_adapter needs method = 'lora'", field="init_adapter", value=self.init_adapter
            )
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size)
        _positive("grad_accum", self.grad_accum)
        _positive("max_length", self.max_length)
        _positive("log_every", self.log_every)
        _at_least("kl_weight", self.kl_weight, 0)
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("max_grad_norm", self.max_grad_norm, 0)
        _at_least("max_steps", self.max_steps, 0)
        _at_least("checkpoint_every", self.checkpoint_every, 0)
        _at_least("keep_checkpoints", self.keep_checkpoints, 0)
        _at_least("num_threads", self.num_threads, 0)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("must be in [0, 1)", field="warmup_ratio", value=self.warmup_ratio)
        if self.max_steps == 0 and not self.epochs > 0:
            raise ConfigError("must be > 0 when max_steps is 0", field="epochs", value=self.epochs)
        if self.max_length < 16:
            raise ConfigError("must be >= 16", field="max_length", value=self.max_length)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML/JSON-ready; None values dropped where TOML has no null)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> FinetuneConfig:
        """A validated copy with ``changes`` (None values leave a field unchanged)."""
        kept = {k: v for k, v in changes.items() if v is not None}
        base = self.to_dict()
        lora = dict(base.pop("lora"))
        lora.update(kept.pop("lora", {}) or {})
        base.update(kept)
        return _build(FinetuneConfig, {**base, "lora": lora})


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)}", field=name, value=value)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError("must be > 0", field=name, value=value)


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"must be >= {low}", field=name, value=value)


def _build(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    """``cls(**data)`` with unknown keys and wrong types reported as ConfigError."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown setting (known: {', '.join(sorted(names))})",
            field=prefix + unknown[0],
            value=data[unknown[0]],
        )
    for key, value in data.items():
        _check_type(prefix + key, names[key].type, value)
    try:
        return cls(**data)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(str(exc), field=prefix.rstrip(".") or "config", value=data) from exc


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list[str]": (list,),
    "LoraSettings": (dict, LoraSettings),
}


def _check_type(name: str, annotation: Any, value: Any) -> None:
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    if value is None:
        if optional:
            return
        raise ConfigError(f"must be a {base}", field=name, value=value)
    allowed = _TYPES.get(base)
    if allowed is None:  # pragma: no cover - every field type is listed
        return
    if isinstance(value, bool) and base != "bool":
        raise ConfigError(f"must be a {base}, not a bool", field=name, value=value)
    if not isinstance(value, allowed):
        raise ConfigError(f"must be a {base}", field=name, value=value)
    if base == "list[str]" and not all(isinstance(v, str) for v in cast(list[Any], value)):
        raise ConfigError("must be a list of strings", field=name, value=value)


def load_config(path: str | Path, **overrides: Any) -> FinetuneConfig:
    """Read a TOML recipe into a validated :class:`FinetuneConfig`.

    Relative ``data``/``eval_data``/``output_dir``/``model_path`` stay relative to the working
    directory (recipes are run from the repository root). ``overrides`` replace recipe values
    (None = keep), e.g. ``load_config("finetune/cpu_quick.toml", data="teach.jsonl")``.
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("no such recipe file", field="recipe", value=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", field="recipe", value=str(path)) from exc
    cfg: FinetuneConfig = _build(FinetuneConfig, raw)
    return cfg.replace(**overrides) if overrides else cfg
