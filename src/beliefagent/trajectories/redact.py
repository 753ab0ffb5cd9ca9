"""Scrub secrets (API keys, authorization material, passwords) before anything reaches a log.

Two mechanisms, both applied by :func:`redact` to arbitrarily nested dicts, lists and strings:

* **By key.** A mapping entry whose key names a secret (``api_key``, ``Authorization``,
  ``x-api-key``, ``password``, ``token``, ``openai_api_key``, ``hf_token``, ``cookie`` …) has its
  value replaced by :data:`REDACTED`, whatever the value is (``None`` stays ``None``). Keys are
  compared case-insensitively with ``-`` read as ``_``. Counters such as ``max_tokens`` or
  ``prompt_tokens`` and tokenizer settings such as ``eos_token`` are not secrets and are kept.
* **By pattern, inside any string.** ``sk-…`` style keys, ``Bearer <token>``, header or
  assignment values (``Authorization: …``, ``api-key=…``, ``"x-api-key": "…"``,
  ``password: …``), credentials in URLs (``https://user:pass@host``), and a few unmistakable
  provider prefixes (GitHub ``ghp_``, Hugging Face ``hf_``, Google ``AIza``, AWS ``AKIA``, Slack
  ``xox?-``, JWTs).

The scrubbing is deliberately conservative about prose: a bare word such as "token" or "password"
in a sentence is left alone; only a value attached to it with ``:`` or ``=`` is removed.
Personal data in free text is out of scope here.

>>> redact({"headers": {"Authorization": "Bearer abc"}, "prompt": "key sk-0123456789abcdefXYZ"})
{'headers': {'Authorization': '[REDACTED]'}, 'prompt': 'key [REDACTED]'}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, TypeVar, cast

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text"]

REDACTED = "[REDACTED]"
"""What a scrubbed secret is replaced with."""

_T = TypeVar("_T")

# Names that hold a secret, after lower-casing and mapping "-" to "_". In dict keys, the optional
# prefix (bounded, so matching stays linear) catches "openai_api_key", "x_api_key",
# "proxy_authorization".
_SECRET_NAME = (
    r"(?:api_?key|access_?key|secret_?key|private_?key|client_?secret|secret|password|passwd"
    r"|authorization|credentials?|cookie"
    r"|(?:access|refresh|auth|id|session|bearer|api|hf|github|slack)_?token)"
)
_SECRET_KEY_RE = re.compile(rf"(?:[a-z0-9_]{{0,40}}_)?{_SECRET_NAME}|token|set_cookie")

# The same names inside text, where "-" and "_" are both common ("x-api-key", "api_key").
_TEXT_NAME = _SECRET_NAME.replace("_", "[-_]")

_TEXT_RE = re.compile(
    # key: value / key=value / "key": "value", the value possibly an auth scheme plus credential
    # (no word boundary before the name, so "OPENAI_API_KEY=" and "x-api-key:" match on their
    # tail; the key text itself is kept)
    rf"(?P<key>{_TEXT_NAME})\b(?P<sep>[\"']?[ \t]*[:=][ \t]*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'"
    r"|(?:(?:bearer|basic|token|digest)[ \t]+)?[^\s\"',;&}]+)"
    # Authorization scheme with its credential anywhere in text
    r"|(?P<scheme>\bbearer)[ \t]+(?P<token>[A-Za-z0-9\-._~+/]{8,}=*)"
    # provider key formats
    r"|\bsk-[A-Za-z0-9_\-]{16,}"
    r"|\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"
    r"|\bhf_[A-Za-z0-9]{20,}"
    r"|\bAIza[0-9A-Za-z_\-]{35}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    # user:password@ in a URL
    r"|(?P<scheme_sep>://)[^/\s:@]+:[^/\s@]+@",
    re.IGNORECASE,
)


# Every alternative of _TEXT_RE contains one of these (lower-cased). Most strings contain none,
# and ``in`` is far cheaper than running the regex over a long prompt. Keep the two in sync.
_TRIGGERS = (
    "key", "secret", "passw", "authoriz", "credential", "cookie", "token", "bearer", "sk-",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "hf_", "aiza", "akia", "asia", "xox",
    "eyj", "://",
)  # fmt: skip


def _looks_like_token(text: str) -> bool:
    """Whether the word after "Bearer" is a credential, not prose ("bearer authentication")."""
    return len(text) >= 20 or any(ch.isdigit() or ch in "-._~+/=" for ch in text)


def _replace(match: re.Match[str]) -> str:
    if match.group("key") is not None:
        value = match.group("value")
        quote = value[0] if value[:1] in {'"', "'"} else ""
        return f"{match.group('key')}{match.group('sep')}{quote}{REDACTED}{quote}"
    if match.group("scheme") is not None:
        if not _looks_like_token(match.group("token")):
            return match.group(0)
        return f"{match.group('scheme')} {REDACTED}"
    if match.group("scheme_sep") is not None:
        return f"://{REDACTED}@"
    return REDACTED


@functools.lru_cache(maxsize=8192)
def redact_text(text: str) -> str:
    """Return ``text`` with every recognised secret replaced by :data:`REDACTED`.

    Cached: a dialogue's prompt repeats its whole history every turn, so most strings a log
    sees have been scrubbed before."""
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    return _TEXT_RE.sub(_replace, text)


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (``"api_key"``, ``"X-API-Key"``, ``"hf_token"``)."""
    return _SECRET_KEY_RE.fullmatch(name.lower().replace("-", "_")) is not None


_PLAIN = frozenset({int, float, bool, type(None)})


def redact(value: _T) -> _T:
    """Return a copy of ``value`` with secrets scrubbed, recursing into mappings (returned as
    dicts), lists and tuples; strings are scrubbed with :func:`redact_text`; anything else is
    returned unchanged."""
    kind = type(value)
    result: Any
    if kind is str:
        result = redact_text(cast(str, value))
    elif kind in _PLAIN:
        result = value
    elif isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if item is not None and isinstance(key, str) and is_secret_key(key):
                result[key] = REDACTED
            elif type(item) is str:  # inlined: most values are strings or numbers
                result[key] = redact_text(item)
            elif type(item) in _PLAIN:
                result[key] = item
            else:
                result[key] = redact(item)
    elif isinstance(value, list):
        if all(type(item) in _PLAIN for item in value):
            result = list(value)
        else:
            result = [redact_text(item) if type(item) is str else redact(item) for item in value]
    elif isinstance(value, tuple):
        result = tuple(redact(item) for item in value)
    elif isinstance(value, str):  # a str subclass
        result = redact_text(value)
    else:
        result = value
    return cast(_T, result)
