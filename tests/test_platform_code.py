"""Every answer as the platform's own code reads it (issue 19).

Each test first shows, with the platform's own code or document, what it reads in the bridge's answer: the
labelbox SDK's NDJSON classes and serializer, darwin-py, imerit-ango's plugin code and `Answer`, V7's published
response schema, Ango's and Labelbox's documents (quoted where used), and JavaScript's string indices (the
editors of Labelbox and Ango run in the browser). Then it checks the fix, end to end over loopback HTTP where a
route serves it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import shutil
import subprocess
from pathlib import Path

import httpx
import labelbox.types as lb_types
import numpy as np
import pytest
import shapely
import yaml
from labelbox.data.serialization.ndjson.converter import NDJsonConverter
from labelbox.data.serialization.ndjson.label import NDLabel
from labelbox.schema.confidence_presence_checker import LabelsConfidencePresenceChecker

from adapters.ango import AngoSection
from adapters.ango import adapter as ango
from adapters.ango.read import read_answer as read_ango
from adapters.labelbox import LabelboxSection
from adapters.labelbox import adapter as labelbox
from adapters.labelbox.ndjson import CONVERSIONS as NDJSON
from adapters.v7 import V7Section
from adapters.v7 import adapter as v7
from adapters.v7.contract import SCHEMA as V7_SCHEMA
from adapters.v7.read import read_results
from bridge.commands.main import main
from bridge.core.geometry import mask_to_polygon, rasterize, rotated_box_corners, to_polygon, to_shapely
from bridge.core.manifest import Manifest, ManifestError, load_manifest
from bridge.core.model import ClassSpec, ModelSpec
from bridge.core.offsets import Utf16
from bridge.core.predictions import Classification, Prediction, RotatedBox
from bridge.core.service import Result
from bridge.platforms.registry import Platforms, discover
from bridge.platforms.startup import start_service
from bridge.serving.app import create_app
from tests.answer_models import Questions, TwoAnswers
from tests.conftest import ROOT, b64, encode_image
from tests.test_ango import SECRET as ANGO_SECRET
from tests.test_ango import ango_api, message, post  # noqa: F401 (ango_api: a fixture)

LABELBOX_SECRET = "lb-s3cret"
AUTH = {"Authorization": f"Bearer {LABELBOX_SECRET}"}
IMAGE = np.random.default_rng(19).integers(0, 255, (48, 64, 3), dtype=np.uint8)
ROW = "I \u2764\ufe0f \U0001F600 Tom\u0301\u0302 and 👍🏽 more"
"""A data row with emoji outside the BMP (two UTF-16 code units each, one with a skin-tone modifier), a
variation selector, and combining marks on the name."""
NAME = "Tom\u0301\u0302"


def utf16_slice(text: str, start: int, end: int) -> str:
    """`text.slice(start, end)` as JavaScript computes it: indices are UTF-16 code units."""
    return text.encode("utf-16-le")[2 * start:2 * end].decode("utf-16-le")


def manifest_for(tmp_path: Path, factory: str, platforms: dict, **keys) -> Manifest:
    path = tmp_path / f"{factory.rpartition(':')[2].lower()}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"name": "issue-19", "model": {"factory": str(ROOT / factory)},
                                    "limits": {"allow_private_urls": True}, "platforms": platforms, **keys}))
    return load_manifest(path)


def every_platform(api_url: str = "http://127.0.0.1:9") -> dict:
    return {"v7": {}, "labelbox": {"secret": LABELBOX_SECRET},
            "ango": {"plugin_id": "p-1", "secret": ANGO_SECRET, "api_url": api_url}}


def prelabel(capsys: pytest.CaptureFixture, *argv) -> tuple[int, str]:
    code = main(["prelabel", *map(str, argv)])
    return code, capsys.readouterr().out


def ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_utf16_slice_is_javascripts_slice():
    """The helper above is JavaScript's own `String.prototype.slice`, run by node where it is installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = "const [t, s, e] = JSON.parse(process.argv[1]); process.stdout.write(JSON.stringify(t.slice(s, e)))"
    for start, end in ((0, 4), (4, 7), (7, 12), (8, 12), (0, Utf16(ROW).length)):
        done = subprocess.run([node, "-e", script, json.dumps([ROW, start, end])], capture_output=True, text=True,
                              timeout=60, check=True)
        assert json.loads(done.stdout) == utf16_slice(ROW, start, end)


