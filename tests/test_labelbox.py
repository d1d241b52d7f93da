"""Labelbox Foundry over real HTTP: every answer form, masks through pycocotools, auth, bad input, model.yaml."""

from __future__ import annotations

import math
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from pycocotools import mask as coco_mask
from pydantic import TypeAdapter

from adapters.labelbox import LabelboxAnswer, LabelboxSection, adapter, to_answer
from adapters.labelbox.model_yaml import DOCUMENTED_FEATURE_KINDS
from bridge import Context
from bridge.commands.main import main
from bridge.core.geometry import rasterize
from bridge.core.manifest import Manifest
from bridge.core.predictions import Ellipse, RotatedBox
from bridge.serving.app import create_app
from tests.conftest import ROOT, b64, encode_image
from tests.shapes_model import AllShapes, TextShapes, donut_mask

SECRET = "lb-s3cret-token"
AUTH = {"authorization": f"Bearer {SECRET}"}
ANSWER = TypeAdapter(LabelboxAnswer)

MODEL_YAML_KEYS = {"name", "inference_endpoint", "secrets", "requests_per_second", "description", "readme",
                   "allowed_asset_types", "allowed_feature_kinds", "ontology", "inference_params_json_schema",
                   "max_tokens"}
ASSET_TYPES = {"image", "text", "video", "html", "conversational"}


def image_body(image: np.ndarray, **params) -> dict:
    """Labelbox's documented request: a system message, then the user's instruction and image."""
    return {"prompt": [{"role": "system", "parts": [{"text": "Label what you see."}]},
                       {"role": "user", "parts": [{"text": "what is in this image?"},
                                                  {"image": b64(encode_image(image))}]}], **params}


def text_body(row: str, **params) -> dict:
    """The data row's text after an instruction, as Labelbox's example has it."""
    return {"prompt": [{"role": "user", "parts": [{"text": "what is in this text?"}, {"text": row}]}], **params}


def documented(answer: dict) -> dict:
    """The answer fits the forms of Labelbox's document (boxes+scores, masks, entities, options, text)."""
    ANSWER.validate_python(answer)
    return answer


def decode(rle: dict) -> np.ndarray:
    assert isinstance(rle["counts"], str)  # JSON carries ASCII; pycocotools wants bytes
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


@pytest.fixture
def labelbox_manifest(make_manifest, monkeypatch):
    """A manifest whose Labelbox section takes its secret from the environment, as users are told to."""
    monkeypatch.setenv("TEST_LABELBOX_SECRET", SECRET)

    def make(factory: str, section: dict | None = None, **keys):
        platforms = {"labelbox": {"secret": "${TEST_LABELBOX_SECRET}", **(section or {})}}
        return make_manifest(model={"factory": factory}, platforms=platforms, **keys)

    return make


@pytest.fixture
def shapes_server(serve_app, labelbox_manifest):
    manifest = labelbox_manifest("tests/shapes_model.py:AllShapes",
                                 {"rename": {"box": "Car"}, "tags": {"question": "quality"}})
    return serve_app(create_app(manifest))


@pytest.fixture
def text_server(serve_app, labelbox_manifest):
    return serve_app(create_app(labelbox_manifest("tests/shapes_model.py:TextShapes")))


@pytest.fixture
def image_128() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (128, 160, 3), dtype=np.uint8)


# --- answers --------------------------------------------------------------------------------------------------


def test_every_image_answer_form_keyed_by_feature_name(shapes_server, image_128):
    response = httpx.post(f"{shapes_server}/labelbox/infer", json=image_body(image_128), headers=AUTH)
    assert response.status_code == 200, response.text
    answer = documented(response.json())
    assert set(answer) == {"Car", "rotated", "donut", "blob", "ellipse", "quality", "weather", "objects", "caption"}
    assert answer["Car"] == {"boxes": [[4.0, 6.0, 40.0, 32.0]], "scores": [0.9]}  # left, top, width, height
    assert answer["weather"] == "sunny"  # radio
    assert answer["objects"] == ["car", "sky"]  # checklist
    assert answer["caption"] == "an astronaut"  # free text
    assert answer["quality"] == ["sharp"]  # the tag class, as an option of the manifest's `tags.question`
    for name in ("rotated", "donut", "blob", "ellipse"):
        (rle,) = answer[name]["masks"]
        assert set(rle) == {"size", "counts"} and rle["size"] == [128, 160]
    # points, lines, skeletons, cuboids and vectors have no Foundry form
    assert not {"point", "line", "person", "cuboid", "vector"} & set(answer)


