"""The FastAPI app: loads the model once at start-up and mounts every enabled platform's routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bridge.fallback import answer_unknown_routes, serve_docs
from bridge.manifest import Manifest, ManifestError
from bridge.platforms import Adapter, discover
from bridge.service import Service

log = logging.getLogger("bridge")


def enabled_adapters(manifest: Manifest, adapters: dict[str, Adapter]) -> dict[str, tuple[Adapter, object]]:
    """Each enabled platform's adapter with its validated section; unknown platform names are errors."""
    unknown = sorted(set(manifest.platforms) - set(adapters))
    if unknown:
        raise ManifestError(f"{manifest.where()}: platforms: no adapter named {', '.join(unknown)} "
                            f"(installed: {', '.join(sorted(adapters)) or 'none'})")
    chosen = {}
    for name, adapter in adapters.items():
        section = manifest.section(name, adapter.section)
        if section.enabled:
            chosen[name] = (adapter, section)
    return chosen


def create_app(manifest: Manifest, adapters: dict[str, Adapter] | None = None) -> FastAPI:
    """An app serving `manifest`'s model on every enabled platform (all installed adapters by default)."""
    platforms = enabled_adapters(manifest, discover() if adapters is None else adapters)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = await asyncio.to_thread(manifest.build_model)
        for name, (adapter, section) in platforms.items():
            for warning in adapter.check(model.spec, section):
                log.warning("%s: %s", name, warning)
        app.state.service = Service(manifest, model)
        log.info("serving %s (%d classes) on %s", manifest.name, len(model.spec.classes),
                 ", ".join(platforms) or "no platform")
        try:
            yield
        finally:
            await app.state.service.aclose()
            app.state.service = None

    app = FastAPI(title=manifest.name, version=manifest.version, description=manifest.description,
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # docs: serve_docs, below
    app.state.service = None
    app.state.manifest = manifest

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded."""
        ready = request.app.state.service is not None
        return JSONResponse({"status": "ready" if ready else "loading"}, status_code=200 if ready else 503)

    routers = [router for adapter, section in platforms.values() if (router := adapter.router(section))]
    for router in routers:
        app.include_router(router)
    answer_unknown_routes(app, routers)
    serve_docs(app)
    return app