# --- Wrong on the platform ------------------------------------------------------------------------------------


def test_labelbox_ndjson_confidences_sit_where_the_sdk_reads_them(tmp_path, capsys):
    """The SDK's serializer writes a radio's confidence inside its answer and a checklist's per option
    (`NDJsonConverter.serialize`); `NDLabel(...).to_common()` reads them there. Model runs keep confidences;
    `MALPredictionImport.create_from_objects` warns that MAL ignores them: a second file carries none."""
    theirs = next(iter(NDJsonConverter.serialize([lb_types.Label(data={"global_key": "k"}, annotations=[
        lb_types.ClassificationAnnotation(name="weather", value=lb_types.Radio(
            answer=lb_types.ClassificationAnswer(name="sunny", confidence=0.9)))])])))
    assert theirs["answer"] == {"name": "sunny", "confidence": 0.9} and "confidence" not in theirs

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(encode_image(IMAGE))
    manifest = manifest_for(tmp_path, "tests/shapes_model.py:AllShapes", {"labelbox": {}},
                            params={"type": "object", "additionalProperties": True})
    code, _ = prelabel(capsys, manifest.path, images, "--to", "labelbox", "--out", tmp_path / "out")
    assert code == 0
    lines = ndjson(tmp_path / "out" / "labelbox" / "predictions.ndjson")
    read = {line["name"]: NDLabel.model_validate({"annotations": line}).annotations.to_common() for line in lines}
    ours = next(line for line in lines if line["name"] == "weather")
    assert {k: v for k, v in ours.items() if k not in ("uuid", "dataRow")} == \
        {k: v for k, v in theirs.items() if k not in ("uuid", "dataRow")}
    assert read["weather"].answer.confidence == 0.9
    assert [(a.name, a.confidence) for a in read["objects"].answer] == [("car", 0.8), ("sky", 0.8)]
    assert read["caption"].confidence == 0.7
    assert [(a.name, a.confidence) for a in read["tags"].answer] == [("sharp", 1.0)]  # clamped by the core
    assert LabelsConfidencePresenceChecker.check(lines)  # what a model run keeps

    mal = ndjson(tmp_path / "out" / "labelbox" / "mal.ndjson")
    assert not LabelsConfidencePresenceChecker.check(mal)  # MAL's warning does not fire: nothing is ignored
    assert [line["name"] for line in mal] == [line["name"] for line in lines]
    assert all(NDLabel.model_validate({"annotations": line}) for line in mal)
    why = NDJSON["prediction.confidence"].why
    assert "predictions.ndjson" in why and "mal.ndjson" in why and "ignores" in why


def test_v7_names_are_unique_per_model_and_read_back_to_their_question(tmp_path, serve_app, capsys):
    """Two yes/no questions with `tag_name: "{option}"` register `yes`, `no`, `yes`, `no`: V7's `/classes`
    would hold one class for both, and an answer `yes` could be either. That is now a start-up error naming the
    clash; the default names each option after its question."""
    clashing = manifest_for(tmp_path, "tests/answer_models.py:Questions", {"v7": {"tag_name": "{option}"}})
    clash = "'yes' is option 'yes' of class 'q1' and option 'yes' of class 'q2'"
    assert main(["check", str(clashing.path)]) == 2
    assert clash in capsys.readouterr().err
    with pytest.raises(ManifestError, match=clash):
        asyncio.run(start_service(clashing, Platforms.of(clashing, discover())))
    refused = httpx.get(serve_app(create_app(clashing)) + "/readyz")
    assert refused.status_code == 503 and clash in refused.json()["error"]

    manifest = manifest_for(tmp_path, "tests/answer_models.py:Questions", {"v7": {}})
    base = serve_app(create_app(manifest))
    names = [c["name"] for c in httpx.get(f"{base}/v7/classes").json()]
    assert names == ["q1: yes", "q1: no", "q2: yes", "q2: no"]
    answer = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(encode_image(IMAGE))}}).json()
    assert [r["name"] for r in answer["results"]] == ["q2: yes"]
    (read,) = read_results(answer, Questions.spec, V7Section())
    assert (read.label, read.shape) == ("q2", Classification("yes"))
    assert main(["check", f"{base}/v7", "--platform", "v7"]) == 0  # /classes names each class once


