"""A backend for any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, ...).

It uses the official ``openai`` client (an optional dependency, imported when the backend is
built), constructed with ``max_retries=0``: retrying is the job of
:class:`~beliefagent.adapters.retry.RetryingBackend`. A user's own, already configured
``openai.OpenAI`` client is accepted as is.

Both current majors of the client are supported. openai 1.x and 2.x are built on ``httpx``;
openai 3.x on ``httpx2`` (the same API under another name). An ``http_client`` passed in must be
a ``Client`` of the module the installed openai is built on — :func:`openai_http_module` names
it, and :func:`openai_http_client` builds one — anything else is a :class:`ConfigError` naming
``http_client`` (rather than a failure at the first request).

Errors are mapped at the boundary (``raise ... from exc``):

=============================  =================================================================
``openai.APIStatusError``      :class:`BackendError` with ``status_code``, ``body``,
                               ``retryable`` (408, 409, 429, 5xx) and ``retry_after`` (seconds,
                               from ``Retry-After`` / ``retry-after-ms``)
``openai.APITimeoutError``     :class:`BackendTimeoutError` (retryable)
``openai.APIConnectionError``  :class:`BackendConnectionError` (retryable)
bad JSON, no ``choices``,      :class:`BackendResponseError` (not retryable)
no message content
=============================  =================================================================

Label scoring: when ``settings.candidates`` is set, the request asks for ``logprobs=True,
top_logprobs=20``. The scores are read at the first generated token whose text, stripped of
whitespace, is one of the candidates (e.g. the ``" 2"`` after ``"Flight"``) — the first one
after ``settings.answer_prefix`` when the reply contains that prefix, so that "Flight 1 is
cheap, but the best option is Flight 2" is read at the 2. Each candidate gets
the log of the summed probability of the top-logprob tokens that strip to it (``"2"`` and
``" 2"`` both count), and ``-inf`` when none of the top tokens is that candidate. Candidates are
therefore expected to be single tokens (option labels). When the server returns no logprobs, or
no generated token is a candidate, ``candidate_logprobs`` is ``None`` and the caller parses the
text.

The API key is passed to the client and never stored on the backend, logged, or shown in its
``repr``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from beliefagent.adapters.base import GenerationSettings, Message, Reply, validate_messages
from beliefagent.errors import (
    BackendConnectionError,
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)

if TYPE_CHECKING:
    import openai

__all__ = [
    "OpenAICompatibleBackend",
    "candidate_logprobs_from_tokens",
    "is_retryable_status",
    "openai_http_client",
    "openai_http_module",
    "openai_major",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

_BODY_LIMIT = 4000
_NO_KEY_PLACEHOLDER = "EMPTY"  # what vLLM and most local servers accept when no key is set
_OPENAI_VERY_UNLIKELY = -9999.0  # OpenAI's stand-in logprob for "far below the top tokens"


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ConfigError(
            "the OpenAI-compatible backend needs the openai package:"
            " pip install 'beliefagent[openai]'",
            field="backend",
            value="openai",
        ) from exc
    return openai


def openai_major(openai: Any = None) -> int:
    """The major version of the installed ``openai`` package (1, 2, 3, ...)."""
    module = openai if openai is not None else _import_openai()
    head = str(getattr(module, "__version__", "0")).split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def openai_http_module(openai: Any = None) -> Any:
    """The HTTP library the installed ``openai`` is built on: ``httpx2`` for openai 3.x,
    ``httpx`` before. Its ``Client``, ``MockTransport``, ``Response`` and exceptions are what an
    ``http_client`` for :class:`OpenAICompatibleBackend` is made of."""
    if openai_major(openai) >= 3:
        import httpx2

        return httpx2
    import httpx

    return httpx


def openai_http_client(**kwargs: Any) -> Any:
    """An ``httpx2.Client`` (openai 3.x) or ``httpx.Client`` (openai 1.x, 2.x) built with
    ``kwargs`` (``transport=``, ``proxy=``, ``timeout=``, ...), ready to pass as
    ``http_client``."""
    return openai_http_module().Client(**kwargs)


def _check_http_client(http_client: Any, openai: Any) -> None:
    module = openai_http_module(openai)
    if not isinstance(http_client, module.Client):
        kind = f"{type(http_client).__module__}.{type(http_client).__qualname__}"
        raise ConfigError(
            f"openai {openai.__version__} needs a {module.__name__}.Client, got {kind}"
            " (beliefagent.adapters.openai_compat.openai_http_client builds a matching one)",
            field="http_client",
            value=kind,
        )


class OpenAICompatibleBackend:
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    Args:
        model: the model name sent in each request.
        base_url: the endpoint, e.g. ``"http://localhost:8000/v1"`` for vLLM; ``None`` for
            OpenAI itself (or ``$OPENAI_BASE_URL``).
        api_key: the key; ``None`` reads ``$<api_key_env>``. Without a key, a ``base_url``
            endpoint gets the placeholder ``"EMPTY"``; OpenAI itself raises :class:`ConfigError`.
        api_key_env: the environment variable holding the key.
        client: an already configured ``openai.OpenAI`` client, used as is (its own retry and
            timeout settings apply); excludes ``base_url``, ``api_key`` and ``http_client``.
        http_client: an ``httpx2.Client`` (openai 3.x) or ``httpx.Client`` (openai 1.x and
            2.x) for the openai client to use (proxies, custom transports, ``MockTransport`` in
            tests); see :func:`openai_http_client`.
        timeout_s: the client's default timeout; each request uses ``settings.timeout_s``.
        name: label for logs and reports.
        adapter: a LoRA adapter served by the endpoint (vLLM ``--lora-modules NAME=PATH``):
            requests then address ``model=adapter``, as vLLM expects.
        top_logprobs: how many alternatives to ask for when scoring candidates (OpenAI and vLLM
            allow up to 20 by default).
        request_logprobs: set ``False`` for endpoints that reject ``logprobs`` (scores are then
            always ``None``).
        max_tokens_param: ``"max_tokens"`` (widest support) or ``"max_completion_tokens"``
            (required by some newer OpenAI models).
        extra_body: extra JSON fields sent with every request (e.g. vLLM sampling options).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        client: openai.OpenAI | None = None,
        http_client: Any = None,
        timeout_s: float = 60.0,
        *,
        name: str = "openai",
        adapter: str | None = None,
        top_logprobs: int = 20,
        request_logprobs: bool = True,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError("must be a non-empty string", field="model", value=model)
        if not isinstance(top_logprobs, int) or not 1 <= top_logprobs <= 20:
            raise ConfigError("must be an int in 1..20", field="top_logprobs", value=top_logprobs)
        if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError(
                "must be 'max_tokens' or 'max_completion_tokens'",
                field="max_tokens_param",
                value=max_tokens_param,
            )
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise ConfigError("must be a number > 0", field="timeout_s", value=timeout_s)
        self._openai = _import_openai()
        from openai.types.chat import ChatCompletion

        self._completion_type = ChatCompletion
        self.name = name
        self.model = model
        self.adapter = adapter
        self.top_logprobs = top_logprobs
        self.request_logprobs = request_logprobs
        self.max_tokens_param = max_tokens_param
        self.extra_body = dict(extra_body) if extra_body else None
        if client is not None:
            given = [k for k, v in (("base_url", base_url), ("api_key", api_key)) if v]
            if http_client is not None:
                given.append("http_client")
            if given:
                raise ConfigError(
                    "pass either a ready client or base_url/api_key/http_client, not both",
                    field=given[0],
                    value="<set>",
                )
            self._client = client
            self._owns_client = False
        else:
            if http_client is not None:
                _check_http_client(http_client, self._openai)
            key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
            if not key:
                if base_url is None and not os.environ.get("OPENAI_BASE_URL"):
                    raise ConfigError(
                        f"no API key: pass api_key= or set ${api_key_env}",
                        field="api_key",
                        value=None,
                    )
                key = _NO_KEY_PLACEHOLDER
            self._client = self._openai.OpenAI(
                api_key=key,
                base_url=base_url,
                timeout=float(timeout_s),
                max_retries=0,
                http_client=http_client,
            )
            self._owns_client = True
        self.base_url = str(self._client.base_url)

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """One chat completion; see the module docstring for scoring and error mapping."""
        request: dict[str, Any] = {
            "model": self.adapter or self.model,
            "messages": validate_messages(messages),
            self.max_tokens_param: settings.max_tokens,
            "temperature": settings.temperature,
            "timeout": settings.timeout_s,
        }
        if settings.seed is not None:
            request["seed"] = settings.seed
        if settings.stop:
            request["stop"] = list(settings.stop)
        scoring = bool(settings.candidates) and self.request_logprobs
        if scoring:
            request["logprobs"] = True
            request["top_logprobs"] = self.top_logprobs
        if self.extra_body:
            request["extra_body"] = dict(self.extra_body)
        start = time.perf_counter()
        completion = self._create(request, settings.timeout_s)
        latency = time.perf_counter() - start
        return self._to_reply(
            completion, settings.candidates if scoring else (), settings.answer_prefix, latency
        )

    def _create(self, request: dict[str, Any], timeout_s: float) -> Any:
        openai = self._openai
        body = {k: v for k, v in request.items() if k not in ("timeout", "extra_body")}
        body.update(request.get("extra_body") or {})
        try:
            # The low-level post sends the body as is. ``chat.completions.create`` would first
            # walk every message through the SDK's TypedDict transform, which costs about 0.5 ms
            # per message: 20+ ms a request late in a dialogue. Messages here are already
            # validated plain ``{"role", "content"}`` strings, so there is nothing to transform.
            return self._client.post(
                "/chat/completions",
                cast_to=self._completion_type,
                body=body,
                options={"timeout": request["timeout"]},
            )
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except openai.APITimeoutError as exc:  # before APIConnectionError: it is a subclass
            raise BackendTimeoutError(
                f"{self.name}: no answer from {self.base_url} within {timeout_s} s",
                retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise BackendConnectionError(
                f"{self.name}: cannot reach {self.base_url}: {type(cause).__name__}: {cause}",
                retryable=True,
            ) from exc
        except openai.APIResponseValidationError as exc:
            raise BackendResponseError(
                f"{self.name}: response does not fit the chat completion schema: {exc.message}",
                status_code=exc.status_code,
                body=_truncate(exc.response.text),
            ) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BackendResponseError(
                f"{self.name}: response is not valid JSON: {exc}",
            ) from exc
        except openai.APIError as exc:
            raise BackendResponseError(f"{self.name}: {exc.message}") from exc

    def _to_reply(
        self, completion: Any, candidates: Sequence[str], answer_prefix: str, latency: float
    ) -> Reply:
        if isinstance(completion, str):
            raise BackendResponseError(
                f"{self.name}: expected a JSON chat completion, got text",
                body=_truncate(completion),
            )
        choices = getattr(completion, "choices", None)
        if not choices:
            raise BackendResponseError(
                f"{self.name}: response has no choices", body=_truncate(_dump(completion))
            )
        choice = choices[0]
        content = getattr(getattr(choice, "message", None), "content", None)
        if not isinstance(content, str):
            raise BackendResponseError(
                f"{self.name}: response has no message content", body=_truncate(_dump(completion))
            )
        usage = getattr(completion, "usage", None)
        scores = None
        if candidates:
            logprobs = getattr(choice, "logprobs", None)
            tokens = getattr(logprobs, "content", None) if logprobs is not None else None
            if tokens:
                scores = candidate_logprobs_from_tokens(tokens, candidates, answer_prefix)
                if scores is None:
                    logger.debug("%s: no generated token is a candidate %s", self.name, candidates)
            else:
                logger.debug("%s: server returned no logprobs; scores left to text", self.name)
        return Reply(
            text=content,
            model=str(getattr(completion, "model", None) or self.model),
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=_int_or_none(getattr(usage, "prompt_tokens", None)),
            completion_tokens=_int_or_none(getattr(usage, "completion_tokens", None)),
            latency_s=latency,
            candidate_logprobs=scores,
        )

    def close(self) -> None:
        """Close the HTTP client if this backend created it (a given client is left open)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return f"OpenAICompatibleBackend(model={self.model!r}, base_url={self.base_url!r}{adapter})"


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 409, 429 and every 5xx."""
    return status in (408, 409, 429) or status >= 500


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an
    HTTP date); ``None`` when absent or unparsable. Never negative."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, value) if math.isfinite(value) else None


def candidate_logprobs_from_tokens(
    tokens: Iterable[Any], candidates: Sequence[str], answer_prefix: str = ""
) -> dict[str, float] | None:
    """Candidate scores from OpenAI-format token logprobs (objects or plain dicts).

    ``tokens`` is ``choices[0].logprobs.content``: per generated token, ``token``, ``logprob``
    and ``top_logprobs`` (a list of ``{token, logprob}``). Finds the first generated token that,
    stripped, is a candidate — the first one after ``answer_prefix`` (compared stripped and
    case-insensitively) when the generated text contains it — and returns
    ``{candidate: log-probability}`` at that position: tokens stripping to the same candidate
    are summed in probability, and a candidate absent from the top tokens gets ``-inf``.
    Returns ``None`` when no generated token is a candidate.
    """
    positions = list(tokens)
    texts = [t if isinstance(t := _get(p, "token"), str) else "" for p in positions]
    earliest = 0  # character offset where the answer may start
    marker = answer_prefix.strip().lower()
    if marker:
        found = "".join(texts).lower().find(marker)
        if found >= 0:
            earliest = found + len(marker)
    wanted = set(candidates)
    offset = 0
    for position, token in zip(positions, texts, strict=True):
        start, offset = offset, offset + len(token)
        if start < earliest or token.strip() not in wanted:
            continue
        by_token: dict[str, float] = {}
        for entry in _get(position, "top_logprobs") or ():
            alt, logprob = _get(entry, "token"), _get(entry, "logprob")
            if isinstance(alt, str) and isinstance(logprob, int | float):
                by_token.setdefault(alt, _clean_logprob(float(logprob)))
        own = _get(position, "logprob")
        if token not in by_token and isinstance(own, int | float):
            by_token[token] = _clean_logprob(float(own))
        scores = dict.fromkeys(candidates, -math.inf)
        for alt, logprob in by_token.items():
            key = alt.strip()
            if key in scores:
                scores[key] = float(_logaddexp(scores[key], logprob))
        return scores
    return None


def _status_error(exc: Any) -> BackendError:
    status = int(exc.status_code)
    response = exc.response
    try:
        body = response.text
    except Exception:  # a streamed response that was never read
        body = None
    message = exc.message
    if isinstance(exc.body, dict):
        detail = exc.body.get("error", exc.body)
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            message = detail["message"]
        elif isinstance(detail, str):
            message = detail
    return BackendError(
        str(message),
        status_code=status,
        body=_truncate(body) if body is not None else None,
        retryable=is_retryable_status(status),
        retry_after=parse_retry_after(response.headers),
    )


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _clean_logprob(value: float) -> float:
    return -math.inf if value <= _OPENAI_VERY_UNLIKELY or math.isnan(value) else min(value, 0.0)


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dump(obj: Any) -> str:
    dump = getattr(obj, "model_dump_json", None)
    try:
        return str(dump()) if callable(dump) else repr(obj)
    except Exception:
        return repr(obj)


def _truncate(text: str) -> str:
    return text if len(text) <= _BODY_LIMIT else text[: _BODY_LIMIT - 3] + "..."
