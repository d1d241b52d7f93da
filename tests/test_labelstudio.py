"""The bridge as a Label Studio ML backend, attached to a real Label Studio 1.23.2 on loopback and driven through
Label Studio's own REST API: the predictions Label Studio stores are the model's, interactive calls answer the
shape drawn around, text projects get their spans, webhooks arrive, Uncertainty sampling serves the lowest score
first, and every bad input fails alone with its reason."""

from __future__ import annotations

import json
import logging
import time
from uuid import uuid4
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from adapters.labelstudio.brush import decode_mask
from adapters.labelstudio.mapping import label_config
from adapters.labelstudio.section import LabelStudioSection
from bridge.core.loading import build_model
from bridge.core.manifest import Manifest, load_manifest
from bridge.core.media import MediaLimits, decode_image
from bridge.core.model import Context
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from tests.conftest import ROOT, encode_image
from tests.labelstudio_client import (
    UNCERTAINTY_SAMPLING,
    LabelStudioClient,
    LabelStudioError,
)
from tests.labelstudio_server import LabelStudio

pytestmark = pytest.mark.xdist_group("labelstudio")  # one Label Studio for these tests, on one worker

SAMPLES = ROOT / "bridge" / "samples"
MANIFESTS = ROOT / "manifests"
VERSION = "face-detector-1.0.0"


@pytest.fixture(scope="module")
def studio() -> Iterator[LabelStudio]:
    with LabelStudio() as running:
        yield running


@pytest.fixture(scope="module")
def client(studio: LabelStudio) -> Iterator[LabelStudioClient]:
    with studio.client() as session:
        yield session


@pytest.fixture
def manifest(tmp_path: Path) -> Callable[..., Manifest]:
    """A project manifest served to Label Studio (its section from `section`), loopback media allowed: Label
    Studio runs here."""

    def make(name: str = "default.yaml", **section: Any) -> Manifest:
        raw = yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8"))
        target, _, factory = raw["model"]["factory"].rpartition(":")
        if target.endswith(".py"):
            raw["model"]["factory"] = f"{(MANIFESTS / target).resolve()}:{factory}"
        raw.setdefault("limits", {})["allow_private_urls"] = True
        raw["platforms"] = {"labelstudio": {"rename": {"face": "Face", "eye": "Eye"}, **section}}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return load_manifest(path)

    return make


@pytest.fixture
def backend(serve_app: Callable[..., str]) -> Callable[[Manifest], str]:
    """Serve a manifest; the URL to register with Label Studio."""
    return lambda manifest: serve_app(create_app(manifest)) + "/labelstudio"


def config_for(manifest: Manifest) -> str:
    """The label config `bridge labelstudio-config` prints for the manifest."""
    return label_config(build_model(manifest, discover()).spec, manifest.section("labelstudio", LabelStudioSection))


def faces(path: Path) -> list[list[float]]:
    """The face boxes (x, y, w, h, pixels) the model finds: what V7 and every platform get."""
    model = build_model(load_manifest(MANIFESTS / "default.yaml"), discover())
    found = model.predict(decode_image(path.read_bytes(), MediaLimits()),
                          Context(params={"min_neighbors": 5, "threshold": 0.0}))
    return sorted([p.shape.x, p.shape.y, p.shape.w, p.shape.h] for p in found if p.label == "face")


