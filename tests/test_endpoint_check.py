"""`bridge check URL --platform ...` against our own server (clean) and against deliberately broken servers on
loopback, one per kind of mistake: each mistake is found, said where (request and JSON path), exit status 1."""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from bridge import samples
from bridge.commands.check_url import SAMPLE_IMAGE, SAMPLE_TEXT
from bridge.commands.main import main
from bridge.core.predictions import Mask
from bridge.serving.app import create_app

TEXT = samples.read(SAMPLE_TEXT).decode("utf-8")
EMAIL = TEXT.index("tom@example.com")
SIZE = Image.open(io.BytesIO(samples.read(SAMPLE_IMAGE))).size[::-1]  # (height, width) of the bundled sample
EMPTY = Mask(np.zeros(SIZE, bool)).rle


def run_check(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    status = main(["check", *argv])
    return status, capsys.readouterr().out


# --- our own server: clean ----------------------------------------------------------------------------------


@pytest.fixture
def our_server(serve_app, make_manifest, monkeypatch) -> str:
    monkeypatch.setenv("CHECK_SECRET", "s3cret")
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"}, params={"type": "object"},
                             platforms={"v7": {"auth": {"method": "basic", "username": "v7",
                                                        "password": "${CHECK_SECRET}"}},
                                        "labelbox": {"secret": "${CHECK_SECRET}"},
                                        "ango": {"secret": "${CHECK_SECRET}", "plugin_id": "p"}})
    return serve_app(create_app(manifest))


def test_our_server_keeps_every_platforms_contract(our_server, capsys, monkeypatch):
    monkeypatch.setenv("V7_BASIC", "v7:s3cret")
    for argv in ([f"{our_server}/v7", "--platform", "v7", "--basic", "env:V7_BASIC"],
                 [f"{our_server}/v7", "--platform", "v7", "--header", "Authorization:Basic "
                  + base64.b64encode(b"v7:s3cret").decode()],
                 [f"{our_server}/labelbox/infer", "--platform", "labelbox", "--bearer", "env:CHECK_SECRET"],
                 [f"{our_server}/ango", "--platform", "ango", "--secret", "env:CHECK_SECRET"]):
        status, out = run_check(capsys, *argv)
        assert status == 0, out
        assert out.rstrip().endswith("0 problems: the endpoint keeps the contract")


def test_a_credential_from_an_unset_variable_is_a_usage_error(our_server, capsys):
    assert main(["check", f"{our_server}/v7", "--platform", "v7", "--basic", "env:NOT_SET_ANYWHERE"]) == 2
    assert "environment variable NOT_SET_ANYWHERE is not set" in capsys.readouterr().err


def test_wrong_credentials_are_a_problem_that_says_what_to_pass(our_server, capsys):
    status, out = run_check(capsys, f"{our_server}/labelbox/infer", "--platform", "labelbox", "--bearer", "wrong")
    assert status == 1
    assert "refused with 401" in out and "--bearer" in out


def test_a_text_model_is_checked_with_the_bundled_text(serve_app, make_manifest, capsys, tmp_path):
    manifest = make_manifest(model={"factory": "examples/text_entities.py:EntityTagger"}, params={"type": "object"},
                             platforms={"labelbox": {"secret": "t"}})
    url = serve_app(create_app(manifest))
    model_yaml = tmp_path / "model.yaml"
    assert main(["labelbox-manifest", str(manifest.path), "--endpoint", "https://x/labelbox/infer",
                 "-o", str(model_yaml)]) == 0
    status, out = run_check(capsys, f"{url}/labelbox/infer", "--platform", "labelbox", "--bearer", "t",
                            "--model-yaml", str(model_yaml))
    assert status == 0, out


def test_a_manifest_path_is_still_a_manifest(capsys):
    status, out = run_check(capsys, "manifests/default.yaml")
    assert status == 0 and "face-detector" in out


# --- broken servers ------------------------------------------------------------------------------------------

