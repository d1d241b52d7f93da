"""A tiny Label Studio ML backend on loopback that records every request Label Studio sends it.

It answers the routes Label Studio calls (`GET /health`, `POST /setup`, `POST /predict`, `POST /webhook`,
`GET /versions`) with the least a backend must say; a test sets `predict` to answer predictions of its own
and reads `calls` to see exactly what arrived (method, path, headers, parsed JSON body).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def empty_predictions(body: dict[str, Any], model_version: str) -> dict[str, Any]:
    """One empty prediction per task, in order (what Label Studio needs to match answers to tasks)."""
    return {"results": [{"result": [], "score": 0.5, "model_version": model_version} for _ in body["tasks"]]}


class RecordingBackend:
    def __init__(self, model_version: str = "recorder-1", basic_auth: tuple[str, str] | None = None) -> None:
        self.model_version = model_version
        self.calls: list[Call] = []
        self.predict: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: empty_predictions(body, model_version)
        self._expected_auth = ("Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
                               if basic_auth else None)
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                backend._handle(self)

            def do_POST(self) -> None:
                backend._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.path.split("?")[0] == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60.0) -> list[Call]:
        """The calls to `path` once there are `count` of them (Label Studio sends webhooks from a thread of
        its own, after its API has answered); raises TimeoutError naming what did arrive."""
        deadline = time.monotonic() + timeout
        while len(found := self.calls_to(path)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} calls to {path}; all calls: "
                                   f"{[(c.method, c.path) for c in self.calls]}")
            time.sleep(0.05)
        return found

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        call = Call(request.command, request.path, dict(request.headers.items()), body)
        with self._lock:
            self.calls.append(call)
        if self._expected_auth and request.headers.get("Authorization") != self._expected_auth:
            return self._send(request, 401, {"error": "unauthorised"})
        route = request.path.split("?")[0]
        if route == "/health":
            return self._send(request, 200, {"status": "UP", "model_class": "RecordingBackend"})
        if route == "/setup":
            return self._send(request, 200, {"model_version": self.model_version})
        if route == "/predict":
            return self._send(request, 200, self.predict(body))
        if route == "/webhook":
            return self._send(request, 201, {})
        if route == "/versions":
            return self._send(request, 200, {"versions": [self.model_version]})
        return self._send(request, 404, {"error": f"no route {route}"})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
