"""`bridge ango`: the real CLI in a subprocess, the real SDK's Socket.IO client, against a hub the test runs.

The hub is python-socketio's AsyncServer under uvicorn on a loopback port (namespace /plugin, websocket
transport). It accepts the plugin once its heartbeat carries the right id and secret, emits `plugin` run
messages and collects the `response` and `log` events. The plugin runs in its own process: the SDK reads
CONNECTOR once at import, and in WS mode its heartbeat ends the process it runs in.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import socketio
import uvicorn

from tests.conftest import ROOT, _ThreadedUvicorn, encode_image, free_port
from tests.test_ango import API_KEY, ango_api, message, wait_until  # noqa: F401 (ango_api: a fixture)

PLUGIN_ID, SECRET = "plugin-hub-1", "hub-s3cret"
NAMESPACE = "/plugin"


class Hub:
    """A stand-in for Ango's Socket.IO hub, which can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.heartbeats: queue.Queue[dict] = queue.Queue()
        self.responses: queue.Queue[dict] = queue.Queue()
        self.logs: list[dict] = []
        self.plugin_sid: str | None = None

    def start(self) -> None:
        sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
        self.sio, self.plugin_sid = sio, None

        @sio.on("heartbeat", namespace=NAMESPACE)
        async def heartbeat(sid: str, data: dict) -> None:
            self.loop = asyncio.get_running_loop()
            self.heartbeats.put(data)
            if data == {"id": PLUGIN_ID, "secret": SECRET}:
                self.plugin_sid = sid
            else:
                await sio.disconnect(sid, namespace=NAMESPACE)

        @sio.on("response", namespace=NAMESPACE)
        async def response(sid: str, data: dict) -> None:
            self.responses.put(data)

        @sio.on("log", namespace=NAMESPACE)
        async def log(sid: str, data: dict) -> None:
            self.logs.append(data)

        config = uvicorn.Config(socketio.ASGIApp(sio), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self.server = _ThreadedUvicorn(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the hub did not stop"

    def heartbeat(self, timeout: float = 30) -> dict:
        """The next heartbeat; the plugin is connected once it has come."""
        return self.heartbeats.get(timeout=timeout)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def send(self, run: dict[str, Any]) -> None:
        """Send a run to the plugin, as Ango does when a user clicks Run."""
        assert self.plugin_sid, "no plugin is connected"
        self._call(self.sio.emit("plugin", run, to=self.plugin_sid, namespace=NAMESPACE))

    def run(self, run: dict[str, Any], timeout: float = 30) -> dict:
        """Send a run and wait for the plugin's response."""
        self.send(run)
        return self.responses.get(timeout=timeout)

    def kick(self) -> None:
        self._call(self.sio.disconnect(self.plugin_sid, namespace=NAMESPACE))


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    hub.start()
    yield hub
    if hub.thread.is_alive():
        hub.stop()


@contextmanager
def bridge_ango(manifest_path: Any, *options: str) -> Iterator[Callable[..., bool]]:
    """`bridge ango MANIFEST [OPTIONS]` in a subprocess; yields `said(text, times=1)`: whether its log has said
    `text` (that many times) yet."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("CONNECTOR", None)
    process = subprocess.Popen([sys.executable, "-m", "bridge", "ango", str(manifest_path), *options], cwd=ROOT,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()

    def said(text: str, times: int = 1) -> bool:
        assert process.poll() is None, "bridge ango exited:\n" + "".join(lines)
        return sum(text in line for line in lines) >= times

    try:
        yield said
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=5)


@pytest.fixture
def hub_manifest(make_manifest, ango_api, hub, monkeypatch) -> Callable[..., Any]:
    """A manifest for the hub, written to disk: the plugin's id and secret come from the environment."""
    monkeypatch.setenv("ANGO_PLUGIN_ID", PLUGIN_ID)
    monkeypatch.setenv("ANGO_PLUGIN_SECRET", SECRET)

    def make(**section: Any) -> Any:
        return make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params={
            "type": "object", "properties": {"threshold": {"type": "number", "maximum": 1, "default": 0.5},
                                             "sleep": {"type": "number"}}},
            platforms={"ango": {"plugin_id": "${ANGO_PLUGIN_ID}", "secret": "${ANGO_PLUGIN_SECRET}",
                                "hub_url": hub.url, "api_url": ango_api.base, "reconnect_delay": 0.2,
                                "reconnect_max_delay": 1, **section}}).path

    return make


@pytest.fixture
def image_url(media_server) -> str:
    return media_server.add("hub.png", encode_image(np.full((64, 80, 3), 128, np.uint8)))


MAPPING = [{"schemaId": "schema-box", "modelClass": "box"}, {"schemaId": "schema-weather", "modelClass": "weather"}]


def test_plugin_answers_runs_from_the_hub(hub, hub_manifest, ango_api, image_url):
    with bridge_ango(hub_manifest()) as said:
        assert hub.heartbeat() == {"id": PLUGIN_ID, "secret": SECRET}
        wait_until(lambda: said(f"connected to the Ango hub at {hub.url} as plugin {PLUGIN_ID}"))

        reply = hub.run(message(dataURL=image_url, categorySchema=MAPPING, session="ws-1"))
        assert reply["session"] == "ws-1"
        answer = reply["response"]
        assert answer["objects"] == [{"schemaId": "schema-box",
                                      "bounding-box": {"x": 4, "y": 6, "width": 20, "height": 16}}]
        assert answer["classifications"] == [{"schemaId": "schema-weather", "answer": "sunny"}]
        assert any("dropped the predictions of" in log["msg"] and log["session"] == "ws-1" for log in hub.logs)

        reply = hub.run(message(dataURL=image_url, configJSON='{"threshold": 2}', session="ws-2"))
        assert reply == {"error": True, "session": "ws-2"}
        errors = [log["msg"] for log in hub.logs if log["session"] == "ws-2" and log["level"] == "ERROR"]
        assert errors == ["Plugin callback failed: configJSON: invalid parameter threshold: 2 is greater than the "
                          "maximum of 1"]

        ango_api.assets["asset-ext-1"] = image_url
        hub.send(message(workflow=True, taskId="task-5", session="ws-3", categorySchema=MAPPING))
        (annotate,) = wait_until(lambda: ango_api.calls_to("/v2/annotate/task-5"))
        assert annotate.apikey == API_KEY and annotate.query == {"nextStage": ["true"], "isPlugin": ["true"]}
        assert annotate.body["answer"]["classifications"] == [{"schemaId": "schema-weather", "answer": "sunny"}]
        assert [c.apikey for c in ango_api.calls_to("/v2/project/proj-1/assets")] == [API_KEY]
        assert hub.responses.empty(), "a workflow run answers Ango's API, not the hub"

        hub.kick()
        assert hub.heartbeat(timeout=15) == {"id": PLUGIN_ID, "secret": SECRET}
        wait_until(lambda: said("reconnected to the Ango hub"))
        assert hub.run(message(dataURL=image_url, session="ws-4"))["session"] == "ws-4"


def test_plugin_outlives_a_hub_restart(hub, hub_manifest, image_url):
    manifest = hub_manifest(heartbeat_interval=0.3)
    with bridge_ango(manifest) as said:
        hub.heartbeat()
        assert hub.run(message(dataURL=image_url, session="before"))["session"] == "before"

        hub.stop()
        wait_until(lambda: said("lost the connection to the Ango hub"), timeout=15)
        wait_until(lambda: said("cannot reach the Ango hub"), timeout=15)
        # several heartbeats while the hub is away: the SDK's own would os._exit(1) the plugin at the first
        wait_until(lambda: said("no heartbeat while the hub is away", times=3), timeout=15)

        hub.start()
        assert hub.heartbeat(timeout=15) == {"id": PLUGIN_ID, "secret": SECRET}
        wait_until(lambda: said(f"reconnected to the Ango hub at {hub.url}"))
        assert hub.run(message(dataURL=image_url, session="after"))["session"] == "after"


def test_a_workflow_run_beyond_the_concurrency_is_refused_and_told(hub, hub_manifest, ango_api, image_url,
                                                                  media_server):
    with bridge_ango(hub_manifest()) as said:  # limits.concurrency: 1
        hub.heartbeat()
        hub.send(message(dataURL=image_url, workflow=True, taskId="task-1", session="first",
                         configJSON='{"sleep": 3}'))
        wait_until(lambda: media_server.requests, timeout=30)  # the first run holds the slot: it fetches its image
        hub.send(message(dataURL=image_url, workflow=True, taskId="task-2", session="second"))
        assert hub.responses.get(timeout=30) == {"error": True, "session": "second"}
        refused = [log["msg"] for log in hub.logs if log["session"] == "second" and log["level"] == "ERROR"]
        assert refused == ["refused: 1 workflow run(s) are running already (limits.concurrency); run it again "
                           "when one is done"]
        wait_until(lambda: ango_api.calls_to("/v2/annotate/task-1"), timeout=30)  # the first one finishes


def test_an_answer_ready_while_the_hub_is_away_is_delivered_when_it_is_back(hub, hub_manifest, image_url):
    with bridge_ango(hub_manifest()) as said:
        hub.heartbeat()
        hub.send(message(dataURL=image_url, session="away", configJSON='{"sleep": 3}'))
        hub.stop()  # while the model works
        wait_until(lambda: said("held the answer of run away until the hub is back"), timeout=30)
        hub.start()
        assert hub.responses.get(timeout=30)["session"] == "away"
        wait_until(lambda: said("delivered the answer of run away, held while the hub was away"))


def test_bridge_ango_needs_the_plugin_id_and_secret(make_manifest):
    path = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"},
                         platforms={"ango": {"plugin_id": "${ANGO_PLUGIN_ID:-}", "secret": "x"}}).path
    environment = {k: v for k, v in os.environ.items() if k != "ANGO_PLUGIN_ID"}
    done = subprocess.run([sys.executable, "-m", "bridge", "ango", str(path)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{path}: platforms.ango.plugin_id is empty" in done.stderr and "ANGO_PLUGIN_ID" in done.stderr
