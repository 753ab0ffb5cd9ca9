"""vLLM adapter management: the ``vllm serve`` command with its checks, and runtime loading and
unloading over vLLM's HTTP API (mocked with ``httpx.MockTransport``; bodies as vLLM sends them)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from beliefagent.adapters.vllm import (
    VLLM_LORA_RANKS,
    AdapterFilesError,
    AdapterLoadError,
    AdapterRankError,
    BaseModelMismatchError,
    LoRARankTooHighError,
    RuntimeLoRAUpdatingDisabledError,
    UnknownAdapterError,
    VLLMAdapterManager,
    build_serve_command,
    read_adapter,
    round_up_rank,
    shell_command,
)
from beliefagent.errors import BackendConnectionError, BackendError, BeliefAgentError, ConfigError

BASE = "Qwen/Qwen2.5-7B-Instruct"


def make_adapter(root: Path, name: str, rank: int = 16, base: str | None = BASE) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = {"r": rank, "lora_alpha": 2 * rank, "peft_type": "LORA", "target_modules": ["q_proj"]}
    if base is not None:
        config["base_model_name_or_path"] = base
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    return folder


# ------------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("rank", "expected"),
    [(1, 8), (8, 8), (9, 16), (16, 16), (17, 32), (64, 64), (100, 128), (300, 320), (512, 512)],
)
def test_rank_rounds_up_to_vllm_accepted_values(rank: int, expected: int) -> None:
    assert round_up_rank(rank) == expected
    assert expected in VLLM_LORA_RANKS


def test_rank_above_512_is_refused() -> None:
    with pytest.raises(AdapterRankError, match="512"):
        round_up_rank(513)


def test_serve_command_with_two_adapters(tmp_path: Path) -> None:
    a = make_adapter(tmp_path, "a", rank=8)
    b = make_adapter(tmp_path, "b", rank=24, base="/models/qwen2.5-7b-instruct/")
    argv = build_serve_command(BASE, {"tuned": a, "tuned-b": b}, port=8000, api_key_env="VKEY")
    assert argv[:3] == ["vllm", "serve", BASE]
    assert argv[argv.index("--max-lora-rank") + 1] == "32"  # max rank 24, rounded up
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert "--enable-lora" in argv
    i = argv.index("--lora-modules")
    assert argv[i + 1 : i + 3] == [f"tuned={a}", f"tuned-b={b}"]
    assert argv[argv.index("--api-key") + 1] == "$VKEY"
    line = shell_command(argv)
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve ")
    assert '"$VKEY"' in line


def test_serve_command_checks(tmp_path: Path) -> None:
    good = make_adapter(tmp_path, "good", rank=64)
    with pytest.raises(AdapterFilesError, match="no such adapter folder") as info:
        build_serve_command(BASE, {"x": tmp_path / "missing"})
    assert info.value.field == "adapters.x"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterFilesError, match=r"adapter_config\.json"):
        build_serve_command(BASE, {"x": empty})
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "adapter_config.json").write_text('{"r": 8}')
    with pytest.raises(AdapterFilesError, match="weights"):
        build_serve_command(BASE, {"x": tmp_path / "noweights"})
    with pytest.raises(BaseModelMismatchError, match=r"meta-llama/Llama-3\.1-8B") as mismatch:
        build_serve_command("meta-llama/Llama-3.1-8B", {"good": good})
    assert mismatch.value.field == "adapters.good.base_model_name_or_path"
    with pytest.raises(AdapterRankError, match="rank 64 is above --max-lora-rank 16; use 64"):
        build_serve_command(BASE, {"good": good}, max_lora_rank=16)
    with pytest.raises(ConfigError, match="accepts only") as bad_max:
        build_serve_command(BASE, {"good": good}, max_lora_rank=48)
    assert bad_max.value.field == "max_lora_rank"
    with pytest.raises(ConfigError, match="letters, digits"):
        build_serve_command(BASE, {"bad name": good})
    # folders only on the vLLM host: no reading, but the rank must be given
    with pytest.raises(ConfigError, match="give max_lora_rank"):
        build_serve_command(BASE, {"remote": "/srv/a"}, check_files=False)
    argv = build_serve_command(BASE, {"remote": "/srv/a"}, check_files=False, max_lora_rank=64)
    assert "remote=/srv/a" in argv
    # every error is a BeliefAgentError
    assert issubclass(AdapterFilesError, BeliefAgentError)


def test_read_adapter_takes_the_largest_rank_pattern(tmp_path: Path) -> None:
    folder = make_adapter(tmp_path, "p", rank=8)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["rank_pattern"] = {"q_proj": 48}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    info = read_adapter(folder)
    assert info.rank == 48 and info.base_model == BASE and info.target_modules == ("q_proj",)


# ------------------------------------------------------------------------- runtime updating


class FakeVLLM:
    """vLLM's adapter endpoints as of its serving_models module (bodies and statuses)."""

    def __init__(self, *, runtime: bool = True, max_rank: int = 16, new_style: bool = False):
        self.runtime = runtime
        self.max_rank = max_rank
        self.new_style = new_style
        self.loras: dict[str, str] = {}
        self.calls: list[tuple[str, str, dict | None]] = []

    def error(self, status: int, message: str, kind: str) -> httpx.Response:
        if self.new_style:
            body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        else:
            body = {"object": "error", "message": message, "type": kind, "param": None,
                    "code": status}  # fmt: skip
        return httpx.Response(status, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content) if request.content else None
        self.calls.append((request.method, request.url.path, payload))
        path = request.url.path
        if path == "/v1/models":
            data = [{"id": BASE, "object": "model", "root": BASE, "parent": None}]
            data += [{"id": n, "object": "model", "root": p, "parent": BASE}
                     for n, p in self.loras.items()]  # fmt: skip
            return httpx.Response(200, json={"object": "list", "data": data})
        if not self.runtime:
            return httpx.Response(404, json={"detail": "Not Found"})
        assert payload is not None
        if path == "/v1/load_lora_adapter":
            name, lora_path = payload["lora_name"], payload["lora_path"]
            if name in self.loras:
                return self.error(
                    400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput"
                )
            config = Path(lora_path) / "adapter_config.json"
            if not config.is_file():
                return self.error(404, f"No adapter found for {lora_path}", "NotFoundError")
            rank = json.loads(config.read_text())["r"]
            if rank > self.max_rank:
                return self.error(
                    400,
                    f"LoRA rank {rank} is greater than max_lora_rank {self.max_rank}.",
                    "BadRequestError",
                )
            self.loras[name] = lora_path
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")
        if path == "/v1/unload_lora_adapter":
            name = payload["lora_name"]
            if name not in self.loras:
                return self.error(
                    404, f"The lora adapter '{name}' cannot be found.", "NotFoundError"
                )
            del self.loras[name]
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' removed successfully.")
        return httpx.Response(404, json={"detail": "Not Found"})


