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
Values quoted in messages are cut to 200 characters, with their length.

Upstream failures reach the client as a short message and a request id (also in the
``x-request-id`` header): never the upstream's URL nor its raw body. Those go to the server log,
on one line with the same request id.
"""

from __future__ import annotations

import logging
import math
import uuid
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
    short_repr,
    short_text,
)

__all__ = ["APIError", "error_body", "from_backend_error", "from_exception", "new_request_id"]

logger = logging.getLogger(__name__)


def new_request_id() -> str:
    """An id that ties a client-facing error to its line in the server log."""
    return f"req_{uuid.uuid4().hex[:20]}"


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
        message = f"{field}: {short_text(exc.reason)} (got {short_repr(exc.value)})"
        return APIError(400, message, code=code, param=field)
    if isinstance(exc, BackendError):
        return from_backend_error(exc)
    return APIError(500, "internal server error", type="server_error", code="internal_error")


def from_backend_error(exc: BackendError, *, request_id: str | None = None) -> APIError:
    """Map an upstream failure (see the module table): the client gets a short message and
    ``request_id``; the full error (upstream URL, body) is logged with the same id."""
    rid = request_id or new_request_id()
    body = f"; body: {short_text(exc.body)}" if exc.body else ""
    logger.warning("upstream failure, request id %s: %s%s", rid, short_text(str(exc), 500), body)
    status = exc.status_code
    headers = {"x-request-id": rid}
    see = f" (request id {rid})"
    if isinstance(exc, BackendTimeoutError):
        return APIError(504, "upstream: no answer in time" + see, type="upstream_error",
                        code="upstream_timeout", headers=headers)  # fmt: skip
    if isinstance(exc, BackendConnectionError):
        return APIError(502, "upstream: unavailable" + see, type="upstream_error",
                        code="upstream_unavailable", headers=headers)  # fmt: skip
    if status == 429:
        if exc.retry_after is not None and math.isfinite(exc.retry_after):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return APIError(
            429, "upstream: rate limited" + see, type="rate_limit_error",
            code="upstream_rate_limited", headers=headers,
        )  # fmt: skip
    if status is not None and 400 <= status < 500 and status not in (401, 403, 407):
        # the upstream's verdict on the client's own request: its message, without the body
        reason = short_text(str(exc).removeprefix(f"HTTP {status}: "))
        return APIError(status, f"upstream rejected the request: {reason}{see}",
                        code="upstream_rejected", headers=headers)  # fmt: skip
    shown = f" (HTTP {status})" if status is not None else ""
    return APIError(502, f"upstream: failed{shown}{see}", type="upstream_error",
                    code="upstream_error", headers=headers)  # fmt: skip
