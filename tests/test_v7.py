"""V7 Darwin BYOM over real HTTP: every neutral shape against V7's schema, auth, media, region, errors."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import av
import httpx
import jsonschema
import numpy as np
import pytest

from adapters.v7 import V7Section, to_results
from bridge import Context
from bridge.core.geometry import Outlines, polygon_to_mask
from bridge.core.predictions import Polygon
from bridge.serving.app import create_app
from tests.conftest import b64, encode_image, free_port
from tests.shapes_model import AllShapes, donut_mask

CONTRACTS = Path(__file__).parent / "contracts"
RESPONSE_SCHEMA = json.loads((CONTRACTS / "v7-inference-response.schema.json").read_text())
REQUEST_SCHEMA = json.loads((CONTRACTS / "v7-inference-request.schema.json").read_text())
V7_CLASS_TYPES = {"bounding_box", "cuboid", "ellipse", "line", "keypoint", "polygon", "skeleton", "tag"}
"""The class types V7 documents for registering a model's classes."""


def valid_v7(answer: dict) -> dict:
    jsonschema.validate(answer, RESPONSE_SCHEMA, cls=jsonschema.Draft202012Validator)
    return answer


def by_name(results: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for result in results:
        grouped.setdefault(result["name"], []).append(result)
    return grouped


@pytest.fixture
def shapes_server(serve_app, make_manifest):
    manifest = make_manifest(
        model={"factory": "tests/shapes_model.py:AllShapes"},
        geometry={"simplify_tolerance": 0},
        platforms={"v7": {"rename": {"box": "Car"}, "tag_name": "{class}: {option}"}},
    )
    return serve_app(create_app(manifest))


@pytest.fixture
def image_128() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)


# --- contract -------------------------------------------------------------------------------------------------


def test_every_neutral_shape_leaves_as_a_valid_v7_result(shapes_server, image_128):
    body = {"image": {"base64": b64(encode_image(image_128))}}
    jsonschema.validate(body, REQUEST_SCHEMA)
    response = httpx.post(f"{shapes_server}/v7/infer", json=body)
    assert response.status_code == 200
    answer = valid_v7(response.json())
    assert answer["status"] == "succeeded"
    results = by_name(answer["results"])
    main = {name: [k for k in sorted(V7_CLASS_TYPES) if k in r[0]] for name, r in results.items()}
    assert main == {
        "Car": ["bounding_box"], "rotated": ["polygon"], "donut": ["polygon"], "blob": ["polygon"],
        "point": ["keypoint"], "line": ["line"], "ellipse": ["ellipse"], "person": ["skeleton"],
        "cuboid": ["cuboid"], "sharp": ["tag"],  # no vector: V7 registers no vector class
        "weather: sunny": ["tag"], "objects: car": ["tag"], "objects: sky": ["tag"], "caption": ["tag"],
    }
    car = results["Car"][0]
    assert car["label"] == "Car" and car["confidence"] == 0.9
    assert car["bounding_box"] == {"x": 4.0, "y": 6.0, "w": 40.0, "h": 32.0}
    assert car["attributes"] == ["occluded"] and car["text"] == {"text": "a box"}
    assert results["sharp"][0]["confidence"] == 1.0  # the model said 1.5
    assert results["caption"][0]["text"] == {"text": "an astronaut"}
    assert len(results["rotated"][0]["polygon"]["path"]) == 4
    assert results["ellipse"][0]["ellipse"]["angle"] == pytest.approx(math.radians(330))
    assert [n["name"] for n in results["person"][0]["skeleton"]["nodes"]] == ["head", "hip"]
    assert "name" not in results  # entity spans have no V7 form


def test_holed_polygon_keeps_its_hole_in_additional_paths(shapes_server, image_128):
    answer = httpx.post(f"{shapes_server}/v7/infer", json={"image": {"base64": b64(encode_image(image_128))},
                                                           "params": {"only": ["donut"]}}).json()
    (donut,) = valid_v7(answer)["results"]
    polygon = donut["polygon"]
    assert len(polygon["additional_paths"]) == 1
    xs = [p["x"] for p in polygon["additional_paths"][0]]
    assert min(xs) == pytest.approx(160 * 0.4) and max(xs) == pytest.approx(160 * 0.6)