def test_masks_decode_with_pycocotools_to_exactly_the_mask_meant(shapes_server, image_128):
    answer = httpx.post(f"{shapes_server}/labelbox/infer", json=image_body(image_128), headers=AUTH).json()
    h, w = 128, 160
    masks = {name: decode(answer[name]["masks"][0]) for name in ("blob", "donut", "rotated", "ellipse")}
    assert np.array_equal(masks["blob"], donut_mask(h, w))  # the model's own mask: ring, hole and square

    # The holed polygon: pixels whose centre is in the outer square and not in the hole.
    yy, xx = np.mgrid[:h, :w] + 0.5
    inside = lambda x0, y0, x1, y1: (xx > x0) & (xx < x1) & (yy > y0) & (yy < y1)  # noqa: E731
    meant = inside(w * .2, h * .2, w * .8, h * .8) & ~inside(w * .4, h * .4, w * .6, h * .6)
    assert np.array_equal(masks["donut"], meant)
    assert not masks["donut"][h // 2, w // 2]  # the hole stays open

    # Rotated box and ellipse: the core's rasterisation exactly, and the analytic shape up to edge pixels.
    for name, shape, analytic in (
        ("rotated", RotatedBox(w / 2, h / 2, w / 4, h / 8, 30), lambda u, v: (abs(u) < w / 8) & (abs(v) < h / 16)),
        ("ellipse", Ellipse(w / 2, h / 2, w / 5, h / 7, -30), lambda u, v: (u / (w / 5)) ** 2 + (v / (h / 7)) ** 2 < 1),
    ):
        assert np.array_equal(masks[name], rasterize(shape, h, w).array)
        angle = math.radians(shape.angle)
        dx, dy = xx - w / 2, yy - h / 2
        exact = analytic(dx * math.cos(angle) + dy * math.sin(angle), -dx * math.sin(angle) + dy * math.cos(angle))
        assert (masks[name] != exact).sum() < 0.02 * exact.sum(), name


def test_text_model_answers_entities_with_end_exclusive_offsets(text_server):
    row = "Yesterday Tom went out in the sun."
    response = httpx.post(f"{text_server}/labelbox/infer", json=text_body(row), headers=AUTH)
    answer = documented(response.json())
    assert answer == {"weather": "sunny", "name": [{"start": 10, "end": 13, "text": "Tom"}]}
    (entity,) = answer["name"]
    assert row[entity["start"]:entity["end"]] == entity["text"]  # Python slicing: end exclusive


def test_text_part_picks_which_text_the_model_reads(serve_app, labelbox_manifest):
    base = serve_app(create_app(labelbox_manifest("tests/shapes_model.py:TextShapes", {"text_part": 0})))
    body = {"prompt": [{"role": "user", "parts": [{"text": "Tom: rain"}, {"text": "a sunny day"}]}]}
    answer = httpx.post(f"{base}/labelbox/infer", json=body, headers=AUTH).json()
    assert answer == {"weather": "rainy", "name": [{"start": 0, "end": 3, "text": "Tom"}]}  # the first part
    only_one = {"prompt": [{"role": "user", "parts": [{"text": "x"}]}]}
    assert httpx.post(f"{base}/labelbox/infer", json=only_one, headers=AUTH).status_code == 200
    instruction_first = httpx.post(f"{base}/labelbox/infer", json=text_body("Tom"), headers=AUTH).json()
    assert instruction_first == {"weather": "rainy"}  # part 0 is the instruction, without Tom


def test_the_last_user_message_is_read_and_other_roles_are_accepted(text_server):
    body = {"prompt": [
        {"role": "system", "parts": [{"text": "Tom in the sun"}]},
        {"role": "user", "parts": [{"text": "Tom in the sun"}]},
        {"role": "assistant", "parts": [{"text": "Tom in the sun"}]},
        {"role": "user", "parts": [{"text": "rain all day"}]},
    ]}
    assert httpx.post(f"{text_server}/labelbox/infer", json=body, headers=AUTH).json() == {"weather": "rainy"}


def test_inference_params_beside_prompt_and_under_inference_params_with_defaults(serve_app, labelbox_manifest,
                                                                                 image_128):
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "only": {"type": "array", "items": {"type": "string"}, "default": ["box"]},
        "sleep": {"type": "number", "minimum": 0, "maximum": 1}}}
    base = serve_app(create_app(labelbox_manifest("tests/shapes_model.py:AllShapes", params=schema)))
    url = f"{base}/labelbox/infer"
    assert set(httpx.post(url, json=image_body(image_128), headers=AUTH).json()) == {"box"}  # the default
    beside = httpx.post(url, json=image_body(image_128, only=["weather"], ontology={"tools": []}),
                        headers=AUTH).json()  # Labelbox's own `ontology` key is not a parameter
    assert beside == {"weather": "sunny"}
    nested = image_body(image_128, only=["weather"], inference_params={"only": ["caption"]})
    assert httpx.post(url, json=nested, headers=AUTH).json() == {"caption": "an astronaut"}  # nested wins
    for body in (image_body(image_128, sleep="long"), image_body(image_128, inference_params={"sleep": 7})):
        response = httpx.post(url, json=body, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"].startswith("invalid parameter sleep")


def test_to_answer_is_a_pure_function_usable_without_a_server(image_128):
    model = AllShapes()
    section = LabelboxSection(tags={"question": "quality", "kind": "radio"}, rename={"weather": "sky"})
    answer = documented(to_answer(model.predict(image_128, Context()), model.spec, section, size=(128, 160)))
    assert answer["quality"] == "sharp" and answer["sky"] == "sunny"
    text = TextShapes()
    row = "Tom"
    assert to_answer(text.predict(row, Context()), text.spec, LabelboxSection())["name"] == [
        {"start": 0, "end": 3, "text": "Tom"}]


def test_radio_and_text_keep_the_most_confident_answer_and_checklists_unite():
    from bridge.core.model import ClassSpec, ModelSpec
    from bridge.core.predictions import Classification, Prediction, Tag

    spec = ModelSpec(classes=[ClassSpec(name="q", kind="radio", options=("a", "b")),
                              ClassSpec(name="c", kind="checklist", options=("x", "y", "z")),
                              ClassSpec(name="t1", kind="tag"), ClassSpec(name="t2", kind="tag")])
    found = [Prediction("q", Classification("a"), 0.4), Prediction("q", Classification("b"), 0.8),
             Prediction("c", Classification(("y",))), Prediction("c", Classification(("x", "y"))),
             Prediction("t2", Tag(), 0.3), Prediction("t1", Tag(), 0.9)]
    assert to_answer(found, spec, LabelboxSection()) == {"q": "b", "c": ["y", "x"], "tags": ["t2", "t1"]}
    radio = LabelboxSection(tags={"kind": "radio"})
    assert to_answer(found, spec, radio)["tags"] == "t1"


# --- auth -----------------------------------------------------------------------------------------------------


def test_only_the_bearer_secret_gets_in(text_server):
    url = f"{text_server}/labelbox/infer"
    body = text_body("Tom")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": SECRET},
                    {"authorization": f"Basic {SECRET}"}, {"authorization": f"Bearer {SECRET}x"}):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == {"error": "missing or wrong secret: send the header "
                                            "`Authorization: Bearer <secret>`"}
    for content in (b"{not json", b'{"prompt": "wrong schema"}'):  # the secret is checked first
        response = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 401 and "wrong secret" in response.json()["error"]
    assert httpx.post(url, json=body, headers=AUTH).status_code == 200
    assert httpx.post(url, json=body, headers={"Authorization": f"bearer {SECRET}"}).status_code == 200


