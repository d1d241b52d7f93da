"""What the server answers besides the platforms' routes: unknown paths and methods, and the API docs.

Every answer is JSON in the caller's platform's error form (V7's `failed` form under V7's base path,
`{"error": ...}` elsewhere), never FastAPI's `{"detail": ...}`; `/docs` works on a machine with no internet.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from bridge.core.manifest import load_manifest
from bridge.serving.app import create_app
from tests.test_playground import CHROMIUM, browser  # noqa: F401  (a fixture)

DEFAULT = Path(__file__).resolve().parents[1] / "manifests" / "default.yaml"


@pytest.fixture
def base(serve_app) -> str:
    return serve_app(create_app(load_manifest(DEFAULT)))


@pytest.mark.parametrize("method, path, status, allow", [
    ("GET", "/nope", 404, None),
    ("GET", "/labelbox/nope", 404, None),
    ("GET", "/ango", 404, None),
    ("GET", "/labelbox/infer", 405, "POST"),
    ("POST", "/healthz", 405, "GET"),
    ("DELETE", "/ango/plugin", 405, "POST"),
    ("GET", "/redoc", 404, None),
])
def test_unknown_paths_and_methods_answer_an_error(base, method, path, status, allow):
    answer = httpx.request(method, base + path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and body["error"]
    assert answer.headers.get("allow") == allow


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v7/nope", 404), ("GET", "/v7", 404), ("GET", "/v7/infer", 405), ("PUT", "/v7/classes", 405),
])
def test_under_v7_they_answer_in_v7s_failed_form(base, method, path, status):
    answer = httpx.request(method, base + path)
    assert answer.status_code == status
    body = answer.json()
    assert body["status"] == "failed" and body["results"] == [] and body["error"]


def test_docs_load_every_asset_from_the_server_itself(base):
    page = httpx.get(f"{base}/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {"js", "css"} <= {asset.rsplit(".", 1)[-1] for asset in assets}
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the bridge"
        answer = httpx.get(base + asset)
        assert answer.status_code == 200 and len(answer.content) > 500, asset
    assert re.search(r"""url: ["']/openapi.json["']""", page.text)
    assert httpx.get(f"{base}/openapi.json").json()["openapi"].startswith("3.1")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `apt-get install chromium` (.ci/run does)")
def test_docs_render_in_a_browser_that_reaches_nothing_but_the_server(browser, base):
    """Swagger UI renders every route of FastAPI's OpenAPI 3.1 from the server's own files."""
    page = browser.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=60_000)
    paths = {element.get_attribute("data-path") for element in page.query_selector_all(".opblock-summary-path")}
    assert {"/v7/infer", "/v7/classes", "/labelbox/infer", "/ango/plugin", "/healthz"} <= paths
    assert elsewhere == [] and errors == []
    page.close()
