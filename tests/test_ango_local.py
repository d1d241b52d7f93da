"""Trying Ango's REST connector locally, as the README shows: no Ango account, no Ango API.

The default manifest with `BRIDGE_ALLOW_PRIVATE_URLS=true` (the image is on loopback) and `ANGO_API_URL`
pointed at a closed port: a run with a `dataURL` answers, and a failed run answers its own error, even
though the run log it writes cannot reach Ango.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bridge.core.manifest import load_manifest
from bridge.serving.app import create_app
from tests.conftest import free_port

DEFAULT = Path(__file__).resolve().parents[1] / "manifests" / "default.yaml"


@pytest.fixture
def plugin(serve_app, monkeypatch) -> str:
    monkeypatch.setenv("ANGO_PLUGIN_SECRET", "change-me")
    monkeypatch.setenv("ANGO_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("BRIDGE_ALLOW_PRIVATE_URLS", "true")
    base = serve_app(create_app(load_manifest(DEFAULT)))
    deadline = time.monotonic() + 60  # the server listens at once and loads the model in the background
    while httpx.get(f"{base}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)
    return base + "/ango/plugin"


def run(plugin: str, **message) -> httpx.Response:
    return httpx.post(plugin, json={"session": "try-1", **message}, headers={"Secret": "change-me"}, timeout=60)


def test_a_local_run_with_a_loopback_data_url(plugin, media_server, astronaut_jpeg):
    url = media_server.add("photo.jpg", astronaut_jpeg, "image/jpeg")
    answer = run(plugin, dataURL=url, configJSON='{"threshold": 0.5}')
    assert answer.status_code == 200 and answer.json()["session"] == "try-1", answer.text
    objects = answer.json()["response"]["objects"]
    assert [o["title"] for o in objects if "bounding-box" in o] == ["Face"]


def test_a_failed_run_answers_its_own_error_when_the_run_log_cannot_reach_ango(plugin, media_server):
    answer = run(plugin, dataURL=f"{media_server.base}/files/missing.jpg")
    assert answer.status_code == 422
    assert "404" in answer.json()["error"] and answer.json()["session"] == "try-1"
