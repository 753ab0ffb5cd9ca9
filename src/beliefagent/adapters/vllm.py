"""Serving LoRA adapters with vLLM: the ``vllm serve`` command line, and loading or unloading
adapters on a running server.

    cmd = build_serve_command("Qwen/Qwen2.5-7B-Instruct", {"tuned": "runs/adapter"})
    # ['vllm', 'serve', 'Qwen/Qwen2.5-7B-Instruct', '--enable-lora', '--max-lora-rank', '16',
    #  '--lora-modules', 'tuned=runs/adapter']

    with VLLMAdapterManager("http://gpu-box:8000/v1") as vllm:
        vllm.load("tuned-v2", "/srv/adapters/v2")   # POST /v1/load_lora_adapter, then confirms
        vllm.unload("tuned")                          # POST /v1/unload_lora_adapter

Checks before anything reaches vLLM (each raises an :class:`AdapterError` naming the field):
the adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``);
its ``base_model_name_or_path`` names the served base model; its rank ``r`` fits
``--max-lora-rank``. vLLM accepts only the ranks in :data:`VLLM_LORA_RANKS` for that flag, so the
generated command rounds the largest adapter rank up to the next one.

Runtime loading needs the server started with ``--enable-lora`` and the environment variable
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; without it vLLM does not register the two endpoints
and answers 404, which :class:`VLLMAdapterManager` reports as
:class:`RuntimeLoRAUpdatingDisabledError`. vLLM's error bodies (``{"object": "error", "message",
"type", "code"}`` in older releases, ``{"error": {...}}`` in newer ones) are read either way:

==============================================  ============================================
vLLM answer                                     raised
==============================================  ============================================
404 ``{"detail": "Not Found"}`` (no route)      :class:`RuntimeLoRAUpdatingDisabledError`
400 ``LoRA rank 64 is greater than              :class:`LoRARankTooHighError` (vLLM's message
max_lora_rank 16.``                             kept, plus the flag to restart with)
404 ``The lora adapter 'x' cannot be found.``   :class:`UnknownAdapterError` (on unload)
other 4xx on load (path missing on the vLLM     :class:`AdapterLoadError`
host, already loaded, bad weights)
5xx, timeouts, connection failures              :class:`~beliefagent.errors.BackendError`
                                                and its subclasses
==============================================  ============================================

Error tree added here (all under :class:`~beliefagent.errors.BeliefAgentError`)::

    ConfigError
    └── AdapterError               a local adapter folder that cannot be served as asked
        ├── AdapterFilesError      adapter_config.json or the weights are missing
        ├── BaseModelMismatchError adapter trained on another base model
        └── AdapterRankError       rank above the given or accepted --max-lora-rank
    BackendError
    └── VLLMAdapterServerError     the vLLM server refused an adapter operation
        ├── RuntimeLoRAUpdatingDisabledError
        ├── LoRARankTooHighError
        ├── UnknownAdapterError
        └── AdapterLoadError
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)

__all__ = [
    "RUNTIME_LORA_ENV",
    "VLLM_LORA_RANKS",
    "AdapterError",
    "AdapterFilesError",
    "AdapterInfo",
    "AdapterLoadError",
    "AdapterRankError",
    "BaseModelMismatchError",
    "LoRARankTooHighError",
    "RuntimeLoRAUpdatingDisabledError",
    "UnknownAdapterError",
    "VLLMAdapterManager",
    "VLLMAdapterServerError",
    "build_serve_command",
    "check_base_model",
    "read_adapter",
    "round_up_rank",
    "shell_command",
]

logger = logging.getLogger(__name__)

VLLM_LORA_RANKS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for ``--max-lora-rank`` (its default is 16)."""

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_RANK_RE = re.compile(r"greater than max_lora_rank", re.IGNORECASE)


# ---------------------------------------------------------------------------------- errors


class AdapterError(ConfigError):
    """A LoRA adapter folder that cannot be served as asked."""


class AdapterFilesError(AdapterError):
    """``adapter_config.json`` or the adapter weights are missing or unreadable."""


