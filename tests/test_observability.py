"""/metrics, the request line and its id, and secrets kept out of logs, on real servers over loopback HTTP.

The metrics tests run the app under uvicorn in this process and compare scrapes before and after known
requests (the registry is the process's, shared by every test, so they check differences). The log tests
run `bridge serve --log-format json` as a child process and read everything it wrote.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge.core.logs import TextFormatter, redact
from bridge.core.metrics import STAGES
from bridge.serving.app import create_app
from bridge.serving.observability import request_id
from tests.conftest import ROOT, b64, encode_image, free_port

Samples = dict[tuple[str, frozenset], float]


def scrape(base: str) -> Samples:
    answer = httpx.get(f"{base}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_until(condition: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def serve_loaded(serve_app: Callable[..., str], app: Any) -> str:
    """Serve `app` and wait for its model, which loads in the background."""
    base = serve_app(app)
    wait_until(lambda: app.state.service is not None)
    return base


# --- metrics ----------------------------------------------------------------------------------------------------


@pytest.fixture
def faces(serve_app, make_manifest) -> str:
    manifest = make_manifest(
        model={"factory": "examples/faces.py:FaceDetector"},
        params={"type": "object", "properties": {"min_neighbors": {"type": "integer", "minimum": 1,
                                                                   "default": 5}}},
        platforms={"v7": {}, "labelbox": {"secret": "lb-secret-for-metrics"}},
    )
    return serve_loaded(serve_app, create_app(manifest))


def test_metrics_move_with_known_requests(faces, media_server, astronaut_jpeg):
    url = media_server.add("astronaut.jpg", astronaut_jpeg, "image/jpeg")
    image = {"image": {"base64": b64(astronaut_jpeg)}}
    before = scrape(faces)

    assert httpx.post(f"{faces}/v7/infer", json=image).status_code == 200
    assert httpx.post(f"{faces}/v7/infer", json={"image": {"url": url}}).status_code == 200
    assert httpx.post(f"{faces}/v7/infer", json={**image, "params": {"min_neighbors": 0}}).status_code == 422
    assert httpx.post(f"{faces}/labelbox/infer", json={"prompt": []},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    frames = {"video": {"frame_urls": [{"base64": b64(astronaut_jpeg)}] * 3}}
    assert httpx.post(f"{faces}/v7/infer", json=frames).status_code == 200
    after = scrape(faces)

    requests = "bridge_requests_total"
    assert moved(before, after, requests, platform="v7", route="/v7/infer", status="200") == 3
    assert moved(before, after, requests, platform="v7", route="/v7/infer", status="422") == 1
    assert moved(before, after, requests, platform="labelbox", route="/labelbox/infer", status="401") == 1
    assert moved(before, after, "bridge_request_duration_seconds_count", platform="v7", route="/v7/infer") == 4
    # one observation per request and stage it went through; the 422 (bad parameter) stopped before decoding
    stages = {stage: moved(before, after, "bridge_stage_duration_seconds_count", platform="v7", stage=stage)
              for stage in STAGES}
    assert stages == {"fetch": 1, "decode": 3, "predict": 3, "convert": 3, "encode": 3}
    assert moved(before, after, "bridge_stage_duration_seconds_sum", platform="v7", stage="predict") > 0
    # one face and two eyes on the astronaut, in each of 2 images and 3 frames
    predictions = "bridge_predictions_total"
    assert moved(before, after, predictions, **{"platform": "v7", "class": "face"}) == 5
    assert moved(before, after, predictions, **{"platform": "v7", "class": "eye"}) == 10
    assert moved(before, after, "bridge_batch_size_count", source="video") == 1
    assert moved(before, after, "bridge_batch_size_sum", source="video") == 3
    assert value(after, "bridge_model_load_seconds", model="test-model", version="0.1.0") > 0
    assert value(after, "process_cpu_seconds_total") > 0  # prometheus-client's process collector
    assert moved(before, after, "bridge_jobs_in_flight") == 0 and moved(before, after, "bridge_jobs_queued") == 0


def test_jobs_in_flight_and_queued_behind_a_busy_worker(serve_app, make_manifest, astronaut_jpeg):
    manifest = make_manifest(model={"factory": "tests.service_models:Gate"}, limits={"concurrency": 1})
    app = create_app(manifest)
    base = serve_loaded(serve_app, app)
    model = app.state.service.model
    before = scrape(base)

    def gauges() -> tuple[float, float]:
        now = scrape(base)
        return moved(before, now, "bridge_jobs_in_flight"), moved(before, now, "bridge_jobs_queued")

    body = {"image": {"base64": b64(astronaut_jpeg)}}
    with ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(httpx.post, f"{base}/v7/infer", json=body, timeout=30)
            wait_until(model.started.is_set)
            second = pool.submit(httpx.post, f"{base}/v7/infer", json=body, timeout=30)
            wait_until(lambda: gauges() == (2, 1))  # one predicting, one waiting for the only worker
        finally:
            model.release.set()
        assert first.result().status_code == second.result().status_code == 200
    assert gauges() == (0, 0)


def test_requests_batched_together_are_one_batch(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Batcher"},
                             limits={"batch_wait": 10, "batch_size": 2})
    base = serve_loaded(serve_app, create_app(manifest))
    before = scrape(base)
    body = {"image": {"base64": b64(encode_image(np.full((8, 8, 3), 9, np.uint8)))}}
    with ThreadPoolExecutor(2) as pool:  # the batch leaves as soon as the second request fills it
        answers = list(pool.map(lambda _: httpx.post(f"{base}/v7/infer", json=body, timeout=30), range(2)))
    assert [answer.status_code for answer in answers] == [200, 200]
    after = scrape(base)
    assert moved(before, after, "bridge_batch_size_count", source="requests") == 1
    assert moved(before, after, "bridge_batch_size_sum", source="requests") == 2


# --- the request line and its id ------------------------------------------------------------------------------


def test_one_line_per_request_with_its_id(faces, astronaut_jpeg, caplog):
    caplog.set_level("INFO", logger="bridge.access")
    image = {"image": {"base64": b64(astronaut_jpeg)}}
    given = httpx.post(f"{faces}/v7/infer", json=image, headers={"X-Request-ID": "trace-42.a:b"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-42.a:b"
    made = httpx.post(f"{faces}/labelbox/infer", json={}, headers={"X-Request-ID": "x" * 200})
    forged = httpx.get(f"{faces}/a%0A2026-12-02 INFO bridge.access: forged")
    assert made.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])

    lines = {record.request_id: record.request for record in caplog.records if record.name == "bridge.access"}
    ok = lines["trace-42.a:b"]
    assert ok["platform"] == "v7" and ok["route"] == "/v7/infer" and ok["status"] == 200
    assert list(ok["stages"]) == ["decode", "predict", "convert", "encode"] and ok["predictions"] == 3
    messages = {record.request_id: record.getMessage() for record in caplog.records if record.name == "bridge.access"}
    assert messages[forged.headers["x-request-id"]].startswith("GET /a\\n2026-12-02 INFO bridge.access: forged 404")
    refused = lines[made.headers["x-request-id"]]
    assert refused["platform"] == "labelbox" and refused["status"] == 401 and refused["stages"] == {}
    assert "wrong secret" in refused["error"]


def test_request_ids_from_callers_are_kept_only_when_sane():
    assert request_id("0af7651916cd43dd8448eb211c80319c") == "0af7651916cd43dd8448eb211c80319c"
    assert request_id("Root=1-5759e988-bd86") == "Root=1-5759e988-bd86"
    for bad in ("", "a b", "x" * 129, "id\";drop", "ümlaut", None):
        assert re.fullmatch(r"[0-9a-f]{32}", request_id(bad))


def test_redact_keeps_messages_and_removes_credentials():
    assert redact("missing or wrong secret: send `Authorization: Bearer <secret>`") == \
        "missing or wrong secret: send `Authorization: Bearer <secret>`"
    assert redact("GET https://b.s3.amazonaws.com/a.png?X-Amz-Signature=abc&x=1 200") == \
        "GET https://b.s3.amazonaws.com/a.png?[redacted] 200"
    assert redact("{'apiKey': 'k-123', 'secret': \"s-456\"} Authorization: Basic dTpw") == \
        "{'apiKey': '[redacted]', 'secret': \"[redacted]\"} Authorization: Basic [redacted]"

    # each pattern first looks for its words in the lower-cased line; case-insensitive matching folds more
    # letters than lower() does ("ſ" is an "s", "ı" an "i", "K" a "k"), so such lines are searched whole
    assert redact("ſecret=s-456 apı_KEY=k-123 BASIC dTpw") == "ſecret=[redacted] apı_KEY=[redacted] BASIC [redacted]"

def test_text_lines_are_redacted_and_name_their_request():
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: GET %s",
                               ("https://b.example/a.png?X-Amz-Signature=sig-1",), None)
    line = TextFormatter().format(record)
    assert line.endswith("INFO httpx [-]: HTTP Request: GET https://b.example/a.png?[redacted]")


# --- logs of a real `bridge serve`: no secret ever ------------------------------------------------------------

SIGNED = "X-Amz-Signature=sig-Abc123Def&X-Amz-Credential=cred-Ghi456&X-Amz-Security-Token=tok-Jkl789"
SECRETS = {
    "v7_password": "v7-pass-Zq81xx", "v7_secret": "v7-secret-Hd72xx", "labelbox": "lb-secret-Pq93xx",
    "ango": "ango-secret-Tw55xx", "wrong": "wrong-secret-Kx3xx", "api_key": "ango-apikey-Yy77xx",
}


def basic_auth(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"v7user:{password}".encode()).decode()}


NEEDLES = [*SECRETS.values(), "sig-Abc123Def", "cred-Ghi456", "tok-Jkl789", "qs-token-Gg8xx",
           basic_auth(SECRETS["v7_password"])["Authorization"][6:], basic_auth(SECRETS["wrong"])["Authorization"][6:]]


class FakeAngoAndMedia:
    """Loopback HTTP: `GET /files/NAME` serves an image; Ango's REST API answers 404 to asset lookups and
    accepts plugin logs (`POST`)."""

    def __init__(self, image: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                found = self.path.startswith("/files/face.jpg")
                self._send(200 if found else 404, image if found else b'{"status": "not found"}')

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._send(200, b"{}")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class Served:
    """A `bridge serve` child process, its output in files."""

    def __init__(self, manifest: Path, folder: Path, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        self.out, self.err = folder / f"{manifest.stem}.out", folder / f"{manifest.stem}.err"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--log-format", "json", "--log-level", "debug", "serve",
             str(manifest), "--port", self.base.rsplit(":", 1)[1]],
            stdout=self.out.open("wb"), stderr=self.err.open("wb"), env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.process.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, "bridge serve did not start"
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def logged(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, astronaut_jpeg) -> Iterator[tuple[dict[str, Served], FakeAngoAndMedia, Path]]:
    """Two servers (V7 with Basic auth, V7 with a secret header), both with Labelbox and Ango, sharing one
    PROMETHEUS_MULTIPROC_DIR as worker processes would."""
    folder = tmp_path_factory.mktemp("served")
    remote = FakeAngoAndMedia(astronaut_jpeg)
    auths = {"basic": {"method": "basic", "username": "v7user", "password": SECRETS["v7_password"]},
             "header": {"method": "header", "header": "X-Auth", "secret": SECRETS["v7_secret"]}}
    multiproc = folder / "metrics"
    multiproc.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    started: dict[str, Served] = {}
    try:
        for name, auth in auths.items():
            manifest = folder / f"{name}.yaml"
            manifest.write_text(yaml.safe_dump({
                "name": "faces", "model": {"factory": str(ROOT / "examples/faces.py:FaceDetector")},
                "limits": {"allow_private_urls": True},
                "platforms": {"v7": {"auth": auth}, "labelbox": {"secret": SECRETS["labelbox"]},
                              "ango": {"plugin_id": "p1", "secret": SECRETS["ango"], "api_url": remote.base}},
            }))
            started[name] = Served(manifest, folder, env)
        yield started, remote, multiproc
    finally:
        for served in started.values():
            served.stop()
        remote.httpd.shutdown()


def send_requests_with_secrets(served: Served, v7_auth: str, remote: FakeAngoAndMedia,
                               astronaut_jpeg: bytes) -> int:
    """Right and wrong credentials on every platform, signed image URLs; returns how many requests."""
    signed = f"{remote.base}/files/face.jpg?{SIGNED}"
    missing = f"{remote.base}/missing.jpg?{SIGNED}"
    base, wrong = served.base, SECRETS["wrong"]
    if v7_auth == "basic":
        right_v7, wrong_v7 = basic_auth(SECRETS["v7_password"]), basic_auth(wrong)
    else:
        right_v7, wrong_v7 = {"X-Auth": SECRETS["v7_secret"]}, {"X-Auth": wrong}
    lb_body = {"prompt": [{"role": "user", "parts": [{"image": b64(astronaut_jpeg)}]}]}
    ango_run = {"session": "s1", "dataURL": signed, "apiKey": SECRETS["api_key"], "configJSON": "{}"}
    ango_lookup = {"session": "s2", "projectId": "p", "assetId": "a", "apiKey": SECRETS["api_key"]}
    calls = [
        ("post", "/v7/infer", right_v7, {"image": {"url": signed}}, 200),
        ("post", "/v7/infer", right_v7, {"image": {"url": missing}}, 422),
        ("post", f"/v7/infer?token=qs-token-Gg8xx&{SIGNED}", right_v7, {"image": {"url": signed}}, 200),
        ("post", "/v7/infer", wrong_v7, {"image": {"url": signed}}, 401),
        ("post", "/labelbox/infer", {"Authorization": f"Bearer {SECRETS['labelbox']}"}, lb_body, 200),
        ("post", "/labelbox/infer", {"Authorization": f"Bearer {wrong}"}, lb_body, 401),
        ("post", "/ango/plugin", {"Secret": SECRETS["ango"]}, ango_run, 200),
        ("post", "/ango/plugin", {"Secret": SECRETS["ango"]}, ango_lookup, 502),
        ("post", "/ango/plugin", {"Secret": wrong}, ango_run, 401),
        ("get", "/ango/heartbeat", {"Secret": SECRETS["ango"]}, None, 200),
    ]
    for method, path, headers, body, status in calls:
        answer = httpx.request(method, base + path, headers=headers, json=body, timeout=30)
        assert answer.status_code == status, (path, answer.text)
    return len(calls)


def request_lines(logged: str) -> list[dict[str, Any]]:
    """The request lines of a JSON log, but the start-up polls of /readyz."""
    lines = [json.loads(line) for line in logged.splitlines() if '"logger": "bridge.access"' in line]
    return [line for line in lines if line["route"] != "/readyz"]


def test_no_secret_token_or_signed_url_in_any_log_line(servers, astronaut_jpeg):
    started, remote, _ = servers
    sent = {name: send_requests_with_secrets(served, name, remote, astronaut_jpeg)
            for name, served in started.items()}
    for name, served in started.items():
        wait_until(lambda: len(request_lines(served.logged())) >= sent[name])  # through the pipe of the child
        logged = served.logged()
        leaks = [needle for needle in NEEDLES if needle in logged]
        assert not leaks, f"{name}: {leaks} in the log:\n{logged}"
        lines = [json.loads(line) for line in logged.splitlines() if line.strip()]  # JSON lines only
        assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
        requests = request_lines(logged)
        assert len(requests) == sent[name] and len({line["request_id"] for line in requests}) == sent[name]
        assert {line["path"] for line in requests} >= {"/v7/infer", "/labelbox/infer", "/ango/plugin"}
        assert {(line["platform"], line["status"]) for line in requests} >= {
            ("v7", 200), ("v7", 422), ("v7", 401), ("labelbox", 200), ("labelbox", 401), ("ango", 200),
            ("ango", 502), ("ango", 401)}
        assert any(line["status"] == 502 and "failed the asset look-up" in line["error"] for line in requests)
        # the Ango run's stages are timed on the SDK's threads and the server's loop, and still add up to its line
        assert any(line["path"] == "/ango/plugin" and list(line["stages"]) == list(STAGES) for line in requests)


def test_worker_processes_sharing_a_multiproc_dir_answer_the_sum(servers, astronaut_jpeg):
    started, _, multiproc = servers
    first, second = started.values()
    body = {"image": {"base64": b64(astronaut_jpeg)}}
    before = scrape(first.base)
    headers = {"basic": basic_auth(SECRETS["v7_password"]), "header": {"X-Auth": SECRETS["v7_secret"]}}
    for name, served in started.items():
        assert httpx.post(f"{served.base}/v7/infer", json=body, headers=headers[name]).status_code == 200
    after = scrape(first.base)  # one process answers for both
    assert moved(before, after, "bridge_requests_total", platform="v7", route="/v7/infer", status="200") == 2
    assert moved(before, after, "bridge_predictions_total", **{"platform": "v7", "class": "face"}) == 2
    assert value(after, "bridge_jobs_in_flight") == 0
    assert any(multiproc.iterdir())


def test_a_missing_multiproc_dir_is_made_not_a_crash(tmp_path):
    folder = tmp_path / "not" / "yet"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-m", "bridge", "manifest-schema"], env=env, cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert folder.is_dir()


# --- text lines: what peers send cannot forge a line, and redaction tells no secret -----------------------------

FORGED = "s1\n2026-01-01 00:00:00,000 ERROR bridge [-]: FORGED\x1b[31m\u2028NEL\x85bidi\u202egnp.exe"


@pytest.fixture
def text_log() -> Iterator[list[str]]:
    """What the `bridge` loggers write in the text format (the handler `configure_logging` installs)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("bridge")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def test_a_session_from_ango_cannot_forge_a_text_line(serve_app, make_manifest, text_log):
    from adapters.ango import adapter as ango_adapter

    manifest = make_manifest(model={"factory": "tests/shapes_model.py:AllShapes"},
                             platforms={"ango": {"plugin_id": "p", "secret": "s3cret-x", "api_url": "http://127.0.0.1:9"}})
    base = serve_app(create_app(manifest, adapters={"ango": ango_adapter}))
    reply = httpx.post(f"{base}/ango/plugin", headers={"Secret": "s3cret-x"}, timeout=30,
                       json={"session": FORGED, "dataURL": "http://127.0.0.1:9/x.png", "configJSON": "{not json"})
    assert reply.status_code == 422 and reply.json()["session"] == FORGED
    written = "\n".join(text_log)
    assert "FORGED" in written
    assert not [line for line in written.splitlines() if line.startswith("2026-01-01")]
    for raw in ("\x1b", "\u2028", "\x85", "\u202e"):
        assert raw not in written, repr(raw)
    assert "\\x1b[31m\\u2028NEL\\x85bidi\\u202egnp.exe" in written


