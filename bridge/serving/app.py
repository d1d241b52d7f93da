"""The FastAPI app: listens at once, loads the model in the background, mounts each platform of the manifest.

`/healthz` answers as soon as the process listens; `/readyz` and every platform route answer 503 "the model
is still loading" until the model is built, so a slow model never looks like a dead server (and a busy port
is reported before the model loads). A model that fails to load stops the server when it runs under `bridge
serve` (`app.state.stop`), and otherwise keeps answering 503 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from bridge.core.manifest import Manifest
from bridge.core.model import Model
from bridge.platforms.protocol import Adapter
from bridge.platforms.registry import Platforms
from bridge.platforms.startup import start_service
from bridge.serving.fallback import answer_unknown_routes, serve_docs
from bridge.serving.observability import RequestLog, metrics
from bridge.serving.responses import JSONResponse
from bridge.serving.routes import Direct, build_router

log = logging.getLogger("bridge")


def create_app(manifest: Manifest, adapters: dict[str, Adapter] | None = None, playground: bool = True,
               load_model: Callable[[], Model] | None = None) -> FastAPI:
    """An app serving `manifest`'s model on every platform its manifest has a section for, with the
    playground at `/` unless `playground` is false.

    `load_model` builds the model the app serves: the manifest's own by default, a stand-in for a remote one
    under Ray Serve (`bridge.serving.ray_serve`). `adapters`: the installed ones by default.
    """
    platforms = Platforms.of(manifest, adapters)

    async def load(app: FastAPI) -> None:
        try:
            app.state.service = await start_service(manifest, platforms, load_model)
        except Exception as error:
            app.state.load_error = f"the model failed to load: {error}"
            log.error("%s", app.state.load_error)
            log.debug("the model's traceback", exc_info=error)  # --log-level debug shows it
            if app.state.stop is not None:
                app.state.stop()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(load(app))
        try:
            yield
        finally:
            loading.cancel()
            if app.state.service is not None:
                await app.state.service.aclose()
                app.state.service = None

    app = FastAPI(title=manifest.name, version=manifest.version, description=manifest.description,
                  lifespan=lifespan, default_response_class=JSONResponse,
                  docs_url=None, redoc_url=None)  # docs: serve_docs, below
    app.state.service = None
    app.state.load_error = None
    app.state.stop = None
    app.state.manifest = manifest

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded, URL fetches are being served, and not every model thread is stuck
        past the deadline."""
        state = request.app.state
        if state.service is not None and state.service.admission.degraded:
            return JSONResponse({"status": "degraded", "stuck_calls": len(state.service.admission.stuck())},
                                status_code=503)
        if state.service is not None:
            if stalled := state.service.media.stalled():
                return JSONResponse({"status": "degraded", "reason": stalled}, status_code=503)
            return JSONResponse({"status": "ready"})
        if state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    routes: list[Any] = []  # the adapters' routes, filled below; inside RequestLog (its line and metrics count them)
    app.add_middleware(Direct, routes=routes)
    app.add_middleware(RequestLog, platforms=platforms)
    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["health"], response_class=Response,
                      summary="Prometheus metrics")

    for adapter, section in platforms.served.values():
        router = build_router(adapter, section)
        if router is not None:
            app.include_router(router)
            routes += router.routes
    answer_unknown_routes(app, platforms, playground)
    serve_docs(app)
    if playground:
        from bridge.serving.playground import mount

        mount(app, platforms)
    app.openapi = lambda: _openapi(app, manifest)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, manifest: Manifest) -> dict[str, Any]:
    """FastAPI's schema, with the model's own parameters (the manifest's `params`) where each platform's
    request carries them (a route's `x-params-at`)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                where = operation.pop("x-params-at", None)
                if where is not None:
                    target = _schema_at(schema, operation["requestBody"]["content"]["application/json"]["schema"],
                                        where)
                    target.setdefault("properties", {}).update(manifest.params.get("properties", {}))
        app.openapi_schema = schema
    return app.openapi_schema


def _schema_at(schema: dict[str, Any], node: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The object schema at `path` below `node`, following `$ref`s (and the first `$ref` of an `anyOf`)."""
    for key in [None, *path]:
        if key is not None:
            node = node["properties"][key]
        while "$ref" in node or "anyOf" in node:
            if "anyOf" in node:
                node = next(option for option in node["anyOf"] if "$ref" in option)
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node