class BaseModelMismatchError(AdapterError):
    """The adapter's ``base_model_name_or_path`` is not the model it would be served on."""


class AdapterRankError(AdapterError):
    """The adapter's rank ``r`` is above ``--max-lora-rank`` (or above what vLLM accepts)."""


class VLLMAdapterServerError(BackendError):
    """A vLLM server refused an adapter operation; ``status_code`` and ``body`` are vLLM's."""


class RuntimeLoRAUpdatingDisabledError(VLLMAdapterServerError):
    """The server has no runtime LoRA endpoints (``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` unset)."""


class LoRARankTooHighError(VLLMAdapterServerError):
    """The adapter's rank is above the server's ``--max-lora-rank``."""


class UnknownAdapterError(VLLMAdapterServerError):
    """The server serves no adapter by that name."""


class AdapterLoadError(VLLMAdapterServerError):
    """vLLM could not load the adapter (path missing on its host, already loaded, bad files)."""


# ------------------------------------------------------------------------ adapter folders


@dataclass(frozen=True)
class AdapterInfo:
    """What ``adapter_config.json`` says about a PEFT LoRA adapter folder.

    Attributes:
        path: the adapter folder.
        rank: LoRA rank ``r`` (the largest of ``r`` and any ``rank_pattern`` values).
        base_model: ``base_model_name_or_path``, ``None`` when the config has none.
        target_modules: the adapted modules, as the config lists them.
    """

    path: Path
    rank: int
    base_model: str | None
    target_modules: tuple[str, ...] = ()


def read_adapter(path: str | os.PathLike[str], *, field: str = "adapter_path") -> AdapterInfo:
    """Read and check a PEFT adapter folder: the config and the weights must be there, and the
    config must carry an integer rank ``r`` >= 1. Raises :class:`AdapterFilesError`."""
    folder = Path(path).expanduser()
    config_path = folder / "adapter_config.json"
    if not folder.is_dir():
        raise AdapterFilesError("no such adapter folder", field=field, value=str(folder))
    if not config_path.is_file():
        raise AdapterFilesError(
            "not a PEFT adapter folder: adapter_config.json is missing",
            field=field,
            value=str(folder),
        )
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise AdapterFilesError(
            f"adapter weights are missing (expected {' or '.join(_WEIGHT_FILES)})",
            field=field,
            value=str(folder),
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFilesError(
            f"cannot read adapter_config.json: {exc}", field=field, value=str(config_path)
        ) from exc
    if not isinstance(config, dict):
        raise AdapterFilesError(
            "adapter_config.json must hold a JSON object", field=field, value=str(config_path)
        )
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterFilesError(
            "adapter_config.json: 'r' must be an int >= 1", field=f"{field}.r", value=rank
        )
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        rank = max([rank, *(v for v in pattern.values() if isinstance(v, int))])
    base = config.get("base_model_name_or_path")
    targets = config.get("target_modules") or ()
    if isinstance(targets, str):
        targets = (targets,)
    return AdapterInfo(
        path=folder,
        rank=rank,
        base_model=str(base) if base else None,
        target_modules=tuple(str(t) for t in targets),
    )


def round_up_rank(rank: int) -> int:
    """The smallest value vLLM accepts for ``--max-lora-rank`` that is >= ``rank``."""
    for accepted in VLLM_LORA_RANKS:
        if rank <= accepted:
            return accepted
    raise AdapterRankError(
        f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}", field="rank", value=rank
    )


def _model_key(name: str) -> str:
    """``"Qwen/Qwen2.5-7B-Instruct"``, ``"/models/Qwen2.5-7B-Instruct/"`` -> the last path
    component, lower-cased, so a hub id and a local copy of it compare equal."""
    return name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()


