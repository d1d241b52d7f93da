"""Ango under failure: an API that hangs or fails never holds a run past its deadline, never takes capacity
from the other platforms, and what can be retried is; answers the SDK cannot merge are told, not crashed on."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np

from adapters.ango import adapter as ango_adapter
from adapters.v7 import adapter as v7_adapter
from bridge.serving.app import create_app
from tests.conftest import b64, encode_image
from tests.test_ango import PARAMS, SECRET, ango_api, message, post  # noqa: F401 (ango_api: a fixture)


def test_a_hanging_ango_api_holds_no_run_past_its_deadline_nor_other_platforms(serve_app, make_manifest,
                                                                                   ango_api, media_server):
    ango_api.hang["/v2/pluginLog"] = 30  # every run-log line hangs
    manifest = make_manifest(
        model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS,
        limits={"deadline": 3, "fetch_timeout": 1, "concurrency": 2},
        platforms={"v7": {}, "ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter, "v7": v7_adapter}))
    image = media_server.add("scene.png", encode_image(np.zeros((40, 60, 3), np.uint8)))
    replies: list[httpx.Response] = []
    runs = [threading.Thread(target=lambda: replies.append(post(f"{base}/ango", message(
        dataURL=image, configJSON="{not json" if i % 2 else "{}", categorySchema=None)))) for i in range(6)]
    for run in runs:
        run.start()
    # meanwhile V7 is answered: Ango's runs wait on Ango, not on V7's capacity
    v7 = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(encode_image(np.zeros((40, 60, 3), np.uint8)))},
                                              "params": {"only": ["point"]}}, timeout=20)
    assert v7.status_code == 200
    for run in runs:
        run.join(30)
    assert len(replies) == 6
    statuses = sorted(reply.status_code for reply in replies)
    assert set(statuses) <= {200, 422, 504}, [r.text for r in replies]
    assert 422 in statuses or 504 in statuses  # the bad configs failed, whatever their log lines did


def test_a_workflow_answer_is_retried_while_ango_fails_then_delivered(serve_app, make_manifest, ango_api,
                                                                      media_server):
    ango_api.failures["/v2/annotate/"] = [503, 502]
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS,
                             platforms={"ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    image = media_server.add("scene.png", encode_image(np.zeros((40, 60, 3), np.uint8)))
    reply = post(f"{base}/ango", message(dataURL=image, workflow=True, taskId="task-3"))
    assert reply.status_code == 200
    assert [c.path for c in ango_api.calls_to("/v2/annotate/")] == ["/v2/annotate/task-3"] * 3


def test_overwrite_false_without_a_class_mapping_keeps_what_can_be_merged(serve_app, make_manifest, ango_api,
                                                                          media_server):
    ango_api.tasks["task-1"] = {"_id": "task-1", "answer": {"tools": [], "classifications": [], "relations": []}}
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS,
                             platforms={"ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    image = media_server.add("scene.png", encode_image(np.zeros((40, 60, 3), np.uint8)))
    reply = post(f"{base}/ango", message(dataURL=image, overwrite=False, categorySchema=None))
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"]["classifications"] == []
    assert any("left out the classifications" in log["msg"] for log in ango_api.logs())


def test_a_config_nested_too_deep_is_a_422(serve_app, make_manifest, ango_api, media_server):
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS,
                             platforms={"ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    deep = "[" * 100_000 + "]" * 100_000
    reply = post(f"{base}/ango", message(dataURL="http://127.0.0.1:9/x.png", configJSON=deep))
    assert reply.status_code == 422 and reply.json()["error"].startswith("configJSON is nested too deeply")
    assert json.loads(json.dumps(reply.json()))["session"] == "sess-1"


def test_a_hanging_task_read_with_overwrite_off_frees_the_run_threads(serve_app, make_manifest, ango_api):
    """The SDK reads the task (to merge into its answer) with a client of its own and no timeout: every call to
    Ango's API goes through the bridge's bounded client instead, so runs are answered again as soon as Ango is."""
    from adapters.ango import RUN_THREADS
    from tests.test_ango import wait_until

    ango_api.tasks["task-1"] = {"_id": "task-1", "answer": {"tools": [], "classifications": [], "relations": []}}
    ango_api.hang["/v2/task/"] = 60  # longer than `post` waits for an answer: a run stuck behind it fails the test
    manifest = make_manifest(
        model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS, limits={"fetch_timeout": 1},
        platforms={"ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    image = "data:image/png;base64," + b64(encode_image(np.zeros((40, 60, 3), np.uint8)))  # no fetch to time out
    replies: list[httpx.Response] = []
    storm = [threading.Thread(target=lambda i=i: replies.append(post(f"{base}/ango", message(
        dataURL=image, overwrite=False, categorySchema=None, session=f"hung-{i}")))) for i in range(RUN_THREADS)]
    for run in storm:
        run.start()
    wait_until(lambda: len(ango_api.calls_to("/v2/task/")) >= RUN_THREADS, 30)  # every run thread reads the task
    ango_api.hang.clear()  # Ango is back: the next run is answered, not queued behind the hung reads
    reply = post(f"{base}/ango", message(dataURL=image, overwrite=False, categorySchema=None, session="after"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["session"] == "after"
    for run in storm:
        run.join(30)
    assert len(replies) == RUN_THREADS
    assert {reply.status_code for reply in replies} == {502}, [reply.text for reply in replies]
    assert all(r.json()["error"].startswith(f"Ango's API at {ango_api.base} failed reading task task-1")
               for r in replies)


def test_a_workflow_answer_ango_refuses_is_a_502_naming_its_api_and_status(serve_app, make_manifest, ango_api,
                                                                           media_server):
    ango_api.failures["/v2/annotate/"] = [400]
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"}, params=PARAMS,
                             platforms={"ango": {"plugin_id": "p", "secret": SECRET, "api_url": ango_api.base}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    image = media_server.add("scene.png", encode_image(np.zeros((40, 60, 3), np.uint8)))
    reply = post(f"{base}/ango", message(dataURL=image, workflow=True, taskId="task-3"))
    assert reply.status_code == 502, reply.text
    assert reply.json() == {"session": "sess-1", "error": (
        f"Ango's API at {ango_api.base} did not take the workflow answer of task task-3: answered 400 to POST "
        "/v2/annotate/task-3: try again")}
    assert len(ango_api.calls_to("/v2/annotate/")) == 1  # a refusal is not retried