def test_without_a_secret_the_endpoint_refuses_everyone(serve_app, make_manifest, monkeypatch):
    monkeypatch.setenv("TEST_EMPTY_SECRET", "")
    for section in ({}, {"secret": "${TEST_EMPTY_SECRET}"}):
        manifest = make_manifest(model={"factory": "tests/shapes_model.py:TextShapes"},
                                 platforms={"labelbox": section})
        base = serve_app(create_app(manifest))
        for headers in ({}, {"authorization": "Bearer x"}, AUTH):
            response = httpx.post(f"{base}/labelbox/infer", json=text_body("Tom"), headers=headers)
            assert response.status_code == 401 and "platforms.labelbox.secret" in response.json()["error"]


# --- bad input: a clear message, the right status, and the server keeps serving --------------------------------


def test_bad_requests_to_an_image_model_fail_clearly_and_the_server_keeps_serving(serve_app, labelbox_manifest,
                                                                                 image_128):
    manifest = labelbox_manifest(
        "tests/shapes_model.py:AllShapes",
        limits={"max_image_pixels": 200 * 200, "max_request_bytes": 2_000_000, "deadline": 1.0,
                "concurrency": 2},  # a worker stays free while a timed-out model sleeps
        params={"type": "object", "properties": {"sleep": {"type": "number", "maximum": 5}, "fail": {"type": "boolean"},
                                                 "only": {"type": "array"}}})
    base = serve_app(create_app(manifest))
    good = image_body(image_128, only=["box"])
    user = lambda *parts: {"prompt": [{"role": "user", "parts": list(parts)}]}  # noqa: E731
    cases = [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 422, "invalid request"),
        ({"messages": []}, 422, "prompt: Field required"),
        ({"prompt": []}, 422, "prompt: List should have at least 1 item"),
        ({"prompt": [{"role": "robot", "parts": [{"text": "x"}]}]}, 422, "prompt.0.role"),
        ({"prompt": [{"role": "user"}]}, 422, "prompt.0.parts: Field required"),
        ({"prompt": [{"role": "user", "parts": []}]}, 422, "prompt.0.parts"),
        (user({"video": "x"}), 422, "prompt.0.parts.0: Value error, exactly one of `text` and `image` is needed"),
        (user({"text": "a", "image": "b"}), 422, "exactly one of `text` and `image`"),
        ({"prompt": [{"role": "system", "parts": [{"text": "x"}]}]}, 422, "no `user` message"),
        (user({"text": "only words"}), 422, "this model reads images"),
        (user({"image": "@@@ not base64"}), 400, "not valid base64"),
        (user({"image": b64(b"GIF89a but not really")}), 422, "not an image"),
        (user({"image": b64(encode_image(np.zeros((300, 300, 3), np.uint8)))}), 413, "max_image_pixels"),
        ({**good, "inference_params": "fast"}, 422, "inference_params"),
        ({**good, "sleep": "long"}, 422, "invalid parameter sleep"),
        ({**good, "fail": True}, 500, "boom"),
        ({**good, "sleep": 2}, 504, "limits.deadline"),
        (b"x" * 2_100_000, 413, "max_request_bytes"),
    ]
    with httpx.Client(timeout=10, headers=AUTH) as client:
        for body, status, message in cases:
            if isinstance(body, bytes):
                response = client.post(f"{base}/labelbox/infer", content=body,
                                       headers={"content-type": "application/json"})
            else:
                response = client.post(f"{base}/labelbox/infer", json=body)
            shown = body[:20] if isinstance(body, bytes) else body
            assert response.status_code == status, (shown, response.text)
            error = response.json()
            assert set(error) == {"error"} and message in error["error"], (shown, error)
            assert "Traceback" not in error["error"]
            assert client.post(f"{base}/labelbox/infer", json=good).json() == {
                "box": {"boxes": [[4.0, 6.0, 40.0, 32.0]], "scores": [0.9]}}


