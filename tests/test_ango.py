"""iMerit Ango: conversions, and the REST connector served by `bridge serve`, through the real SDK code.

Every run goes through `imerit_ango.plugins.ModelPlugin.on_plugin` (REST mode) on a real uvicorn server; a
loopback stand-in for Ango's REST API answers the SDK's asset lookups and takes the run logs (what the user
reads in Ango's plugin log) and the workflow answers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from adapters.ango import AngoSection, adapter
from adapters.ango.convert import class_ids, to_answer
from bridge.core.geometry import polygon_to_mask
from bridge.core.manifest import Manifest
from bridge.core.model import ClassSpec, ModelSpec
from bridge.core.outputs import Finish, finish
from bridge.core.predictions import Mask, Polygon, Prediction, RotatedBox
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from tests.conftest import encode_image, free_port
from tests.shapes_model import CLASSES, donut_mask

SECRET = "s3cret-plugin"
API_KEY = "user-api-key"
HEIGHT, WIDTH = 96, 128


# --- a stand-in for Ango's REST API ---------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    apikey: str | None
    body: Any


class FakeAngoApi:
    """Ango's REST API on loopback: assets by external id, tasks, workflow answers and plugin logs."""

    def __init__(self) -> None:
        self.assets: dict[str, str] = {}
        """external id -> data URL"""
        self.tasks: dict[str, dict] = {}
        self.batches: dict[str, set[str]] = {}
        """external id -> the batches the asset is in"""
        self.prelabeled: set[str] = set()
        """external ids whose labels were imported (`isPreLabeled`)"""
        self.calls: list[Call] = []
        self.hang: dict[str, float] = {}
        """path prefix -> seconds to wait before answering (an API that hangs)"""
        self.failures: dict[str, list[int]] = {}
        """path prefix -> statuses to answer first, one per call (an API that fails, then recovers)"""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                self._answer(json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"null"))

            def _answer(self, body: Any) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                api.calls.append(Call(self.command, url.path, query, self.headers.get("apikey"), body))
                for prefix, seconds in api.hang.items():
                    if url.path.startswith(prefix):
                        time.sleep(seconds)
                parts = url.path.strip("/").split("/")
                status, answer = 200, {"status": "success", "data": {}}
                failing = next((v for k, v in api.failures.items() if url.path.startswith(k) and v), None)
                if self.command == "GET" and parts[1:2] == ["project"] and parts[3:] == ["assets"]:
                    filters = json.loads(query["filters"][0])
                    external = filters.get("externalId")
                    if external is not None:
                        found = [{"externalId": external, "data": api.assets[external]}] if external in api.assets else []
                    else:  # a page of the assets that pass the filters
                        found = [{"externalId": e, "data": url} for e, url in api.assets.items()
                                 if (filters.get("isPreLabeled") is not False or e not in api.prelabeled)
                                 and set(filters.get("batches", ())) <= api.batches.get(e, set())]
                        page, limit = int(query["page"][0]), int(query["limit"][0])
                        found = found[(page - 1) * limit:page * limit]
                    answer = {"status": "success", "data": {"assets": found}}
                elif self.command == "POST" and url.path == "/v2/import/labels":
                    api.prelabeled.update(label["externalId"] for label in body["jsonContent"])
                elif self.command == "GET" and parts[1:2] == ["task"]:
                    if parts[2] in api.tasks:
                        answer = {"status": "success", "data": {"task": api.tasks[parts[2]]}}
                    else:
                        status, answer = 404, {"status": "fail", "message": "task not found"}
                elif not (self.command == "POST" and url.path.startswith(("/v2/pluginLog", "/v2/annotate/",
                                                                           "/v2/import/labels"))):
                    status, answer = 404, {"status": "fail", "message": "no such route"}
                if failing:
                    status, answer = failing.pop(0), {"status": "fail", "message": "try again"}
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a `hang`): it is bounded, as it should be

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def logs(self) -> list[dict]:
        """What the user reads in Ango's plugin log (the SDK's REST run logger posts here)."""
        return [c.body for c in self.calls if c.path == "/v2/pluginLog"]

    def calls_to(self, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.path.startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ango_api() -> Iterator[FakeAngoApi]:
    api = FakeAngoApi()
    yield api
    api.close()


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
    return value


# --- a server with the plugin ---------------------------------------------------------------------------------


PARAMS = {"type": "object", "properties": {
    "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
    "fail": {"type": "boolean", "default": False},
    "only": {"type": "array", "items": {"type": "string"}},
}}


@pytest.fixture
def ango_manifest(make_manifest, ango_api, monkeypatch) -> Callable[..., Manifest]:
    """A manifest whose Ango section takes its id and secret from the environment, as a user's does."""
    monkeypatch.setenv("ANGO_TEST_PLUGIN_ID", "plugin-1")
    monkeypatch.setenv("ANGO_TEST_SECRET", SECRET)

    def make(factory: str = "tests/shapes_model.py:AllShapes", **section: Any) -> Manifest:
        return make_manifest(
            model={"factory": factory}, params=PARAMS, geometry={"simplify_tolerance": 0},
            platforms={"ango": {"plugin_id": "${ANGO_TEST_PLUGIN_ID}", "secret": "${ANGO_TEST_SECRET}",
                                "api_url": ango_api.base, "rename": {"box": "Car"}, **section}},
        )

    return make


@pytest.fixture
def plugin_url(serve_app, ango_manifest) -> str:
    """`bridge serve`'s app with the Ango adapter, on a real uvicorn; the base URL of its Ango routes."""
    return serve_app(create_app(ango_manifest(), adapters={"ango": adapter})) + "/ango"


@pytest.fixture
def image_url(media_server) -> str:
    rng = np.random.default_rng(0)
    return media_server.add("scene.png", encode_image(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)))