def test_mask_leaves_as_polygon_with_holes_and_parts_that_rasterise_back(shapes_server, image_128):
    answer = httpx.post(f"{shapes_server}/v7/infer", json={"image": {"base64": b64(encode_image(image_128))},
                                                           "params": {"only": ["blob"]}}).json()
    (blob,) = valid_v7(answer)["results"]
    rings = [blob["polygon"]["path"], *blob["polygon"]["additional_paths"]]
    assert len(rings) == 3  # the ring's outside, its hole, and the separate square
    polygon = Polygon(tuple((np.array([[p["x"], p["y"]] for p in ring]),) for ring in rings))
    # V7 fills the paths even-odd: rasterised that way they give back exactly the model's mask.
    assert np.array_equal(polygon_to_mask(polygon, 128, 160), donut_mask(128, 160))


def test_classes_lists_v7_types_with_renames_and_option_tags(shapes_server):
    classes = httpx.get(f"{shapes_server}/v7/classes").json()
    assert all(set(c) == {"name", "type"} and c["type"] in V7_CLASS_TYPES for c in classes)
    names = {c["name"]: c["type"] for c in classes}
    assert names["Car"] == "bounding_box" and names["blob"] == "polygon" and names["point"] == "keypoint"
    assert names["weather: sunny"] == names["weather: rainy"] == "tag"
    assert {"objects: car", "objects: tree", "objects: sky"} <= set(names)
    assert "name" not in names  # an entity class has no V7 type


def test_request_envelope_external_model_and_params_image_are_tolerated(shapes_server, image_128):
    image = {"base64": b64(encode_image(image_128))}
    envelope = {"message": "infer request", "details": {"image": image, "params": {"id": "x", "only": ["point"]}}}
    test_page = {"image": image, "params": {"only": ["point"]},
                 "external_model": {"url": "http://x", "auth": {"method": "none"}, "name": "m", "transform": "none"}}
    only_in_params = {"params": {"image": image, "only": ["point"]}}
    for body in (envelope, test_page, only_in_params):
        answer = valid_v7(httpx.post(f"{shapes_server}/v7/infer", json=body).json())
        assert [r["name"] for r in answer["results"]] == ["point"], body.keys()


def test_to_results_is_a_pure_function_usable_without_a_server(image_128):
    model = AllShapes()
    predictions = model.predict(image_128, Context())
    results = to_results([p for p in predictions if p.label != "sharp"], model.spec, V7Section(), Outlines(tolerance=0.5))
    valid_v7({"status": "succeeded", "results": results})


# --- auth -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth, good, bad", [
    ({"method": "basic", "username": "v7", "password": "s3cret"},
     {"authorization": "Basic " + base64.b64encode(b"v7:s3cret").decode()},
     {"authorization": "Basic " + base64.b64encode(b"v7:guess").decode()}),
    ({"method": "header", "header": "X-My-Auth", "secret": "tok"}, {"X-My-Auth": "tok"}, {"X-My-Auth": "toc"}),
])
def test_auth_accepts_the_right_credentials_only(serve_app, make_manifest, monkeypatch, astronaut_jpeg,
                                                 auth, good, bad):
    monkeypatch.setenv("TEST_V7_SECRET", auth.get("password") or auth.get("secret"))
    key = "password" if auth["method"] == "basic" else "secret"
    manifest = make_manifest(model={"factory": "examples/blur.py:BlurDetector"},
                             platforms={"v7": {"auth": {**auth, key: "${TEST_V7_SECRET}"}}})
    base = serve_app(create_app(manifest))
    body = {"image": {"base64": b64(astronaut_jpeg)}}
    for headers in (bad, {}, {"authorization": "Basic !!!"}):
        for response in (httpx.post(f"{base}/v7/infer", json=body, headers=headers),
                         httpx.get(f"{base}/v7/classes", headers=headers)):
            assert response.status_code == 401
            assert response.json()["status"] == "failed" and "wrong" in response.json()["error"]
    malformed = httpx.post(f"{base}/v7/infer", content=b"{not json",
                           headers={**bad, "content-type": "application/json"})
    assert malformed.status_code == 401  # credentials first: a stranger learns nothing of the request form
    assert httpx.get(f"{base}/v7/classes", headers=good).json() == [{"name": "Blurry Image", "type": "tag"}]
    assert httpx.post(f"{base}/v7/infer", json=body, headers=good).json() == {"status": "succeeded", "results": []}


def test_auth_secret_missing_from_the_environment_is_a_manifest_error(make_manifest, monkeypatch):
    from bridge.core.manifest import ManifestError

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ManifestError, match=r"platforms\.v7\.auth\.secret: environment variable NOT_SET_ANYWHERE"):
        make_manifest(model={"factory": "examples/blur.py:BlurDetector"},
                      platforms={"v7": {"auth": {"method": "header", "secret": "${NOT_SET_ANYWHERE}"}}})