def test_bad_requests_to_a_text_model(serve_app, labelbox_manifest, image_128):
    base = serve_app(create_app(labelbox_manifest("tests/shapes_model.py:TextShapes", {"text_part": 2})))
    image_only = {"prompt": [{"role": "user", "parts": [{"image": b64(encode_image(image_128))}]}]}
    response = httpx.post(f"{base}/labelbox/infer", json=image_only, headers=AUTH)
    assert response.status_code == 422 and "this model reads text" in response.json()["error"]
    response = httpx.post(f"{base}/labelbox/infer", json=text_body("Tom"), headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"] == ("platforms.labelbox.text_part is 2, and the last user message has "
                                        "2 text part(s)")


def test_openapi_shows_the_labelbox_contract(text_server):
    schema = httpx.get(f"{text_server}/openapi.json").json()
    infer = schema["paths"]["/labelbox/infer"]["post"]
    assert "LabelboxRequest" in str(infer["requestBody"]) and "LabelboxBoxes" in str(schema["components"])


# --- model.yaml -----------------------------------------------------------------------------------------------


def labelbox_manifest_file(tmp_path: Path, **section) -> Path:
    """The every-shape model with a Labelbox section, written where a user would keep it."""
    document = {
        "name": "all-shapes", "description": "Every neutral shape.", "readme": "### Intended use\nTests.\n",
        "model": {"factory": str(ROOT / "tests/shapes_model.py") + ":AllShapes"},
        "params": {"type": "object", "additionalProperties": False, "required": ["only"], "properties": {
            "only": {"type": "array", "items": {"type": "string"}, "description": "Classes to keep."},
            "fail": {"type": "boolean", "default": False}}},
        "platforms": {"labelbox": {"secret": "${TEST_LABELBOX_SECRET}", "rename": {"box": "Car"}, **section}},
    }
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def only_documented(document: dict) -> None:
    assert set(document) <= MODEL_YAML_KEYS
    assert set(document["allowed_asset_types"]) <= ASSET_TYPES
    assert set(document["allowed_feature_kinds"]) <= set(DOCUMENTED_FEATURE_KINDS)
    ontology = document["ontology"]
    assert set(ontology) <= {"media_type", "classifications", "tools"} and ontology["media_type"] in ("IMAGE", "TEXT")
    for tool in ontology["tools"]:
        assert set(tool) == {"name", "tool"} and tool["tool"] in DOCUMENTED_FEATURE_KINDS
    for classification in ontology["classifications"]:
        assert set(classification) <= {"instructions", "name", "type", "options"}
        assert classification["type"] in ("radio", "checklist", "text")
        for position, option in enumerate(classification.get("options", [])):
            assert option == {"label": option["value"], "value": option["value"], "position": position}
    used = {t["tool"] for t in ontology["tools"]} | {c["type"] for c in ontology["classifications"]}
    assert set(document["allowed_feature_kinds"]) == used
    assert set(document["inference_params_json_schema"]) <= {"properties", "required"}


