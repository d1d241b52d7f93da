"""`bridge serve --ray` on a real single-node Ray cluster: the same answers as `bridge serve`.

Ray Serve is the `ray` extra, which cannot share a venv with the Ango SDK: `.ci/run` runs this file in its
own venv (`.[test,ray]`), and the main venv skips it. One cluster (2 CPUs) serves the whole module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray Serve is the `ray` extra (pip install -e '.[test,ray]'; "
                                        ".ci/run runs these tests in .venv-ray)")
serve = pytest.importorskip("ray.serve")

from bridge.commands.main import main  # noqa: E402
from bridge.core.manifest import Manifest, load_manifest  # noqa: E402
from bridge.serving.app import create_app  # noqa: E402
from bridge.serving.ray_serve import app_builder, build_app, model_options  # noqa: E402
from bridge.serving.ray_settings import RayScaling  # noqa: E402
from tests.conftest import ROOT, b64, encode_image, free_port  # noqa: E402

DEFAULT = ROOT / "manifests" / "default.yaml"
RAYSERVICE = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
SECRET = "ray-test-secret"
STARTUP = 240  # s: replicas start in processes of their own


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local single-node cluster owned by this process; its GCS address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def bridge_on_ray(cluster: str) -> Iterator[str]:
    """`bridge serve manifests/default.yaml --ray --address ...` in a process of its own; its base URL."""
    port = free_port()
    # the cluster ray.init started asks for its token (~/.ray/auth_token): a client must be told to send it
    env = {**os.environ, "LABELBOX_SECRET": SECRET, "ANGO_PLUGIN_SECRET": SECRET,
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    command = [sys.executable, "-m", "bridge", "serve", str(DEFAULT), "--ray", "--address", cluster,
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(base: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"bridge serve --ray exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} was not ready within {STARTUP} s")


@pytest.fixture
def reference(serve_app, monkeypatch: pytest.MonkeyPatch) -> str:
    """`bridge serve` of the same manifest: a real uvicorn on a loopback port."""
    monkeypatch.setenv("LABELBOX_SECRET", SECRET)
    monkeypatch.setenv("ANGO_PLUGIN_SECRET", SECRET)
    return serve_app(create_app(load_manifest(DEFAULT)))


def both(reference: str, ray_base: str, path: str, **request) -> tuple[httpx.Response, httpx.Response]:
    return (httpx.post(f"{reference}{path}", timeout=60, **request),
            httpx.post(f"{ray_base}{path}", timeout=60, **request))


def test_v7_answers_as_bridge_serve(bridge_on_ray: str, reference: str, astronaut_jpeg: bytes) -> None:
    local, remote = both(reference, bridge_on_ray, "/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}})
    assert remote.status_code == local.status_code == 200
    assert remote.json() == local.json()
    assert "Face" in {result["name"] for result in remote.json()["results"]}


def test_labelbox_answers_as_bridge_serve(bridge_on_ray: str, reference: str, astronaut_jpeg: bytes) -> None:
    body = {"prompt": [{"role": "user", "parts": [{"text": "find faces"}, {"image": b64(astronaut_jpeg)}]}],
            "threshold": 0.5}
    local, remote = both(reference, bridge_on_ray, "/labelbox/infer", json=body,
                         headers={"Authorization": f"Bearer {SECRET}"})
    assert remote.status_code == local.status_code == 200
    assert remote.json() == local.json()
    assert remote.json()["Face"]["boxes"]


@pytest.mark.parametrize("path, request_", [
    ("/v7/infer", {"json": {"image": {"base64": "bm90IGFuIGltYWdl"}}}),  # not an image: 422
    ("/v7/infer", {"json": {"image": {"base64": "%%%"}}}),  # broken base64: 400
    ("/v7/infer", {"json": {"image": {"base64": "AAAA"}, "params": {"min_neighbors": 0}}}),  # bad parameter
    ("/v7/infer", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("/labelbox/infer", {"json": {"prompt": []}}),  # no secret: 401
    ("/labelbox/infer", {"json": {"prompt": []}, "headers": {"Authorization": f"Bearer {SECRET}"}}),
])
def test_bad_requests_answer_as_bridge_serve(bridge_on_ray: str, reference: str, path: str,
                                             request_: dict) -> None:
    local, remote = both(reference, bridge_on_ray, path, **request_)
    assert 400 <= remote.status_code < 500
    assert (remote.status_code, remote.json()) == (local.status_code, local.json())


def test_the_ango_route_says_what_to_install(bridge_on_ray: str, reference: str) -> None:
    """The `ray` extra's venv has no Ango SDK: the Ango REST connector says so, and everything else serves."""
    local, remote = both(reference, bridge_on_ray, "/ango/plugin", json={"session": "s1"},
                         headers={"Secret": SECRET})
    assert (remote.status_code, remote.json()) == (local.status_code, local.json())
    assert remote.status_code == 503 and "annotation-bridge[ango]" in remote.json()["error"]