def test_a_single_choice_question_gets_one_answer_on_every_platform(tmp_path, serve_app, media_server, ango_api,
                                                                    capsys, caplog):
    """A radio answered `yes` 0.6 and `no` 0.7 reached Ango (the SDK's plugin answer, and `import_labels`) as
    two answers. The core keeps the most confident answer of a radio or free-text class, once, for all."""
    manifest = manifest_for(tmp_path, "tests/answer_models.py:TwoAnswers", every_platform(ango_api.base))
    base = serve_app(create_app(manifest))
    mapping = [{"schemaId": f"id-{name}", "modelClass": name} for name in ("rain", "note", "flag", "car")]
    url = media_server.add("a.png", encode_image(IMAGE))
    with caplog.at_level(logging.WARNING, logger="bridge"):
        reply = post(f"{base}/ango", message(dataURL=url, categorySchema=mapping))
    assert reply.status_code == 200, reply.text
    classifications = reply.json()["response"]["classifications"]
    assert classifications == [{"schemaId": "id-rain", "answer": "no"}, {"schemaId": "id-note", "answer": "first"},
                               {"schemaId": "id-flag", "answer": "flag"}]
    assert "class 'rain': a radio question takes one answer per item: of several, the most confident is kept" \
        in caplog.text

    image = {"base64": b64(encode_image(IMAGE))}
    found = httpx.post(f"{base}/labelbox/infer", headers=AUTH,
                       json={"prompt": [{"role": "user", "parts": [{"image": image["base64"]}]}]}).json()
    assert (found["rain"], found["note"]) == ("no", "first")
    results = httpx.post(f"{base}/v7/infer", json={"image": image}).json()["results"]
    assert [r["name"] for r in results if r["name"].startswith("rain")] == ["rain: no"]

    from imerit_ango.models.annotate import Answer

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(encode_image(IMAGE))
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    code, _ = prelabel(capsys, manifest.path, images, "--to", "ango", "--mapping", f"ango={tmp_path / 'mapping.json'}",
                       "--out", tmp_path / "out")
    assert code == 0
    (label,) = json.loads((tmp_path / "out" / "ango" / "labels-00001.json").read_text())
    sdk = Answer(label["objects"], label["classifications"]).toDict()
    assert [c["answer"] for c in sdk["classifications"] if c["schemaId"] == "id-rain"] == ["no"]


OBJECTS_MD = {"x": 172.9809523809524, "y": 101.7904761904762, "width": 6.095238095238096,
              "height": 92.03002172095357, "rotation": -40.97173633351486,
              "corners": [[172.9809523809524, 101.7904761904762], [233.32380952380956, 171.2761904761905],
                          [237.92591615020282, 167.2796241953753], [177.58305900734567, 97.793909909661]]}
"""The `rotated-bounding-box` example of Ango's export format document (angoai/docs,
data/ango-export-format/objects.md): `x, y` is its first corner, about which the box turned."""


