"""Assistant specs: one table of cases, parsed and rejected."""

from __future__ import annotations

import pytest

from beliefagent.errors import ConfigError
from beliefagent.eval.assistants import parse_assistant

CASES = [
    ("bayes", "bayes", None, None, None, "llm"),
    ("random", "random", None, None, None, "llm"),
    ("oracle", "oracle", None, None, None, "llm"),
    ("local", "local", None, None, None, "llm"),
    ("local#guard", "local", None, None, None, "guard"),
    ("local+lora:/tmp/adapter", "local", None, None, "/tmp/adapter", "llm"),
    ("local+lora:/tmp/a#hint", "local", None, None, "/tmp/a", "hint"),
    ("openai:gpt-4.1-mini", "openai", "gpt-4.1-mini", None, None, "llm"),
    (
        "openai:m@http://127.0.0.1:8000/v1",
        "openai",
        "m",
        "http://127.0.0.1:8000/v1",
        None,
        "llm",
    ),
    (
        "vllm:bayes-lora@http://gpu:8000/v1#guard",
        "vllm",
        "bayes-lora",
        "http://gpu:8000/v1",
        "bayes-lora",
        "guard",
    ),
]


@pytest.mark.parametrize(("spec", "kind", "model", "url", "adapter", "policy"), CASES)
def test_parse(
    spec: str, kind: str, model: str | None, url: str | None, adapter: str | None, policy: str
) -> None:
    parsed = parse_assistant(spec)
    assert parsed.name == spec
    assert (parsed.kind, parsed.model, parsed.base_url, parsed.adapter, parsed.policy) == (
        kind,
        model,
        url,
        adapter,
        policy,
    )


@pytest.mark.parametrize(
    "spec", ["", "gpt", "bayes#guard", "local#nonsense", "vllm:adapter", "openai:", "local+lora:"]
)
def test_rejected_with_the_field_named(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_assistant(spec)
    assert info.value.field == "assistant"


def test_custom_names() -> None:
    parsed = parse_assistant("mine#bayes", custom=("mine",))
    assert parsed.kind == "custom" and parsed.policy == "bayes" and not parsed.asks_llm
