"""The seam after `predict` (`bridge.core.outputs`): checks that name the class, clamps, placement, thresholds.

All of it runs on a worker thread, in the same call as the model: a `/healthz` sent while a job's outlines
are being clipped is answered before that job.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from bridge.core.errors import ModelFailed
from bridge.core.loading import build_model
from bridge.core.manifest import ManifestError
from bridge.core.service import Job, Service
from bridge.platforms.registry import discover
from tests.test_service import image_job, run


def test_post_processing_runs_off_the_event_loop(make_manifest):
    """While the job's outlines are clipped, the event loop keeps turning (other requests are served)."""
    manifest = make_manifest(model={"factory": "tests.service_models:NoisyOutlines"})

    async def go() -> tuple[int, int]:
        service = Service(manifest, build_model(manifest, discover()))
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0.001)
                turns += 1

        ticker = asyncio.create_task(other_work())
        try:
            job = asyncio.create_task(service.run(image_job(np.zeros((300, 300, 3), np.uint8))))
            await asyncio.to_thread(service.model.returned.wait, 60)
            at_return = turns  # the model has returned: its outlines are being checked and clipped now
            result = await job
            return turns - at_return, len(result.predictions)
        finally:
            ticker.cancel()
            await service.aclose()

    turns_during_post_processing, found = asyncio.run(go())
    assert found == 4
    # on the loop, clipping would have stopped every other coroutine until the job ended
    assert turns_during_post_processing >= 20


@pytest.mark.parametrize("fault, words", [
    ("small mask", "class 'blob' has a mask of 30x20 (width x height) on an image of 60x40: a mask must have "
                   "the size of the image the model was given"),
    ("nan box", "class 'box' has a Box with a NaN, infinite or non-numeric coordinate"),
    ("huge box", "class 'box' has a Box with a NaN, infinite or non-numeric coordinate"),
    ("infinite line", "class 'path' has a Line with a NaN, infinite or non-numeric coordinate"),
])
def test_faulty_shapes_fail_naming_the_class(make_manifest, fault, words):
    manifest = make_manifest(model={"factory": "tests.service_models:Faulty"})
    _, (result,) = run(manifest, image_job(np.zeros((40, 60, 3), np.uint8), params={"fault": fault}))
    assert isinstance(result, ModelFailed) and result.status == 500
    assert result.message == f"the model returned a bad prediction: {words}"


def test_confidences_are_clamped_and_logged_once_per_class(make_manifest, caplog):
    manifest = make_manifest(model={"factory": "tests.service_models:Faulty"})
    with caplog.at_level(logging.WARNING, logger="bridge"):
        _, results = run(manifest, *(image_job(params={"fault": "confidences"}) for _ in range(3)))
    for result in results:
        assert sorted(p.confidence for p in result.predictions if p.label == "mark") == [0.0, 0.0, 1.0]
    clamped = [r for r in caplog.records if "clamped" in r.getMessage()]
    assert len(clamped) == 1 and "class 'mark'" in clamped[0].getMessage()


def test_spans_must_lie_inside_the_text_and_quote_it(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Spans"})
    text = "hello world"
    _, (outside, misquoted, good) = run(
        manifest,
        Job(platform="test", text=text, params={"start": 5, "end": 500}),
        Job(platform="test", text=text, params={"start": 6, "end": 11, "quote": "earth"}),
        Job(platform="test", text=text, params={"start": 0, "end": 5, "quote": "hello"}),
    )
    assert isinstance(outside, ModelFailed)
    assert outside.message == ("the model returned a bad prediction: class 'word' has the span [5, 500) outside "
                               "the text of 11 characters (end is exclusive)")
    assert [p.shape.text for p in misquoted.predictions] == ["world"]  # the text's own slice
    assert [p.shape.text for p in good.predictions] == ["hello"]


def test_min_confidence_per_class_and_per_platform(make_manifest):
    def labels(platform: str, **keys) -> list[str]:
        manifest = make_manifest(model={"factory": "tests.service_models:Scored"}, **keys)
        _, (result,) = run(manifest, image_job(platform=platform))
        return sorted(p.label for p in result.predictions)

    assert labels("test") == ["a", "b"]
    assert labels("test", min_confidence=0.5) == ["b"]
    assert labels("test", min_confidence={"default": 0.5, "classes": {"a": 0.2}}) == ["a", "b"]
    assert labels("test", min_confidence={"classes": {"b": 0.9}}) == ["a"]
    # a platform's section overrides the manifest's thresholds for that platform only
    overridden = {"min_confidence": 0.5, "platforms": {"v7": {"min_confidence": {"classes": {"b": 0.7}}}}}
    assert labels("v7", **overridden) == []
    assert labels("labelbox", **overridden) == ["b"]


def test_min_confidence_naming_an_unknown_class_is_a_manifest_error(make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Scored"},
                             min_confidence={"classes": {"c": 0.5}})
    with pytest.raises(ManifestError, match="min_confidence names c, not classes of the model \\(a, b\\)"):
        run(manifest, image_job())  # refused when the service starts, before any request