GOOD_V7 = {"status": "succeeded", "results": [
    {"name": "Face", "label": "Face", "confidence": 0.8, "bounding_box": {"x": 86, "y": 30, "w": 54, "h": 54}}]}
GOOD_LABELBOX = {"Face": {"boxes": [[86, 30, 54, 54]], "scores": [0.8]}, "Sky": {"masks": [EMPTY]},
                 "email": [{"start": EMAIL, "end": EMAIL + 15, "text": TEXT[EMAIL:EMAIL + 15]}]}
GOOD_ANGO = {"objects": [{"title": "Face", "bounding-box": {"x": 86, "y": 30, "width": 54, "height": 54}},
                         {"title": "Eye", "point": [100, 50]}],
             "classifications": [{"title": "weather", "answer": "sunny"}], "relations": []}
MODEL_YAML = {"ontology": {"media_type": "IMAGE", "tools": [{"name": "Face", "tool": "rectangle"},
                                                           {"name": "Sky", "tool": "raster-segmentation"},
                                                           {"name": "email", "tool": "named-entity"}],
                           "classifications": []}}


def _set(answer: dict, path: str, value: Any) -> dict:
    """A copy of `answer` with the value at a dotted path (list indices as numbers) replaced."""
    answer = copy.deepcopy(answer)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = answer
    for key in parents:
        node = node[key]
    node[last] = value
    return answer


