"""The app and its start-up: listens at once, loads in the background, serves the platforms the manifest
names, declares each platform's contract (auth, errors, the model's parameters) in its OpenAPI schema."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bridge.core.manifest import load_manifest
from bridge.serving.app import create_app
from tests import service_models
from tests.conftest import ROOT, b64, encode_image, free_port

BRIDGE = str(Path(sys.executable).with_name("bridge"))


def test_the_server_listens_while_the_model_loads(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:SlowToLoad"})
    app = create_app(manifest)
    base = serve_app(app, ready=False)
    image = {"image": {"base64": b64(encode_image(np.zeros((8, 8, 3), np.uint8)))}}
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 503
        loading = httpx.post(f"{base}/v7/infer", json=image)
        assert loading.status_code == 503
        assert loading.json() == {"status": "failed", "results": [], "error": "the model is still loading"}
    finally:
        service_models.LOADING.set()
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.post(f"{base}/v7/infer", json=image).json()["results"][0]["name"] == "thing"


def test_a_model_that_fails_to_load_is_reported(serve_app, make_manifest):
    app = create_app(make_manifest(model={"factory": "tests.service_models:BrokenToLoad"}))
    base = serve_app(app)
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "failed"
    assert "BrokenToLoad with model.params failed: FileNotFoundError: weights.bin" in ready.json()["error"]


def test_bridge_serve_reports_a_busy_port_and_a_broken_model_in_one_line(tmp_path):
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(f"name: broken\nmodel: {{factory: {ROOT}/tests/service_models.py:BrokenToLoad}}\n"
                        "platforms: {v7: {}}\n")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run([BRIDGE, "serve", str(manifest), "--port", str(port)], capture_output=True,
                              text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"bridge: cannot listen on 127.0.0.1:{port}: Address already in use"
    done = subprocess.run([BRIDGE, "serve", str(manifest), "--port", str(free_port())], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("bridge: the model failed to load: ") and last.endswith("FileNotFoundError: weights.bin")
    assert "Traceback" not in done.stderr


def test_only_the_platforms_the_manifest_names_are_served(serve_app):
    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "blur.yaml")))
    assert httpx.get(f"{base}/v7/classes").status_code == 200
    assert httpx.post(f"{base}/labelbox/infer", json={}).status_code == 404
    assert httpx.post(f"{base}/ango/plugin", json={}).status_code == 404


def test_openapi_declares_auth_errors_and_the_models_parameters(serve_app, monkeypatch):
    monkeypatch.setenv("V7_AUTH_METHOD", "header")
    monkeypatch.setenv("V7_SECRET", "s")
    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "default.yaml")))
    schema = httpx.get(f"{base}/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-Auth"} in schemes.values()  # V7's secret header
    assert {"type": "http", "scheme": "bearer"} in schemes.values()  # Labelbox
    assert {"type": "apiKey", "in": "header", "name": "Secret"} in schemes.values()  # Ango's REST connector
    infer = schema["paths"]["/v7/infer"]["post"]
    assert {"400", "401", "413", "422", "500", "503", "504"} <= set(infer["responses"])
    failed = infer["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][failed]["properties"]) == {"status", "results", "error"}
    error = schema["paths"]["/labelbox/infer"]["post"]["responses"]["422"]["content"]["application/json"]
    assert schema["components"]["schemas"][error["schema"]["$ref"].rsplit("/", 1)[-1]]["properties"].keys() == {
        "error"}
    params = schema["components"]["schemas"]["V7Params"]["properties"]
    assert {"bbox", "threshold", "min_neighbors"} <= set(params)
    assert params["min_neighbors"]["default"] == 5
    labelbox = schema["components"]["schemas"]["LabelboxRequest"]["properties"]
    assert {"prompt", "threshold", "min_neighbors"} <= set(labelbox)


def test_openapi_declares_the_exactly_one_of_rules(serve_app):
    base = serve_app(create_app(load_manifest(ROOT / "manifests" / "default.yaml")))
    schemas = httpx.get(f"{base}/openapi.json").json()["components"]["schemas"]
    assert schemas["V7InferRequest"]["oneOf"] == [{"required": ["image"]}, {"required": ["video"]}]
    assert schemas["V7Video"]["oneOf"] == [{"required": ["url"]}, {"required": ["frame_urls"]}]
    assert schemas["V7Image"]["anyOf"] == [{"required": ["base64"]}, {"required": ["url"]}]
    assert schemas["LabelboxPart"]["oneOf"] == [{"required": ["text"]}, {"required": ["image"]}]


def test_non_ascii_credentials_get_in_and_wrong_ones_do_not(serve_app, make_manifest):
    """Basic with UTF-8 (RFC 7617's charset), and secrets sent as UTF-8 header bytes (Starlette reads headers as
    Latin-1); the OpenAPI declaration of each scheme lets in whoever the bridge's own check does."""
    import base64

    secret, user = "pässwörd-秘密", "jürgen"
    basic = make_manifest(model={"factory": "examples/blur.py:BlurDetector"}, platforms={
        "v7": {"auth": {"method": "basic", "username": user, "password": secret}},
        "labelbox": {"secret": secret}, "ango": {"plugin_id": "p", "secret": secret}})
    header = make_manifest(model={"factory": "examples/blur.py:BlurDetector"},
                           platforms={"v7": {"auth": {"method": "header", "header": "X-Auth", "secret": secret}}})
    with_basic, with_header = serve_app(create_app(basic)), serve_app(create_app(header))

    def basic_of(name: str, password: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}

    assert httpx.get(f"{with_basic}/v7/classes", headers=basic_of(user, secret)).status_code == 200
    assert httpx.get(f"{with_basic}/v7/classes", headers=basic_of(user, secret + "x")).status_code == 401
    assert httpx.get(f"{with_basic}/v7/classes", headers=basic_of("jurgen", secret)).status_code == 401
    assert httpx.get(f"{with_header}/v7/classes", headers={"X-Auth": secret.encode()}).status_code == 200
    assert httpx.get(f"{with_header}/v7/classes", headers={"X-Auth": b"p\xe4sswort"}).status_code == 401
    body = {"prompt": [{"role": "user", "parts": [{"text": "x"}]}]}
    bearer = httpx.post(f"{with_basic}/labelbox/infer", json=body, headers={"authorization": f"Bearer {secret}".encode()})
    assert bearer.status_code != 401, bearer.text
    assert httpx.post(f"{with_basic}/labelbox/infer", json=body,
                      headers={"authorization": b"Bearer p\xe4sswort"}).status_code == 401
    assert httpx.get(f"{with_basic}/ango/heartbeat", headers={"Secret": secret.encode()}).status_code == 200


def test_docs_escape_the_manifests_name(serve_app, make_manifest):
    manifest = make_manifest(name="</title><script>alert(1)</script>", model={"factory": "examples/blur.py:BlurDetector"})
    page = httpx.get(f"{serve_app(create_app(manifest))}/docs").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; - API" in page
