"""A real loopback upstream for the edge tests that records the headers and bodies it receives
and can die in the middle of its answer (which the StubServer never does)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "delta": {"content": "Flight"}, "finish_reason": None}],
}
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
}


class EdgeUpstream:
    """``mode``: ``"ok"`` (a JSON completion, or SSE when the request streams),
    ``"break"`` (declares a long body, sends part of it, closes the connection)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.seen: list[dict[str, Any]] = []  # {"path", "headers", "body"}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                outer.seen.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                stream = isinstance(body, dict) and body.get("stream")
                if stream:
                    event = b"data: " + json.dumps(CHUNK).encode() + b"\n\n"
                    payload = event + b'data: {"id": "c1", "object": "chat.comp'
                    if outer.mode == "ok":
                        payload = event + b"data: [DONE]\n\n"
                    content_type = "text/event-stream"
                else:
                    payload = json.dumps(COMPLETION).encode()
                    if outer.mode == "break":
                        payload = payload[:20]
                    content_type = "application/json"
                declared = len(payload) if outer.mode == "ok" else len(payload) + 5000
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                if outer.mode == "break":
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> EdgeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