def by_file(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tasks by the name of their uploaded file (Label Studio prefixes it: `<8 hex>-<name>`)."""
    return {Path(task["data"]["image"]).name.split("-", 1)[1]: task for task in tasks}


@pytest.fixture
def blank(tmp_path: Path) -> Path:
    """An image without a face."""
    path = tmp_path / "blank.png"
    path.write_bytes(encode_image(np.full((64, 96, 3), 128, np.uint8)))
    return path


def test_label_studio_stores_the_models_predictions_one_per_task(client, manifest, backend, blank) -> None:
    served = manifest()
    project = client.create_project(config_for(served))["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg", blank])
    client.add_ml_backend(project, backend(served))
    client.retrieve_predictions(project)
    tasks = by_file(client.tasks(project))
    (stored,) = tasks["astronaut.jpg"]["predictions"]
    assert stored["model_version"] == VERSION
    boxes = [r for r in stored["result"] if r["type"] == "rectanglelabels"]
    assert {r["value"]["rectanglelabels"][0] for r in boxes} == {"Face"}
    size = decode_image((SAMPLES / "astronaut.jpg").read_bytes(), MediaLimits()).shape[1]  # a square image
    assert {(r["original_width"], r["original_height"]) for r in stored["result"]} == {(size, size)}
    percent = sorted([r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"]] for r in boxes)
    np.testing.assert_allclose(percent, np.array(faces(SAMPLES / "astronaut.jpg")) * 100 / size, atol=1e-6)
    assert any(r["type"] == "keypointlabels" and r["value"]["keypointlabels"] == ["Eye"] for r in stored["result"])
    assert stored["score"] == pytest.approx(min(r["score"] for r in stored["result"]))
    (empty,) = tasks["blank.png"]["predictions"]  # no face: an empty prediction, scored as the manifest says
    assert empty["result"] == [] and empty["score"] == 0.0


def test_an_interactive_box_gets_the_segment_drawn_inside_it(client, manifest, backend) -> None:
    """GrabCut takes prompts: the rectangle a user draws in the editor is its box; the answer is the polygon
    tool's region, inside the box."""
    served = manifest("grabcut.yaml")
    project = client.create_project("""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="drawn" toName="image"><Label value="object"/></RectangleLabels>
  <PolygonLabels name="outline" toName="image"><Label value="object"/></PolygonLabels>
</View>""")["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg"])
    attached = client.add_ml_backend(project, backend(served), is_interactive=True)
    (task,) = client.tasks(project)
    size = decode_image((SAMPLES / "astronaut.jpg").read_bytes(), MediaLimits()).shape[1]
    box = {"x": 35.0, "y": 12.0, "width": 25.0, "height": 30.0}  # percent: around the face
    drawn = {"id": "d1", "from_name": "drawn", "to_name": "image", "type": "rectanglelabels",
             "original_width": size, "original_height": size, "image_rotation": 0,
             "value": {**box, "rotation": 0, "rectanglelabels": ["object"]}}
    reply = client.interactive_annotating(attached["id"], task["id"], {"result": [drawn]})
    regions = reply["data"]["result"]
    assert regions and {r["type"] for r in regions} == {"polygonlabels"}
    points = np.array([p for r in regions for p in r["value"]["points"]])
    assert (points[:, 0] >= box["x"] - 1).all() and (points[:, 0] <= box["x"] + box["width"] + 1).all()
    assert (points[:, 1] >= box["y"] - 1).all() and (points[:, 1] <= box["y"] + box["height"] + 1).all()
    assert client.tasks(project)[0]["predictions"] == []  # Label Studio stores no interactive answer


def test_a_text_project_gets_the_entity_spans(client, manifest, backend) -> None:
    served = manifest("text_entities.yaml")
    config = config_for(served)
    project = client.create_project(config)["id"]
    text = "Write to tom@example.com before 3 May 2025, or call +44 20 7946 0958."
    client.import_tasks(project, [{"data": {"text": text}}])
    client.add_ml_backend(project, backend(served))
    client.retrieve_predictions(project)
    ((stored,),) = [task["predictions"] for task in client.tasks(project)]
    spans = {(r["value"]["labels"][0], r["value"]["text"]) for r in stored["result"]}
    assert ("email", "tom@example.com") in spans and ("date", "3 May 2025") in spans
    assert all(text[r["value"]["start"]:r["value"]["end"]] == r["value"]["text"] for r in stored["result"])


def test_a_webhook_arrives_and_training_is_declined(client, manifest, backend, caplog) -> None:
    served = manifest()
    project = client.create_project(config_for(served))["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg"])
    attached = client.add_ml_backend(project, backend(served))
    caplog.set_level(logging.INFO, logger="bridge.labelstudio")
    (task,) = client.tasks(project)
    client.create_annotation(task["id"], [])
    client.train(attached["id"])
    wait_until(lambda: "Label Studio event START_TRAINING: this backend does not train" in caplog.text, 30,
               "the training webhook")
    assert "Label Studio event ANNOTATION_CREATED" in caplog.text


