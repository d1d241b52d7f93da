"""Remote models, end to end on loopback: a bridge serving the face detector (manifests/default.yaml) as V7 is
the remote of a second bridge, whose Labelbox and Ango answers equal the first bridge's own."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.core.loading import build_model
from bridge.core.manifest import Manifest, ManifestError, load_manifest
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from tests.conftest import ROOT, b64, free_port
from tests.test_endpoint_check import Broken, broken  # noqa: F401 (broken: a fixture)

SECRET = "remote-s3cret"
LABELBOX = {"authorization": f"Bearer {SECRET}"}
ANGO = {"Secret": SECRET}


def write(tmp_path: Path, name: str, document: dict[str, Any]) -> Manifest:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_manifest(path)


@pytest.fixture
def first(serve_app, tmp_path, monkeypatch) -> str:
    """manifests/default.yaml, its secrets set, allowed to fetch the test's loopback media server."""
    monkeypatch.setenv("LABELBOX_SECRET", SECRET)
    monkeypatch.setenv("ANGO_PLUGIN_SECRET", SECRET)
    document = yaml.safe_load((ROOT / "manifests" / "default.yaml").read_text())
    document["model"]["factory"] = str(ROOT / "examples" / "faces.py") + ":FaceDetector"
    document["limits"] = {"allow_private_urls": True}
    return serve_app(create_app(write(tmp_path, "first.yaml", document)))


def second_manifest(tmp_path: Path, url: str, **keys: Any) -> Manifest:
    return write(tmp_path, "second.yaml", {
        "name": "faces-through-v7",
        "model": {"remote": {"url": url, "platform": "v7"}},
        "params": {"type": "object", "properties": {"min_neighbors": {"type": "integer", "default": 5}}},
        "limits": {"allow_private_urls": True},
        "platforms": {"labelbox": {"secret": SECRET}, "ango": {"secret": SECRET, "plugin_id": "p"},
                      "v7": {}},
        **keys})


def answers(url: str, image_url: str, image: bytes) -> tuple[Any, Any]:
    labelbox = httpx.post(f"{url}/labelbox/infer", headers=LABELBOX, timeout=60,
                          json={"prompt": [{"role": "user", "parts": [{"image": b64(image)}]}]})
    ango = httpx.post(f"{url}/ango/plugin", headers=ANGO, timeout=60,
                      json={"session": "s1", "dataURL": image_url, "categorySchema": None})
    assert labelbox.status_code == 200, labelbox.text
    assert ango.status_code == 200, ango.text
    return labelbox.json(), ango.json()


def test_a_v7_endpoint_served_as_labelbox_and_ango_answers_as_the_model_itself(
        first, serve_app, tmp_path, media_server, astronaut_jpeg):
    second = serve_app(create_app(second_manifest(tmp_path, f"{first}/v7")))
    image_url = media_server.add("astronaut.jpg", astronaut_jpeg, "image/jpeg")
    own = answers(first, image_url, astronaut_jpeg)
    relayed = answers(second, image_url, astronaut_jpeg)
    assert own[0]["Face"]["boxes"], "the face detector finds the astronaut's face"
    assert relayed == own


def test_the_remote_v7_endpoint_is_served_as_v7_too_and_passes_bridge_check(first, serve_app, tmp_path,
                                                                              astronaut_jpeg, capsys):
    from bridge.commands.main import main

    second = serve_app(create_app(second_manifest(tmp_path, f"{first}/v7")))
    body = {"image": {"base64": b64(astronaut_jpeg)}}
    relayed, own = (httpx.post(f"{url}/v7/infer", json=body, timeout=60).json() for url in (second, first))
    assert relayed == own
    assert main(["check", f"{second}/v7", "--platform", "v7"]) == 0, capsys.readouterr().out