# --- the examples on real images, images by URL ---------------------------------------------------------------


@pytest.fixture
def faces_server(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             platforms={"v7": {"rename": {"face": "Face"}}})
    return serve_app(create_app(manifest))


def test_face_detector_finds_the_astronauts_face_by_url(faces_server, media_server, astronaut_jpeg):
    url = media_server.add("astronaut.jpg", astronaut_jpeg, "image/jpeg")
    answer = valid_v7(httpx.post(f"{faces_server}/v7/infer", json={"image": {"url": url}, "params": {}}).json())
    faces = [r for r in answer["results"] if r["name"] == "Face"]
    assert len(faces) == 1
    box = faces[0]["bounding_box"]
    # Eileen Collins' face in skimage's astronaut() spans about x 170-280, y 60-170.
    assert 150 < box["x"] < 200 and 40 < box["y"] < 90 and 70 < box["w"] < 140
    eyes = [r["keypoint"] for r in answer["results"] if r["name"] == "eye"]
    assert 1 <= len(eyes) <= 2 and all(box["x"] < e["x"] < box["x"] + box["w"] for e in eyes)


def test_auto_annotate_box_crops_and_results_come_back_in_full_image_coordinates(faces_server, astronaut_jpeg):
    image = {"base64": b64(astronaut_jpeg)}
    whole = httpx.post(f"{faces_server}/v7/infer", json={"image": image}).json()["results"][0]["bounding_box"]
    region = {"x": 120, "y": 10, "w": 220, "h": 230}
    cropped = httpx.post(f"{faces_server}/v7/infer", json={"image": image, "params": {"bbox": region}}).json()
    box = valid_v7(cropped)["results"][0]["bounding_box"]
    assert box["x"] >= region["x"] and box["y"] >= region["y"]
    assert abs(box["x"] - whole["x"]) < 12 and abs(box["y"] - whole["y"]) < 12  # same face, not crop-relative
    nothing = httpx.post(f"{faces_server}/v7/infer",
                         json={"image": image, "params": {"bbox": {"x": 0, "y": 300, "w": 100, "h": 100}}})
    assert nothing.json() == {"status": "succeeded", "results": []}  # no face in the sky


def test_grabcut_segments_a_ring_with_its_hole(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "examples/grabcut.py:GrabCutSegmenter"},
                             params={"type": "object", "properties": {"iterations": {"type": "integer", "default": 5}}})
    base = serve_app(create_app(manifest))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    radius = np.hypot(yy - 100, xx - 100)
    image = np.full((200, 200, 3), (40, 160, 40), np.int16)
    image[(radius < 60) & (radius > 25)] = (220, 40, 40)
    image = np.clip(image + rng.integers(-15, 15, image.shape), 0, 255).astype(np.uint8)
    body = {"image": {"base64": b64(encode_image(image))}, "params": {"bbox": {"x": 35, "y": 35, "w": 130, "h": 130}}}
    (ring,) = valid_v7(httpx.post(f"{base}/v7/infer", json=body).json())["results"]
    assert ring["name"] == "object" and len(ring["polygon"]["additional_paths"]) == 1
    hole = np.array([[p["x"], p["y"]] for p in ring["polygon"]["additional_paths"][0]])
    assert np.allclose(hole.mean(axis=0), (100, 100), atol=5)
    assert 20 < np.hypot(*(hole - 100).T).mean() < 30
    without_box = httpx.post(f"{base}/v7/infer", json={"image": body["image"]})
    assert without_box.status_code == 422 and "auto-annotate" in without_box.json()["error"]


def test_blur_classifier_tags_blurry_images_only(serve_app, make_manifest, astronaut):
    import cv2

    base = serve_app(create_app(make_manifest(model={"factory": "examples/blur.py:BlurDetector"})))
    sharp = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(encode_image(astronaut))}}).json()
    assert sharp == {"status": "succeeded", "results": []}
    blurry = encode_image(cv2.GaussianBlur(astronaut, (21, 21), 6))
    answer = valid_v7(httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(blurry)}}).json())
    assert [(r["name"], "tag" in r) for r in answer["results"]] == [("Blurry Image", True)]
    assert 0.5 < answer["results"][0]["confidence"] <= 1


# --- video ----------------------------------------------------------------------------------------------------


