"""The Ango Batch Model plugin: the SDK's own plugin code (REST connector in-process, and `bridge ango --batch`
over Socket.IO against the loopback hub), paging, chunked imports, progress in the run log, and resume, all
against the loopback stand-in of Ango's REST API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from adapters.ango import adapter
from adapters.ango import batch as ango_batch
from adapters.ango.plugin import plugin_class, sdk_plugins
from adapters.ango.section import AngoSection
from bridge.core.loading import build_model
from bridge.core.service import Service
from bridge.platforms.registry import discover
from tests.conftest import encode_image
from tests.test_ango import API_KEY, SECRET, ango_api, message  # noqa: F401 (ango_api: a fixture)
from tests.test_ango_hub import bridge_ango, hub, hub_manifest  # noqa: F401 (fixtures)

MAPPING = [{"schemaId": "schema-box", "modelClass": "box"}, {"schemaId": "schema-weather", "modelClass": "weather"}]


@pytest.fixture
def project(ango_api, media_server) -> list[str]:
    """Seven assets: five images in batch b-1, one outside it, and one that is not an image."""
    image = encode_image(np.full((48, 64, 3), 100, np.uint8))
    names = [f"asset-{i}" for i in range(6)]
    for number, name in enumerate(names):
        ango_api.assets[name] = media_server.add(f"{name}.png", image)
        ango_api.batches[name] = {"b-1"} if number < 5 else {"b-2"}
    ango_api.assets["broken"] = media_server.add("broken.png", b"not an image", "image/png")
    ango_api.batches["broken"] = {"b-1"}
    return names


@pytest.fixture
def batch_plugin(make_manifest, ango_api, monkeypatch) -> Iterator[Any]:
    """The Batch Model plugin on the SDK's REST-connector ModelPlugin, its service on a background loop."""
    monkeypatch.setattr(ango_batch, "PAGE", 2)
    monkeypatch.setattr(ango_batch, "CHUNK", 3)
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params={
        "type": "object", "properties": {"only": {"type": "array", "default": ["box", "weather"]}}},
        platforms={"ango": {"plugin_id": "batch-1", "secret": SECRET, "api_url": ango_api.base}})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Service, Any]:  # on the loop, as `bridge serve`'s lifespan makes its plugin
        service = Service(manifest, build_model(manifest, discover()))
        base = plugin_class(sdk_plugins("REST"), "REST", manifest.limits.fetch_timeout)
        return service, ango_batch.batch_plugin(base, adapter, service, manifest.section("ango", AngoSection), loop)

    service, plugin = asyncio.run_coroutine_threadsafe(start(), loop).result()
    yield plugin
    asyncio.run_coroutine_threadsafe(service.aclose(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def run_message(**keys: Any) -> dict[str, Any]:
    keys.setdefault("batches", ["b-1"])
    return {key: value for key, value in message(categorySchema=MAPPING, **keys).items()
            if key not in ("taskId", "assetId", "workflow")}


def test_a_run_pages_runs_imports_in_chunks_and_a_rerun_resumes(batch_plugin, ango_api, project):
    from imerit_ango.plugins import BatchModelPlugin

    assert isinstance(batch_plugin, BatchModelPlugin)
    answer = batch_plugin.on_plugin(run_message(session="batch-1"))
    assert answer == {"response": "pre-labelled 5 of 6 assets, 1 failed", "session": "batch-1"}

    listings = ango_api.calls_to("/v2/project/proj-1/assets")
    assert [c.query["page"] for c in listings] == [["1"], ["2"], ["3"], ["4"]]  # until a short page
    assert all(c.apikey == API_KEY and '"isPreLabeled": false' in c.query["filters"][0]
               and '"batches": ["b-1"]' in c.query["filters"][0] for c in listings)
    imports = ango_api.calls_to("/v2/import/labels")
    assert [len(c.body["jsonContent"]) for c in imports] == [3, 2]  # chunks of 3; the broken one is left out
    labels = [label for c in imports for label in c.body["jsonContent"]]
    assert sorted(label["externalId"] for label in labels) == project[:5]
    assert all(c.body["project"] == "proj-1" for c in imports)
    assert labels[0]["objects"] == [{"schemaId": "schema-box",
                                     "bounding-box": {"x": 4.0, "y": 6.0, "width": 16.0, "height": 12.0}}]
    assert labels[0]["classifications"] == [{"schemaId": "schema-weather", "answer": "sunny"}]

    logs = [log["msg"] for log in ango_api.logs() if log["session"] == "batch-1"]
    assert "pre-labelling 6 assets of project proj-1 without labels" in logs
    assert any(msg.startswith("asset broken failed: image.url is not an image") for msg in logs)
    assert "3/6 assets: 3 pre-labelled, 0 failed" in logs and "6/6 assets: 5 pre-labelled, 1 failed" in logs

    again = batch_plugin.on_plugin(run_message(session="batch-2"))
    assert again["response"] == "pre-labelled 0 of 1 assets, 1 failed"  # only the failure is tried again
    assert len(ango_api.calls_to("/v2/import/labels")) == 2

    ango_api.assets["broken"] = ango_api.assets["asset-0"]
    assert batch_plugin.on_plugin(run_message(session="batch-3"))["response"] == "pre-labelled 1 of 1 assets, 0 failed"
    assert batch_plugin.on_plugin(run_message(session="batch-4", batches=[]))["response"] == \
        "pre-labelled 1 of 1 assets, 0 failed"  # no batch given: the whole project (asset-5 of b-2)


def test_a_run_over_two_batches_pre_labels_the_assets_of_either(batch_plugin, ango_api, project):
    """The SDK documents `get_assets`' `batches` filter as an AND ("assets should have both"), and the stand-in
    API filters so: one listing with both batches found no asset. A run over two batches means either."""
    import inspect

    from imerit_ango.sdk import SDK

    assert "assets should have both" in inspect.getdoc(SDK.get_assets)
    ango_api.batches["asset-0"] = {"b-1", "b-2"}  # in both: listed twice, run once
    answer = batch_plugin.on_plugin(run_message(session="either", batches=["b-1", "b-2"]))
    assert answer["response"] == "pre-labelled 6 of 7 assets, 1 failed"
    filters = [json.loads(c.query["filters"][0]) for c in ango_api.calls_to("/v2/project/proj-1/assets")]
    assert {tuple(f["batches"]) for f in filters} == {("b-1",), ("b-2",)}  # one batch per listing
    imported = [label["externalId"] for c in ango_api.calls_to("/v2/import/labels") for label in c.body["jsonContent"]]
    assert sorted(imported) == project  # asset-0 to asset-4 of b-1, asset-5 of b-2, each once


def test_a_bad_config_fails_the_run_with_its_reason(batch_plugin, ango_api, project):
    assert batch_plugin.on_plugin(run_message(configJSON="{", session="bad")) is None
    assert any(log["level"] == "ERROR" and log["msg"].startswith("configJSON is not valid JSON")
               for log in ango_api.logs())
    assert not ango_api.calls_to("/v2/import/labels")


def test_ango_refusing_a_listing_or_an_import_is_told_with_its_status(batch_plugin, ango_api, project):
    ango_api.failures["/v2/project/"] = [403]
    assert batch_plugin.on_plugin(run_message(session="refused-list")) is None
    ango_api.failures["/v2/import/labels"] = [400]
    assert batch_plugin.on_plugin(run_message(session="refused-import")) is None
    errors = [log["msg"] for log in ango_api.logs() if log["level"] == "ERROR"]
    assert f"Ango's API at {ango_api.base} did not list the project's assets: answered 403 to GET " \
           "/v2/project/proj-1/assets: try again" in errors
    assert f"Ango's API at {ango_api.base} did not import the labels after 0/6: answered 400 to POST " \
           "/v2/import/labels: try again; run again to resume" in errors


def test_bridge_ango_batch_over_the_hub(hub, hub_manifest, ango_api, project):  # noqa: F811
    with bridge_ango(hub_manifest(), "--batch"):
        hub.heartbeat()
        reply = hub.run(run_message(session="hub-batch"), timeout=60)
        assert reply == {"response": "pre-labelled 5 of 6 assets, 1 failed", "session": "hub-batch"}
        assert sorted(label["externalId"] for c in ango_api.calls_to("/v2/import/labels")
                      for label in c.body["jsonContent"]) == project[:5]
        assert any(log["msg"] == "6/6 assets: 5 pre-labelled, 1 failed" for log in hub.logs)
