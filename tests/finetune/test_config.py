"""Recipes and config validation (no torch needed for most; no GPU for any)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from beliefagent.errors import ConfigError
from beliefagent.finetune import (
    ALLOWED_TARGET_MODULES,
    VLLM_LORA_RANKS,
    FinetuneConfig,
    LoraSettings,
    load_config,
)

RECIPES = Path(__file__).resolve().parents[2] / "finetune"
NAMES = ["cpu_quick", "cpu_long", "cpu_paper", "gpu_qwen2.5-7b", "gpu_llama3.1-8b", "gpu_gemma2-9b"]


@pytest.mark.parametrize("name", NAMES)
def test_recipe_loads_and_validates(name: str) -> None:
    cfg = load_config(RECIPES / f"{name}.toml")
    assert isinstance(cfg, FinetuneConfig)
    assert cfg.description
    assert cfg.lora.r in VLLM_LORA_RANKS
    assert set(cfg.lora.target_modules) <= set(ALLOWED_TARGET_MODULES)
    if name.startswith("gpu_"):
        assert cfg.model_path  # a local folder the user provides
        assert cfg.dtype == "bfloat16"
        assert cfg.batch_size * cfg.grad_accum == 128  # the paper's batch on one GPU
        assert cfg.schedule == "cosine" and cfg.warmup_ratio == pytest.approx(0.1)
        assert cfg.max_length == 2048
    else:
        assert cfg.model_path is None  # the bundled SmolLM2
        # bf16 autocast where the CPU has it; the paper-scale recipe loads bf16 weights
        assert cfg.dtype == "auto"


def test_every_recipe_in_the_folder_is_tested() -> None:
    on_disk = sorted(p.stem for p in RECIPES.glob("*.toml"))
    assert on_disk == sorted(NAMES)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"loss": "mse"}, "loss"),
        ({"method": "qlora"}, "method"),
        ({"schedule": "step"}, "schedule"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"max_length": 8}, "max_length"),
        ({"epochs": 0.0, "max_steps": 0}, "epochs"),
        ({"dtype": "float16"}, "dtype"),
        ({"dtype": "bf16"}, "dtype"),
        ({"dtype": "AUTO"}, "dtype"),
        ({"lora": {"r": 4}}, "lora.r"),
        ({"lora": {"r": 12}}, "lora.r"),
        ({"lora": {"dropout": 1.0}}, "lora.dropout"),
        ({"lora": {"target_modules": ["q_proj", "lm_head"]}}, "lora.target_modules"),
        ({"lora": {"target_modules": []}}, "lora.target_modules"),
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"learning_rate": 1e-4}, "learning_rate"),
        ({"batch_size": "4"}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"method": "full", "init_adapter": "a"}, "init_adapter"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FinetuneConfig(data="x.jsonl").replace(**changes)
    assert info.value.field == field


def test_overrides_replace_recipe_values_and_none_keeps_them() -> None:
    cfg = load_config(RECIPES / "cpu_quick.toml", data="mine.jsonl", lr=None, seed=7)
    base = load_config(RECIPES / "cpu_quick.toml")
    assert (cfg.data, cfg.seed, cfg.lr) == ("mine.jsonl", 7, base.lr)


def test_bad_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "none.toml")
    assert info.value.field == "recipe"
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(bad)
    bad.write_text("[lora]\nr = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.field == "lora.r"


def test_lora_defaults_are_vllm_ready() -> None:
    lora = LoraSettings()
    assert lora.r in VLLM_LORA_RANKS
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_fields_carry_help() -> None:
    import dataclasses

    for cls in (FinetuneConfig, LoraSettings):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f.name


def test_written_recipe_reads_back_equal(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from beliefagent.finetune.train import write_recipe

    cfg = load_config(RECIPES / "gpu_llama3.1-8b.toml", seed=3, resume="latest")
    write_recipe(cfg, tmp_path / "r.toml")
    assert load_config(tmp_path / "r.toml") == cfg


def test_command_help_and_config_errors(tmp_path: Path) -> None:
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from beliefagent.finetune.command import finetune_command

    app = typer.Typer()
    app.command()(finetune_command)
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for opt in ("--recipe", "--data", "--loss", "--resume", "--max-steps", "--json"):
        assert opt in result.output
    result = runner.invoke(app, ["--recipe", str(RECIPES / "cpu_quick.toml"), "--loss", "mse"])
    assert result.exit_code == 2
    assert "loss" in result.output


def test_vllm_problems_flag_what_vllm_refuses(tmp_path: Path) -> None:
    import json

    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from beliefagent.finetune import vllm_adapter_problems

    good = {
        "peft_type": "LORA",
        "r": 16,
        "target_modules": ["q_proj", "v_proj"],
        "modules_to_save": None,
        "bias": "none",
        "use_dora": False,
    }
    (tmp_path / "adapter_config.json").write_text(json.dumps(good))
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    save_file({name: torch.zeros(16, 8)}, str(tmp_path / "adapter_model.safetensors"))
    assert vllm_adapter_problems(tmp_path) == []

    bad = {**good, "r": 12, "target_modules": ["lm_head"], "modules_to_save": ["embed_tokens"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(bad))
    save_file(
        {"base_model.model.lm_head.weight": torch.zeros(2, 2)},
        str(tmp_path / "adapter_model.safetensors"),
    )
    problems = " | ".join(vllm_adapter_problems(tmp_path))
    for word in ("rank 12", "target_modules", "modules_to_save", "non-LoRA"):
        assert word in problems
    assert vllm_adapter_problems(tmp_path / "missing") != []


def test_dtype_defaults_to_auto() -> None:
    assert FinetuneConfig().dtype == "auto"


@pytest.mark.parametrize(
    ("dtype", "flags", "compute", "weights"),
    [
        ("auto", "avx512f avx512_bf16", "bfloat16", "float32"),  # autocast, float32 masters
        ("auto", "avx512f amx_bf16", "bfloat16", "float32"),
        ("auto", "avx512f avx2", "float32", "float32"),
        ("float32", "avx512_bf16", "float32", "float32"),
        ("bfloat16", "avx2", "bfloat16", "bfloat16"),  # bf16 weights as asked
    ],
)
def test_training_precision_resolves_once(dtype: str, flags: str, compute: str, weights: str):
    pytest.importorskip("torch")
    from beliefagent.finetune.train import training_precision

    emulated = dtype == "bfloat16" and "bf16" not in flags
    with pytest.warns(RuntimeWarning) if emulated else contextlib.nullcontext():
        p = training_precision(dtype, "cpu", cpuinfo=f"flags\t: {flags}\n")
    assert (p.requested, p.compute, p.weights) == (dtype, compute, weights)