def test_angos_documented_rotated_box_reads_back_where_its_corners_put_it():
    spec = ModelSpec(classes=[ClassSpec(name="r", kind="rotated_box")])
    as_imported = {k: v for k, v in OBJECTS_MD.items() if k != "corners"}
    (imported,) = read_ango({"objects": [{"title": "r", "rotated-bounding-box": as_imported}]}, spec, AngoSection())
    centre = np.mean(OBJECTS_MD["corners"], axis=0)
    off = math.hypot(imported.shape.cx - centre[0], imported.shape.cy - centre[1])
    assert 31 < off < 33  # `x, y` read as the import document's top-left (turning about the centre): 32 px off

    (exported,) = read_ango({"objects": [{"title": "r", "rotated-bounding-box": OBJECTS_MD}]}, spec, AngoSection())
    # the same four corners: ours run along the width first, Ango's along the height
    assert np.allclose(rotated_box_corners(exported.shape), np.array(OBJECTS_MD["corners"])[[0, 3, 2, 1]], atol=1e-9)
    assert math.isclose(exported.shape.angle, OBJECTS_MD["rotation"])


def test_ango_rotated_boxes_leave_as_the_import_document_has_them():
    """Ango's import document: "Rotated Bounding Boxes are identical to Bounding Boxes, except they have a
    rotation element. Boxes rotate from their center." (`x`, `y` the top-left corner; it names no corners.)"""
    spec = ModelSpec(classes=[ClassSpec(name="r", kind="rotated_box")])
    box = RotatedBox(50, 40, 20, 10, 30)
    answer = ango.write_answer(Result([Prediction("r", box)], (96, 128)), spec, AngoSection(),
                               Manifest(name="m", model={"factory": "m:M"}))
    (sent,) = answer["objects"]
    assert sent["rotated-bounding-box"] == {"x": 40.0, "y": 35.0, "width": 20.0, "height": 10.0, "rotation": 30.0}
    (back,) = read_ango(answer, spec, AngoSection())
    assert np.allclose(rotated_box_corners(back.shape), rotated_box_corners(box))