class Broken:
    """A stand-in for someone's endpoint on loopback: right answers for the bundled sample, but for one mistake.

    A route answers `(status, JSON)`, or a writer that sends the whole answer itself (`raw`, `drip`): a hostile
    endpoint's drips, lies and gzip bombs."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[Any], Any]]) -> None:
        self.routes = routes
        broken = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                self._answer(json.loads(self.rfile.read(int(self.headers.get("content-length", 0)))))

            def _answer(self, body: Any) -> None:
                route = broken.routes.get((self.command, self.path))
                found = route(body) if route else (404, {"error": "not found"})
                try:
                    if callable(found):
                        found(self)
                        return
                    status, answer = found
                    data = json.dumps(answer).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up (a deadline test, a size cap)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def broken() -> Iterator[Callable[..., str]]:
    servers: list[Broken] = []

    def start(routes: dict) -> str:
        servers.append(Broken(routes))
        return servers[-1].url

    yield start
    for server in servers:
        server.close()


def v7_routes(classes: Any = None, answer: Any = None, failed: Any = None) -> dict:
    def infer(body: Any) -> tuple[int, Any]:
        if body["image"]["base64"] == "bm90IGFuIGltYWdl":
            return failed or (422, {"status": "failed", "results": [], "error": "not an image"})
        return 200, answer or GOOD_V7

    return {("GET", "/v7/classes"): lambda _: (200, classes or [{"name": "Face", "type": "bounding_box"}]),
            ("POST", "/v7/infer"): infer}


V7_MISTAKES = {
    "clean": ({}, None),
    "unknown class type": ({"classes": [{"name": "Face", "type": "box"}]}, "GET /classes $[0].type"),
    "two main types": ({"answer": _set(GOOD_V7, "results.0.keypoint", {"x": 1, "y": 1})},
                       "POST /infer $.results[0]: 2 main annotation types"),
    "confidence over 1": ({"answer": _set(GOOD_V7, "results.0.confidence", 1.7)},
                          "POST /infer $.results[0].confidence"),
    "name /classes did not declare": ({"answer": _set(GOOD_V7, "results.0.name", "Cat")},
                                      "POST /infer $.results[0].name"),
    "box outside the image": ({"answer": _set(GOOD_V7, "results.0.bounding_box.x", SIZE[1] - 10)},
                              "POST /infer $.results[0].bounding_box"),
    "no status": ({"answer": {"results": []}}, "POST /infer $: 'status' is a required property"),
    "success on a broken image": ({"failed": (200, {"status": "succeeded", "results": []})},
                                  "POST /infer (a broken image) $.status"),
}


@pytest.mark.parametrize("mistake", list(V7_MISTAKES))
def test_v7_mistakes_are_found_where_they_are(mistake, broken, capsys):
    routes, expected = V7_MISTAKES[mistake]
    status, out = run_check(capsys, broken(v7_routes(**routes)) + "/v7", "--platform", "v7")
    assert status == (0 if expected is None else 1), out
    if expected:
        assert f"problem: {expected}" in out and "fix: " in out
        assert out.rstrip().endswith("breaks the contract")


LABELBOX_MISTAKES = {
    "clean": (GOOD_LABELBOX, None),
    "a score missing": (_set(GOOD_LABELBOX, "Face.scores", []), "POST /labelbox/infer $['Face']: 1 boxes and 0 scores"),
    "score over 1": (_set(GOOD_LABELBOX, "Face.scores", [3]), "POST /labelbox/infer $['Face'].scores[0]"),
    "mask of another size": (_set(GOOD_LABELBOX, "Sky.masks.0.size", [10, 10]),
                             "POST /labelbox/infer $['Sky'].masks[0].size"),
    "mask that does not decode": (_set(GOOD_LABELBOX, "Sky.masks.0.counts", "!!!"),
                                  "POST /labelbox/infer $['Sky'].masks[0].counts"),
    "span that does not quote the text": (_set(GOOD_LABELBOX, "email.0.text", "someone"),
                                          "POST /labelbox/infer $['email'][0].text"),
    "feature the model.yaml does not name": ({**GOOD_LABELBOX, "Cat": {"boxes": [], "scores": []}},
                                             "POST /labelbox/infer $['Cat']: the model.yaml names no feature"),
    "box answered as a mask": (_set(GOOD_LABELBOX, "Face", {"masks": [EMPTY]}),
                               "POST /labelbox/infer $['Face']: answered as mask"),
}


@pytest.mark.parametrize("mistake", list(LABELBOX_MISTAKES))
def test_labelbox_mistakes_are_found_where_they_are(mistake, broken, capsys, tmp_path):
    answer, expected = LABELBOX_MISTAKES[mistake]
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(MODEL_YAML))
    url = broken({("POST", "/labelbox/infer"): lambda body: (200, answer)}) + "/labelbox/infer"
    status, out = run_check(capsys, url, "--platform", "labelbox", "--model-yaml", str(model_yaml))
    assert status == (0 if expected is None else 1), out
    if expected:
        assert f"problem: {expected}" in out


def ango_routes(answer: Any = None, heartbeat: Any = (200, "ok"), session: Any = None) -> dict:
    def plugin(body: Any) -> tuple[int, Any]:
        return 200, {"response": answer or GOOD_ANGO, "session": session or body["session"]}

    return {("GET", "/ango/heartbeat"): lambda _: heartbeat, ("POST", "/ango/plugin"): plugin}


ANGO_MISTAKES = {
    "clean": ({}, None),
    "no heartbeat": ({"heartbeat": (404, {"error": "no"})}, "GET /heartbeat: answered 404"),
    "another session": ({"session": "someone-else"}, "POST /plugin $.session"),
    "two object forms": ({"answer": _set(GOOD_ANGO, "objects.0.point", [1, 1])},
                         "POST /plugin $.response.objects[0]: 2 object forms"),
    "point outside the image": ({"answer": _set(GOOD_ANGO, "objects.1.point", [SIZE[1] + 5, 10])},
                                "POST /plugin $.response.objects[1].point"),
    "malformed box": ({"answer": _set(GOOD_ANGO, "objects.0.bounding-box", {"x": 1})},
                      "POST /plugin $.response.objects[0].bounding-box: {'x': 1} is not a well-formed"),
    "object naming no class": ({"answer": _set(GOOD_ANGO, "objects.0", {"point": [1, 1]})},
                               "POST /plugin $.response.objects[0]: {'point': [1, 1]} names no class"),
    "classification without an answer": ({"answer": _set(GOOD_ANGO, "classifications.0.answer", 3)},
                                         "POST /plugin $.response.classifications[0].answer"),
}


@pytest.mark.parametrize("mistake", list(ANGO_MISTAKES))
def test_ango_mistakes_are_found_where_they_are(mistake, broken, capsys):
    routes, expected = ANGO_MISTAKES[mistake]
    status, out = run_check(capsys, broken(ango_routes(**routes)) + "/ango", "--platform", "ango")
    assert status == (0 if expected is None else 1), out
    if expected:
        assert f"problem: {expected}" in out


def test_an_endpoint_that_is_not_there_is_a_problem(capsys):
    from tests.conftest import free_port

    status, out = run_check(capsys, f"http://127.0.0.1:{free_port()}/v7", "--platform", "v7")
    assert status == 1 and "no answer: ConnectError" in out


def test_the_packaged_v7_schema_is_v7s_published_one():
    from tests.conftest import ROOT

    packaged = ROOT / "adapters" / "v7" / "v7-inference-response.schema.json"
    assert packaged.read_bytes() == (ROOT / "tests" / "contracts" / "v7-inference-response.schema.json").read_bytes()


def test_usage_mistakes_exit_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "model.yaml"
    bad.write_text("a: [\n")
    for argv, said in ((["--platform", "nowhere"], "--platform is one of ango, labelbox, labelstudio, v7"),
                       (["--platform", "labelbox", "--model-yaml", str(bad)], "not valid YAML"),
                       (["--platform", "v7", "--image", str(bad)], "not an image Pillow can read"),
                       (["--platform", "v7", "--basic", "no-colon"], "--basic takes USER:PASSWORD")):
        assert main(["check", "http://127.0.0.1:9/v7", *argv]) == 2
        assert said in capsys.readouterr().err


# --- hostile endpoints: bounded in bytes and time, and nothing printed raw -------------------------------------


Writer = Callable[[BaseHTTPRequestHandler], None]


def raw(body: bytes, status: int = 200, kind: str = "application/json",
        encoding: str | None = None) -> Callable[[Any], Writer]:
    """A route answering `body` as it is, with the headers given."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        if encoding:
            handler.send_header("Content-Encoding", encoding)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return lambda _: write