def manager(fake: FakeVLLM, **kwargs) -> VLLMAdapterManager:
    client = httpx.Client(transport=httpx.MockTransport(fake))
    return VLLMAdapterManager("http://vllm.invalid:8000/v1", client=client, **kwargs)


@pytest.mark.parametrize("new_style", [False, True])
def test_load_confirm_and_unload(tmp_path: Path, new_style: bool) -> None:
    fake = FakeVLLM(new_style=new_style)
    adapter = make_adapter(tmp_path, "v1", rank=16)
    with manager(fake, api_key="sk-v") as vllm:
        vllm.load("tuned", adapter)
        assert fake.loras == {"tuned": str(adapter)}
        assert "tuned" in vllm.model_ids()
        load = [c for c in fake.calls if c[1] == "/v1/load_lora_adapter"]
        assert load == [("POST", "/v1/load_lora_adapter",
                         {"lora_name": "tuned", "lora_path": str(adapter)})]  # fmt: skip
        # a hot swap: same name, new folder
        v2 = make_adapter(tmp_path, "v2", rank=8)
        vllm.load("tuned", v2, replace=True)
        assert fake.loras == {"tuned": str(v2)}
        vllm.unload("tuned")
        assert fake.loras == {}
        with pytest.raises(UnknownAdapterError, match="cannot be found") as info:
            vllm.unload("tuned")
        assert info.value.status_code == 404


