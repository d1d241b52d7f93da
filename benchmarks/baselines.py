"""What benchmarks/run.py measures the bridge against, and the models it serves. Run only by run.py.

- `flask_app`: V7's documented Flask pattern (000/001 of the platform docs: the image written to a temporary
  file and opened with PIL), serving the same face detector as the bridge, under `gunicorn -w N`. The docs'
  snippet writes the file without flushing it, which reads an empty file for small images: flushed here.
- `bare_app`: the least a FastAPI server does for the same request: parse the JSON, decode the image,
  return a fixed answer. The no-op model through the bridge is compared with it.
- `bare_faces_app`: the face detector behind a bare FastAPI endpoint (`uvicorn --workers 2`), a peer a user
  would pick (LitServe's is `litserve_faces.py`, Ray Serve's `ray_plain.py`).
- `NoOp`: a model that returns one fixed box, so that only the bridge's own cost is measured.
- `bridge_app`: the bridge's app for `uvicorn --factory` (the old way of running several workers).
- `model_alone`: the face detector called in a loop on a decoded image, the ceiling of any server.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from PIL import Image

from bridge import Box, ClassSpec, Context, ModelSpec, Prediction
from examples.faces import FaceDetector

ROOT = Path(__file__).resolve().parents[1]


class NoOp:
    """One fixed box, whatever the image."""

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("thing", Box(1.0, 2.0, 3.0, 4.0), 0.5)]


def flask_app():
    from flask import Flask, jsonify, request

    app = Flask(__name__)
    model = FaceDetector()
    params = {"threshold": 0.0, "min_neighbors": 5}

    def resolve_image(image_spec: dict[str, str]) -> Image.Image:
        if "url" in image_spec:
            with tempfile.NamedTemporaryFile() as file:
                urllib.request.urlretrieve(image_spec["url"], file.name)
                return Image.open(file.name).convert("RGB")
        elif "base64" in image_spec:
            with tempfile.NamedTemporaryFile() as file:
                file.write(base64.decodebytes(image_spec["base64"].encode("utf-8")))
                file.flush()
                return Image.open(file.name).convert("RGB")
        raise ValueError("Invalid image spec")

    @app.route("/v7/infer", methods=["POST"])
    def infer():
        payload = request.json
        try:
            return jsonify(faces_answer(model, np.asarray(resolve_image(payload["image"])), params))
        except Exception:
            return jsonify(status="failed", results=[])

    return app


def bare_app() -> FastAPI:
    app = FastAPI()
    answer = {"status": "succeeded", "results": [
        {"name": "thing", "label": "thing", "confidence": 0.5, "bounding_box": {"x": 1, "y": 2, "w": 3, "h": 4}}]}

    def decode(data: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    @app.post("/v7/infer")
    async def v7(request: Request) -> dict:
        decode((await request.json())["image"]["base64"])
        return answer

    @app.post("/labelbox/infer")
    async def labelbox(request: Request) -> dict:
        decode((await request.json())["prompt"][-1]["parts"][-1]["image"])
        return {"thing": {"boxes": [[1, 2, 3, 4]], "scores": [0.5]}}

    return app


def faces_answer(model: FaceDetector, image: np.ndarray, params: dict) -> dict:
    """V7's answer for the face detector, as the Flask pattern writes it."""
    results = []
    for p in model.predict(image, Context(params=params)):
        name = {"face": "Face", "eye": "Eye"}[p.label]
        result = {"name": name, "label": name, "confidence": p.confidence}
        if p.label == "face":
            result["bounding_box"] = {"x": p.shape.x, "y": p.shape.y, "w": p.shape.w, "h": p.shape.h}
        else:
            result["keypoint"] = {"x": p.shape.x, "y": p.shape.y}
        results.append(result)
    return {"status": "succeeded", "results": results}


def bare_faces_app() -> FastAPI:
    """The face detector behind a bare FastAPI endpoint (the model on the event loop, as written naively)."""
    app = FastAPI()
    model = FaceDetector()
    params = {"threshold": 0.0, "min_neighbors": 5}

    @app.post("/v7/infer")
    async def v7(request: Request) -> dict:
        data = base64.b64decode((await request.json())["image"]["base64"])
        return faces_answer(model, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), params)

    return app


def bridge_app():
    from bridge.core.manifest import load_manifest
    from bridge.serving.app import create_app

    return create_app(load_manifest(os.environ.get("BRIDGE_MANIFEST", ROOT / "manifests/default.yaml")))


def model_alone(image_bytes: bytes, seconds: float, counter) -> None:
    """In a process of its own: decode the image once, predict in a loop; add the count to `counter`."""
    image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    model = FaceDetector()
    context = Context(params={"threshold": 0.0, "min_neighbors": 5})
    model.predict(image, context)
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        model.predict(image, context)
        done += 1
    with counter.get_lock():
        counter.value += done
