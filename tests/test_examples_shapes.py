"""examples/shapes.py over HTTP: requests arriving together share one `predict_batch` call and each gets its
own answer; the shapes it never saw in training are told apart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from bridge.core.manifest import load_manifest
from bridge.serving.app import create_app
from examples.shapes import SHAPES, draw
from tests.conftest import ROOT, b64, encode_image


def test_shapes_are_classified_and_requests_share_batches(serve_app):
    app = create_app(load_manifest(ROOT / "manifests/shapes.yaml"))
    base = serve_app(app)
    model = app.state.service.model
    calls = []
    original = model.predict_batch
    model.predict_batch = lambda images, contexts: calls.append(len(images)) or original(images, contexts)

    rng = np.random.default_rng(12345)  # not the training seed
    shapes = [draw(rng, i % len(SHAPES)) for i in range(48)]

    def ask(shape: tuple[np.ndarray, int]) -> tuple[str, str]:
        image, kind = shape
        answer = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(encode_image(image))}}, timeout=60)
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        return result["name"], SHAPES[kind]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, shapes))
    correct = sum(found == truth for found, truth in answers)
    assert correct >= 0.9 * len(shapes), answers
    assert sum(calls) == len(shapes) and max(calls) > 1  # batches of several requests