def test_model_yaml_has_every_documented_key_and_matches_the_classes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_LABELBOX_SECRET", SECRET)
    path = labelbox_manifest_file(tmp_path, requests_per_second=0.5, max_tokens=256, tags={"question": "quality"})
    endpoint = "https://models.example.com/labelbox/infer"
    assert main(["labelbox-manifest", str(path), "--endpoint", endpoint]) == 0
    out, err = capsys.readouterr()
    document = yaml.safe_load(out)
    only_documented(document)
    assert set(document) == MODEL_YAML_KEYS
    assert document["name"] == "all-shapes" and document["inference_endpoint"] == endpoint
    assert document["secrets"] == SECRET and document["requests_per_second"] == 0.5 and document["max_tokens"] == 256
    assert document["description"] == "Every neutral shape."
    assert document["readme"].startswith("### Intended use\nTests.\n### Features\n- `Car` (rectangle)")
    assert document["allowed_asset_types"] == ["image"]
    assert document["allowed_feature_kinds"] == ["text", "radio", "checklist", "rectangle", "raster-segmentation",
                                                 "named-entity"]
    ontology = document["ontology"]
    assert ontology["media_type"] == "IMAGE"
    assert {t["name"]: t["tool"] for t in ontology["tools"]} == {
        "Car": "rectangle", "rotated": "raster-segmentation", "donut": "raster-segmentation",
        "blob": "raster-segmentation", "ellipse": "raster-segmentation", "name": "named-entity"}
    classifications = {c["name"]: (c["type"], [o["value"] for o in c.get("options", [])])
                       for c in ontology["classifications"]}
    assert classifications == {"weather": ("radio", ["sunny", "rainy"]),
                               "objects": ("checklist", ["car", "tree", "sky"]),
                               "caption": ("text", []), "quality": ("checklist", ["sharp"])}
    assert document["inference_params_json_schema"] == {
        "properties": {"only": {"type": "array", "items": {"type": "string"}, "description": "Classes to keep."},
                       "fail": {"type": "boolean", "default": False}},
        "required": ["only"]}
    warnings = [line for line in err.splitlines() if line.startswith("bridge labelbox-manifest: warning:")]
    for name in ("point", "line", "person", "cuboid", "vector"):
        assert any(f"class {name!r}" in w and "dropped" in w for w in warnings), name
    assert any("additionalProperties" in w for w in warnings)
    assert any("holds the endpoint's secret" in w for w in warnings)
    assert len(warnings) == len(err.splitlines())  # nothing else on stderr