def test_a_traceback_cannot_forge_a_text_line_either():
    try:
        raise ValueError("bad input\n2026-01-01 00:00:00,000 ERROR bridge [-]: FORGED")
    except ValueError:
        record = logging.LogRecord("bridge", logging.ERROR, __file__, 1, "the model raised", (), sys.exc_info())
    lines = TextFormatter().format(record).splitlines()
    assert lines[0].endswith("ERROR bridge [-]: the model raised") and len(lines) > 2
    assert all(line.startswith(" ") for line in lines[1:]), lines
    assert any("FORGED" in line for line in lines[1:])


def test_redaction_says_nothing_of_a_secret_that_is_a_common_word(monkeypatch):
    from bridge.core import logs

    monkeypatch.setattr(logs, "_secrets", set())
    logs.register_secrets(["infer"])
    text = logs.redact
    assert text("POST /v7/infer 200 v7 12.0 ms") == "POST /v7/infer 200 v7 12.0 ms"
    assert text("the model could not infer a class") == "the model could not infer a class"
    # where a secret is a value, it goes
    assert text("headers: {'x-auth': 'infer'}") == "headers: {'x-auth': '[redacted]'}"
    assert text("X-Auth: infer") == "X-Auth: [redacted]"
    assert text("http://user:infer@host/a.png") == "http://user:[redacted]@host/a.png"
    # our own start-up hint keeps its placeholder
    hint = "platforms.labelbox.secret is not set: the endpoint refuses every request (export LABELBOX_SECRET=...)"
    assert text(hint) == hint
    assert text("LABELBOX_SECRET=abc123 bridge serve") == "LABELBOX_SECRET=[redacted] bridge serve"
