"""Shared fixtures: real servers on loopback ports, real images, manifests written to disk.

- `serve_app(app)` runs a FastAPI app under uvicorn on 127.0.0.1 and gives its base URL.
- `media_server` is a plain HTTP server for images by URL, with routes for the bad cases
  (slow, redirects, HTTP errors, endless bodies).
- `make_manifest(**keys)` writes a manifest YAML next to the project's examples and loads it.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
import yaml
from PIL import Image

from bridge.commands.file_server import FileServer, send
from bridge.core.manifest import Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


# --- images ---------------------------------------------------------------------------------------------------


def encode_image(array: np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **save)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut: np.ndarray) -> bytes:
    return encode_image(astronaut, "JPEG", quality=92)


# --- servers --------------------------------------------------------------------------------------------------


class _ThreadedUvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread: leave signals to pytest
        pass


@pytest.fixture
def serve_app() -> Iterator[Callable[..., str]]:
    """Start apps under a real uvicorn on a free loopback port; all are stopped after the test.

    The server listens at once and loads its model in the background: `start` waits for the model too
    (`ready=False`: only for the server to listen)."""
    servers: list[tuple[_ThreadedUvicorn, threading.Thread]] = []

    def start(app: Any, ready: bool = True) -> str:
        port = free_port()
        server = _ThreadedUvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                 lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        bridge = hasattr(getattr(app, "state", None), "load_error")  # a bridge app, not any ASGI app
        while not server.started or (ready and bridge and app.state.service is None and not app.state.load_error):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slow(handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
    time.sleep(float(parts[1]))
    send(handler, 200, b"late", "text/plain")


def _redirect(handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
    hops = int(parts[1])
    target = f"/redirect/{hops - 1}/{parts[2]}" if hops > 1 else f"/files/{parts[2]}"
    send(handler, 302, b"", "text/plain", {"Location": target})


def _status(handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
    send(handler, int(parts[1]), b"nope", "text/plain")


def _endless(handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()
    for _ in range(4096):  # bounded: 256 MiB at most, the client stops far sooner
        handler.wfile.write(b"\0" * 65536)


class MediaServer(FileServer):
    """Serves files at /files/NAME; /slow/SECONDS, /redirect/N/NAME, /status/CODE and /endless for bad cases."""

    def __init__(self) -> None:
        super().__init__(routes={"slow": _slow, "redirect": _redirect, "status": _status, "endless": _endless})

    def add(self, name: str, body: bytes, kind: str = "image/png") -> str:
        return super().add(f"/files/{name}", body, kind)


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    server = MediaServer()
    yield server
    server.close()


# --- manifests ------------------------------------------------------------------------------------------------


@pytest.fixture
def make_manifest(tmp_path: Path) -> Callable[..., Manifest]:
    """Write a manifest (keys as keyword arguments) to a temporary file and load it.

    A file `model.factory` is relative to the project (`examples/faces.py:FaceDetector`); it is made absolute.
    Loopback media URLs are allowed unless the test says otherwise.
    """

    def make(**keys: Any) -> Manifest:
        keys.setdefault("name", "test-model")
        factory = keys["model"]["factory"]
        if ".py:" in factory and not Path(factory).is_absolute():
            keys["model"] = {**keys["model"], "factory": str(ROOT / factory)}
        keys.setdefault("limits", {}).setdefault("allow_private_urls", True)
        # test models take ad-hoc control parameters (`fail`, `hold`, ...): an open schema unless a test sets one
        keys.setdefault("params", {"type": "object", "additionalProperties": True})
        keys.setdefault("platforms", {"v7": {}})  # a platform is served only when the manifest names it
        path = tmp_path / f"manifest-{len(list(tmp_path.glob('manifest-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(keys), encoding="utf-8")
        return load_manifest(path)

    return make
