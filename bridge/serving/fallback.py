"""What the app answers besides the platforms' own routes: unknown paths and methods, and the API docs.

A wrong path or method answers JSON in the form its caller reads: the platform's own error form under that
platform's base path (V7's `{"status": "failed", ...}` under `/v7`), `{"error": ...}` elsewhere, never
FastAPI's `{"detail": ...}`. The docs page loads Swagger UI from an installed package, not from a CDN, so
`/docs` works on a machine without internet.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from bridge.core.errors import BridgeError
from bridge.platforms.registry import Platforms
from bridge.serving.routes import default_error_body, error_response

DOCS_ASSETS = "/docs/assets"


PLAYGROUND_OFF = ("the playground is off: `bridge serve` serves it only on a loopback --host (it answers without "
                  "credentials); --playground turns it on")


def answer_unknown_routes(app: FastAPI, platforms: Platforms, playground: bool = True) -> None:
    """Answer 404, 405 (and any other `HTTPException` outside the platforms' routes) in the form of the
    platform whose base path the route lies under (`Platforms.owner`); the playground's paths, when it is not
    mounted (`playground` false), with how to turn it on."""

    async def http_error(request: Request, error: HTTPException) -> Response:
        path = request.url.path
        owner = platforms.owner(path)
        body = platforms.served[owner][0].error_body if owner else default_error_body
        headers = dict(error.headers or {})
        if error.status_code == 404 and not playground and (path == "/" or path.startswith("/playground")):
            message = f"{request.method} {path}: {PLAYGROUND_OFF}"
        elif error.status_code == 404:
            message = f"{request.method} {path}: no such route (the routes are listed at /docs)"
        elif error.status_code == 405:
            message = f"{request.method} {path}: method not allowed (allowed: {headers.get('Allow', 'none')})"
        else:
            message = str(error.detail)
        failure = BridgeError(message, status=error.status_code)
        failure.headers = headers
        return error_response(body, failure)

    app.add_exception_handler(HTTPException, http_error)


def serve_docs(app: FastAPI) -> None:
    """Swagger UI at `/docs` from the files of the `swagger-ui-py` package (Swagger UI 5, which reads the
    OpenAPI 3.1 that FastAPI writes). ReDoc is not offered: create the app with `redoc_url=None`."""
    spec = importlib.util.find_spec("swagger_ui")  # finds the package's folder without importing it
    assets = Path(next(iter(spec.submodule_search_locations))) / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy that mounts the app deeper
        files = root + DOCS_ASSETS
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=html.escape(f"{app.title} - API"),  # the manifest's name
            swagger_js_url=f"{files}/swagger-ui-bundle.js", swagger_css_url=f"{files}/swagger-ui.css",
            swagger_favicon_url=f"{files}/favicon-32x32.png")