def test_a_remote_that_is_down_is_a_502_in_each_platforms_error_form(serve_app, tmp_path, astronaut_jpeg,
                                                                     media_server):
    classes = [{"name": "Face", "kind": "box"}]  # given: the remote is not asked for them
    second = serve_app(create_app(second_manifest(tmp_path, f"http://127.0.0.1:{free_port()}/v7", classes=classes)))
    v7 = httpx.post(f"{second}/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}}, timeout=60)
    assert v7.status_code == 502
    assert v7.json()["status"] == "failed" and "could not be reached: ConnectError" in v7.json()["error"]
    labelbox = httpx.post(f"{second}/labelbox/infer", headers=LABELBOX,
                          json={"prompt": [{"role": "user", "parts": [{"image": b64(astronaut_jpeg)}]}]}, timeout=60)
    assert labelbox.status_code == 502 and "could not be reached" in labelbox.json()["error"]
    ango = httpx.post(f"{second}/ango/plugin", headers=ANGO,
                      json={"session": "s2", "dataURL": media_server.add("a.jpg", astronaut_jpeg, "image/jpeg")},
                      timeout=60)
    assert ango.status_code == 502 and "could not be reached" in ango.json()["error"]


def test_a_remote_failure_reaches_the_caller_with_the_remotes_reason(serve_app, tmp_path, astronaut_jpeg):
    remote = Broken({("GET", "/v7/classes"): lambda _: (200, [{"name": "Face", "type": "bounding_box"}]),
                     ("POST", "/v7/infer"): lambda _: (500, {"status": "failed", "results": [],
                                                             "error": "the GPU caught fire"})})
    try:
        second = serve_app(create_app(second_manifest(tmp_path, f"{remote.url}/v7")))
        answer = httpx.post(f"{second}/labelbox/infer", headers=LABELBOX,
                            json={"prompt": [{"role": "user", "parts": [{"image": b64(astronaut_jpeg)}]}]}, timeout=60)
        assert answer.status_code == 502
        assert answer.json()["error"].endswith("answered 500: the GPU caught fire")
        remote.routes["POST", "/v7/infer"] = lambda _: (200, {"status": "succeeded", "results": [
            {"name": "Dog", "label": "Dog", "confidence": 1, "tag": {}}]})
        answer = httpx.post(f"{second}/labelbox/infer", headers=LABELBOX,
                            json={"prompt": [{"role": "user", "parts": [{"image": b64(astronaut_jpeg)}]}]}, timeout=60)
        assert answer.status_code == 502 and "$.results[0].name: 'Dog' is none of" in answer.json()["error"]
    finally:
        remote.close()


def test_a_remote_manifest_says_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(ManifestError, match="model.factory is required .* or model.remote instead"):
        write(tmp_path, "both.yaml", {"name": "x", "model": {"factory": "a:b", "remote": {
            "url": "http://x", "platform": "v7"}}})
    manifest = write(tmp_path, "down.yaml", {"name": "x", "model": {"remote": {
        "url": f"http://127.0.0.1:{free_port()}/v7", "platform": "v7"}}})
    with pytest.raises(ManifestError, match="could not be read: ConnectError"):
        build_model(manifest, discover())
    with pytest.raises(ManifestError, match="no adapter named 'nuclio'"):
        build_model(write(tmp_path, "nuclio.yaml", {"name": "x", "model": {"remote": {"url": "http://x",
                                                                                  "platform": "nuclio"}}}), discover())
    with pytest.raises(ManifestError, match="the cvat adapter cannot call an endpoint"):  # CVAT's agent polls
        build_model(write(tmp_path, "cvat.yaml", {"name": "x", "model": {"remote": {"url": "http://x", "platform": "cvat"}}}
              ), discover())
    with pytest.raises(ManifestError, match="model_yaml: a Labelbox endpoint does not list its features"):
        build_model(write(tmp_path, "lb.yaml", {"name": "x", "model": {"remote": {"url": "http://x", "platform": "labelbox"}}}
              ), discover())
    monkeypatch.setenv("REMOTE_PASSWORD", "pw")
    manifest = write(tmp_path, "secret.yaml", {"name": "x", "model": {"remote": {
        "url": "http://x", "platform": "v7", "auth": {"basic": "me:${REMOTE_PASSWORD}"}}}})
    assert manifest.model.remote.auth.basic == "me:pw"


def test_a_labelbox_endpoint_and_an_ango_connector_serve_as_remotes_too(first, serve_app, tmp_path, astronaut_jpeg):
    from bridge.commands.main import main

    model_yaml = tmp_path / "model.yaml"
    assert main(["labelbox-manifest", str(tmp_path / "first.yaml"), "--endpoint", f"{first}/labelbox/infer",
                 "-o", str(model_yaml)]) == 0
    through_labelbox = write(tmp_path, "lb.yaml", {"name": "lb", "platforms": {"v7": {}}, "model": {"remote": {
        "url": f"{first}/labelbox/infer", "platform": "labelbox", "model_yaml": "model.yaml",
        "auth": {"bearer": SECRET}}}})
    through_ango = write(tmp_path, "ango.yaml", {"name": "ango", "platforms": {"v7": {}}, "model": {"remote": {
        "url": f"{first}/ango", "platform": "ango", "auth": {"secret": SECRET}}},
        "classes": [{"name": "Face", "kind": "box"}, {"name": "Eye", "kind": "point"}]})
    body = {"image": {"base64": b64(astronaut_jpeg)}}
    own = httpx.post(f"{first}/v7/infer", json=body, timeout=60).json()["results"]
    faces = [r for r in own if r["name"] == "Face"]
    lb = httpx.post(f"{serve_app(create_app(through_labelbox))}/v7/infer", json=body, timeout=60).json()["results"]
    assert lb == faces  # Foundry has no points: the eyes stay behind; boxes keep their scores
    ango = httpx.post(f"{serve_app(create_app(through_ango))}/v7/infer", json=body, timeout=60).json()["results"]
    assert ango == [{**r, "confidence": 1.0} for r in own]  # Ango answers carry no confidence



def test_a_remote_slower_than_the_deadline_is_a_504(serve_app, tmp_path, astronaut_jpeg):
    import time

    def slow(_: Any) -> tuple[int, Any]:
        time.sleep(3)
        return 200, {"status": "succeeded", "results": []}

    remote = Broken({("POST", "/v7/infer"): slow})
    try:
        manifest = second_manifest(tmp_path, f"{remote.url}/v7", classes=[{"name": "Face", "kind": "box"}],
                                   limits={"deadline": 0.5, "allow_private_urls": True})
        second = serve_app(create_app(manifest))
        answer = httpx.post(f"{second}/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}}, timeout=30)
        assert answer.status_code == 504 and "limits.deadline" in answer.json()["error"]
    finally:
        remote.close()


def test_a_labelbox_text_endpoint_is_served_to_ango_with_the_same_spans(serve_app, tmp_path, media_server):
    from bridge.commands.main import main

    first_manifest = write(tmp_path, "tagger.yaml", {
        "name": "tagger", "model": {"factory": str(ROOT / "examples" / "text_entities.py") + ":EntityTagger"},
        "limits": {"allow_private_urls": True},
        "platforms": {"labelbox": {"secret": SECRET}, "ango": {"secret": SECRET, "plugin_id": "p"}}})
    first = serve_app(create_app(first_manifest))
    model_yaml = tmp_path / "model.yaml"
    assert main(["labelbox-manifest", str(first_manifest.path), "--endpoint", f"{first}/labelbox/infer",
                 "-o", str(model_yaml)]) == 0
    second = serve_app(create_app(write(tmp_path, "relay.yaml", {
        "name": "relay", "limits": {"allow_private_urls": True},
        "model": {"remote": {"url": f"{first}/labelbox/infer", "platform": "labelbox", "model_yaml": "model.yaml",
                             "auth": {"secret": SECRET}}},
        "platforms": {"ango": {"secret": SECRET, "plugin_id": "p"}}})))
    row = "Mail tom@example.com or call +44 20 7946 0958 by 3 May 2025."
    run = {"session": "t1", "dataURL": media_server.add("row.txt", row.encode(), "text/plain")}
    own, relayed = (httpx.post(f"{url}/ango/plugin", headers=ANGO, json=run, timeout=60) for url in (first, second))
    assert own.status_code == relayed.status_code == 200, relayed.text
    assert len(own.json()["response"]["objects"]) == 3  # email, phone, date
    assert relayed.json() == own.json()


# --- a hostile remote: bounded in bytes and time, its faults a 502 naming it ------------------------------------


def hostile_remote(serve_app, broken, tmp_path: Path, infer: Any, **limits: Any) -> str:
    """A second bridge whose V7 remote answers `/infer` with the route `infer`, its classes given."""
    manifest = second_manifest(tmp_path, f"{broken({('POST', '/v7/infer'): infer})}/v7",
                               classes=[{"name": "Face", "kind": "box"}], limits={"allow_private_urls": True, **limits})
    return serve_app(create_app(manifest))


def test_a_remote_answer_over_the_cap_is_a_502_however_it_is_encoded(serve_app, broken, tmp_path, astronaut_jpeg):
    from tests.test_endpoint_check import gzip_bomb, raw

    padded = b'{"status": "succeeded", "results": []' + b" " * 3 * 2**20 + b"}"
    bomb = gzip.compress(gzip_bomb(64 * 2**20))  # gzip, gzip: 64 MiB inflated, never read whole
    for infer in (raw(padded), raw(gzip.compress(padded), encoding="gzip"), raw(bomb, encoding="gzip, gzip")):
        second = hostile_remote(serve_app, broken, tmp_path, infer, max_answer_bytes=2**20)
        answer = httpx.post(f"{second}/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}}, timeout=60)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"].endswith("answered over 1,048,576 bytes (limits.max_answer_bytes)")
        assert "the remote v7 endpoint" in answer.json()["error"]
        assert httpx.get(f"{second}/healthz").status_code == 200


@pytest.mark.parametrize("body", [
    b'{"status": "succeeded", "results": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    b'{"status": "succeeded", "results": [{"name": "Face", "label": "Face", "confidence": 0.5, '
    b'"bounding_box": {"x": NaN, "y": 0, "w": 5, "h": 5}}]}',
    b'{"status": "succeeded", "results": [{"name": "Face", "label": "Face", "confidence": 0.5, '
    b'"bounding_box": {"x": 1e400, "y": 0, "w": 5, "h": 5}}]}',
    b'{"status": "succeeded", "results": [{"name": "Face", "label": "Face", "confidence": 0.5, '
    b'"bounding_box": {"x": Infinity, "y": 0, "w": 5, "h": 5}}]}',
])
def test_a_remote_answer_too_deep_or_not_finite_is_a_502_naming_it(serve_app, broken, tmp_path, astronaut_jpeg, body):
    from tests.test_endpoint_check import raw

    second = hostile_remote(serve_app, broken, tmp_path, raw(body))
    answer = httpx.post(f"{second}/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}}, timeout=60)
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"].startswith("the remote v7 endpoint http://127.0.0.1:")
    assert "is not JSON" in answer.json()["error"]


def test_a_remote_whose_classes_drip_fails_the_start_up_in_time(tmp_path, broken):
    from tests.test_endpoint_check import drip, in_thread

    remote = broken({("GET", "/v7/classes"): drip(0.3, 400)})
    manifest = write(tmp_path, "drip.yaml", {"name": "x", "limits": {"deadline": 2},
                                             "model": {"remote": {"url": f"{remote}/v7", "platform": "v7"}}})

    def load() -> str:
        with pytest.raises(ManifestError) as failed:
            build_model(manifest, discover())
        return str(failed.value)

    message = in_thread(load, 30)
    assert "the classes of" in message and "no answer in 2 s" in message