def test_uncertainty_sampling_serves_the_lowest_score_first(client, manifest, backend, blank, tmp_path) -> None:
    served = manifest(empty_score=1.0)  # a task without a face: last
    flipped = tmp_path / "flipped.png"
    flipped.write_bytes(encode_image(decode_image((SAMPLES / "astronaut.jpg").read_bytes(), MediaLimits())[:, ::-1]))
    project = client.create_project(config_for(served))["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg", flipped, blank])
    client.add_ml_backend(project, backend(served))
    client.retrieve_predictions(project)
    scores = {task["id"]: task["predictions"][0]["score"] for task in client.tasks(project)}
    assert len(set(scores.values())) == 3, scores
    client.update_project(project, model_version=VERSION, sampling=UNCERTAINTY_SAMPLING)
    assert client.next_task(project)["id"] == min(scores, key=scores.get)


def test_media_behind_a_personal_access_token(studio, manifest, backend) -> None:
    """With legacy tokens off (the default for new organisations since 1.22), the token /setup sends fetches
    nothing: the task fails alone, saying so; the section's personal access token fetches the media."""
    with studio.client() as legacy:
        personal = legacy.create_personal_token()
        access = legacy.access_token(personal)
    with studio.client(Authorization=f"Bearer {access}") as bearer:
        bearer.jwt_settings(legacy_api_tokens_enabled=False)
        try:
            for section, stored in (({}, 0), ({"api_token": personal}, 1)):
                served = manifest(**section)
                project = bearer.create_project(config_for(served))["id"]
                bearer.import_files(project, [SAMPLES / "astronaut.jpg"])
                bearer.add_ml_backend(project, backend(served))
                bearer.retrieve_predictions(project)
                (task,) = bearer.tasks(project)
                assert len(task["predictions"]) == stored, section
        finally:
            bearer.jwt_settings(legacy_api_tokens_enabled=True)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return found


# --- bad input ----------------------------------------------------------------------------------------------------


def test_basic_auth_lets_label_studio_in_and_no_one_else(client, manifest, backend) -> None:
    served = manifest(auth={"method": "basic", "username": "studio", "password": "s3cret-pass"})
    url = backend(served)
    project = client.create_project(config_for(served))["id"]
    with pytest.raises(LabelStudioError, match="authentication"):
        client.add_ml_backend(project, url, basic_auth=("studio", "wrong"))
    client.add_ml_backend(project, url, basic_auth=("studio", "s3cret-pass"))
    refused = httpx.post(f"{url}/predict", json={"tasks": []})
    assert refused.status_code == 401 and "Basic" in refused.json()["error"]
    assert httpx.post(f"{url}/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 200  # no Basic auth there


def test_a_bad_task_fails_alone_with_its_reason(client, manifest, backend, media_server) -> None:
    """Through Label Studio (an unreachable URL beside an upload), and as Label Studio would send them: each
    failing task answers no `result` (Label Studio skips it and asks again), with its reason."""
    served = manifest()
    url = backend(served)
    project = client.create_project(config_for(served))["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg"])
    client.import_tasks(project, [{"data": {"image": "http://127.0.0.1:9/gone.jpg"}}])
    client.add_ml_backend(project, url)
    client.retrieve_predictions(project)
    stored = {task["data"]["image"]: len(task["predictions"]) for task in client.tasks(project)}
    assert stored.pop("http://127.0.0.1:9/gone.jpg") == 0 and list(stored.values()) == [1]

    good = media_server.add("face.jpg", (SAMPLES / "astronaut.jpg").read_bytes(), "image/jpeg")
    text = media_server.add("note.txt", b"not an image", "text/plain")
    tasks = [{"id": 1, "data": {"image": good}}, {"id": 2, "data": {"image": "http://127.0.0.1:9/gone.jpg"}},
             {"id": 3, "data": {"picture": good}}, {"id": 4, "data": {"image": text}}, {"id": 5}]
    answer = httpx.post(f"{url}/predict", json={"tasks": tasks, "label_config": config_for(served)}, timeout=60)
    assert answer.status_code == 200
    first, *failed = answer.json()["results"]
    assert first["result"] and first["model_version"] == VERSION
    assert all("result" not in entry for entry in failed)
    reasons = [entry["error"] for entry in failed]
    assert "could not fetch" in reasons[0] and "no Image in its data" in reasons[1]
    assert "image" in reasons[2] and "no `data`" in reasons[3]


