"""``beliefagent serve``: build the model routes from command-line options and run uvicorn.

The CLI registers it with ``app.command("serve")(serve_command)``. Importing this module needs
only typer: starlette, uvicorn, openai and torch are imported when the command runs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from beliefagent.errors import ConfigError

if TYPE_CHECKING:
    from beliefagent.server.upstream import ModelRegistry

__all__ = ["build_registry", "serve_command", "worker_app"]

logger = logging.getLogger(__name__)


def build_registry(
    *,
    upstream: str | None,
    upstream_model: str | None,
    upstream_key_env: str | None,
    tuned: list[str],
    model_path: Path | None,
    adapter: Path | None,
    adapter_name: str | None,
    canary: str | None,
    canary_seed: int,
    timeout_s: float,
    retries: int,
    local_max_tokens: int,
) -> ModelRegistry:
    """The routes ``serve`` exposes: the base model first, then the tuned ones."""
    from beliefagent.server.upstream import (
        Canary,
        HTTPUpstream,
        LocalUpstream,
        ModelRegistry,
        ModelRoute,
    )

    routes: list[ModelRoute] = []
    if upstream is not None:
        if adapter is not None or model_path is not None:
            raise ConfigError(
                "--adapter and --model-path are for --local; an upstream serves its adapters by"
                " name (--tuned NAME)",
                field="adapter" if adapter is not None else "model_path",
                value=str(adapter or model_path),
            )
        if not upstream_model:
            raise ConfigError(
                "--upstream needs --upstream-model (the base model's name there)",
                field="upstream_model",
                value=None,
            )
        key = os.environ.get(upstream_key_env) if upstream_key_env else None
        http = HTTPUpstream(upstream, api_key=key, timeout_s=timeout_s)
        routes.append(
            ModelRoute(upstream_model, http, http.backend(upstream_model, retries=retries))
        )
        for name in tuned:
            backend = http.backend(upstream_model, adapter=name, retries=retries)
            routes.append(ModelRoute(name, http, backend, parent=upstream_model))
    else:
        if tuned:
            raise ConfigError(
                "--tuned names adapters an upstream serves; with the local model use --adapter",
                field="tuned",
                value=tuned,
            )
        from beliefagent.adapters.local import LocalBackend

        local = LocalUpstream(default_max_tokens=local_max_tokens)
        base = LocalBackend(model_path)
        routes.append(ModelRoute(_model_name(base.model), local, base))
        if adapter is not None:
            tuned_backend = LocalBackend(model_path, adapter_path=adapter)
            name = adapter_name or adapter.expanduser().resolve().name
            routes.append(ModelRoute(name, local, tuned_backend, parent=routes[0].name))
    return ModelRegistry(
        routes, canary=Canary.parse(canary, canary_seed) if canary is not None else None
    )


def _secret_from_env(name: str | None) -> bytes | None:
    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"${name} is unset or empty", field="client_id_secret_env", value=name)
    return value.encode()


def _model_name(model: str) -> str:
    path = Path(model)
    return path.name if path.exists() else model


def serve_command(
    upstream: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL to front, e.g. http://localhost:8000/v1."),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="The base model's name at the upstream.")
    ] = None,
    upstream_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the upstream's API key.")
    ] = "OPENAI_API_KEY",
    tuned: Annotated[
        list[str] | None,
        typer.Option(help="A tuned model the upstream serves (a vLLM LoRA name); repeatable."),
    ] = None,
    local: Annotated[
        bool,
        typer.Option("--local", help="Serve the local model (the default without --upstream)."),
    ] = False,
    model_path: Annotated[
        Path | None, typer.Option(help="Local model folder or .gguf (default: bundled SmolLM2).")
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="LoRA adapter folder served as a tuned local model.")
    ] = None,
    adapter_name: Annotated[
        str | None, typer.Option(help="Model name of the --adapter (default: its folder name).")
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(help="NAME:SHARE — send SHARE of base-model sessions to tuned model NAME."),
    ] = None,
    canary_seed: Annotated[int, typer.Option(help="Seed of the sticky canary split.")] = 0,
    domain: Annotated[
        str, typer.Option("--domain", "-d", help="Domain of sessions that name none.")
    ] = "flight",
    policy: Annotated[
        str, typer.Option(help="Default policy: llm | bayes | hint | guard.")
    ] = "llm",
    log: Annotated[Path | None, typer.Option(help="Trajectory log (JSONL) for sessions.")] = None,
    log_fsync: Annotated[
        bool, typer.Option(help="fsync every log record (off: faster, survives crashes only).")
    ] = True,
    log_fsync_interval: Annotated[
        float,
        typer.Option(
            help="Group commit: fsync the log at most every N seconds instead of per record "
            "(a killed server loses nothing; a power loss, the last N seconds). 0 = per record."
        ),
    ] = 0.0,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable with the accepted API key(s), comma-separated."),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 above).")] = (
        1_000_000
    ),
    rate_limit: Annotated[
        float, typer.Option(help="Requests per second per client (0: unlimited).")
    ] = 0.0,
    burst: Annotated[int, typer.Option(help="Requests a client may send at once.")] = 20,
    session_ttl: Annotated[float, typer.Option(help="Seconds before idle sessions close.")] = (
        3600.0
    ),
    max_sessions: Annotated[int, typer.Option(help="Open sessions at most.")] = 10_000,
    max_session_memory: Annotated[
        float,
        typer.Option(
            help="MiB the open sessions' own state may hold (503 for a session beyond it;"
            " 0: no budget). A flight session takes about 0.07 MiB, a flight8 one 3.1 MiB."
        ),
    ] = 0.0,
    client_id_secret_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable with the secret keying client ids (HMAC of the API"
            " key); unset: random per process."
        ),
    ] = None,
    auth_failures_per_minute: Annotated[
        float, typer.Option(help="Failed authentications allowed per client address a minute.")
    ] = 10.0,
    session_max_tokens: Annotated[
        int, typer.Option(help="Token budget of a session's answer.")
    ] = 24,
    upstream_errors: Annotated[
        str,
        typer.Option(
            help="error: fail the request on upstream failure; fallback: let the policy"
            " fall back to the teacher."
        ),
    ] = "error",
    upstream_timeout: Annotated[float, typer.Option(help="Seconds to wait for the upstream.")] = (
        60.0
    ),
    upstream_retries: Annotated[
        int, typer.Option(help="Retries of transient upstream failures in sessions.")
    ] = 2,
    local_max_tokens: Annotated[
        int, typer.Option(help="Default max_tokens of pass-through local chats.")
    ] = 128,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
    session_store: Annotated[
        str | None,
        typer.Option(
            help="Where sessions live: memory | sqlite:///PATH | redis://HOST:PORT/DB. Default:"
            " SQLite next to --log (<log>.sessions.sqlite), else memory."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Server processes (more than 1 needs --session-store redis://).")
    ] = 1,
    metrics_public: Annotated[
        bool, typer.Option(help="Serve /metrics without the API's auth (for a scraper).")
    ] = False,
) -> None:
    """Serve an OpenAI-compatible endpoint with belief sessions in front of an upstream."""
    args = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items()}
    import uvicorn

    from beliefagent.server.graceful import DrainingServer

    if upstream is not None and local:
        raise ConfigError("give --upstream or --local, not both", field="local", value=True)
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            "must be debug, info, warning or error", field="log_level", value=log_level
        )
    if workers < 1:
        raise ConfigError("must be >= 1", field="workers", value=workers)
    _configure_logging(level)
    if workers > 1:
        if session_store is None or not session_store.startswith(("redis://", "rediss://")):
            raise ConfigError(
                "--workers above 1 needs a store the processes share: --session-store"
                " redis://HOST:PORT/DB",
                field="session_store",
                value=session_store,
            )
        os.environ[_ARGS_ENV] = json.dumps(args)
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level.lower(),
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
        return
    app = _build_app(args)
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
    )
    server.run()


_ARGS_ENV = "BELIEFAGENT_SERVE_ARGS"


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # the CLI may have configured logging already


def worker_app() -> Any:
    """The app of one ``--workers`` process (uvicorn's factory; the options come from the
    parent through the environment)."""
    args = json.loads(os.environ[_ARGS_ENV])
    _configure_logging(str(args["log_level"]).upper())
    return _build_app(args)


def _build_app(args: dict[str, Any]) -> Any:
    """The app ``serve`` runs, from its options (``args``: the command's parameters)."""
    from beliefagent.server.app import ServerConfig, create_app
    from beliefagent.server.limits import keys_from_env
    from beliefagent.server.store import open_store
    from beliefagent.trajectories import TrajectoryWriter

    def path(name: str) -> Path | None:
        value = args[name]
        return Path(value) if value is not None else None

    log = path("log")
    config = ServerConfig(
        api_keys=tuple(keys_from_env(args["api_key_env"])),
        max_body_bytes=args["max_body_bytes"],
        rate_limit=args["rate_limit"],
        burst=args["burst"],
        default_domain=args["domain"],
        default_policy=args["policy"],
        session_ttl_s=args["session_ttl"],
        max_sessions=args["max_sessions"],
        session_max_tokens=args["session_max_tokens"],
        session_timeout_s=args["upstream_timeout"],
        upstream_errors=args["upstream_errors"],
        metrics_public=args["metrics_public"],
        max_session_memory=int(args["max_session_memory"] * 2**20),
        client_id_secret=_secret_from_env(args["client_id_secret_env"]),
        auth_failures_per_minute=args["auth_failures_per_minute"],
    )
    registry = build_registry(
        upstream=args["upstream"],
        upstream_model=args["upstream_model"],
        upstream_key_env=args["upstream_key_env"],
        tuned=list(args["tuned"] or []),
        model_path=path("model_path"),
        adapter=path("adapter"),
        adapter_name=args["adapter_name"],
        canary=args["canary"],
        canary_seed=args["canary_seed"],
        timeout_s=args["upstream_timeout"],
        retries=args["upstream_retries"],
        local_max_tokens=args["local_max_tokens"],
    )
    store = open_store(args["session_store"], log)
    writer = (
        TrajectoryWriter(log, fsync=args["log_fsync"], fsync_interval=args["log_fsync_interval"])
        if log is not None
        else None
    )
    return create_app(registry, config, log=writer, store=store)