def make_video(frames: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def test_video_frames_and_video_url_give_results_per_frame(shapes_server, media_server, image_128):
    frames = [encode_image(np.roll(image_128, i, axis=1)) for i in range(3)]
    body = {"video": {"frame_urls": [{"url": media_server.add(f"f{i}.png", f)} for i, f in enumerate(frames)]},
            "params": {"only": ["box"]}}
    answer = valid_v7(httpx.post(f"{shapes_server}/v7/infer", json=body).json())
    assert [(r["name"], r["frame"]) for r in answer["results"]] == [("Car", 0), ("Car", 1), ("Car", 2)]

    video = make_video([image_128] * 4)
    url = media_server.add("clip.mp4", video, "video/mp4")
    answer = valid_v7(httpx.post(f"{shapes_server}/v7/infer",
                                 json={"video": {"url": url}, "params": {"only": ["point"]}}).json())
    assert [r["frame"] for r in answer["results"]] == [0, 1, 2, 3]


# --- bad input: a clear message, the right status, and the server keeps serving --------------------------------


def test_bad_inputs_fail_clearly_and_the_server_keeps_serving(serve_app, make_manifest, media_server, image_128):
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"},
                             limits={"max_image_pixels": 200 * 200, "max_request_bytes": 2_000_000,
                                     "deadline": 1.0, "fetch_timeout": 0.5, "allow_private_urls": True,
                                     "concurrency": 2},  # a worker stays free while a timed-out model sleeps
                             params={"type": "object", "properties": {"sleep": {"type": "number", "maximum": 5},
                                                                     "fail": {"type": "boolean"},
                                                                     "only": {"type": "array"}}})
    base = serve_app(create_app(manifest))
    good = {"image": {"base64": b64(encode_image(image_128))}, "params": {"only": ["point"]}}
    closed = f"http://127.0.0.1:{free_port()}/x.png"
    cases = [
        (b"{not json", 400, "not valid JSON"),
        ({"image": {}}, 422, "url"),
        ({"picture": {"url": "x"}}, 422, "exactly one of `image` and `video`"),
        ({"image": {"base64": "@@@"}}, 400, "not valid base64"),
        ({"image": {"base64": b64(b"GIF89a but not really")}}, 422, "not an image"),
        ({"image": {"base64": b64(encode_image(np.zeros((300, 300, 3), np.uint8)))}}, 413, "max_image_pixels"),
        ({"image": {"url": closed}}, 422, "could not fetch"),
        ({"image": {"url": media_server.base + "/status/404"}}, 422, "HTTP 404"),
        ({"image": {"url": media_server.base + "/slow/3"}}, 504, "fetch_timeout"),
        ({"image": {"url": "file:///etc/passwd"}}, 400, "http(s) URL"),
        ({**good, "params": {"fail": True}}, 500, "boom"),
        ({**good, "params": {"sleep": 2}}, 504, "limits.deadline"),
        ({**good, "params": {"sleep": "long"}}, 422, "sleep"),
        ({**good, "params": {"bbox": {"x": 1}}}, 422, "bbox"),
        ({**good, "params": {"bbox": {"x": 500, "y": 500, "w": 10, "h": 10}}}, 422, "outside the image"),
        (b"x" * 2_100_000, 413, "max_request_bytes"),
    ]
    with httpx.Client(timeout=10) as client:
        for body, status, message in cases:
            if isinstance(body, bytes):
                response = client.post(f"{base}/v7/infer", content=body, headers={"content-type": "application/json"})
            else:
                response = client.post(f"{base}/v7/infer", json=body)
            assert response.status_code == status, (body if isinstance(body, dict) else body[:20], response.text)
            answer = valid_v7(response.json())
            assert answer["status"] == "failed" and answer["results"] == []
            assert message in answer["error"], answer["error"]
            assert "Traceback" not in answer["error"]
            assert client.post(f"{base}/v7/infer", json=good).json()["status"] == "succeeded"


def test_private_addresses_are_refused_unless_the_manifest_allows_them(serve_app, make_manifest, media_server,
                                                                    image_128):
    url = media_server.add("i.png", encode_image(image_128))
    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"},
                             limits={"allow_private_urls": False})
    base = serve_app(create_app(manifest))
    for target in (url, "http://169.254.169.254/latest/meta-data/", "http://[::1]/x"):
        response = httpx.post(f"{base}/v7/infer", json={"image": {"url": target}})
        assert response.status_code == 400 and "limits.allow_private_urls" in response.json()["error"]
    assert media_server.requests == []  # refused before connecting
