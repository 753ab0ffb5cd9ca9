"""ScriptedBackend: the test double users get for their own tests."""

from __future__ import annotations

import pytest

from beliefagent.adapters import Backend, GenerationSettings, Reply, ScriptedBackend
from beliefagent.errors import BackendTimeoutError, ConfigError, InputError

MESSAGES = [{"role": "user", "content": "Which flight?"}]


def test_function_of_messages():
    backend = ScriptedBackend(lambda messages: f"you said {messages[-1]['content']!r}")
    reply = backend.complete(MESSAGES, GenerationSettings())
    assert reply.text == "you said 'Which flight?'"
    assert reply.model == "scripted" and reply.finish_reason == "stop"
    assert reply.candidate_logprobs is None
    assert isinstance(backend, Backend)


def test_calls_are_recorded():
    backend = ScriptedBackend(lambda messages: "ok")
    settings = GenerationSettings(max_tokens=3)
    backend.complete(MESSAGES, settings)
    assert backend.calls == [(MESSAGES, settings)]


def test_full_reply_passes_through_with_scores():
    scripted = Reply(text="2", model="fake", candidate_logprobs={"1": -2.0, "2": -0.1})
    backend = ScriptedBackend(lambda messages: scripted)
    reply = backend.complete(MESSAGES, GenerationSettings(candidates=("1", "2")))
    assert reply.candidate_logprobs == {"1": -2.0, "2": -0.1}
    assert reply.model == "fake"


def test_stop_strings_cut_text_replies():
    backend = ScriptedBackend(lambda messages: "Flight 2.\nUser: thanks")
    reply = backend.complete(MESSAGES, GenerationSettings(stop=("\nUser:", ".")))
    assert reply.text == "Flight 2"


def test_from_replies_cycles():
    backend = ScriptedBackend.from_replies(["1", "2", "3"])
    texts = [backend.complete(MESSAGES, GenerationSettings()).text for _ in range(5)]
    assert texts == ["1", "2", "3", "1", "2"]


def test_from_replies_without_cycle_runs_out_clearly():
    backend = ScriptedBackend.from_replies(["1"], cycle=False)
    backend.complete(MESSAGES, GenerationSettings())
    with pytest.raises(ConfigError, match="all 1 scripted replies were used"):
        backend.complete(MESSAGES, GenerationSettings())


def test_from_replies_needs_replies():
    with pytest.raises(ConfigError) as info:
        ScriptedBackend.from_replies([])
    assert info.value.field == "replies"


def test_script_can_simulate_failures():
    def fail(messages):
        raise BackendTimeoutError("simulated", retryable=True)

    with pytest.raises(BackendTimeoutError):
        ScriptedBackend(fail).complete(MESSAGES, GenerationSettings())


def test_bad_reply_type_is_named():
    backend = ScriptedBackend(lambda messages: 42)
    with pytest.raises(ConfigError) as info:
        backend.complete(MESSAGES, GenerationSettings())
    assert info.value.field == "fn"


def test_messages_are_validated():
    backend = ScriptedBackend(lambda messages: "x")
    with pytest.raises(InputError) as info:
        backend.complete([{"role": "robot", "content": "hi"}], GenerationSettings())
    assert info.value.field == "messages[0].role"
