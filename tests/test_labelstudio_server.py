"""A real Label Studio 1.23.2 on loopback, driven over its REST API, with a recording ML backend.

These tests check that the regions of `adapters.labelstudio.regions` are stored as sent (the harness turns on
Label Studio's own prediction validation, so a region that does not fit the label config is refused, not
kept), and, marked `platform_facts`, pin down the ML backend protocol as Label Studio 1.23.2 sends it
(`adapters/labelstudio/PROTOCOL.md`): facts about Label Studio, not about the bridge, run by `.ci/run` apart
from the main test command (`pytest -m platform_facts`), and again whenever the pinned version moves.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from adapters.labelstudio.config import parse_config
from adapters.labelstudio.regions import (
    from_regions,
    task_score,
    to_prompts,
    to_regions,
)
from bridge import (
    Box,
    Classification,
    Ellipse,
    Mask,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Span,
)
from bridge.core.geometry import rotated_box_corners, to_shapely
from tests.labelstudio_client import (
    UNCERTAINTY_SAMPLING,
    LabelStudioClient,
    LabelStudioError,
)
from tests.labelstudio_record import FIXTURES, record, structure
from tests.labelstudio_server import LabelStudio
from tests.recording_backend import RecordingBackend
from tests.test_labelstudio_regions import same

pytestmark = pytest.mark.xdist_group("labelstudio")  # the Label Studio tests share one worker: one server at a time

SAMPLES = Path(__file__).resolve().parents[1] / "bridge" / "samples"
ASTRONAUT = SAMPLES / "astronaut.jpg"
IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="Face"/><Label value="Eye" alias="E"/></RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Face"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Eye"/></KeyPointLabels>
  <EllipseLabels name="ellipse" toName="image"><Label value="Eye"/></EllipseLabels>
  <BrushLabels name="brush" toName="image" smart="true"><Label value="Face"/></BrushLabels>
  <Choices name="blur" toName="image"><Choice value="Blurry"/><Choice value="Sharp"/></Choices>
  <TextArea name="caption" toName="image"/>
</View>"""
TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="Email"/><Label value="Person"/></Labels>
  <Choices name="topics" toName="text" choice="multiple"><Choice value="Mail"/><Choice value="Greeting"/></Choices>