def drip(every: float, count: int) -> Callable[[Any], Writer]:
    """A route answering a JSON list one byte every `every` seconds (`count` bytes at most: bounded even if
    nobody stops it)."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(count + 2))
        handler.end_headers()
        handler.wfile.write(b"[")
        for _ in range(count):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(every)
        handler.wfile.write(b"]")

    return lambda _: write


def gzip_bomb(inflated: int) -> bytes:
    """A gzip'd JSON list of `inflated` bytes (almost all spaces): about inflated / 1000 bytes on the wire."""
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=9) as out:
        out.write(b"[")
        chunk = b" " * 2**20
        for _ in range(inflated // len(chunk)):
            out.write(chunk)
        out.write(b"]")
    return stream.getvalue()


DEEP = b"[" * 200_000 + b"]" * 200_000


def in_thread(work: Callable[[], Any], limit: float = 60.0) -> Any:
    """`work()` on a thread, waited for at most `limit` seconds (a bound only a hang reaches)."""
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(work()), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still running after {limit:g} s"
    return found[0]


def test_a_gzip_bomb_is_read_within_the_answer_cap(broken, capsys):
    url = broken({("GET", "/v7/classes"): raw(gzip_bomb(256 * 2**20), encoding="gzip")}) + "/v7"
    tracemalloc.start()
    try:
        status, out = run_check(capsys, url, "--platform", "v7")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 1 and "GET /classes: answered over 16,777,216 bytes" in out, out
    assert peak < 128 * 2**20, f"{peak / 2**20:.0f} MiB held while reading a 256 MiB answer"


def test_an_answer_that_drips_is_cut_at_the_timeout(broken, capsys):
    url = broken({("GET", "/v7/classes"): drip(0.3, 400), ("POST", "/v7/infer"): drip(0.3, 400)}) + "/v7"
    status, out = in_thread(lambda: run_check(capsys, url, "--platform", "v7", "--timeout", "2"))
    assert status == 1
    assert "GET /classes: no answer in 2 s" in out, out
    assert "POST /infer: no answer in 2 s" in out


def test_deep_or_non_finite_json_is_a_problem_not_a_traceback(broken, capsys):
    for body in (DEEP, b'[{"name": "Face", "type": "bounding_box", "x": NaN}]', b"[1e400]"):
        url = broken({("GET", "/v7/classes"): raw(body)}) + "/v7"
        status, out = run_check(capsys, url, "--platform", "v7")
        assert status == 1 and "GET /classes: answered 200 with a body that is not JSON" in out, out


def test_nothing_from_the_endpoint_reaches_the_terminal_raw(broken, capsys):
    evil = "\x1b[2J\x1b]0;pwned\x07 boom\u202egnp.exe\r\nfix: nothing"
    url = broken({("GET", "/v7/classes"): raw(evil.encode(), status=401, kind="text/plain"),
                   ("POST", "/v7/infer"): raw(json.dumps({"status": "succeeded", "results": [
                       {"name": evil, "label": evil, "confidence": 0.5, "tag": {}}]}).encode())}) + "/v7"
    status, out = run_check(capsys, url, "--platform", "v7")
    assert status == 1 and "boom" in out
    for character in ("\x1b", "\x07", "\u202e", "\r"):
        assert character not in out, repr(character)
    assert not [line for line in out.splitlines() if line.startswith("fix: nothing")]


def test_image_url_alone_checks_the_image_it_sent(broken, media_server, capsys):
    image = np.zeros((800, 1000, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    image_url = media_server.add("big.png", buffer.getvalue())
    answer = {"objects": [{"title": "Face", "bounding-box": {"x": 600, "y": 500, "width": 100, "height": 100}}],
              "classifications": [], "relations": []}
    endpoint = broken({("GET", "/ango/heartbeat"): lambda _: (200, "ok"),
                       ("POST", "/ango/plugin"): lambda body: (200, {"response": answer, "session": body["session"]})})
    status, out = run_check(capsys, endpoint + "/ango", "--platform", "ango", "--image-url", image_url)
    assert status == 0, out
    assert "/files/big.png" in media_server.requests  # the checker read the image it sent, for its size


def test_v7_infer_registered_instead_of_the_base_is_diagnosed(our_server, capsys):
    status, out = run_check(capsys, f"{our_server}/v7/infer", "--platform", "v7", "--basic", "v7:s3cret")
    assert status == 1
    assert "the URL ends with /infer" in out and f"fix: give the base URL, {our_server}/v7" in out


def test_a_server_without_its_secret_is_diagnosed(serve_app, make_manifest, capsys):
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"},
                             platforms={"labelbox": {"secret": ""}})
    url = serve_app(create_app(manifest))
    status, out = run_check(capsys, f"{url}/labelbox/infer", "--platform", "labelbox", "--bearer", "anything")
    assert status == 1
    assert "has no secret set" in out and "fix: the server refuses every request until its secret is set" in out


def test_a_non_ascii_secret_is_sent_as_utf8(serve_app, make_manifest, capsys, monkeypatch):
    monkeypatch.setenv("CHECK_SECRET", "pässwörd-秘密")
    manifest = make_manifest(model={"factory": "examples/faces.py:FaceDetector"}, params={"type": "object"},
                             platforms={"labelbox": {"secret": "${CHECK_SECRET}"},
                                        "ango": {"secret": "${CHECK_SECRET}", "plugin_id": "p"}})
    url = serve_app(create_app(manifest))
    status, out = run_check(capsys, f"{url}/labelbox/infer", "--platform", "labelbox", "--bearer", "env:CHECK_SECRET")
    assert status == 0, out
    status, out = run_check(capsys, f"{url}/ango", "--platform", "ango", "--secret", "pässwörd-秘密")
    assert status == 0, out
