"""The service and the app, whatever the platform: deadline, failures, concurrency, the region of interest,
checks on what a model returns, health routes, body limits, confidences, video frames and batching.

Over real HTTP through the V7 routes (uvicorn on loopback), or with `Service.run` in an event loop.
Models are in tests/service_models.py; each records what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import httpx
import numpy as np
import pytest
import uvicorn

from bridge.core.batching import Batcher
from bridge.core.errors import (
    BadRequest,
    BridgeError,
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    TooLarge,
)
from bridge.core.geometry import polygon_to_mask
from bridge.core.loading import build_model
from bridge.core.manifest import Manifest
from bridge.core.model import Context, Prompts
from bridge.core.predictions import (
    Box,
    Classification,
    Line,
    Mask,
    Point,
    Polygon,
    Prediction,
)
from bridge.core.service import Job, Result, Service, Source, VideoSource
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from tests.conftest import _ThreadedUvicorn, b64, encode_image, free_port

H, W = 100, 150
RECT = (slice(40, 60), slice(90, 115))  # rows 40-59, columns 90-114: a 25 x 20 bright rectangle


def scene() -> np.ndarray:
    """Black, with the bright rectangle and one bright pixel at (5, 5) far from it."""
    image = np.zeros((H, W, 3), np.uint8)
    image[RECT] = 255
    image[5, 5] = 255
    return image


def png_b64(image: np.ndarray) -> str:
    return b64(encode_image(image))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def run(manifest: Manifest, *jobs: Job) -> tuple[Any, list[Result | BaseException]]:
    """Build the manifest's model, run the jobs at once on one Service, close it; (model, results)."""

    async def go():
        service = Service(manifest, build_model(manifest, discover()))
        try:
            return service.model, await asyncio.gather(*(service.run(j) for j in jobs), return_exceptions=True)
        finally:
            await service.aclose()

    return asyncio.run(go())


def image_job(image: np.ndarray | None = None, box: Box | None = None, **keys: Any) -> Job:
    keys.setdefault("platform", "test")
    keys.setdefault("prompts", Prompts(box=box))
    return Job(image=Source(base64=png_b64(scene() if image is None else image)), **keys)


def infer(base: str, image: np.ndarray | None = None, **params: Any) -> httpx.Response:
    body = {"image": {"base64": png_b64(scene() if image is None else image)}, "params": params}
    return httpx.post(f"{base}/v7/infer", json=body, timeout=30)


@pytest.mark.parametrize("inline_below, on_the_loop", [(None, 0), (1.0, 4)])
def test_a_fast_model_runs_on_the_event_loop_only_where_the_manifest_allows_it(make_manifest, inline_below,
                                                                              on_the_loop):
    """By default every call goes to a model thread (a call on the loop could hang the process); with
    `limits.inline_below`, calls on small images run on the loop once the last 8 took under it."""
    limits = {} if inline_below is None else {"inline_below": inline_below}
    manifest = make_manifest(model={"factory": "tests.service_models:WhereRuns"}, limits=limits)

    async def go() -> list[str]:
        service = Service(manifest, build_model(manifest, discover()))
        try:
            for _ in range(12):  # one after another: a call on the loop needs no other call in flight
                await service.run(image_job(np.zeros((8, 8, 3), np.uint8)))
            return service.model.threads
        finally:
            await service.aclose()

    threads = asyncio.run(go())
    assert len(threads) == 12 and threads.count(threading.main_thread().name) == on_the_loop


# --- deadline and failures over HTTP -----------------------------------------------------------------------------


def test_deadline_answers_504_while_the_server_keeps_serving(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Gate"},
                             limits={"deadline": 1.0, "concurrency": 1})
    app = create_app(manifest)
    base = serve_app(app)
    model = app.state.service.model
    try:
        answer = infer(base)  # the model blocks until released
        assert answer.status_code == 504
        body = answer.json()
        assert body["status"] == "failed" and body["results"] == []
        assert "took longer than 1 s (limits.deadline)" in body["error"]
        assert model.started.is_set() and model.finished == 0  # answered while the model was still at work

        # the server keeps serving while the model's thread is busy, and says it is stuck
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").json() == {"status": "degraded", "stuck_calls": 1}
        assert httpx.get(f"{base}/v7/classes").status_code == 200

        # with every model thread stuck, a new job is refused at once (503), not left to wait for a 504
        queued = infer(base, hold=0)
        assert queued.status_code == 503 and queued.headers["retry-after"]
    finally:
        model.release.set()
    wait_until(lambda: model.finished == 1)

    # one model thread takes jobs in order: a refused job that was queued anyway would run before this one
    again = infer(base, hold=0)
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    assert model.calls == 2


