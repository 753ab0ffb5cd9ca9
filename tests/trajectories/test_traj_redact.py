"""Secret scrubbing: keys and authorization material never survive, ordinary text does."""

from __future__ import annotations

import pytest

from beliefagent.trajectories import REDACTED, is_secret_key, redact, redact_text

SK_KEY = "sk-proj-Abc123Def456Ghi789Jkl012"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"use key {SK_KEY} please", SK_KEY),
        ("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAA"),
        (f"Authorization: Bearer {BEARER}", BEARER),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", "dXNlcjpwYXNzd29yZA=="),
        ("header bearer tok_9f8e7d6c5b4a", "tok_9f8e7d6c5b4a"),
        ("x-api-key: abcdef123456", "abcdef123456"),
        ('{"api-key": "azure-secret-value"}', "azure-secret-value"),
        ("https://host/v1?api_key=qwerty987&model=x", "qwerty987"),
        ("OPENAI_API_KEY=whatever-it-is", "whatever-it-is"),
        ("password: hunter2", "hunter2"),
        ("proxy https://alice:s3cret@proxy.local:8080/", "s3cret"),
        ("hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"),
        ("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"),
        ("AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
        ("AUTHORIZATION: Token 9f8e7d6c", "9f8e7d6c"),
        ("Cookie: session=abc123def", "abc123def"),
        ("client_secret=s3cr3t-v4lue", "s3cr3t-v4lue"),
    ],
)
def test_secrets_in_text_are_scrubbed(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert REDACTED in out
    assert redact_text(out) == out  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "Flight 2: $450, direct, 5h. I'd pick the task-scheduler friendly one.",
        "The bearer of this ticket may board first.",
        "We count prompt_tokens: 120 and max_tokens=256.",
        "Please keep your password safe.",
        "sk-learn is a library",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact_text(text) == text


def test_nested_structures_are_scrubbed_by_key_and_pattern() -> None:
    data = {
        "api_key": "plain-value",
        "headers": {"Authorization": "Bearer abc", "X-API-Key": "k1", "Accept": "json"},
        "messages": [{"role": "user", "content": f"my key is {SK_KEY}"}],
        "OpenAI-Api-Key": "v",
        "hf_token": "t",
        "token": None,
        "password": 1234,
        "max_tokens": 256,
        "prompt_tokens": 10,
        "eos_token": "</s>",
        "pair": ("Bearer 0123456789abcdef", 3),
    }
    out = redact(data)
    assert out == {
        "api_key": REDACTED,
        "headers": {"Authorization": REDACTED, "X-API-Key": REDACTED, "Accept": "json"},
        "messages": [{"role": "user", "content": f"my key is {REDACTED}"}],
        "OpenAI-Api-Key": REDACTED,
        "hf_token": REDACTED,
        "token": None,
        "password": REDACTED,
        "max_tokens": 256,
        "prompt_tokens": 10,
        "eos_token": "</s>",
        "pair": (f"Bearer {REDACTED}", 3),
    }
    assert data["api_key"] == "plain-value"  # the input is not modified


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("API-KEY", True),
        ("x-api-key", True),
        ("authorization", True),
        ("client_secret", True),
        ("access_token", True),
        ("token", True),
        ("max_tokens", False),
        ("completion_tokens", False),
        ("pad_token", False),
        ("policy", False),
    ],
)
def test_is_secret_key(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def test_long_text_is_linear() -> None:
    text = "a-" * 50_000 + "api_key=zzz"
    assert redact_text(text).endswith(f"api_key={REDACTED}")
