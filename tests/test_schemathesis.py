"""schemathesis against the app's own OpenAPI, on loopback: requests generated from the schema (valid and
not), sent with and without credentials. Every error must be a JSON document, never a 5xx (but the one the
README documents: Ango's 502 when Ango's own API fails a look-up), and fit the schema declared for its
status. Whether every status is declared is not checked here (the declarations are the lead's work).

Bounded and repeatable: a fixed number of examples per operation and credential set, derandomized. Media
URLs the generator makes up are pointed at the local media server before sending (same path), so no request
leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from bridge.core.manifest import Manifest
from bridge.serving.app import create_app
from tests.conftest import ROOT, MediaServer, _ThreadedUvicorn, encode_image, free_port
from tests.test_ango import FakeAngoApi
from tests.test_media_attacks import wait_ready

SECRET = "schema-secret"
CREDENTIALS = {"X-Auth": SECRET, "Authorization": f"Bearer {SECRET}", "Secret": SECRET}


def manifest(ango_api_url: str) -> Manifest:
    """The default face detector on every platform, each behind a secret."""
    return Manifest.model_validate({
        "name": "schemathesis",
        "model": {"factory": str(ROOT / "examples/faces.py") + ":FaceDetector"},
        "limits": {"allow_private_urls": True, "fetch_timeout": 2, "deadline": 10, "max_video_frames": 20},
        "platforms": {"v7": {"auth": {"method": "header", "header": "X-Auth", "secret": SECRET}},
                      "labelbox": {"secret": SECRET},
                      "ango": {"secret": SECRET, "plugin_id": "p", "api_url": ango_api_url}},
    })


schema = schemathesis.openapi.from_dict(create_app(manifest("http://127.0.0.1:9")).openapi()).exclude(
    path_regex="^/playground")
"""The OpenAPI the app publishes at /openapi.json (built from its routes: no server needed to read it), but
the playground's, a browser page's helpers (its samples are declared JSON and served as JPEG)."""


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    """That app under uvicorn on loopback, with the media server and Ango's API beside it."""
    media, ango_api = MediaServer(), FakeAngoApi()
    media.add("face.png", encode_image(np.full((40, 50, 3), 120, np.uint8)))
    port = free_port()
    uvicorn_server = _ThreadedUvicorn(uvicorn.Config(create_app(manifest(ango_api.base)), host="127.0.0.1",
                                                     port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    wait_ready(f"http://127.0.0.1:{port}")
    yield {"base": f"http://127.0.0.1:{port}", "media": media}
    uvicorn_server.should_exit = True
    thread.join(10)
    media.close()
    ango_api.close()


def to_loopback(value: Any, media: MediaServer) -> Any:
    """The body with every http(s) URL that names a host moved to the media server (path kept)."""
    if isinstance(value, dict):
        return {k: to_loopback(v, media) for k, v in value.items()}
    if isinstance(value, list):
        return [to_loopback(v, media) for v in value]
    if isinstance(value, str) and value[:4].lower() == "http":
        try:
            parts = urlsplit(value)
            if parts.hostname:
                return parts._replace(netloc=urlsplit(media.base).netloc).geturl()
        except ValueError:
            pass  # unparseable: the bridge answers 400 before any connection
    return value


def no_server_error(ctx, response, case) -> None:
    """No 5xx, but Ango's documented 502 (its API failed a look-up the run needs: here, an unknown task)."""
    documented = response.status_code == 502 and case.path == "/ango/plugin" and "Ango's API" in response.text
    assert response.status_code < 500 or documented, f"{response.status_code}: {response.text[:300]}"


def answers_json(ctx, response, case) -> None:
    """Every error is a JSON document: a client never gets HTML or a traceback. (Successful answers have
    the content type their operation declares: /metrics is text, the playground's samples are images.)"""
    if response.status_code < 400:
        return
    kind = response.headers.get("content-type", [""])
    kind = kind[0] if isinstance(kind, list) else kind
    assert kind.startswith("application/json"), f"content-type {kind!r}"
    json.loads(response.content)


SETTINGS = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


def check(case, server, credentials: dict[str, str]) -> None:
    if isinstance(case.body, (dict, list)):
        case.body = to_loopback(case.body, server["media"])
    response = case.call(base_url=server["base"], headers=credentials, timeout=30)
    case.validate_response(response, checks=[no_server_error, answers_json, response_schema_conformance,
                                             content_type_conformance])


@schema.parametrize()
@SETTINGS
def test_with_credentials_every_answer_is_json_and_never_a_server_error(case, server):
    check(case, server, CREDENTIALS)


@schema.parametrize()
@SETTINGS
def test_without_credentials_every_answer_is_json_and_never_a_server_error(case, server):
    check(case, server, {})