def check_base_model(adapter: AdapterInfo, base_model: str, *, field: str = "adapter") -> None:
    """Raise :class:`BaseModelMismatchError` when the adapter names a different base model.

    Names match when equal, or when their last path components match case-insensitively
    (``Qwen/Qwen2.5-7B-Instruct`` and ``/models/qwen2.5-7b-instruct``). An adapter whose config
    names no base model passes, with a warning.
    """
    if adapter.base_model is None:
        logger.warning("%s: adapter_config.json names no base model; not checked", adapter.path)
        return
    if adapter.base_model == base_model or _model_key(adapter.base_model) == _model_key(base_model):
        return
    raise BaseModelMismatchError(
        f"the adapter was trained on {adapter.base_model!r}, not on the served base model"
        f" {base_model!r}",
        field=f"{field}.base_model_name_or_path",
        value=adapter.base_model,
    )


def _check_name(name: str, field: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            "must be 1-128 characters: letters, digits and . _ : / - (no spaces or '=')",
            field=field,
            value=name,
        )


def build_serve_command(
    base_model: str,
    adapters: Mapping[str, str | os.PathLike[str]],
    *,
    max_lora_rank: int | None = None,
    max_loras: int | None = None,
    host: str | None = None,
    port: int | None = None,
    served_model_name: str | None = None,
    api_key_env: str | None = None,
    extra_args: Sequence[str] = (),
    executable: str = "vllm",
    check_files: bool = True,
) -> list[str]:
    """The ``vllm serve`` command (argv list) that serves ``base_model`` with ``adapters``
    (``{name: folder}``) as LoRA modules.

    Args:
        base_model: hub id or path of the base model, as vLLM should load it.
        adapters: served adapter name -> adapter folder (as seen on the vLLM host).
        max_lora_rank: the ``--max-lora-rank`` to use; ``None`` derives it from the adapters'
            ranks, rounded up to :data:`VLLM_LORA_RANKS`. A given value must be one of those
            and at least every adapter's rank.
        max_loras: adapters per batch (``--max-loras``); ``None`` means one per adapter when
            there are several (vLLM's default is 1).
        host, port, served_model_name: passed through when given.
        api_key_env: when set, adds ``--api-key "$<api_key_env>"`` (left for the shell to expand
            in :func:`shlex.join` output, so the key never appears in the command).
        extra_args: appended as they are.
        executable: the program to run.
        check_files: read each adapter folder (rank, base model); turn off when the folders
            exist only on the vLLM host (then ``max_lora_rank`` must be given).

    Raises :class:`AdapterFilesError`, :class:`BaseModelMismatchError`,
    :class:`AdapterRankError` or :class:`~beliefagent.errors.ConfigError` naming the field.
    """
    if not isinstance(base_model, str) or not base_model:
        raise ConfigError("must be a non-empty string", field="base_model", value=base_model)
    if max_lora_rank is not None and max_lora_rank not in VLLM_LORA_RANKS:
        raise ConfigError(
            f"vLLM accepts only {list(VLLM_LORA_RANKS)}", field="max_lora_rank", value=max_lora_rank
        )
    ranks: list[int] = []
    modules: list[str] = []
    for name, path in adapters.items():
        _check_name(name, f"adapters.{name}")
        if check_files:
            info = read_adapter(path, field=f"adapters.{name}")
            check_base_model(info, base_model, field=f"adapters.{name}")
            if max_lora_rank is not None and info.rank > max_lora_rank:
                raise AdapterRankError(
                    f"rank {info.rank} is above --max-lora-rank {max_lora_rank}; use"
                    f" {round_up_rank(info.rank)}",
                    field=f"adapters.{name}.r",
                    value=info.rank,
                )
            ranks.append(info.rank)
        modules.append(f"{name}={os.fspath(path)}")
    if max_lora_rank is None:
        if adapters and not check_files:
            raise ConfigError(
                "give max_lora_rank when the adapter folders are not read (check_files=False)",
                field="max_lora_rank",
                value=None,
            )
        max_lora_rank = round_up_rank(max(ranks)) if ranks else VLLM_LORA_RANKS[1]
    argv = [executable, "serve", base_model, "--enable-lora", "--max-lora-rank", str(max_lora_rank)]
    if max_loras is None and len(modules) > 1:
        max_loras = len(modules)
    if max_loras is not None:
        if isinstance(max_loras, bool) or not isinstance(max_loras, int) or max_loras < 1:
            raise ConfigError("must be an int >= 1", field="max_loras", value=max_loras)
        argv += ["--max-loras", str(max_loras)]
    if modules:
        argv += ["--lora-modules", *modules]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    if host:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    if api_key_env:
        argv += ["--api-key", f"${api_key_env}"]
    argv += list(extra_args)
    return argv