def test_model_yaml_with_a_placeholder_secret_to_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_LABELBOX_SECRET", SECRET)
    path, output = labelbox_manifest_file(tmp_path), tmp_path / "model.yaml"
    args = ["labelbox-manifest", str(path), "--endpoint", "https://h/labelbox/infer", "-o", str(output)]
    assert main([*args, "--placeholder-secret"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and SECRET not in output.read_text() and "holds the endpoint's secret" not in err
    assert "max_tokens" not in yaml.safe_load(output.read_text())  # only where set
    assert main(args) == 0
    assert yaml.safe_load(output.read_text())["secrets"] == SECRET
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # it holds the secret


def test_model_yaml_refuses_without_a_secret_or_with_a_bad_endpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_LABELBOX_SECRET", "")
    path = labelbox_manifest_file(tmp_path)
    assert main(["labelbox-manifest", str(path), "--endpoint", "https://h/labelbox/infer"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "platforms.labelbox.secret is not set" in err and "--placeholder-secret" in err
    assert main(["labelbox-manifest", str(path), "--endpoint", "models.example.com", "--placeholder-secret"]) == 2
    assert "--endpoint must be an http(s) URL" in capsys.readouterr().err


def test_labelbox_manifest_command_runs_as_installed(tmp_path, monkeypatch):
    """The real `bridge` executable: stdout is the YAML alone, warnings go to stderr."""
    monkeypatch.setenv("TEST_LABELBOX_SECRET", SECRET)
    path = labelbox_manifest_file(tmp_path)
    bridge = Path(sys.executable).with_name("bridge")
    done = subprocess.run([str(bridge), "labelbox-manifest", str(path), "--endpoint", "http://h/x"],
                          capture_output=True, text=True, timeout=120, check=True)
    only_documented(yaml.safe_load(done.stdout))
    assert "not https" in done.stderr and "does not end with /labelbox/infer" in done.stderr


def test_check_warns_about_what_labelbox_cannot_receive():
    manifest = Manifest(name="m", model={"factory": "m:M"})
    warnings = adapter.check(AllShapes.spec, LabelboxSection(rename={"box": "weather"}), manifest)
    assert [w for w in warnings if "dropped" in w] == [
        f"class {name!r} ({kind}): dropped: Foundry documents no answer form for it"
        for name, kind in (("point", "point"), ("line", "line"), ("person", "skeleton"), ("cuboid", "cuboid"),
                           ("vector", "vector"))]
    assert sum("sent as raster-segmentation" in w for w in warnings) == 3  # rotated box, polygon, ellipse
    assert any("share the Labelbox feature 'weather'" in w for w in warnings)
    assert any("platforms.labelbox.secret is not set" in w for w in warnings)
    assert adapter.check(TextShapes.spec, LabelboxSection(secret="x"), manifest) == [
        "confidence: sent as scores: only boxes carry scores; other answers carry none"]