def test_bad_requests_and_configs_get_clear_answers(manifest, backend) -> None:
    served = manifest()
    url = backend(served)
    broken = httpx.post(f"{url}/predict", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    entity = httpx.post(f"{url}/setup", json={"schema": "<View><Image name='i' value='$image'/>", "project": "9.1"})
    assert entity.status_code == 422 and "not well-formed XML" in entity.json()["error"]
    cars = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image"><Label value="Car"/></RectangleLabels></View>"""
    setup = httpx.post(f"{url}/setup", json={"schema": cars, "project": "9.1", "hostname": "http://127.0.0.1:9"})
    assert setup.status_code == 200 and setup.json()["model_version"] == VERSION
    warnings = setup.json()["warnings"]
    assert ("class 'face' (box): the label config has no label 'Face' in a RectangleLabels or PolygonLabels or "
            "BrushLabels; its predictions are dropped") in warnings
    assert "RectangleLabels 'box': no class of the model answers it" in warnings


def test_private_media_need_the_manifests_permission(manifest, serve_app, media_server) -> None:
    served = manifest()
    refusing = served.model_copy(update={"limits": served.limits.model_copy(update={"allow_private_urls": False})})
    url = serve_app(create_app(refusing)) + "/labelstudio"
    image = media_server.add("face.jpg", (SAMPLES / "astronaut.jpg").read_bytes(), "image/jpeg")
    answer = httpx.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {"image": image}}],
                                                "label_config": config_for(served)}, timeout=60)
    (entry,) = answer.json()["results"]
    assert "limits.allow_private_urls" in entry["error"]


# --- the client role, and the import file -----------------------------------------------------------------------