def test_bridge_ango_says_what_to_install(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ANGO_PLUGIN_ID", "plugin")
    monkeypatch.setenv("ANGO_PLUGIN_SECRET", SECRET)
    assert main(["ango", str(DEFAULT)]) == 2
    assert "Ango SDK is not installed: pip install 'annotation-bridge[ango]'" in capsys.readouterr().err


def test_the_playground_is_served_on_a_loopback_host_as_by_bridge_serve(bridge_on_ray: str, reference: str) -> None:
    local, remote = (httpx.get(f"{base}/") for base in (reference, bridge_on_ray))
    assert remote.status_code == local.status_code == 200
    assert remote.text == local.text


def test_the_manifest_sets_the_model_replicas(bridge_on_ray: str) -> None:
    """Without cross-request batching, one deployment: each ingress replica holds the model (no hop)."""
    assert RayScaling.of(load_manifest(DEFAULT)).replicas == 2
    deployments = serve.status().applications["face-detector"].deployments
    assert set(deployments) == {"Ingress"}
    assert deployments["Ingress"].replica_states == {"RUNNING": 2}


# --- batching and model errors, on a second application of the same Serve instance --------------------------


@pytest.fixture(scope="module")
def reporter(bridge_on_ray: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Manifest]]:
    """`tests/ray_models.py:BatchReporter`, one replica, batches of 4 waiting up to 2 s; its base URL."""
    path = tmp_path_factory.mktemp("ray") / "reporter.yaml"
    path.write_text(yaml.safe_dump({
        "name": "reporter",
        "model": {"factory": f"{ROOT / 'tests' / 'ray_models.py'}:BatchReporter"},
        "params": {"type": "object", "properties": {"fail": {"type": "string"}}},
        "limits": {"batch_size": 4, "batch_wait": 2.0, "allow_private_urls": True},  # frames from media_server
        "ray": {"replicas": 1, "num_cpus": 0.1, "ingress_num_cpus": 0.1},
        "platforms": {"v7": {}},
    }), encoding="utf-8")
    manifest = load_manifest(path)
    serve.run(build_app(manifest), name="reporter", route_prefix="/reporter")
    try:
        yield f"{bridge_on_ray}/reporter", manifest
    finally:
        serve.delete("reporter")


def test_requests_share_the_model_replicas_batches(reporter: tuple[str, Manifest], astronaut_jpeg: bytes) -> None:
    base, _ = reporter

    async def four() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"image": {"base64": b64(astronaut_jpeg)}}
            return await asyncio.gather(*(client.post(f"{base}/v7/infer", json=body) for _ in range(4)))

    answers = asyncio.run(four())
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["results"][0]["text"]["text"] for a in answers] == ["batch of 4"] * 4


def test_a_videos_frames_share_a_batch_as_in_bridge_serve(reporter: tuple[str, Manifest], serve_app,
                                                          media_server, astronaut: np.ndarray) -> None:
    base, manifest = reporter
    frames = [media_server.add(f"f{i}.png", encode_image(astronaut[::32, ::32] + i)) for i in range(4)]
    body = {"video": {"frame_urls": [{"url": url} for url in frames]}}
    local = httpx.post(f"{serve_app(create_app(manifest))}/v7/infer", json=body, timeout=60)
    remote = httpx.post(f"{base}/v7/infer", json=body, timeout=60)
    assert remote.status_code == local.status_code == 200
    assert remote.json() == local.json()
    assert [(r["frame"], r["text"]["text"]) for r in remote.json()["results"]] == \
        [(i, "batch of 4") for i in range(4)]


@pytest.mark.parametrize("fail", ["refuse", "crash"])
def test_model_errors_answer_as_bridge_serve(reporter: tuple[str, Manifest], serve_app, fail: str,
                                             astronaut_jpeg: bytes) -> None:
    base, manifest = reporter
    body = {"image": {"base64": b64(astronaut_jpeg)}, "params": {"fail": fail}}
    local = httpx.post(f"{serve_app(create_app(manifest))}/v7/infer", json=body, timeout=60)
    remote = httpx.post(f"{base}/v7/infer", json=body, timeout=60)
    assert remote.status_code == local.status_code == {"refuse": 422, "crash": 500}[fail]
    assert remote.json() == local.json()


# --- deployment options and the KubeRay manifest ------------------------------------------------------------


def test_autoscaling_bounds_come_from_the_manifest(make_manifest) -> None:
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             ray={"min_replicas": 1, "max_replicas": 4, "max_ongoing_requests": 16})
    options = model_options(manifest)
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": None}
    assert options["max_ongoing_requests"] == 16
    assert "num_replicas" not in options


def test_the_rayservice_config_is_one_serve_accepts() -> None:
    from ray.serve.schema import ServeDeploySchema

    service = yaml.safe_load(RAYSERVICE.read_text(encoding="utf-8"))
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    (application,) = config.applications
    assert application.import_path == "bridge.serving.ray_serve:app_builder"
    spec = service["spec"]["rayClusterConfig"]
    images = [container["image"] for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
              for container in group["template"]["spec"]["containers"]]
    assert len(images) == 2 and len(set(images)) == 1  # head and workers run the same image
    dockerfile = (RAYSERVICE.parent / "Dockerfile").read_text(encoding="utf-8")
    assert f"FROM rayproject/ray:{spec['rayVersion']}-py311\n" in dockerfile
    # the manifest it names is the repository's, copied into the image at /app (deploy/kuberay/Dockerfile)
    local = ROOT / Path(application.args["manifest"]).relative_to("/app")
    assert isinstance(app_builder({"manifest": str(local)}), serve.Application)
    assert {d.name for d in application.deployments} <= {"Ingress", "Model"}
