"""OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the server reports goes through :class:`APIError`; library errors are mapped at
the boundary by :func:`from_exception`:

=============================================  ======  =========================================
raised                                         status  ``type`` / ``code``
=============================================  ======  =========================================
:class:`~beliefagent.errors.ChoiceError`       400     invalid_request_error / invalid_choice
:class:`~beliefagent.errors.OptionError`       400     invalid_request_error / invalid_options
other :class:`~beliefagent.errors.InputError`  400     invalid_request_error / invalid_value
upstream 429                                   429     rate_limit_error / upstream_rate_limited
upstream timeout                               504     upstream_error / upstream_timeout
upstream unreachable                           502     upstream_error / upstream_unavailable
upstream 5xx, bad answer, 401/403              502     upstream_error / upstream_error
upstream other 4xx                             same    invalid_request_error / upstream_rejected
anything else                                  500     server_error / internal_error
=============================================  ======  =========================================

``param`` names the request field at fault (``beliefagent.options[1]``, ``model``) when known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    ChoiceError,
    InputError,
    OptionError,
)

__all__ = ["APIError", "error_body", "from_backend_error", "from_exception"]


class APIError(Exception):
    """An error to answer with: HTTP ``status`` and an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The error as a starlette response."""
        return JSONResponse(
            error_body(self.message, self.type, self.code, self.param),
            status_code=self.status,
            headers=self.headers,
        )


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _prefixed(field: str, prefix: str) -> str:
    return field if not prefix or field.startswith(prefix) else f"{prefix}{field}"


def from_exception(exc: BaseException, *, param_prefix: str = "") -> APIError:
    """Map a library error to an :class:`APIError`; ``param_prefix`` (e.g. ``"beliefagent."``)
    is put before the field an :class:`~beliefagent.errors.InputError` names."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InputError):
        code = (
            "invalid_choice"
            if isinstance(exc, ChoiceError)
            else "invalid_options"
            if isinstance(exc, OptionError)
            else "invalid_value"
        )
        field = _prefixed(exc.field, param_prefix)
        return APIError(400, f"{field}: {exc.reason} (got {exc.value!r})", code=code, param=field)
    if isinstance(exc, BackendError):
        return from_backend_error(exc)
    return APIError(500, "internal server error", type="server_error", code="internal_error")


def from_backend_error(exc: BackendError) -> APIError:
    """Map an upstream failure (see the module table)."""
    status = exc.status_code
    text = f"upstream: {exc}"
    if isinstance(exc, BackendTimeoutError):
        return APIError(504, text, type="upstream_error", code="upstream_timeout")
    if isinstance(exc, BackendConnectionError):
        return APIError(502, text, type="upstream_error", code="upstream_unavailable")
    if status == 429:
        headers = {}
        if exc.retry_after is not None and math.isfinite(exc.retry_after):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return APIError(
            429, text, type="rate_limit_error", code="upstream_rate_limited", headers=headers
        )
    if status is not None and 400 <= status < 500 and status not in (401, 403, 407):
        return APIError(status, text, code="upstream_rejected")
    return APIError(502, text, type="upstream_error", code="upstream_error")