def shell_command(argv: Sequence[str], *, runtime_updating: bool = True) -> str:
    """``argv`` as one shell line; ``$VAR`` arguments stay expandable and, with
    ``runtime_updating``, the line starts with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``."""
    parts = [
        f'"{a}"' if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", a) else shlex.quote(a) for a in argv
    ]
    prefix = f"{RUNTIME_LORA_ENV}=True " if runtime_updating else ""
    return prefix + " ".join(parts)


# ------------------------------------------------------------------------- runtime updates


def _error_message(response: httpx.Response) -> str:
    """vLLM's error message, from any of its body shapes (or the raw text)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:2000]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
    return response.text.strip()[:2000]


def _is_missing_route(response: httpx.Response) -> bool:
    """A 404 from the router (no such endpoint), not from vLLM's adapter registry."""
    return response.status_code == 404 and _error_message(response).strip() == "Not Found"


class VLLMAdapterManager:
    """Load and unload LoRA adapters on a running vLLM server, confirming through
    ``GET /v1/models``.

    Args:
        base_url: the server's OpenAI base URL, e.g. ``"http://localhost:8000/v1"``.
        api_key: the server's ``--api-key``; ``None`` reads ``$<api_key_env>`` (may be unset).
        api_key_env: the environment variable holding the key.
        client: an ``httpx.Client`` to use as is (tests pass one with ``httpx.MockTransport``);
            the manager then does not close it.
        timeout_s: seconds per request (loading a large adapter can take a while).
        check_files: check adapter folders locally before asking the server (turn off when the
            paths exist only on the vLLM host).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "VLLM_API_KEY",
        client: httpx.Client | None = None,
        timeout_s: float = 120.0,
        check_files: bool = True,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", field="base_url", value=base_url)
        self.base_url = base_url.rstrip("/")
        self.check_files = check_files
        key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)
        self._timeout_s = timeout_s

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: Any = None) -> httpx.Response:
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            return self._client.request(
                method, url, json=payload, headers=self._headers, timeout=self._timeout_s
            )
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(
                f"vLLM at {self.base_url}: no answer to {method} {path} within {self._timeout_s} s",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise BackendConnectionError(
                f"cannot reach vLLM at {self.base_url}: {type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc

    def _fail(self, response: httpx.Response, what: str) -> BackendError:
        message = _error_message(response)
        status = response.status_code
        body = response.text[:4000]
        if status >= 500:
            return BackendError(
                f"vLLM failed to {what}: {message}", status_code=status, body=body, retryable=True
            )
        if status in (401, 403):
            return BackendError(
                f"vLLM refused the API key while trying to {what}: {message}",
                status_code=status,
                body=body,
            )
        return AdapterLoadError(f"vLLM could not {what}: {message}", status_code=status, body=body)

    # -- API -------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the served base model(s) and adapters (cards with a ``parent``
        are adapters in vLLM's listing)."""
        response = self._request("GET", "models")
        if response.status_code != 200:
            raise self._fail(response, "list models")
        try:
            data = response.json()["data"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise BackendResponseError(
                "vLLM /v1/models answered without a 'data' list", body=response.text[:4000]
            ) from exc
        return [card for card in data if isinstance(card, dict)]

    def model_ids(self) -> list[str]:
        """The ids ``GET /v1/models`` lists."""
        return [str(card.get("id")) for card in self.models()]

    def base_models(self) -> list[str]:
        """The served base model names (cards without a ``parent``)."""
        return [str(c.get("id")) for c in self.models() if not c.get("parent")]

    def load(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        max_lora_rank: int | None = None,
        replace: bool = False,
    ) -> None:
        """Load the adapter at ``path`` (a path on the vLLM host) under ``name``, then confirm
        that ``GET /v1/models`` lists it.

        With ``check_files``, the folder is read first: it must exist, and its base model must
        be one the server serves and its rank at most ``max_lora_rank`` (when given). With
        ``replace``, an adapter already loaded under ``name`` is unloaded first (a hot swap).
        """
        _check_name(name, "lora_name")
        local = Path(path).expanduser()
        if self.check_files:
            info = read_adapter(local, field="lora_path")
            served = self.base_models()
            if served and info.base_model is not None:
                mismatches = []
                for base in served:
                    try:
                        check_base_model(info, base, field="lora_path")
                        break
                    except BaseModelMismatchError as exc:
                        mismatches.append(exc)
                else:
                    raise mismatches[0]
            if max_lora_rank is not None and info.rank > max_lora_rank:
                raise AdapterRankError(
                    f"rank {info.rank} is above the server's --max-lora-rank {max_lora_rank}",
                    field="lora_path.r",
                    value=info.rank,
                )
        if replace and name in self.model_ids():
            self.unload(name)
        payload = {"lora_name": name, "lora_path": os.fspath(path)}
        response = self._request("POST", "load_lora_adapter", payload)
        if response.status_code != 200:
            raise self._load_error(response, name, local)
        listed = self.model_ids()
        if name not in listed:
            raise BackendResponseError(
                f"vLLM accepted adapter {name!r} but /v1/models does not list it (lists {listed})",
                body=response.text[:4000],
            )
        logger.info("vLLM at %s: loaded adapter %s from %s", self.base_url, name, path)

    def _load_error(self, response: httpx.Response, name: str, path: Path) -> BackendError:
        message = _error_message(response)
        status, body = response.status_code, response.text[:4000]
        if _is_missing_route(response):
            return _disabled(status, body, "load_lora_adapter")
        if _RANK_RE.search(message):
            hint = ""
            if path.is_dir():
                try:
                    needed = round_up_rank(read_adapter(path).rank)
                    hint = f"; restart vLLM with --max-lora-rank {needed}"
                except (AdapterFilesError, AdapterRankError):
                    hint = ""
            return LoRARankTooHighError(
                f"vLLM refused adapter {name!r}: {message}{hint}", status_code=status, body=body
            )
        if status == 404:
            return AdapterLoadError(
                f"vLLM found no adapter at {os.fspath(path)!r} (the path must exist on the vLLM"
                f" host): {message}",
                status_code=status,
                body=body,
            )
        return self._fail(response, f"load adapter {name!r}")

    def unload(self, name: str) -> None:
        """Unload adapter ``name`` and confirm ``GET /v1/models`` no longer lists it."""
        _check_name(name, "lora_name")
        response = self._request("POST", "unload_lora_adapter", {"lora_name": name})
        if response.status_code != 200:
            status, body = response.status_code, response.text[:4000]
            if _is_missing_route(response):
                raise _disabled(status, body, "unload_lora_adapter")
            if status == 404:
                raise UnknownAdapterError(
                    f"vLLM serves no adapter named {name!r}: {_error_message(response)}",
                    status_code=status,
                    body=body,
                )
            raise self._fail(response, f"unload adapter {name!r}")
        if name in self.model_ids():
            raise BackendResponseError(
                f"vLLM unloaded adapter {name!r} but /v1/models still lists it",
                body=response.text[:4000],
            )
        logger.info("vLLM at %s: unloaded adapter %s", self.base_url, name)

    def close(self) -> None:
        """Close the HTTP client if the manager created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> VLLMAdapterManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VLLMAdapterManager({self.base_url!r})"


def _disabled(status: int, body: str, endpoint: str) -> RuntimeLoRAUpdatingDisabledError:
    return RuntimeLoRAUpdatingDisabledError(
        f"the vLLM server has no /v1/{endpoint} endpoint: runtime LoRA updating is disabled."
        f" Restart it with {RUNTIME_LORA_ENV}=True in its environment (and --enable-lora)",
        status_code=status,
        body=body,
    )
