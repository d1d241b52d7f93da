"""Fuzz and load on loopback: garbage and mutated requests to every endpoint, then concurrent clients.

Bounded and seeded: a fixed number of requests, all to 127.0.0.1. Garbage must get a 4xx with a JSON error
message (never a 500 or a traceback), and the server must answer a good request afterwards.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from bridge.serving.app import create_app
from tests.conftest import b64, encode_image
from tests.test_ango import ango_api  # noqa: F401 (a fixture: Ango's REST API on loopback, for run logs)

SECRET = "fuzz-secret"
ROUNDS = 60  # per endpoint


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choices = ["null", "bool", "int", "float", "str", "list", "dict"] if depth < 3 else ["int", "str", "null"]
    kind = rng.choice(choices)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 2**63, rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([1e308, -0.0, rng.uniform(-1e6, 1e6)])
    if kind == "str":
        return rng.choice(["", "x" * rng.randint(1, 50), "http://", "data:,", "\u0000\ud7ff", "AAAA"])
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["image", "video", "url", "base64", "params", "bbox", "prompt", "parts", "role", "text",
            "frame_urls", "details", "configJSON", "categorySchema", "dataURL", "x", "w"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate(rng: random.Random, value: Any) -> Any:
    """Replace one leaf or branch of a valid request with something random."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: mutate(rng, value[key])}
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        return [*value[:index], mutate(rng, value[index]), *value[index + 1:]]
    return random_json(rng)


def valid_requests(image: str, url: str) -> dict[str, tuple[dict, dict]]:
    return {
        "/v7/infer": ({"image": {"base64": image}, "params": {"only": ["box"]}}, {}),
        "/labelbox/infer": ({"prompt": [{"role": "user", "parts": [{"image": image}]}], "only": ["box"]},
                            {"authorization": f"Bearer {SECRET}"}),
        "/ango/plugin": ({"session": "s", "apiKey": "k", "dataURL": url, "configJSON": "{}",
                          "categorySchema": None}, {"Secret": SECRET}),
    }


def check_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500 or response.status_code == 504, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict) and body.get("error"), body
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/v7/infer", "/labelbox/infer", "/ango/plugin"])
def test_garbage_and_mutated_requests_get_clear_4xx_and_the_server_keeps_serving(serve_app, make_manifest,
                                                                                   media_server, ango_api, path):
    manifest = make_manifest(
        model={"factory": "tests/shapes_model.py:AllShapes"},
        params={"type": "object", "properties": {"only": {"type": "array", "items": {"type": "string"}}}},
        limits={"fetch_timeout": 1.0, "concurrency": 2},
        platforms={"v7": {}, "labelbox": {"secret": SECRET},
                   "ango": {"secret": SECRET, "plugin_id": "p", "api_url": ango_api.base}},
    )
    base = serve_app(create_app(manifest))
    image = encode_image(np.random.default_rng(3).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    valid, headers = valid_requests(b64(image), media_server.add("image.png", image))[path]
    rng = random.Random(f"fuzz{path}")
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        assert client.post(path, json=valid).status_code == 200
        for round_ in range(ROUNDS):
            if round_ % 3 == 0:
                content = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            elif round_ % 3 == 1:
                content = json.dumps(random_json(rng)).encode()
            else:
                content = json.dumps(mutate(rng, valid)).encode()
            response = client.post(path, content=content, headers={"content-type": "application/json"})
            if response.status_code == 200:  # a mutation may still be a valid request
                continue
            check_error(response)
        assert client.post(path, json=valid).status_code == 200


def test_concurrent_clients_all_get_their_own_answers(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"}, limits={"concurrency": 2})
    base = serve_app(create_app(manifest))
    from skimage import data

    face = b64(encode_image(data.astronaut(), "JPEG"))
    empty = b64(encode_image(np.full((120, 160, 3), 90, np.uint8)))

    def ask(i: int) -> tuple[int, int]:
        image = face if i % 2 == 0 else empty
        response = httpx.post(f"{base}/v7/infer", json={"image": {"base64": image}}, timeout=60)
        faces = [r for r in response.json()["results"] if r["name"] == "face"]
        return i, len(faces) if response.status_code == 200 else -1

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(pool.map(ask, range(40)))
    assert answers == {i: 1 if i % 2 == 0 else 0 for i in range(40)}
