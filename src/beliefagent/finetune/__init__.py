"""Bayesian teaching: LoRA (or full) fine-tuning on teaching sets exported from dialogues.

    from beliefagent.finetune import finetune, load_config
    result = finetune(load_config("finetune/cpu_quick.toml", data="teach.jsonl"))

Needs the ``local`` extra (torch, transformers, peft, accelerate). See ``docs/finetune.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from beliefagent.finetune.config import (
    ALLOWED_TARGET_MODULES,
    VLLM_LORA_RANKS,
    FinetuneConfig,
    LoraSettings,
    load_config,
)

if TYPE_CHECKING:
    from beliefagent.finetune.train import (
        TrainResult,
        evaluate_choices,
        finetune,
        vllm_adapter_problems,
    )

__all__ = [
    "ALLOWED_TARGET_MODULES",
    "VLLM_LORA_RANKS",
    "FinetuneConfig",
    "LoraSettings",
    "TrainResult",
    "evaluate_choices",
    "finetune",
    "load_config",
    "vllm_adapter_problems",
]

_LAZY = {"TrainResult", "evaluate_choices", "finetune", "vllm_adapter_problems"}


def __getattr__(name: str) -> Any:
    """Import the torch-dependent parts on first use (the config needs no torch)."""
    if name in _LAZY:
        from beliefagent.finetune import train as _train_module

        return getattr(_train_module, name)
    raise AttributeError(name)
