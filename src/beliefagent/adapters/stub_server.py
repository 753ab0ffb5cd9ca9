"""A tiny OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

    >>> with StubServer(lambda messages: "Flight 2") as srv:   # doctest: +SKIP
    ...     backend = OpenAICompatibleBackend("stub", base_url=srv.base_url)
    ...     backend.complete([{"role": "user", "content": "Which?"}], GenerationSettings()).text
    'Flight 2'

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` on ``127.0.0.1``, a free port) that
answers:

* ``POST /v1/chat/completions`` — non-streamed, or ``"stream": true`` as server-sent events
  (``data: {chunk}`` lines, then ``data: [DONE]``; a final usage chunk when
  ``stream_options.include_usage``);
* ``GET /v1/models``.

Replies come from ``reply_fn(messages)``, which returns the text or a :class:`StubCompletion`
(text plus optional label log-probabilities). To simulate failures, ``reply_fn`` raises
:class:`StubHTTPError` (any status, body and headers, e.g. ``429`` with ``Retry-After``).

Tokens, for ``max_tokens``, logprobs and usage counts, are a simple regex split: words, single
digits and punctuation, each with its leading whitespace (``"Flight 2."`` ->
``["Flight", " 2", "."]``). Every generated token gets logprob 0 and itself as its only top
alternative, except the first token that, stripped, is a key of
``StubCompletion.label_logprobs``: that position lists the labels (with the token's own leading
whitespace) as its ``top_logprobs``, in OpenAI's documented format.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from beliefagent.adapters.base import Message

__all__ = ["StubCompletion", "StubHTTPError", "StubServer", "stub_tokens"]

logger = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"\s*(?:\d|[^\W\d]+|[^\w\s])|\s+")


@dataclass
class StubCompletion:
    """What the stub answers: ``text``, and optionally ``label_logprobs`` (``{label: logprob}``)
    reported at the first generated token that is one of the labels."""

    text: str
    label_logprobs: dict[str, float] | None = None
    finish_reason: str = "stop"


class StubHTTPError(Exception):
    """Raise from ``reply_fn`` to make the stub answer with an HTTP error."""

    def __init__(
        self,
        status: int,
        message: str = "stub error",
        *,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.body = body


ReplyFn = Callable[[list[Message]], "str | StubCompletion"]


def stub_tokens(text: str) -> list[str]:
    """The stub's tokenization: words, single digits, punctuation, each keeping its leading
    whitespace; trailing whitespace is a token of its own. ``"".join(stub_tokens(t)) == t``."""
    return _TOKEN_RE.findall(text)


@dataclass
class _Answer:
    text: str
    finish_reason: str
    logprobs: list[dict[str, Any]] | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StubServer:
    """An OpenAI-compatible server on ``127.0.0.1`` (see the module docstring).

    Args:
        reply_fn: ``messages -> str | StubCompletion``; may raise :class:`StubHTTPError`.
        model: the model id reported by ``/v1/models`` and in completions.
        api_key: when set, requests must send ``Authorization: Bearer <api_key>`` (else 401).
        delay_s: seconds to wait before answering each completion (to exercise timeouts).

    Attributes:
        requests: every JSON body received on ``/v1/chat/completions``, in order.
        base_url: ``http://127.0.0.1:<port>/v1`` once started.
    """

    reply_fn: ReplyFn
    model: str = "stub-model"
    api_key: str | None = None
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("StubServer is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> StubServer:
        """Bind a free loopback port and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"stub": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="beliefagent-stub-server",
            daemon=True,
        )
        self._thread.start()
        logger.debug("stub server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def _answer(self, body: dict[str, Any]) -> _Answer:
        messages = body["messages"]
        out = self.reply_fn([dict(m) for m in messages])
        completion = out if isinstance(out, StubCompletion) else StubCompletion(str(out))
        tokens = stub_tokens(completion.text)
        finish = completion.finish_reason
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        text = "".join(tokens)
        cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            tokens = stub_tokens(text[:cut])
            finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit < len(tokens):
            tokens = tokens[:limit]
            finish = "length"
        logprobs = None
        if body.get("logprobs"):
            top_n = body.get("top_logprobs") or 0
            logprobs = _token_logprobs(tokens, completion.label_logprobs, int(top_n))
        prompt_tokens = sum(len(stub_tokens(str(m.get("content", "")))) + 4 for m in messages)
        return _Answer("".join(tokens), finish, logprobs, prompt_tokens, len(tokens))


def _token_logprobs(
    tokens: list[str], labels: dict[str, float] | None, top_n: int
) -> list[dict[str, Any]]:
    out = []
    labelled = False
    for token in tokens:
        stripped = token.strip()
        if labels and not labelled and stripped in labels:
            labelled = True
            lead = token[: len(token) - len(token.lstrip())]
            ranked = sorted(labels.items(), key=lambda kv: -kv[1])
            top = [_entry(lead + label, lp) for label, lp in ranked]
            own = labels[stripped]
        else:
            own = 0.0
            top = [_entry(token, 0.0)]
        out.append({**_entry(token, own), "top_logprobs": top[:top_n]})
    return out


def _entry(token: str, logprob: float) -> dict[str, Any]:
    lp = logprob if math.isfinite(logprob) else -9999.0
    return {"token": token, "logprob": lp, "bytes": list(token.encode())}


class _QuietServer(ThreadingHTTPServer):
    """Logs a client that hung up (e.g. after its own timeout) instead of printing to stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("stub server: error while answering %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    stub: StubServer
    protocol_version = "HTTP/1.1"
    server_version = "beliefagent-stub/1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds
    # the body until the client's delayed ACK (about 40 ms on Linux) on a keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("stub server: " + format, *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._error(404, f"no route for GET {self.path}", "not_found")
            return
        if not self._authorized():
            return
        model = {"id": self.stub.model, "object": "model", "created": 0, "owned_by": "beliefagent"}
        self._json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route for POST {self.path}", "not_found")
            return
        if not self._authorized():
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "request body is not valid JSON", "invalid_request_error")
            return
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._error(400, "'messages' must be a list of objects", "invalid_request_error")
            return
        self.stub._record(body)
        if self.stub.delay_s:
            time.sleep(self.stub.delay_s)
        try:
            answer = self.stub._answer(body)
        except StubHTTPError as exc:
            self._error(exc.status, exc.message, "stub_error", exc.headers, exc.body)
            return
        except Exception as exc:
            logger.exception("stub server: reply_fn failed")
            self._error(500, f"reply_fn failed: {type(exc).__name__}: {exc}", "server_error")
            return
        model = str(body.get("model") or self.stub.model)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(model, answer, include_usage)
        else:
            self._json(200, _completion(model, answer))

    def _authorized(self) -> bool:
        if self.stub.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.stub.api_key}":
            return True
        self._error(401, "invalid API key", "invalid_request_error")
        return False

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._send(status, data, "application/json", headers)

    def _send(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self,
        status: int,
        message: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        if body is not None:
            self._send(status, body.encode(), "application/json", headers)
            return
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        error = {"message": message or phrase, "type": kind, "param": None, "code": None}
        self._json(status, {"error": error}, headers)

    def _stream(self, model: str, answer: _Answer, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
            payload: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if include_usage:
                payload["usage"] = usage
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        role = {"role": "assistant", "content": ""}
        chunk([{"index": 0, "delta": role, "logprobs": None, "finish_reason": None}])
        pieces = stub_tokens(answer.text)
        for i, piece in enumerate(pieces):
            logprobs = None
            if answer.logprobs is not None and i < len(answer.logprobs):
                logprobs = {"content": [answer.logprobs[i]], "refusal": None}
            delta = {"content": piece}
            chunk([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason}])
        if include_usage:
            chunk([], _usage(answer))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _usage(answer: _Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _completion(model: str, answer: _Answer) -> dict[str, Any]:
    logprobs = (
        {"content": answer.logprobs, "refusal": None} if answer.logprobs is not None else None
    )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": _usage(answer),
        "system_fingerprint": "beliefagent-stub",
    }