</View>"""


@pytest.fixture(scope="module")
def server() -> Iterator[LabelStudio]:
    with LabelStudio() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LabelStudio) -> Iterator[LabelStudioClient]:
    with server.client() as session:
        yield session


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    recorder = RecordingBackend(model_version="recorder-7")
    yield recorder
    recorder.close()


def image_project(client: LabelStudioClient, copies: int = 1) -> tuple[int, list[dict]]:
    project = client.create_project(IMAGE_CONFIG)["id"]
    client.import_files(project, [ASTRONAUT] * copies)
    return project, client.tasks(project)


@pytest.mark.platform_facts
def test_attaching_a_backend_checks_health_then_setup(server: LabelStudio, client: LabelStudioClient,
                                                      backend: RecordingBackend) -> None:
    project, _ = image_project(client)
    attached = client.add_ml_backend(project, backend.url, extra_params={"threshold": 0.5})
    assert (attached["state"], attached["model_version"]) == ("CO", "recorder-7")  # /setup's model_version
    # the serializer checks (health, setup), then the saved backend updates its state (health, setup)
    assert [(call.method, call.path) for call in backend.calls] == [
        ("GET", "/health"), ("POST", "/setup"), ("GET", "/health"), ("POST", "/setup")]
    assert backend.calls[0].body is None and "Authorization" not in backend.calls[0].headers
    setup = backend.calls[1].body
    assert set(setup) == {"project", "schema", "hostname", "access_token", "extra_params"}
    assert setup["project"].startswith(f"{project}.")  # "<id>.<project created_at as a Unix time>"
    assert setup["schema"] == IMAGE_CONFIG and setup["hostname"] == server.url
    assert setup["access_token"] == server.token  # the project creator's legacy token
    assert setup["extra_params"] == {"threshold": 0.5}  # as registered: any JSON the user gives the backend
    # the project now predicts with "the backend's title" as its model version, not the backend's version
    assert client.request("GET", f"/api/projects/{project}")["model_version"] == "bridge"


@pytest.mark.platform_facts
def test_one_predict_call_for_every_task_lacking_a_prediction(server: LabelStudio, client: LabelStudioClient,
                                                               backend: RecordingBackend) -> None:
    project, tasks = image_project(client, copies=3)
    client.add_ml_backend(project, backend.url)
    client.retrieve_predictions(project)
    assert [call.path for call in backend.calls][-3:] == ["/health", "/setup", "/predict"]  # state first
    [call] = backend.calls_to("/predict")
    body = call.body
    assert set(body) == {"tasks", "project", "label_config", "params"}
    assert [task["id"] for task in body["tasks"]] == [task["id"] for task in tasks]
    assert body["params"] == {"login": None, "password": None, "context": None}
    assert body["label_config"] == IMAGE_CONFIG
    task = body["tasks"][0]
    assert {"id", "data", "annotations", "predictions", "meta", "project", "file_upload"} <= set(task)
    media = task["data"]["image"]
    assert media.startswith(f"/data/upload/{project}/") and media.endswith("-astronaut.jpg")
    # media is relative to /setup's hostname and needs the token /setup gave
    assert httpx.get(server.url + media).status_code == 401
    fetched = httpx.get(server.url + media, headers={"Authorization": f"Token {server.token}"})
    assert fetched.status_code == 200 and fetched.content == ASTRONAUT.read_bytes()
    stored = client.tasks(project)
    assert [[(p["model_version"], p["score"]) for p in task["predictions"]] for task in stored] == [
        [("recorder-7", 0.5)]] * 3
    client.retrieve_predictions(project)  # every task has this version's prediction now: no call
    assert len(backend.calls_to("/predict")) == 1


@pytest.mark.platform_facts
def test_opening_a_task_or_listing_tasks_can_predict_too(client: LabelStudioClient,
                                                       backend: RecordingBackend) -> None:
    """Opening a task (what the editor does) predicts it when it has no prediction (`show_collab_predictions`,
    on by default); listing tasks does for the listed ones lacking any, with `evaluate_predictions_automatically`."""
    project, tasks = image_project(client, copies=3)
    client.add_ml_backend(project, backend.url)
    client.task(tasks[0]["id"])
    assert [[t["id"] for t in call.body["tasks"]] for call in backend.calls_to("/predict")] == [[tasks[0]["id"]]]
    client.tasks(project)
    assert len(backend.calls_to("/predict")) == 1  # listing does not predict, by default
    client.update_project(project, evaluate_predictions_automatically=True)
    client.tasks(project)
    assert [t["id"] for t in backend.calls_to("/predict")[1].body["tasks"]] == [t["id"] for t in tasks[1:]]


@pytest.mark.platform_facts
def test_a_single_answer_for_several_tasks_is_asked_again_task_by_task(client: LabelStudioClient,
                                                                      backend: RecordingBackend) -> None:
    project, _ = image_project(client, copies=3)
    backend.predict = lambda body: {"results": [{"result": [], "score": 0.1}]}
    client.add_ml_backend(project, backend.url)
    client.retrieve_predictions(project)
    assert [len(call.body["tasks"]) for call in backend.calls_to("/predict")] == [3, 1, 1, 1]
    # an answer without model_version is stored under the backend's, from /setup
    assert [[p["model_version"] for p in task["predictions"]] for task in client.tasks(project)] == [
        ["recorder-7"]] * 3


def astronaut_predictions() -> list[tuple[Prediction, str]]:
    """One prediction per image control of IMAGE_CONFIG, with the control it answers on."""
    mask = np.zeros((512, 512), bool)
    mask[60:180, 170:280] = True
    mask[100:120, 200:220] = False  # a hole
    return [
        (Prediction("Face", Box(176, 66, 95, 95), 0.91, id="face"), "box"),
        (Prediction("Eye", RotatedBox(200, 110, 30, 12, 20), 0.4, id="eye-box"), "box"),
        (Prediction("Face", Polygon.from_ring([(170, 60), (280, 60), (280, 180), (170, 180)],
                                              [[(200, 100), (220, 100), (220, 120), (200, 120)]]), 0.8,
                    id="face-poly"), "poly"),
        (Prediction("Eye", Point(205, 112), 0.7, id="eye-point"), "kp"),
        (Prediction("Eye", Ellipse(240, 112, 12, 6, 10), 0.6, id="eye-ellipse"), "ellipse"),
        (Prediction("Face", Mask(mask), 0.75, id="face-mask"), "brush"),
        (Prediction("blur", Classification("Sharp"), 0.3, id="blur"), "blur"),
        (Prediction("caption", Classification("an astronaut"), 0.5, id="caption"), "caption"),
    ]


def test_our_regions_are_stored_as_sent_and_read_back(client: LabelStudioClient, backend: RecordingBackend) -> None:
    project, [task] = image_project(client)
    config = parse_config(IMAGE_CONFIG)
    sent = astronaut_predictions()
    regions = [region for prediction, control in sent for region in to_regions(prediction, config.control(control),
                                                                               (512, 512))]
    score = task_score(prediction for prediction, _ in sent)
    backend.predict = lambda body: {"results": [{"result": regions, "score": score, "model_version": "regions-1"}]}
    client.add_ml_backend(project, backend.url)
    client.retrieve_predictions(project)
    [stored] = client.tasks(project)[0]["predictions"]
    assert (stored["score"], stored["model_version"]) == (0.3, "regions-1")
    assert stored["result"] == regions
    back = {p.id: p for p in from_regions(stored["result"], config)}
    for prediction, _ in sent:
        read = back[prediction.id]
        assert (read.label, read.confidence) == (prediction.label, prediction.confidence)
        shape, original = read.shape, prediction.shape
        if isinstance(original, RotatedBox):
            assert np.allclose(rotated_box_corners(shape), rotated_box_corners(original))
        elif isinstance(original, Polygon):
            assert to_shapely(shape).symmetric_difference(to_shapely(original)).area == pytest.approx(0, abs=1e-6)
        elif isinstance(original, Mask):
            assert (shape.array == original.array).all()
        elif isinstance(original, Classification):
            assert shape == original
        else:
            assert same(shape, original)


def test_a_region_that_fits_no_label_is_refused(client: LabelStudioClient, backend: RecordingBackend) -> None:
    """The harness runs Label Studio with its prediction validation on, so a bad region fails loudly."""
    project, _ = image_project(client)
    region = to_regions(Prediction("Face", Box(1, 1, 5, 5)), parse_config(IMAGE_CONFIG).control("box"), (512, 512))
    region[0]["value"]["rectanglelabels"] = ["Nose"]
    backend.predict = lambda body: {"results": [{"result": region, "score": 0.5}]}
    client.add_ml_backend(project, backend.url)
    with pytest.raises(LabelStudioError, match="Nose"):
        client.retrieve_predictions(project)
    assert client.tasks(project)[0]["predictions"] == []


def test_spans_and_choices_on_text_imported_with_predictions(client: LabelStudioClient) -> None:
    text = "Hi 👋🏽 write to tom@example.com"
    start = text.index("tom")
    config = parse_config(TEXT_CONFIG)
    found = [(Prediction("Email", Span(start, start + 15, text[start:start + 15]), 0.9), "ner"),
             (Prediction("topics", Classification(("Mail", "Greeting")), 0.6), "topics")]
    result = [region for prediction, control in found for region in to_regions(prediction, config.control(control))]
    project = client.create_project(TEXT_CONFIG)["id"]
    client.import_tasks(project, [{"data": {"text": text}, "predictions": [
        {"result": result, "score": task_score(p for p, _ in found), "model_version": "imported"}]}])
    [stored] = client.tasks(project)[0]["predictions"]
    assert stored["result"] == result and stored["score"] == 0.6
    span, topics = from_regions(stored["result"], config)
    assert text[span.shape.start:span.shape.end] == "tom@example.com" and span.shape.start == 15
    assert topics.shape == Classification(("Mail", "Greeting"))


@pytest.mark.platform_facts
def test_interactive_calls_carry_what_the_user_drew(client: LabelStudioClient, backend: RecordingBackend) -> None:
    project, [task] = image_project(client)
    config = parse_config(IMAGE_CONFIG)
    attached = client.add_ml_backend(project, backend.url, is_interactive=True)
    answer = to_regions(Prediction("Face", Box(176, 66, 95, 95), 0.9), config.control("box"), (512, 512))
    backend.predict = lambda body: {"results": [{"result": answer, "score": 0.9, "model_version": "x"},
                                                {"result": [], "score": 0.1}]}
    # what the editor sends when a region is drawn with auto-annotation on: that region, serialized
    box = to_regions(Prediction("Face", Box(150, 50, 150, 150)), config.control("box"), (512, 512))[0]
    box["origin"] = "manual"
    clicks = [to_regions(Prediction("Eye", Point(x, y)), config.control("kp"), (512, 512))[0] | {"is_positive": yes}
              for x, y, yes in [(205, 112, True), (60, 400, False)]]
    for context in ({"result": [box]}, {"result": clicks}):
        before = len(backend.calls_to("/predict"))
        reply = client.interactive_annotating(attached["id"], task["id"], context)
        call = backend.calls_to("/predict")[before]
        assert call.body["params"]["context"] == context
        assert [t["id"] for t in call.body["tasks"]] == [task["id"]]
        assert {"drafts", "annotations", "predictions"} <= set(call.body["tasks"][0])
        assert reply == {"data": {"result": answer, "score": 0.9, "model_version": "x"}}  # results[0] only
    assert client.tasks(project)[0]["predictions"] == []  # interactive answers are not stored
    box_prompt = to_prompts(backend.calls_to("/predict")[0].body["params"]["context"]["result"])
    assert same(box_prompt.box, Box(150, 50, 150, 150))
    clicked = to_prompts(backend.calls_to("/predict")[1].body["params"]["context"]["result"])
    assert np.allclose(clicked.positive, [(205, 112)]) and np.allclose(clicked.negative, [(60, 400)])
    # interactive calls skip /health and /setup
    assert [c.path for c in backend.calls if c.path != "/webhook"][-2:] == ["/predict", "/predict"]


def test_an_interactive_brush_stroke_arrives_as_brush_rle(client: LabelStudioClient, backend: RecordingBackend) -> None:
    project, [task] = image_project(client)
    config = parse_config(IMAGE_CONFIG)
    attached = client.add_ml_backend(project, backend.url, is_interactive=True)
    stroke = np.zeros((512, 512), bool)
    stroke[200:220, 100:300] = True
    region = to_regions(Prediction("Face", Mask(stroke)), config.control("brush"), (512, 512))[0]
    client.interactive_annotating(attached["id"], task["id"], {"result": [region]})
    [received] = backend.calls_to("/predict")[-1].body["params"]["context"]["result"]
    assert (from_regions([received], config)[0].shape.array == stroke).all()


@pytest.mark.platform_facts
def test_uncertainty_sampling_serves_the_lowest_score_first(client: LabelStudioClient,
                                                            backend: RecordingBackend) -> None:
    project = client.create_project(IMAGE_CONFIG)["id"]
    client.import_tasks(project, [{"data": {"image": f"/nowhere/{i}.jpg"}} for i in range(5)])
    ids = [task["id"] for task in client.tasks(project)]
    confidences = dict(zip(ids, [[0.9, 0.95], [0.2, 0.8], [0.5], [0.05, 0.99], [0.7]]))
    blur = parse_config(IMAGE_CONFIG).control("blur")

    def predict(body: dict) -> dict:
        results = []
        for task in body["tasks"]:
            found = [Prediction("blur", Classification("Sharp"), c) for c in confidences[task["id"]]]
            results.append({"result": [r for p in found for r in to_regions(p, blur)], "score": task_score(found),
                            "model_version": "uncertain-1"})
        return {"results": results}

    backend.predict = predict
    client.add_ml_backend(project, backend.url)
    client.retrieve_predictions(project)
    # the stream filters on the project's model version, which attaching set to the backend's title: until it
    # names the predictions' version, "Uncertainty sampling" falls back to random order
    client.update_project(project, sampling=UNCERTAINTY_SAMPLING, model_version="uncertain-1")
    served = []
    for _ in ids:
        task = client.next_task(project)
        served.append(task["id"])
        client.create_annotation(task["id"], [])
    assert served == sorted(ids, key=lambda i: min(confidences[i]))


@pytest.mark.platform_facts
def test_webhooks(client: LabelStudioClient, backend: RecordingBackend) -> None:
    project, [task] = image_project(client)
    attached = client.add_ml_backend(project, backend.url)
    [hook] = client.webhooks(project)
    assert (hook["url"], hook["send_payload"], hook["send_for_all_actions"]) == (backend.url + "/webhook", True, True)
    client.import_tasks(project, [{"data": {"image": "/nowhere/1.jpg"}}])
    client.create_annotation(task["id"], [{"from_name": "blur", "to_name": "image", "type": "choices",
                                           "value": {"choices": ["Sharp"]}}])
    client.update_project(project, title="renamed")
    client.train(attached["id"])  # no POST /train: training starts by webhook
    calls = backend.wait_for("/webhook", 4)
    bodies = {call.body["action"]: call.body for call in calls}
    assert set(bodies) == {"TASKS_CREATED", "ANNOTATION_CREATED", "PROJECT_UPDATED", "START_TRAINING"}
    assert set(bodies["TASKS_CREATED"]) == {"action", "project", "tasks"}
    assert set(bodies["ANNOTATION_CREATED"]) == {"action", "annotation", "task", "project"}
    assert bodies["ANNOTATION_CREATED"]["annotation"]["result"][0]["value"] == {"choices": ["Sharp"]}
    assert set(bodies["START_TRAINING"]) == {"action", "project"}
    assert bodies["PROJECT_UPDATED"]["project"]["title"] == "renamed"
    assert not backend.calls_to("/train")


@pytest.mark.platform_facts
def test_versions(client: LabelStudioClient, backend: RecordingBackend) -> None:
    project, _ = image_project(client)
    attached = client.add_ml_backend(project, backend.url)
    assert client.model_versions(attached["id"]) == {"versions": ["recorder-7"]}
    [call] = backend.calls_to("/versions")
    assert (call.method, call.body) == ("GET", None)  # the `project` uid LS builds stays in the connector


@pytest.mark.platform_facts
def test_basic_auth_reaches_every_call_but_webhooks(client: LabelStudioClient) -> None:
    guarded = RecordingBackend(basic_auth=("ls-user", "s3cret"))
    try:
        project, _ = image_project(client)
        with pytest.raises(LabelStudioError, match="authentication parameters"):
            client.add_ml_backend(project, guarded.url)
        client.add_ml_backend(project, guarded.url, basic_auth=("ls-user", "s3cret"))
        client.retrieve_predictions(project)
        client.import_tasks(project, [{"data": {"image": "/nowhere/1.jpg"}}])
        [hook] = guarded.wait_for("/webhook")
        expected = "Basic " + base64.b64encode(b"ls-user:s3cret").decode()
        assert {c.headers.get("Authorization") for c in guarded.calls_to("/setup") + guarded.calls_to("/predict")} \
            == {expected}
        assert "Authorization" not in hook.headers  # refused by this backend: Label Studio ignores the 401
        # the webhook's own headers are what it sends
        [webhook] = client.webhooks(project)
        client.update_webhook(webhook["id"], headers={"Authorization": expected})
        client.import_tasks(project, [{"data": {"image": "/nowhere/2.jpg"}}])
        assert guarded.wait_for("/webhook", 2)[1].headers["Authorization"] == expected
    finally:
        guarded.close()


@pytest.mark.platform_facts
def test_tokens(server: LabelStudio, client: LabelStudioClient, backend: RecordingBackend) -> None:
    """Personal access tokens are JWT refresh tokens; API calls and media take the access token they buy."""
    project, [task] = image_project(client)
    media = server.url + task["data"]["image"]
    refresh = client.create_personal_token()
    with pytest.raises(LabelStudioError, match="409"):
        client.create_personal_token()  # one valid personal token per user
    claims = json.loads(base64.urlsafe_b64decode(refresh.split(".")[1] + "=="))
    assert claims["token_type"] == "refresh"
    access = client.access_token(refresh)
    access_claims = json.loads(base64.urlsafe_b64decode(access.split(".")[1] + "=="))
    assert access_claims["token_type"] == "access" and access_claims["exp"] - access_claims["iat"] == 300
    for header, status in [(f"Bearer {access}", 200), (f"Bearer {refresh}", 401), (f"Token {refresh}", 401),
                           (f"Bearer {server.token}", 401)]:
        assert httpx.get(media, headers={"Authorization": header}).status_code == status, header
    bearer = LabelStudioClient(server.url, {"Authorization": f"Bearer {access}"})
    try:
        assert bearer.jwt_settings(legacy_api_tokens_enabled=False)["legacy_api_tokens_enabled"] is False
        assert httpx.get(media, headers={"Authorization": f"Token {server.token}"}).status_code == 401
        assert httpx.get(media, headers={"Authorization": f"Bearer {access}"}).status_code == 200
        bearer.add_ml_backend(project, backend.url)
        # /setup still hands out the legacy token, which no longer fetches anything
        assert backend.calls_to("/setup")[-1].body["access_token"] == server.token
    finally:
        bearer.jwt_settings(legacy_api_tokens_enabled=True)
        bearer.close()
    assert httpx.get(media, headers={"Authorization": f"Token {server.token}"}).status_code == 200



@pytest.mark.platform_facts
def test_recorded_fixtures_are_what_label_studio_sends(server: LabelStudio) -> None:
    """tests/data/labelstudio/*.json (rewritten by `python -m tests.labelstudio_record`) keep the keys and
    value types Label Studio sends today."""
    bodies = record(server)
    assert sorted(bodies) == sorted(path.stem for path in FIXTURES.glob("*.json"))
    for name, body in bodies.items():
        assert structure(body) == structure(json.loads((FIXTURES / f"{name}.json").read_text())), name
