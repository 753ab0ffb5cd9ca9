"""The server's one JSON reader for request bodies, guarded as a whole.

``json.loads`` fails in more ways than ``JSONDecodeError``: a body of 50,000 nested ``[`` raises
``RecursionError``, an integer literal of more than 4,300 digits ``ValueError`` (CPython's
integer-string limit), a huge one ``MemoryError``, invalid UTF-8 ``UnicodeDecodeError``. Every
failure of the parse is the client's malformed body, so every one is a 400 ``invalid_json``
(never a 500 with a traceback), with the reason cut to a readable length.
"""

from __future__ import annotations

import json
from typing import Any

from beliefagent.errors import short_text
from beliefagent.server.http_errors import APIError

__all__ = ["parse_json", "parse_json_object"]


def parse_json(raw: bytes) -> Any:
    """The parsed body, or :class:`APIError` 400 ``invalid_json`` whatever made it fail."""
    try:
        return json.loads(raw)
    except RecursionError:
        reason = "nested too deeply"
    except Exception as exc:  # the parse as a whole: any failure is a malformed body
        reason = f"{type(exc).__name__}: {short_text(str(exc))}"
    raise APIError(400, f"request body is not valid JSON: {reason}", code="invalid_json")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """:func:`parse_json`, and the body must be a JSON object."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise APIError(
            400,
            f"request body must be a JSON object, got {type(body).__name__}",
            code="invalid_json",
        )
    return body
