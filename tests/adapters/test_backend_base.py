"""The protocol's value types: GenerationSettings validation, messages, WrapperBackend."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from beliefagent.adapters import (
    Backend,
    GenerationSettings,
    Reply,
    ScriptedBackend,
    WrapperBackend,
    validate_messages,
)
from beliefagent.errors import ConfigError, InputError


def test_defaults():
    s = GenerationSettings()
    assert (s.max_tokens, s.temperature, s.seed, s.stop, s.timeout_s, s.candidates) == (
        32,
        0.0,
        None,
        (),
        60.0,
        (),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_tokens = 5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "0"}, "temperature"),
        ({"seed": 1.5}, "seed"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -3}, "timeout_s"),
        ({"stop": ["\n"]}, "stop"),
        ({"stop": ("",)}, "stop[0]"),
        ({"candidates": ("1", 2)}, "candidates[1]"),
        ({"candidates": ("1", "1")}, "candidates"),
        ({"answer_prefix": None}, "answer_prefix"),
    ],
)
def test_bad_settings_name_field_and_value(kwargs, field):
    with pytest.raises(ConfigError) as info:
        GenerationSettings(**kwargs)
    assert info.value.field == field
    assert field.split("[")[0] in str(info.value)


def test_validate_messages_copies_and_checks():
    original = [{"role": "user", "content": "hi", "name": "ann"}]
    checked = validate_messages(original)
    assert checked == [{"role": "user", "content": "hi"}]
    assert checked[0] is not original[0]


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages"),
        ("hello", "messages"),
        (["hello"], "messages[0]"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": "a"}, {"content": "b"}], "messages[1].role"),
    ],
)
def test_bad_messages_name_the_field(messages, field):
    with pytest.raises(InputError) as info:
        validate_messages(messages)
    assert info.value.field == field


def test_wrapper_backend_delegates():
    class Upper(WrapperBackend):
        def complete(self, messages, settings):
            reply = self.inner.complete(messages, settings)
            return dataclasses.replace(reply, text=reply.text.upper())

    backend = Upper(ScriptedBackend(lambda m: "flight 1", name="s", model="m"))
    assert isinstance(backend, Backend)
    assert backend.complete([{"role": "user", "content": "?"}], GenerationSettings()).text == (
        "FLIGHT 1"
    )
    assert (backend.name, backend.model, backend.adapter) == ("s", "m", None)


def test_reply_defaults():
    reply = Reply(text="x", model="m")
    assert reply.candidate_logprobs is None and reply.latency_s == 0.0


def test_import_needs_no_optional_dependencies():
    code = (
        "import sys, beliefagent.adapters\n"
        "heavy = {'torch', 'transformers', 'openai', 'peft'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