MAPPING = [{"schemaId": f"id-{name}", "modelClass": name} for name in
           ["Car", "rotated", "donut", "blob", "point", "line", "ellipse", "person", "cuboid", "vector",
            "sharp", "weather", "objects", "caption", "occluded"]]


def message(**keys: Any) -> dict[str, Any]:
    """A run message as Ango's hub sends it."""
    return {"projectId": "proj-1", "apiKey": API_KEY, "orgId": "org-1", "runBy": "user-1", "session": "sess-1",
            "taskId": "task-1", "workflow": False, "stage": "Start", "overwrite": True, "batches": [],
            "configJSON": "{}", "categorySchema": MAPPING, "assetId": "asset-ext-1", **keys}


def post(url: str, body: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
    headers = {"Secret": secret} if secret is not None else {}
    return httpx.post(f"{url}/plugin", json=body, headers=headers, timeout=30)


def by_schema(objects: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for obj in objects:
        found.setdefault(obj.get("schemaId") or obj["title"], []).append(obj)
    return found


# --- the REST connector -----------------------------------------------------------------------------------------


def test_every_shape_answers_the_users_schema_ids(plugin_url, image_url, ango_api):
    reply = post(plugin_url, message(dataURL=image_url))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["session"] == "sess-1"
    answer = body["response"]
    assert answer["relations"] == []
    objects = by_schema(answer["objects"])
    w, h = WIDTH, HEIGHT

    assert objects.pop("id-Car") == [{"schemaId": "id-Car", "bounding-box": {"x": 4, "y": 6, "width": w / 4,
                                                                              "height": h / 4},
                                      "classifications": [{"schemaId": "id-occluded", "answer": "occluded"}]}]
    assert objects.pop("id-rotated") == [{"schemaId": "id-rotated", "rotated-bounding-box": {
        "x": w / 2 - w / 8, "y": h / 2 - h / 16, "width": w / 4, "height": h / 8, "rotation": 30}}]
    (donut,) = objects.pop("id-donut")
    (zone,) = donut["segmentation"]["zones"]
    assert len(zone["region"]) == 4 and len(zone["holes"]) == 1 and len(zone["holes"][0]) == 4
    (blob,) = objects.pop("id-blob")
    zones = blob["segmentation"]["zones"]
    assert len(zones) == 2 and sorted(len(z["holes"]) for z in zones) == [0, 1]
    traced = Polygon(tuple((z["region"], *z["holes"]) for z in zones))
    assert np.array_equal(polygon_to_mask(traced, h, w), donut_mask(h, w))
    assert objects.pop("id-point") == [{"schemaId": "id-point", "point": [w / 3, h / 3]}]
    assert objects.pop("id-line") == [{"schemaId": "id-line", "polyline": [[1, 1], [w / 2, h / 3], [w - 2, h - 2]]}]
    (ellipse,) = objects.pop("id-ellipse")
    ring = np.array(ellipse["polygon"])
    assert ring.shape == (64, 2)
    angle = np.radians(-30)
    dx, dy = ring[:, 0] - w / 2, ring[:, 1] - h / 2
    u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    assert np.allclose((u / (w / 5)) ** 2 + (v / (h / 7)) ** 2, 1)
    assert objects.pop("id-person") == [{"schemaId": "id-person", "point": [w / 2, h / 5]},
                                        {"schemaId": "id-person", "point": [w / 2, h / 2]}]
    assert objects.pop("id-cuboid") == [{"schemaId": "id-cuboid", "bounding-box": {"x": 5, "y": 5, "width": 20,
                                                                                   "height": 20}}]
    assert objects == {}, "vectors have no Ango form"
    assert answer["classifications"] == [
        {"schemaId": "id-sharp", "answer": "sharp"},
        {"schemaId": "id-weather", "answer": "sunny"},
        {"schemaId": "id-objects", "answer": ["car", "sky"]},
        {"schemaId": "id-caption", "answer": "an astronaut"},
    ]
    assert ango_api.logs() == [], "every class was mapped: nothing to tell the user"
    assert ango_api.calls_to("/v2/project") == [], "dataURL given: no asset lookup"


def test_without_mapping_objects_carry_titles(plugin_url, image_url):
    answer = post(plugin_url, message(dataURL=image_url, categorySchema=None)).json()["response"]
    assert answer["objects"] and all("schemaId" not in o for o in answer["objects"])
    titles = {o["title"] for o in answer["objects"]}
    assert titles == {"Car", "rotated", "donut", "blob", "point", "line", "ellipse", "person", "cuboid"}
    assert next(o for o in answer["objects"] if o["title"] == "Car")["bounding-box"]["x"] == 4
    assert {"title": "weather", "answer": "sunny"} in answer["classifications"]
    assert {"title": "objects", "answer": ["car", "sky"]} in answer["classifications"]


def test_unmapped_classes_are_dropped_and_told_in_the_run_log(plugin_url, image_url, ango_api):
    mapping = [{"schemaId": "id-car", "modelClass": "Car"}, {"schemaId": "id-weather", "modelClass": "weather"}]
    answer = post(plugin_url, message(dataURL=image_url, categorySchema=mapping)).json()["response"]
    assert [o["schemaId"] for o in answer["objects"]] == ["id-car"]
    assert "classifications" not in answer["objects"][0], "the attribute 'occluded' is not mapped"
    assert answer["classifications"] == [{"schemaId": "id-weather", "answer": "sunny"}]
    logged, attributes = ango_api.logs()
    assert logged["level"] == "WARNING" and logged["session"] == "sess-1" and logged["pluginId"] == "plugin-1"
    assert "'blob'" in logged["msg"] and "'donut'" in logged["msg"] and "'Car'" not in logged["msg"]
    assert attributes["msg"] == ("left out the attributes 'occluded': no label category of this run's class "
                                 "mapping names them")
    assert ango_api.calls_to("/v2/pluginLog")[0].apikey == API_KEY


def test_text_model_answers_ner_spans(serve_app, ango_manifest, media_server):
    manifest = ango_manifest(factory="tests/shapes_model.py:TextShapes")
    url = serve_app(create_app(manifest, adapters={"ango": adapter})) + "/ango"
    text_url = media_server.add("story.txt", "Yesterday Tom saw the sun.".encode(), "text/plain")
    answer = post(url, message(dataURL=text_url, categorySchema=None)).json()["response"]
    assert answer["objects"] == [{"title": "name", "ner": {"start": 10, "end": 13}}]
    assert answer["classifications"] == [{"title": "weather", "answer": "sunny"}]


def test_asset_is_looked_up_by_external_id_then_by_task(plugin_url, image_url, ango_api):
    ango_api.assets["asset-ext-1"] = image_url
    reply = post(plugin_url, message())
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"]["objects"]
    (lookup,) = ango_api.calls_to("/v2/project/proj-1/assets")
    assert lookup.apikey == API_KEY
    assert json.loads(lookup.query["filters"][0]) == {"externalId": "asset-ext-1"}

    ango_api.tasks["task-9"] = {"_id": "task-9", "asset": {"_id": "a-9", "data": image_url}}
    reply = post(plugin_url, message(assetId="unknown", taskId="task-9"))
    assert reply.status_code == 200, reply.text
    assert [c.apikey for c in ango_api.calls_to("/v2/task/task-9")] == [API_KEY]

    reply = post(plugin_url, message(assetId="unknown", taskId="task-missing"))
    assert reply.status_code == 502
    assert "failed the asset look-up" in reply.json()["error"] and "task not found" in reply.json()["error"]
    reply = post(plugin_url, message(assetId="unknown", taskId=None))
    assert reply.status_code == 422
    assert reply.json() == {"error": "no asset with external id 'unknown' in project 'proj-1', and the message "
                                     "has no dataURL", "session": "sess-1"}
    assert any("no asset with external id 'unknown'" in log["msg"] for log in ango_api.logs())


def test_an_unreachable_ango_api_is_a_502_naming_it_and_logged_once(serve_app, ango_manifest, caplog):
    closed = f"http://127.0.0.1:{free_port()}"
    url = serve_app(create_app(ango_manifest(api_url=closed), adapters={"ango": adapter})) + "/ango"
    with caplog.at_level(logging.INFO, logger="bridge"):
        reply = post(url, message())  # no dataURL: the asset is looked up, and the run log posted, at `closed`
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error.startswith(f"Ango's API at {closed} failed the asset look-up: ConnectionError")
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "Plugin callback failed: Ango's API at" in failures[0].getMessage()
    assert not any(r.exc_info for r in failures)  # a BridgeError is told, not traced
    assert any("a log line did not reach Ango" in r.getMessage() for r in caplog.records)
    assert post(url, message(dataURL=None)).status_code == 502  # and the plugin keeps serving


@pytest.mark.parametrize("config, error", [
    ("{not json", "configJSON is not valid JSON: Expecting property name enclosed in double quotes"),
    ('{"threshold": 7}', "configJSON: invalid parameter threshold: 7 is greater than the maximum of 1"),
    ('["a"]', "configJSON must be a JSON object of the model's parameters, got list"),
])
def test_bad_config_fails_the_run_with_a_message_in_angos_log(plugin_url, image_url, ango_api, config, error):
    reply = post(plugin_url, message(dataURL=image_url, configJSON=config))
    assert reply.status_code == 422
    assert reply.json()["error"].startswith(error) and reply.json()["session"] == "sess-1"
    (logged,) = [log["msg"] for log in ango_api.logs() if log["level"] == "ERROR"]  # told once
    assert logged.startswith(f"Plugin callback failed: {error}")
    assert ango_api.calls_to("/v2/project") == []


def test_valid_config_reaches_the_model(plugin_url, image_url):
    config = json.dumps({"threshold": 0.9, "only": ["point"]})
    answer = post(plugin_url, message(dataURL=image_url, configJSON=config)).json()["response"]
    assert [o["schemaId"] for o in answer["objects"]] == ["id-point"]


def test_unreachable_image_fails_the_run(plugin_url, media_server, ango_api):
    reply = post(plugin_url, message(dataURL=f"{media_server.base}/status/404"))
    assert reply.status_code == 422
    assert reply.json()["error"] == f"image.url answered HTTP 404: {media_server.base}/status/404"
    closed = "http://127.0.0.1:9/scene.png"
    reply = post(plugin_url, message(dataURL=closed))
    assert reply.status_code == 422 and reply.json()["error"].startswith(f"could not fetch image.url {closed}")
    assert sum("image.url" in log["msg"] for log in ango_api.logs()) >= 2


def test_secret_header_is_checked(plugin_url, image_url):
    for secret in (None, "wrong", SECRET + "x", ""):
        reply = post(plugin_url, message(dataURL=image_url), secret=secret)
        assert reply.status_code == 401 and reply.json() == {"error": "missing or wrong secret in the Secret header"}
        headers = {"Secret": secret} if secret is not None else {}
        assert httpx.get(f"{plugin_url}/heartbeat", headers=headers).status_code == 401
    beat = httpx.get(f"{plugin_url}/heartbeat", headers={"Secret": SECRET})
    assert beat.status_code == 200 and beat.json() == "ok"


def test_no_configured_secret_refuses_every_call(serve_app, ango_manifest):
    url = serve_app(create_app(ango_manifest(secret=""), adapters={"ango": adapter})) + "/ango"
    reply = httpx.get(f"{url}/heartbeat", headers={"Secret": ""})
    assert reply.status_code == 401 and "platforms.ango.secret" in reply.json()["error"]


def test_model_exception_fails_that_run_only(plugin_url, image_url, ango_api):
    reply = post(plugin_url, message(dataURL=image_url, configJSON='{"fail": true}'))
    assert reply.status_code == 500
    assert reply.json() == {"error": "the model failed: RuntimeError: boom: the model failed on purpose",
                            "session": "sess-1"}
    assert any("boom" in log["msg"] for log in ango_api.logs())
    assert post(plugin_url, message(dataURL=image_url, session="sess-2")).json()["session"] == "sess-2"
    assert post(plugin_url, {"not": "a run"}).status_code == 422
    broken = httpx.post(f"{plugin_url}/plugin", content=b"{",
                        headers={"Secret": SECRET, "Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    assert post(plugin_url, message(dataURL=image_url, categorySchema=[{"id": 1}])).status_code == 422
    assert post(plugin_url, message(dataURL=image_url)).status_code == 200


def test_workflow_run_posts_the_answer_to_the_task(plugin_url, image_url, ango_api):
    ango_api.assets["asset-ext-1"] = image_url
    reply = post(plugin_url, message(workflow=True, taskId="task-7", stage="Plugin-1"))
    assert reply.status_code == 200 and reply.json() is None
    (annotate,) = ango_api.calls_to("/v2/annotate/")
    assert annotate.method == "POST" and annotate.path == "/v2/annotate/task-7"
    assert annotate.query == {"nextStage": ["true"], "isPlugin": ["true"]}
    assert annotate.apikey == API_KEY
    body = annotate.body
    assert body["duration"] == 0 and body["brushDataUrl"] is None
    assert {"schemaId": "id-weather", "answer": "sunny"} in body["answer"]["classifications"]
    assert body["answer"]["objects"][0]["bounding-box"]["x"] == 4


def test_the_adapter_is_installed_and_lists_what_ango_loses():
    assert discover()["ango"] is adapter
    manifest = Manifest(name="m", model={"factory": "m:M"}, geometry={"simplify_tolerance": 0})
    warnings = adapter.check(ModelSpec(classes=CLASSES), AngoSection(secret="x"), manifest)
    assert [w.split(" (")[0].split(":")[0] for w in warnings] == [
        "class 'ellipse'", "class 'person'", "class 'cuboid'", "class 'vector'", "confidence"]
    assert "dropped" in warnings[-2]
    assert adapter.check(ModelSpec(classes=CLASSES[:1]), AngoSection(), manifest) == [
        "confidence: dropped: Ango's answer carries no confidence",
        "platforms.ango.secret is not set: the endpoint refuses every request (write `secret: ${NAME}` and export "
        "NAME)"]


# --- conversions ------------------------------------------------------------------------------------------------


def test_shapes_follow_the_class_kind():
    spec = ModelSpec(classes=[ClassSpec(name="outline", kind="polygon"), ClassSpec(name="area", kind="mask"),
                              ClassSpec(name="turned", kind="rotated_box")])
    square = np.zeros((20, 20), bool)
    square[5:10, 5:10] = True
    predictions = [Prediction("outline", Mask(square)),
                   Prediction("area", Polygon.from_ring([(1, 1), (4, 1), (4, 4)])),
                   Prediction("turned", RotatedBox(10, 10, 4, 2, 190), id="obj-1")]
    # the core gives each shape its class's kind (`bridge.core.outputs`); the adapter translates by shape
    predictions = finish(predictions, spec, Finish(seen=(20, 20), canvas=(20, 20)))
    answer, unmapped, attributes = to_answer(predictions, spec, AngoSection(), None)
    assert unmapped == attributes == []
    outline, area, turned = answer["objects"]
    assert np.array_equal(polygon_to_mask(Polygon.from_ring(outline["polygon"]), 20, 20), square)
    assert area["segmentation"]["zones"][0]["holes"] == []
    assert turned == {"title": "turned", "objectId": "obj-1", "rotated-bounding-box": {
        "x": 8, "y": 9, "width": 4, "height": 2, "rotation": -170}}


def test_category_schema_must_be_a_list_of_mappings():
    assert class_ids(None) is None and class_ids([]) is None
    assert class_ids([{"schemaId": "1", "modelClass": "a", "extra": 1}]) == {"a": "1"}
    for bad in ({"a": "1"}, [{"schemaId": 1, "modelClass": "a"}], ["a"]):
        with pytest.raises(Exception, match="categorySchema must be a list"):
            class_ids(bad)