def test_model_exception_fails_that_request_only(serve_app, make_manifest):
    base = serve_app(create_app(make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"})))
    failed = infer(base, fail=True)
    assert failed.status_code == 500
    body = failed.json()
    assert body["status"] == "failed" and body["results"] == []
    assert "RuntimeError" in body["error"] and "boom: the model failed on purpose" in body["error"]
    assert "Traceback" not in failed.text
    ok = infer(base)
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded" and ok.json()["results"]


def test_a_model_may_refuse_its_input_with_422(serve_app, make_manifest):
    base = serve_app(create_app(make_manifest(model={"factory": "tests.service_models:Misbehaving"})))
    answer = infer(base, bad="refuse")
    assert answer.status_code == 422
    assert answer.json()["error"] == "the image is too dark to say anything"


def test_bad_prediction_over_http(serve_app, make_manifest):
    base = serve_app(create_app(make_manifest(model={"factory": "tests.service_models:Misbehaving"})))
    answer = infer(base, bad="radio")
    assert answer.status_code == 500
    assert "'weather' answered 'snowy', not one of its options ['sunny', 'rainy']" in answer.json()["error"]
    assert infer(base).status_code == 200


def test_invalid_params_answer_422_naming_the_parameter(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"},
                             params={"type": "object", "properties": {
                                 "threshold": {"type": "number", "maximum": 1, "default": 0.5}}})
    base = serve_app(create_app(manifest))
    answer = infer(base, threshold=5)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("invalid parameter threshold:")
    assert infer(base, threshold=0.7).status_code == 200


# --- the deadline and the worker pool, directly -------------------------------------------------------------------


def test_deadline_on_service_run(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Gate"}, limits={"deadline": 0.5})
    model, (result,) = run(manifest, image_job())
    still_running = model.finished == 0
    model.release.set()
    assert isinstance(result, DeadlineExceeded) and result.status == 504
    assert "took longer than 0.5 s (limits.deadline)" in result.message
    assert model.started.is_set() and still_running  # it answered without waiting for the model


@pytest.mark.parametrize("concurrency", [1, 2])
def test_concurrency_limit_is_respected(make_manifest, concurrency):
    manifest = make_manifest(model={"factory": "tests.service_models:Gate"},
                             limits={"concurrency": concurrency})
    model, results = run(manifest, *(image_job(params={"hold": 0.25}) for _ in range(5)))
    assert all(isinstance(r, Result) for r in results), results
    assert model.calls == 5
    assert model.most_running == concurrency


@pytest.mark.parametrize("concurrency", [1, 3])
def test_async_model_runs_on_the_loop_within_the_concurrency_limit(make_manifest, concurrency):
    manifest = make_manifest(model={"factory": "tests.service_models:Awaiting"},
                             limits={"concurrency": concurrency})
    model, results = run(manifest, *(image_job(params={"hold": 0.1}) for _ in range(6)))
    assert [[(p.label, p.confidence) for p in r.predictions] for r in results] == [[("thing", 0.75)]] * 6
    assert model.most_running == concurrency
    assert model.threads == {"MainThread"}  # awaited on the event loop, not on a worker thread


def test_async_model_is_cancelled_at_the_deadline_and_its_errors_are_500s(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Awaiting"},
                             limits={"deadline": 2.0, "concurrency": 3})  # time to decode on a busy machine
    model, (late, failed, fine) = run(manifest, image_job(params={"hold": 5}), image_job(params={"fail": True}),
                                      image_job())
    assert isinstance(late, DeadlineExceeded) and model.cancelled == 1 and model.running == 0
    assert isinstance(failed, ModelFailed) and "the remote service said no" in failed.message
    assert isinstance(fine, Result) and fine.predictions[0].label == "thing"


def grey(level: int) -> np.ndarray:
    return np.full((8, 8, 3), level, np.uint8)


def test_requests_arriving_together_share_one_predict_batch_call(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"},
                             limits={"batch_wait": 0.5, "batch_size": 4})
    levels = [10, 20, 30, 40, 50]
    model, results = run(manifest, *(image_job(grey(level)) for level in levels))
    assert model.batches == [4, 1]  # four leave as soon as they fill a batch, the fifth after batch_wait
    assert [r.predictions[0].text for r in results] == [str(level) for level in levels]  # no mix-up


def test_without_batch_wait_each_request_is_its_own_call(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"}, limits={"batch_size": 4})
    model, results = run(manifest, *(image_job(grey(level)) for level in (1, 2, 3)))
    assert model.batches == [1, 1, 1] and all(isinstance(r, Result) for r in results)


def test_a_batch_error_fails_each_of_its_requests(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"},
                             limits={"batch_wait": 0.2, "batch_size": 4})
    model, results = run(manifest, image_job(grey(1)), image_job(grey(2), params={"fail": True}))
    assert model.batches == [2]
    assert all(isinstance(r, ModelFailed) and "one bad item fails its batch" in r.message for r in results)



def test_a_request_that_gives_up_leaves_its_batch():
    async def go() -> list[list[str]]:
        seen: list[list[str]] = []

        async def predict(items: list[str], contexts: list[Context], finishes: list) -> list[list[Prediction]]:
            seen.append(items)
            return [[] for _ in items]

        batcher = Batcher(predict, size=4, wait=0.3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.predict("late", Context()), 0.05)
        assert await batcher.predict("on time", Context()) == []  # joined the batch the late one opened
        return seen

    assert asyncio.run(go()) == [["on time"]]


# --- the region of interest ---------------------------------------------------------------------------------------


def test_region_crop_results_come_back_in_full_image_coordinates(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    region = Box(80, 30, 50, 40)  # holds the rectangle, not the lone pixel at (5, 5)
    model, (result,) = run(manifest, image_job(box=region))
    assert model.seen == [(40, 50, 3)]  # the model saw the crop
    assert model.contexts[0].region == region and not model.contexts[0].prompts
    expected = np.zeros((H, W), bool)
    expected[RECT] = True
    found = {p.label: p.shape for p in result.predictions}
    assert result.size == (H, W)
    assert found["box"] == Box(90, 40, 25, 20)
    assert isinstance(found["mask"], Mask) and found["mask"].size == (H, W)
    np.testing.assert_array_equal(found["mask"].array, expected)
    np.testing.assert_array_equal(polygon_to_mask(found["polygon"], H, W), expected)
    assert found["point"] == Point(90.5, 40.5)
    np.testing.assert_allclose(found["line"].points, [[90.5, 40.5], [114.5, 59.5]])


def test_region_is_snapped_outward_and_clipped_to_the_image(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    fractional = image_job(box=Box(80.5, 30.2, 49, 39.3))
    partly_outside = image_job(box=Box(100, -20, 100, 70))
    model, (snapped, clipped) = run(manifest, fractional, partly_outside)
    assert sorted(model.seen) == [(40, 50, 3), (50, 50, 3)]
    assert {p.label: p.shape for p in snapped.predictions}["box"] == Box(90, 40, 25, 20)
    assert {p.label: p.shape for p in clipped.predictions}["box"] == Box(100, 40, 15, 10)


@pytest.mark.parametrize("region", [Box(200, 10, 20, 20), Box(-50, -50, 10, 10), Box(10, 10, 0, 5)])
def test_region_outside_the_image_is_invalid_input(make_manifest, region):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    model, (result,) = run(manifest, image_job(box=region))
    assert isinstance(result, InvalidInput) and "outside the image" in result.message
    assert model.seen == []


def test_region_over_http_via_v7_bbox(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"},
                             geometry={"simplify_tolerance": 0})
    base = serve_app(create_app(manifest))
    answer = infer(base, bbox={"x": 80, "y": 30, "w": 50, "h": 40})
    assert answer.status_code == 200, answer.text
    results = {r["name"]: r for r in answer.json()["results"]}
    assert results["box"]["bounding_box"] == {"x": 90.0, "y": 40.0, "w": 25.0, "h": 20.0}
    assert results["point"]["keypoint"] == {"x": 90.5, "y": 40.5}
    corners = {(90.0, 40.0), (115.0, 40.0), (115.0, 60.0), (90.0, 60.0)}
    for name in ("mask", "polygon"):
        assert {(p["x"], p["y"]) for p in results[name]["polygon"]["path"]} == corners
        assert "additional_paths" not in results[name]["polygon"]


def test_prompted_model_gets_the_full_image_and_the_prompts(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder", "params": {"prompts": True}})
    region = Box(80.5, 30, 50, 40)
    model, (result,) = run(manifest, image_job(box=region))
    assert model.seen == [(H, W, 3)]
    assert model.contexts[0].prompts == Prompts(box=region)  # as sent, in full-image coordinates
    assert model.contexts[0].region is None
    found = {p.label: p.shape for p in result.predictions}
    assert found["box"] == Box(5, 5, 110, 55)  # nothing moved: the lone pixel and the rectangle
    assert found["point"] == Point(5.5, 5.5)


def test_results_are_clipped_to_the_image(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    model, (result,) = run(manifest, image_job(params={"outside": True}))
    points = [p.shape for p in result.predictions if p.label == "point"]
    boxes = [p.shape for p in result.predictions if p.label == "box"]
    assert points == [Point(5.5, 5.5)]  # the point past the right edge is dropped
    assert Box(W - 4, 0, 4, 7) in boxes  # the box over the corner is cut at the edges


# --- what a model returns ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, words", [
    ("label", "label 'cat' is not one of its classes ['box', 'weather', 'objects', 'caption', 'outline']"),
    ("shape", "class 'box' is a box but the model returned a Point"),
    ("polygon_as_box", "class 'outline' is a polygon but the model returned a Box"),
    ("radio", "'weather' answered 'snowy', not one of its options ['sunny', 'rainy']"),
    ("radio_list", "'weather' answered ('sunny',), not one of its options"),
    ("checklist", "'objects' answered ('car', 'boat'), not a list of its options ['car', 'tree']"),
    ("checklist_str", "'objects' answered 'car', not a list of its options"),
    ("text", "'caption' is free text but answered ('a', 'b')"),
    ("not a prediction", "the model returned a bad prediction: got a dict, not a Prediction"),
    ("confidence", "'box' has confidence None, not a number"),
])
def test_bad_predictions_are_model_failures_with_a_clear_message(make_manifest, bad, words):
    manifest = make_manifest(model={"factory": "tests.service_models:Misbehaving"})
    _, (result,) = run(manifest, image_job(params={"bad": bad}))
    assert isinstance(result, ModelFailed) and result.status == 500
    assert words in result.message
    assert result.message.startswith("the model returned a bad prediction:")


LIST = "expected a list of Prediction (an empty list when it finds nothing)"
LISTS = "expected a list holding one list of Prediction per item"


@pytest.mark.parametrize("model, bad, message", [
    ("Misbehaving", "none", f"Misbehaving.predict returned None: {LIST}"),
    ("Misbehaving", "dict", f"Misbehaving.predict returned a dict: {LIST}"),
    ("Misbehaving", "one", f"Misbehaving.predict returned a Prediction: {LIST}"),
    ("AwaitsNothing", None, f"AwaitsNothing.predict returned None: {LIST}"),
    ("BadBatches", "none", f"BadBatches.predict_batch returned None: {LISTS} (1 item)"),
    ("BadBatches", "dict", f"BadBatches.predict_batch returned a dict: {LISTS} (1 item)"),
    ("BadBatches", "one more", f"BadBatches.predict_batch returned 2 lists for 1 item: {LISTS}"),
    ("BadBatches", "none inside", f"BadBatches.predict_batch returned None for item 0: {LIST}"),
])
def test_a_model_returning_no_list_is_told_what_was_expected(make_manifest, model, bad, message):
    """None (a forgotten `return`), a dict or one Prediction: the message names the model's class, its method
    and what it must return, not a TypeError from deep inside the bridge."""
    manifest = make_manifest(model={"factory": f"tests.service_models:{model}"})
    _, (result,) = run(manifest, image_job(params={"bad": bad} if bad else {}))
    assert isinstance(result, ModelFailed) and result.status == 500
    assert result.message == f"the model failed: {message}"


def test_confidences_are_clamped_and_nan_is_zero(make_manifest, serve_app):
    manifest = make_manifest(model={"factory": "tests.service_models:Misbehaving"})
    _, (result,) = run(manifest, image_job(params={"bad": "confidences"}))
    assert [p.confidence for p in result.predictions] == [1.0, 0.0, 0.0, 0.3, 1.0, 0.0]
    base = serve_app(create_app(manifest))
    answer = infer(base, bad="confidences")
    assert answer.status_code == 200
    assert [r["confidence"] for r in answer.json()["results"]] == [1.0, 0.0, 0.0, 0.3, 1.0, 0.0]
    assert "NaN" not in answer.text
    _, (result,) = run(manifest, image_job(params={"bad": "numpy confidence"}))
    assert [p.confidence for p in result.predictions] == [0.25, 1.0]
    assert all(type(p.confidence) is float for p in result.predictions)


def test_input_kinds_must_match_the_model(make_manifest):
    images = make_manifest(model={"factory": "tests.service_models:Finder"})
    _, results = run(images, Job(platform="test", text="hello"), Job(platform="test"))
    assert isinstance(results[0], InvalidInput) and "reads images" in results[0].message
    assert isinstance(results[1], InvalidInput) and "no image" in results[1].message
    texts = make_manifest(model={"factory": "tests.service_models:Echo"})
    _, (wrong, right) = run(texts, image_job(), Job(platform="test", text="hello world"))
    assert isinstance(wrong, InvalidInput) and "reads text" in wrong.message
    assert right.text == "hello world"
    assert right.predictions[0].shape == Classification("hello")


def test_broken_media_in_a_job(make_manifest, media_server):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    url = media_server.add("page.html", b"<html></html>", "text/html")
    jobs = [
        Job(platform="test", image=Source(base64="!!!")),
        Job(platform="test", image=Source(base64=b64(b"not an image"))),
        Job(platform="test", image=Source(url=url)),
        Job(platform="test", image=Source(url=f"{media_server.base}/status/404")),
        Job(platform="test", image=Source(url="file:///etc/passwd")),
        Job(platform="test", image=Source(base64=png_b64(np.zeros((20, 20, 3), np.uint8)))),
    ]
    model, results = run(manifest, *jobs)
    assert [type(r) for r in results] == [BadRequest, InvalidInput, InvalidInput, InvalidInput, BadRequest, Result]
    assert "image.base64" in results[0].message
    assert "image.url" in results[2].message and "HTTP 404" in results[3].message
    assert len(model.seen) == 1


def test_image_over_the_pixel_limit_is_too_large(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"},
                             limits={"max_image_pixels": H * W - 1})
    model, (result,) = run(manifest, image_job())
    assert isinstance(result, TooLarge) and result.status == 413
    assert model.seen == []


def test_an_image_already_decoded_is_taken_as_an_array_like_any_decoded_image(make_manifest):
    """`Source.array` (a caller that holds decoded pixels, e.g. CVAT's agent): grey, RGB, RGBA and 16-bit
    arrays reach the model as (H, W, 3) uint8 RGB, within the pixel limit; other arrays are refused."""
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"}, limits={"max_image_pixels": H * W})
    rgb = scene()
    arrays = [rgb, rgb[:, :, 0], np.dstack([rgb, np.full((H, W), 7, np.uint8)]), rgb.astype(np.uint16) * 257,
              rgb[:, :, 0] > 200, np.asfortranarray(rgb)]
    bad = [np.zeros((H, W + 1, 3), np.uint8), np.zeros((H, W, 2), np.uint8), np.zeros((H, W, 3), np.float32),
           np.zeros((0, W, 3), np.uint8), np.zeros((H, W, 3, 1), np.uint8)]
    model, results = run(manifest, *(Job(platform="test", image=Source(array=a)) for a in arrays + bad))
    assert [next(p.shape for p in r.predictions if p.label == "box") for r in results[:len(arrays)]] == [
        Box(5, 5, 110, 55)] * len(arrays)
    assert model.seen == [(H, W, 3)] * len(arrays) and set(model.dtypes) == {np.dtype(np.uint8)}
    over, channels, floats, empty, dims = results[len(arrays):]
    assert isinstance(over, TooLarge) and over.message == ("image is 151x100 = 15,100 pixels; the limit is 15,000 "
                                                           "(limits.max_image_pixels)")
    assert isinstance(channels, InvalidInput) and "(100, 150, 2)" in channels.message
    assert isinstance(floats, InvalidInput) and "float32" in floats.message
    assert isinstance(empty, InvalidInput) and isinstance(dims, InvalidInput)
    assert (rgb == scene()).all()  # the caller's array is left as it was


# --- video frames and batching ------------------------------------------------------------------------------------


def frame(value: int) -> np.ndarray:
    return np.full((16, 24, 3), value, np.uint8)


def test_video_frames_are_batched_and_indexed(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"}, limits={"batch_size": 5})
    frames = tuple(Source(base64=png_b64(frame(10 * i))) for i in range(12))
    model, (result,) = run(manifest, Job(platform="test", video=VideoSource(frames=frames)))
    assert model.batches == [5, 5, 2] and model.single == 0
    assert [p.frame for p in result.predictions] == list(range(12))
    assert [p.text for p in result.predictions] == [str(10 * i) for i in range(12)]
    assert result.size == (16, 24)


def test_too_many_frame_urls_is_too_large(make_manifest):  # 413, as the README says
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"}, limits={"max_video_frames": 3})
    frames = tuple(Source(base64=png_b64(frame(i))) for i in range(4))
    model, (result,) = run(manifest, Job(platform="test", video=VideoSource(frames=frames)))
    assert isinstance(result, TooLarge) and "limits.max_video_frames" in result.message
    assert model.batches == []


def test_video_url_with_frame_stride(make_manifest, media_server):
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    url = media_server.add("clip.mp4", buffer.getvalue(), "video/mp4")
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"}, video_frame_stride=3,
                             limits={"batch_size": 3})
    model, (result,) = run(manifest, Job(platform="test", video=VideoSource(url=url)))
    assert model.batches == [3, 1]  # decoded and predicted a batch at a time
    assert [p.frame for p in result.predictions] == [0, 3, 6, 9]
    for p in result.predictions:  # frame n is grey level 20 n (lossy codec: roughly)
        assert abs(int(p.text) - 20 * p.frame) < 8


# --- health, readiness and the body limit over HTTP ---------------------------------------------------------------


def test_healthz_and_readyz(serve_app, make_manifest):
    base = serve_app(create_app(make_manifest(model={"factory": "tests.service_models:Finder"})))
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@contextlib.contextmanager
def serve_without_loading(app) -> Iterator[str]:
    """uvicorn with the lifespan off: the app answers, the model is never loaded."""
    port = free_port()
    server = _ThreadedUvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                             lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_not_ready_until_the_model_is_loaded(make_manifest):
    app = create_app(make_manifest(model={"factory": "tests.service_models:Finder"}))
    with serve_without_loading(app) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "loading"}
        answer = infer(base)
        assert answer.status_code == 503 and "still loading" in answer.json()["error"]


def test_request_body_over_the_limit_is_413(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"},
                             limits={"max_request_bytes": 4000})
    base = serve_app(create_app(manifest))
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    declared = infer(base, noise)  # Content-Length says it all
    assert declared.status_code == 413
    assert declared.json()["status"] == "failed" and "limits.max_request_bytes" in declared.json()["error"]

    def chunks():  # no Content-Length: the limit is found while reading
        yield b'{"image": {"base64": "'
        for _ in range(10):
            yield b"A" * 1000
        yield b'"}}'

    streamed = httpx.post(f"{base}/v7/infer", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "limits.max_request_bytes" in streamed.json()["error"]
    small = infer(base, scene())  # a small PNG fits, and the server still serves
    assert small.status_code == 200, small.text
    assert len(small.content) > 0 and math.isfinite(small.json()["results"][0]["confidence"])


def test_every_error_is_a_bridge_error_with_a_status():
    for cls, status in ((BadRequest, 400), (TooLarge, 413), (InvalidInput, 422), (ModelFailed, 500),
                        (DeadlineExceeded, 504)):
        error = cls("message")
        assert isinstance(error, BridgeError) and error.status == status and error.message == "message"


def test_polygon_and_line_types_survive_the_service(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Finder"})
    _, (result,) = run(manifest, image_job())
    kinds = {p.label: type(p.shape) for p in result.predictions}
    assert kinds == {"mask": Mask, "polygon": Polygon, "box": Box, "point": Point, "line": Line}


@pytest.mark.parametrize("prompts, said", [
    (Prompts(box=Box(float("nan"), 10, 20, 20)), "not a finite number"),
    (Prompts(positive=((float("inf"), 3.0),)), "not a finite number"),
    (Prompts(box=Box(10, 10, 0, 20)), "is empty"),
    (Prompts(box=Box(500, 10, 20, 20)), "lies outside the"),
    (Prompts(negative=((5.0, 500.0),)), "the click (5, 500) lies outside the"),
])
def test_prompts_that_cannot_point_at_the_image_are_invalid_input(make_manifest, prompts, said):
    """Checked once, in the core, for every platform's prompts: the model never sees them."""
    manifest = make_manifest(model={"factory": "tests.service_models:Finder", "params": {"prompts": True}})
    model, (result,) = run(manifest, image_job(prompts=prompts))
    assert isinstance(result, InvalidInput) and said in result.message
    assert model.seen == []