def test_runtime_updating_disabled_says_how_to_enable_it(tmp_path: Path) -> None:
    fake = FakeVLLM(runtime=False)
    adapter = make_adapter(tmp_path, "a")
    with manager(fake) as vllm:
        with pytest.raises(RuntimeLoRAUpdatingDisabledError) as info:
            vllm.load("tuned", adapter)
        assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in str(info.value)
        assert info.value.status_code == 404
        with pytest.raises(RuntimeLoRAUpdatingDisabledError):
            vllm.unload("tuned")


@pytest.mark.parametrize("new_style", [False, True])
def test_rank_too_high_keeps_vllm_message(tmp_path: Path, new_style: bool) -> None:
    fake = FakeVLLM(max_rank=16, new_style=new_style)
    adapter = make_adapter(tmp_path, "big", rank=64)
    with manager(fake) as vllm, pytest.raises(LoRARankTooHighError) as info:
        vllm.load("big", adapter)
    message = str(info.value)
    assert "LoRA rank 64 is greater than max_lora_rank 16." in message
    assert "--max-lora-rank 64" in message
    assert info.value.status_code == 400 and isinstance(info.value, BackendError)
    # the same refusal, found locally when the server's maximum is known
    with manager(fake) as vllm, pytest.raises(AdapterRankError, match="max-lora-rank 16"):
        vllm.load("big", adapter, max_lora_rank=16)


def test_load_checks_files_and_base_model(tmp_path: Path) -> None:
    fake = FakeVLLM()
    with manager(fake) as vllm:
        with pytest.raises(AdapterFilesError):
            vllm.load("x", tmp_path / "missing")
        other = make_adapter(tmp_path, "other", base="meta-llama/Llama-3.1-8B-Instruct")
        with pytest.raises(BaseModelMismatchError, match=r"Llama-3\.1-8B"):
            vllm.load("x", other)
    assert not any(c[1] == "/v1/load_lora_adapter" for c in fake.calls)
    # paths that exist only on the vLLM host: the server's 404 is explained
    with manager(fake, check_files=False) as vllm, pytest.raises(AdapterLoadError) as info:
        vllm.load("x", "/srv/adapters/none")
    assert "must exist on the vLLM host" in str(info.value)


def test_already_loaded_and_server_errors(tmp_path: Path) -> None:
    fake = FakeVLLM()
    adapter = make_adapter(tmp_path, "a")
    with manager(fake) as vllm:
        vllm.load("a", adapter)
        with pytest.raises(AdapterLoadError, match="already been loaded"):
            vllm.load("a", adapter)

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="engine dead")

    client = httpx.Client(transport=httpx.MockTransport(broken))
    with VLLMAdapterManager("http://vllm.invalid/v1", client=client) as vllm:
        with pytest.raises(BackendError, match="engine dead") as info:
            vllm.models()
        assert info.value.retryable

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(unreachable))
    with (
        VLLMAdapterManager("http://vllm.invalid/v1", client=client) as vllm,
        pytest.raises(BackendConnectionError),
    ):
        vllm.models()


def test_listing_must_confirm_the_load(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path, "a")

    def forgetful(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": BASE, "parent": None}]})
        return httpx.Response(200, text="Success")

    client = httpx.Client(transport=httpx.MockTransport(forgetful))
    with (
        VLLMAdapterManager("http://vllm.invalid/v1", client=client) as vllm,
        pytest.raises(BackendError, match="does not list it"),
    ):
        vllm.load("a", adapter)


def test_manager_sends_the_api_key(tmp_path: Path) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"data": []})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    VLLMAdapterManager("http://v/v1", client=client, api_key="sk-v").models()
    assert seen == ["Bearer sk-v"]
    with pytest.raises(ConfigError):
        VLLMAdapterManager("v:8000")
