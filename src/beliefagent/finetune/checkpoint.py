"""Resumable checkpoints of a training run: the trainable weights, the optimizer and schedule
state and every RNG, written atomically under ``<output_dir>/checkpoints/step-NNNNNN``::

    step-000020/
        trainable.safetensors   # only the parameters that train (LoRA A/B, or every weight)
        state.pt                # optimizer, scheduler, RNG states (torch, numpy, python, cuda)
        progress.json           # {"step": 20, "loss_curve": [...]}

A folder is written as ``step-NNNNNN.tmp`` and renamed into place, so a crash mid-write never
leaves a half checkpoint that ``resume = "latest"`` would pick.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beliefagent.errors import ConfigError
from beliefagent.finetune.config import FinetuneConfig

__all__ = [
    "checkpoint_folder",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "resume_folder",
    "save_checkpoint",
    "trainable_parameters",
]

logger = logging.getLogger(__name__)


def trainable_parameters(model: Any) -> dict[str, torch.Tensor]:
    """The parameters that train, by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def checkpoint_folder(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"step-{step:06d}"


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


def save_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, step: int, curve: list[Any]
) -> None:
    """Write a resumable checkpoint of ``step`` to ``folder`` (atomically)."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {n: p.detach().contiguous().cpu() for n, p in trainable_parameters(model).items()},
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


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders under ``output_dir``, oldest first."""
    root = output_dir / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / "progress.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep = 0``: delete none)."""
    if keep <= 0:
        return
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resume_folder(config: FinetuneConfig) -> Path | None:
    """The checkpoint ``config.resume`` names (``latest``: the newest one, if any)."""
    if config.resume is None:
        return None
    if config.resume == "latest":
        found = list_checkpoints(Path(config.output_dir))
        if not found:
            logger.info("resume=latest: no checkpoint under %s; starting fresh", config.output_dir)
            return None
        return found[-1]
    folder = Path(config.resume)
    if not (folder / "progress.json").is_file():
        raise ConfigError("not a checkpoint folder", field="resume", value=config.resume)
    return folder


def load_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any
) -> tuple[int, list[Any]]:
    """Restore weights, optimizer, schedule and RNGs; return ``(step, loss_curve)``."""
    from safetensors.torch import load_file

    saved = load_file(str(folder / "trainable.safetensors"))
    params = trainable_parameters(model)
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