def test_labelbox_accepts_what_it_may_send_beside_the_prompt(tmp_path, serve_app, caplog):
    """Labelbox's `model.yaml` document defines `max_tokens`; a request may carry it, or `model`, `prompt_id`, or a
    part with a `mime_type`. They were answered 422; they are ignored (logged at debug), while a declared
    parameter with a bad value still answers 422."""
    params = {"type": "object", "properties": {"only": {"type": "array", "items": {"type": "string"}}}}
    manifest = manifest_for(tmp_path, "tests/shapes_model.py:AllShapes", {"labelbox": {"secret": LABELBOX_SECRET}},
                            params=params)
    url = serve_app(create_app(manifest)) + "/labelbox/infer"
    image = {"image": b64(encode_image(IMAGE)), "mime_type": "image/png"}
    body = {"prompt": [{"role": "user", "parts": [image]}], "only": ["weather"]}
    with caplog.at_level(logging.DEBUG, logger="bridge.labelbox"):
        for extra in ({"max_tokens": 1024}, {"model": "my-model"}, {"prompt_id": "p-1"}, {"ontology": {}}):
            response = httpx.post(url, json={**body, **extra}, headers=AUTH)
            assert response.status_code == 200 and response.json() == {"weather": "sunny"}, (extra, response.text)
    assert "ignored the request keys 'model': not parameters of this model (only)" in caplog.text
    bad = httpx.post(url, json={**body, "only": "weather"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"].startswith("invalid parameter only")
    unknown = httpx.post(url, json={**body, "inference_params": {"speed": 1}}, headers=AUTH)
    assert unknown.status_code == 422 and "unknown parameter speed" in unknown.json()["error"]


def test_v7s_schema_defines_no_frame_so_the_table_says_it_is_the_bridges_own():
    """V7's published response schema (000 in the platform documents; darwin-py has no BYOM reader, and V7's
    public BYOM stub answers images only) defines no per-frame result."""
    assert "frame" not in V7_SCHEMA["properties"]["results"]["items"]["properties"]
    row = v7.conversions["prediction.frame"]
    assert row.fidelity == "lossy" and "bridge's own" in row.why and "defines no frame" in row.why


def test_span_offsets_count_what_labelbox_and_angos_editors_count(tmp_path, serve_app, media_server, ango_api,
                                                                   capsys):
    """Python counts code points, JavaScript UTF-16 code units: after an emoji every Python offset is short by
    one. The answers now count UTF-16 code units, and the readers take them back to code points."""
    start = ROW.index(NAME)
    assert utf16_slice(ROW, start, start + len(NAME)) != NAME  # a Python offset, read by JavaScript
    units = Utf16(ROW)
    js_start, js_end = units.units(start), units.units(start + len(NAME))
    assert utf16_slice(ROW, js_start, js_end) == NAME

    spec = ModelSpec(input="text", classes=[ClassSpec(name="name", kind="entity")])
    manifest = manifest_for(tmp_path, "tests/answer_models.py:Named", every_platform(ango_api.base))
    base = serve_app(create_app(manifest))
    found = httpx.post(f"{base}/labelbox/infer", headers=AUTH,
                       json={"prompt": [{"role": "user", "parts": [{"text": ROW}]}]}).json()
    assert found == {"name": [{"start": js_start, "end": js_end, "text": NAME}]}
    (read,) = labelbox.read_answer(found, spec, LabelboxSection(), text=ROW)
    assert (read.shape.start, read.shape.end, read.shape.text) == (start, start + len(NAME), NAME)

    url = media_server.add("row.txt", ROW.encode(), "text/plain; charset=utf-8")
    answer = post(f"{base}/ango", message(dataURL=url, categorySchema=None)).json()["response"]
    assert answer["objects"] == [{"title": "name", "ner": {"start": js_start, "end": js_end}}]
    (read,) = read_ango(answer, spec, AngoSection(), text=ROW)
    assert read.shape.text == NAME and read.shape.start == start

    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "row.txt").write_text(ROW, encoding="utf-8")
    code, _ = prelabel(capsys, manifest.path, texts, "--to", "labelbox,ango", "--out", tmp_path / "out")
    assert code == 0
    (line,) = ndjson(tmp_path / "out" / "labelbox" / "predictions.ndjson")
    entity = NDLabel.model_validate({"annotations": line}).annotations.to_common()
    assert utf16_slice(ROW, entity.start, entity.end + 1) == NAME  # Labelbox's `end` is inclusive
    (label,) = json.loads((tmp_path / "out" / "ango" / "labels-00001.json").read_text())
    assert label["objects"] == [{"title": "name", "ner": {"start": js_start, "end": js_end}}]


def test_small_shapes_on_labelbox_are_as_the_table_declares(tmp_path, serve_app, caplog):
    """Foundry answers areas as masks: a shape covering no pixel centre has no mask and was left out without a
    word; a 3x1 rotated box reads back coarse. The loss is logged, and the table's bound is checked here."""
    manifest = manifest_for(tmp_path, "tests/answer_models.py:Small", {"labelbox": {"secret": LABELBOX_SECRET}})
    base = serve_app(create_app(manifest))
    with caplog.at_level(logging.WARNING, logger="bridge"):
        found = httpx.post(f"{base}/labelbox/infer", headers=AUTH, json={
            "prompt": [{"role": "user", "parts": [{"image": b64(encode_image(IMAGE))}]}]}).json()
    assert set(found) == {"thin"}
    assert "labelbox: class 'speck': a shape that covers no pixel centre has no mask: left out" in caplog.text

    why = labelbox.conversions["rotated_box"].why
    assert "within 0.9 px" in why and "IoU 0.1 to 1" in why and "left out (logged)" in why
    spec = ModelSpec(classes=[ClassSpec(name="r", kind="rotated_box")])
    manifest = Manifest(name="m", model={"factory": "m:M"})
    ious, left_out = [], 0
    for angle in np.arange(0, 90, 7.5):
        for dx in np.arange(0, 1, 0.125):
            for dy in np.arange(0, 1, 0.125):
                box = RotatedBox(20 + dx, 20 + dy, 3, 1, float(angle))
                shape = to_shapely(to_polygon(box))
                mask = rasterize(box, 40, 40).array
                corners = np.concatenate([ring for part in mask_to_polygon(mask).parts for ring in part]) \
                    if mask.any() else np.empty((0, 2))
                assert all(shape.distance(shapely.Point(p)) <= 0.9 for p in corners)  # a pixel's half diagonal +
                # pycocotools' 0.17 px
                answer = labelbox.write_answer(Result([Prediction("r", box)], (40, 40)), spec, LabelboxSection(),
                                               manifest)
                back = labelbox.read_answer(answer, spec, LabelboxSection(), (40, 40))
                if not back:
                    left_out += 1
                    continue
                other = to_shapely(to_polygon(back[0].shape))
                ious.append(shape.intersection(other).area / shape.union(other).area)
    assert min(ious) >= 0.1 and max(ious) == pytest.approx(1) and sum(i < 0.5 for i in ious) > 0 and left_out > 0


# --- Wrong for the user ---------------------------------------------------------------------------------------


def test_swapped_box_corners_are_normalised_and_a_nan_names_the_class(tmp_path, serve_app, caplog):
    """V7's schema sets `minimum: 0` on `w` and `h`: a negative box is invalid there, and the core used to drop it
    without a word (the clip found nothing inside)."""
    assert V7_SCHEMA["$defs"]["bounding_box"]["properties"]["w"]["minimum"] == 0
    manifest = manifest_for(tmp_path, "tests/answer_models.py:Swapped", {"v7": {}},
                            params={"type": "object", "additionalProperties": True})
    base = serve_app(create_app(manifest))
    image = {"base64": b64(encode_image(IMAGE))}
    with caplog.at_level(logging.WARNING, logger="bridge"):
        (result,) = httpx.post(f"{base}/v7/infer", json={"image": image}).json()["results"]
    assert result["bounding_box"] == {"x": 20.0, "y": 12.0, "w": 10.0, "h": 8.0}
    assert "class 'car': a box with a negative width or height (corners swapped) is normalised" in caplog.text
    failed = httpx.post(f"{base}/v7/infer", json={"image": image, "params": {"nan": True}})
    assert failed.status_code == 500 and "class 'car' has a Box with a NaN" in failed.json()["error"]


@pytest.mark.parametrize("platform", ["v7", "labelbox", "ango"])
def test_a_json_body_is_read_whatever_its_declared_type_and_an_upload_gets_415(tmp_path, serve_app, media_server,
                                                                               ango_api, platform):
    manifest = manifest_for(tmp_path, "tests/shapes_model.py:AllShapes", every_platform(ango_api.base),
                            params={"type": "object", "additionalProperties": True})
    base = serve_app(create_app(manifest))
    encoded = b64(encode_image(IMAGE))
    route, headers, body = {
        "v7": ("/v7/infer", {}, {"image": {"base64": encoded}, "params": {"only": ["point"]}}),
        "labelbox": ("/labelbox/infer", AUTH, {"prompt": [{"role": "user", "parts": [{"image": encoded}]}],
                                               "only": ["point", "box"]}),
        "ango": ("/ango/plugin", {"Secret": ANGO_SECRET},
                 message(dataURL=media_server.add("a.png", encode_image(IMAGE)), categorySchema=None)),
    }[platform]
    data = json.dumps(body).encode()
    for declared in (None, "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        sent = {**headers, **({"Content-Type": declared} if declared else {})}
        response = httpx.post(base + route, content=data, headers=sent, timeout=30)
        assert response.status_code == 200, (declared, response.text)
    upload = httpx.post(base + route, files={"image": ("a.png", encode_image(IMAGE), "image/png")}, headers=headers)
    assert upload.status_code == 415
    assert "send the request as a JSON body (Content-Type: application/json)" in upload.text


def test_bridge_check_url_names_the_newline_of_v7s_basic_auth_snippet(tmp_path, serve_app, capsys):
    """V7's registration snippet: `-H "authorization: Basic $(echo "$BASIC_AUTH_USERNAME:$BASIC_AUTH_PASSWORD" |
    base64)"`. echo ends with a newline, which base64 encodes: the password sent is wrong, and V7's
    registration gets a 401 from `/classes`."""
    env = {"U": "v7", "P": "s3cret", "PATH": "/usr/bin:/bin"}
    snippet = subprocess.run(["bash", "-c", 'echo "$U:$P" | base64'], env=env, capture_output=True, text=True,
                             check=True, timeout=30).stdout.strip()
    assert base64.b64decode(snippet) == b"v7:s3cret\n"
    manifest = manifest_for(tmp_path, "tests/answer_models.py:Questions",
                            {"v7": {"auth": {"method": "basic", "username": "v7", "password": "s3cret"}}})
    base = serve_app(create_app(manifest)) + "/v7"
    assert httpx.get(f"{base}/classes", headers={"authorization": f"Basic {snippet}"}).status_code == 401
    assert main(["check", base, "--platform", "v7", "--header", f"authorization: Basic {snippet}"]) == 1
    out = capsys.readouterr().out
    assert "refused with 401" in out and "the Basic credentials end in a newline" in out
    assert "printf '%s' \"$U:$P\" | base64 -w0" in out
    fixed = subprocess.run(["bash", "-c", "printf '%s' \"$U:$P\" | base64 -w0"], env=env, capture_output=True,
                           text=True, check=True, timeout=30).stdout
    assert main(["check", base, "--platform", "v7", "--header", f"authorization: Basic {fixed}"]) == 0


def test_an_empty_auto_annotate_box_is_said_to_be_empty(tmp_path, serve_app):
    manifest = manifest_for(tmp_path, "tests/shapes_model.py:AllShapes", {"v7": {}})
    base = serve_app(create_app(manifest))
    image = {"base64": b64(encode_image(IMAGE))}
    for bbox in ({"x": 10, "y": 10, "w": 0, "h": 5}, {"x": 10, "y": 10, "w": 0, "h": 0}):
        response = httpx.post(f"{base}/v7/infer", json={"image": image, "params": {"bbox": bbox}})
        assert response.status_code == 422
        assert response.json()["error"].startswith("params.bbox is empty"), response.text
        assert "outside" not in response.json()["error"]


def test_ango_answers_take_the_form_of_the_mapped_categorys_type(tmp_path, serve_app, media_server, ango_api):
    """Ango's classification export (data/ango-export-format/classifications.md) has `tool` "checkbox" answer a
    list and "radio" a string; a tag class or attribute mapped to a checkbox answered a string."""
    manifest = manifest_for(tmp_path, "tests/answer_models.py:TwoAnswers", every_platform(ango_api.base))
    base = serve_app(create_app(manifest))
    mapping = [{"schemaId": "id-flag", "modelClass": "flag", "tool": "checkbox"},
               {"schemaId": "id-rain", "modelClass": "rain", "tool": "radio"},
               {"schemaId": "id-car", "modelClass": "car", "tool": "bounding-box"},
               {"schemaId": "id-occluded", "modelClass": "occluded", "tool": "checkbox"}]
    url = media_server.add("a.png", encode_image(IMAGE))
    reply = post(f"{base}/ango", message(dataURL=url, categorySchema=mapping))
    answer = reply.json()["response"]
    assert {"schemaId": "id-flag", "answer": ["flag"]} in answer["classifications"]
    assert {"schemaId": "id-rain", "answer": "no"} in answer["classifications"]
    (car,) = answer["objects"]
    assert car["classifications"] == [{"schemaId": "id-occluded", "answer": ["occluded"]}]
    ids = {entry["modelClass"]: entry["schemaId"] for entry in mapping}
    read = {p.label: p for p in read_ango(answer, TwoAnswers.spec, AngoSection(), ids)}
    assert read["rain"].shape == Classification("no") and read["car"].attributes == ("occluded",)
