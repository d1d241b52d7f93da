"""Files held in memory, served over HTTP on a loopback port from a thread of its own.

`bridge check URL` offers an endpoint on this machine the image and text it checks with this way (Ango's
`dataURL` is fetched by the plugin); the tests and benchmarks serve their media with it too, adding `routes`
for the behaviours they need (slow, redirecting or hostile URLs).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[BaseHTTPRequestHandler, list[str]], None]
"""Answers a GET whose first path segment names it; given the handler and the path's segments. Connections are
kept alive (HTTP/1.1): a route that answers without a Content-Length sets `handler.close_connection`."""


class FileServer:
    """Serves `files` (path -> (body, content type)) at http://127.0.0.1:PORT/path, and `routes`."""

    def __init__(self, files: Mapping[str, tuple[bytes, str]] | None = None,
                 routes: Mapping[str, Route] | None = None) -> None:
        self.files: dict[str, tuple[bytes, str]] = dict(files or {})
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                try:
                    if path in server.files:
                        send(self, 200, *server.files[path])
                    elif parts[0] in server.routes:
                        server.routes[parts[0]](self, parts)
                    else:
                        send(self, 404, b"not found", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, a size cap): nothing to tell it

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, name="file-server", daemon=True).start()

    def add(self, path: str, body: bytes, kind: str = "application/octet-stream") -> str:
        """Serve `body` at `path` (e.g. "/files/a.png"); its URL."""
        self.files[path] = (body, kind)
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops a kept-alive connection is no error; anything else is reported as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str,
         headers: Mapping[str, str] | None = None) -> None:
    """A whole answer: status, content type and length, `headers`, body."""
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def serving(files: Mapping[str, tuple[bytes, str]]) -> Iterator[FileServer]:
    """A `FileServer` for the block."""
    server = FileServer(files)
    try:
        yield server
    finally:
        server.close()