def test_bridge_check_url_finds_our_backend_keeps_the_contract_and_a_broken_one_not(
        manifest, backend, serve_app, tmp_path, capsys) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from bridge.commands.main import main

    served = manifest()
    config = tmp_path / "config.xml"
    config.write_text(config_for(served), encoding="utf-8")
    url = backend(served)
    assert main(["check", url, "--platform", "labelstudio", "--label-config", str(config)]) == 0
    assert "0 problems: the endpoint keeps the contract" in capsys.readouterr().out

    async def health(request):
        return JSONResponse({"status": "UP"})

    async def setup(request):
        return JSONResponse({"version": 1})

    async def predict(request):  # one answer for two tasks, in V7's form
        return JSONResponse({"results": [{"name": "Face", "bounding_box": {"x": 1, "y": 2, "w": 3, "h": 4}}]})

    broken = serve_app(Starlette(routes=[Route("/health", health), Route("/setup", setup, methods=["POST"]),
                                         Route("/predict", predict, methods=["POST"])]))
    assert main(["check", broken, "--platform", "labelstudio", "--label-config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "POST /setup $.model_version" in out and "is not one entry per task (2)" in out


def test_a_label_studio_backend_serves_as_a_remote_model(manifest, backend, serve_app, tmp_path, media_server):
    """Our backend, as the remote model of a manifest served to V7: the faces come back as the model found
    them (boxes exact up to Label Studio's percentages)."""
    url = backend(manifest())
    remote = tmp_path / "remote.yaml"
    remote.write_text(yaml.safe_dump({
        "name": "faces-through-label-studio", "model": {"remote": {"url": url, "platform": "labelstudio"}},
        "classes": [{"name": "Face", "kind": "box"}, {"name": "Eye", "kind": "point"}],
        "limits": {"allow_private_urls": True}, "platforms": {"v7": {}}}), encoding="utf-8")
    relay = serve_app(create_app(load_manifest(remote)))
    image = (SAMPLES / "astronaut.jpg").read_bytes()
    answer = httpx.post(f"{relay}/v7/infer", json={"image": {"url": media_server.add("a.jpg", image, "image/jpeg")}},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    boxes = sorted([r["bounding_box"][k] for k in "xywh"] for r in answer.json()["results"] if r["name"] == "Face")
    np.testing.assert_allclose(boxes, faces(SAMPLES / "astronaut.jpg"), atol=1e-6)


def test_prelabel_writes_tasks_label_studio_imports(client, manifest, tmp_path, capsys) -> None:
    """`bridge prelabel --to labelstudio`: `tasks.json` (predictions in the backend's own form) and the
    `config.xml` they fit; Label Studio, which checks predictions against the config here, stores them."""
    from bridge.commands.main import main

    served = manifest()
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes((SAMPLES / "astronaut.jpg").read_bytes())
    assert main(["prelabel", str(served.path), str(folder), "--to", "labelstudio", "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "labelstudio"
    tasks = json.loads((out / "tasks.json").read_text())
    assert [task["data"]["identity"] for task in tasks] == ["astronaut.jpg"]
    project = client.create_project((out / "config.xml").read_text())["id"]
    client.import_tasks(project, tasks)
    ((stored,),) = [task["predictions"] for task in client.tasks(project)]
    assert stored["model_version"] == VERSION and stored["result"] == tasks[0]["predictions"][0]["result"]


# --- click to segment: MobileSAM through the editor's auto-annotation ------------------------------------------


def test_mobilesam_segments_what_the_editor_points_at(client, manifest, backend) -> None:
    """A box around the face gives a brush mask inside it; a click on the helmet another mask than one on the
    face; a negative click removes what it touches (the prompts as Label Studio sends them)."""
    pytest.importorskip("onnxruntime", reason="the `sam` extra: pip install -e '.[sam]'")
    from examples.mobilesam import build
    from tests.test_mobilesam import FACE, FACE_BOX, HELMET, PATCH, SUIT

    build.build()  # the ONNX files, once per machine (CI builds them before the tests)
    served = manifest("mobilesam.yaml", rename={"object": "object"})
    project = client.create_project("""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="drawn" toName="image"><Label value="object"/></RectangleLabels>
  <KeyPointLabels name="clicks" toName="image" smart="true"><Label value="object"/></KeyPointLabels>
  <BrushLabels name="mask" toName="image" smart="true"><Label value="object"/></BrushLabels>
</View>""")["id"]
    client.import_files(project, [SAMPLES / "astronaut.jpg"])
    attached = client.add_ml_backend(project, backend(served), is_interactive=True)
    (task,) = client.tasks(project)
    size = decode_image((SAMPLES / "astronaut.jpg").read_bytes(), MediaLimits()).shape[1]
    percent = 100 / size

    def region(kind: str, value: dict, **extra: Any) -> dict:
        return {"id": uuid(), "from_name": "drawn" if kind == "rectanglelabels" else "clicks", "to_name": "image",
                "type": kind, "original_width": size, "original_height": size, "image_rotation": 0,
                "value": {**value, kind: ["object"]}, **extra}

    def click(point: tuple[int, int], positive: bool = True) -> dict:
        return region("keypointlabels", {"x": point[0] * percent, "y": point[1] * percent, "width": 1},
                      is_positive=positive)

    def mask(*regions: dict) -> np.ndarray:
        reply = client.interactive_annotating(attached["id"], task["id"], {"result": list(regions)})
        (found,) = [r for r in reply["data"]["result"] if r["type"] == "brushlabels"]
        return decode_mask(found["value"]["rle"], size, size)

    box = region("rectanglelabels", {"x": FACE_BOX.x * percent, "y": FACE_BOX.y * percent,
                                     "width": FACE_BOX.w * percent, "height": FACE_BOX.h * percent, "rotation": 0})
    face = mask(box)
    inside = np.zeros_like(face)
    inside[FACE_BOX.y:FACE_BOX.y + FACE_BOX.h, FACE_BOX.x:FACE_BOX.x + FACE_BOX.w] = True
    assert (face & inside).sum() >= 0.95 * face.sum() and (face & inside).sum() >= 0.5 * inside.sum()
    helmet, cheek = mask(click(HELMET)), mask(click(FACE))
    assert helmet[HELMET[1], HELMET[0]] and not helmet[FACE[1], FACE[0]]
    assert cheek[FACE[1], FACE[0]] and not cheek[HELMET[1], HELMET[0]]
    suit, without_patch = mask(click(SUIT)), mask(click(SUIT), click(PATCH, positive=False))
    assert suit[PATCH[1], PATCH[0]] and not without_patch[PATCH[1], PATCH[0]]


def uuid() -> str:
    return uuid4().hex[:10]
