"""What an adapter offers the core, how the core finds adapters, and the route class they share.

Adapters are found through the `bridge.adapters` entry-point group, so the core names none of them and
another package can add a platform by declaring its own entry point::

    [project.entry-points."bridge.adapters"]
    cvat = "my_package.cvat:adapter"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException  # FastAPI raises Starlette's own for unreadable bodies
from starlette.requests import ClientDisconnect

from bridge import auth, conversions
from bridge.auth import Auth
from bridge.conversions import Table
from bridge.errors import BridgeError, NotReady
from bridge.export import Exporter, ExportSetup
from bridge.manifest import Manifest, ManifestError, PlatformSection
from bridge.media import read_capped
from bridge.model import Model, ModelSpec
from bridge.observability import json_answer, model_loading, noting_errors, stage
from bridge.outputs import warn_once
from bridge.predictions import Prediction
from bridge.responses import JSONResponse
from bridge.service import Job, Result, Service

log = logging.getLogger("bridge")

ENTRY_POINT_GROUP = "bridge.adapters"
T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    """One HTTP route of a platform, as its adapter declares it; the core builds the FastAPI route.

    `endpoint(body, service)` (or `endpoint(service)` without a `request` model) returns the answer as a
    JSON-able value, or a `Response`; every failure it raises is answered in the platform's error form.
    """

    method: str
    path: str
    endpoint: Callable[..., Awaitable[Any]]
    request: type[BaseModel] | None = None
    response: Any = None
    summary: str = ""
    params_at: tuple[str, ...] | None = None
    """Where the model's parameters sit in the request body (e.g. `("params",)`), for the OpenAPI schema."""


class Adapter:
    """A platform. Subclass it and declare what the platform has; the defaults offer nothing."""

    name: str = ""
    title: str = ""
    """The platform's name for people, e.g. "V7 Darwin"; groups its routes in /docs."""
    section: type[PlatformSection] = PlatformSection
    """The pydantic model of this platform's manifest section."""
    conversions: Table = {}
    """What each class kind and aspect of a prediction becomes on this platform (`bridge.conversions`)."""
    error_model: type[BaseModel] | None = None
    """The body of this platform's error answers, for the OpenAPI schema (default `{"error": ...}`)."""

    def auth(self, section: PlatformSection) -> Auth:
        """How the platform proves itself on this adapter's routes."""
        return auth.none()

    def render_error(self, status: int, message: str) -> Response:
        """This platform's error form; `{"error": message}` by default."""
        return json_error(status, message)

    def write_answer(self, result: Result, spec: ModelSpec, section: PlatformSection, manifest: Manifest) -> Any:
        """The platform's answer (JSON-able) for a job's result, as its route sends it: pure, no I/O."""
        raise NotImplementedError(f"{self.name} does not write answers")

    def read_answer(self, answer: Any, spec: ModelSpec, section: PlatformSection, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        """The neutral predictions of an answer in this platform's form: the inverse of `write_answer`, exact
        where the conversion table says exact. `size` (height, width) and `text` are the item's."""
        raise NotImplementedError(f"{self.name} does not read answers yet")

    def routes(self, section: PlatformSection) -> list[Route]:
        """HTTP routes under the section's `base_path`, mounted by `bridge serve` when the section is present."""
        return []

    def router(self, section: PlatformSection) -> APIRouter | None:
        """The FastAPI router of `routes`; an adapter whose routes are not its own (an SDK's) overrides it."""
        routes = self.routes(section)
        return build_router(self, section, routes) if routes else None

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        """Extra `bridge` sub-commands; each sets `func=callable(args) -> int` on its parser."""

    def check(self, spec: ModelSpec, section: PlatformSection, manifest: Manifest) -> list[str]:
        """Warnings about this model on this platform: from the conversion table, and a missing secret."""
        found = conversions.warnings(self.conversions, spec, manifest.geometry.simplify_tolerance)
        scheme = self.auth(section)
        missing = scheme.missing(manifest.variable_of(scheme.key))
        return found + ([missing] if missing else [])

    def exporter(self, section: PlatformSection, setup: ExportSetup) -> Exporter | None:
        """The platform's import format for `bridge prelabel`, or None when it has no file import."""
        return None

    # --- as a client of this platform's endpoints: `bridge check URL` (bridge.endpoint_check), remote models
    # (bridge.remote) ---

    def check_endpoint(self, probe: Any) -> list[Any]:
        """The `Problem`s of the endpoint at `probe.url` with this platform's contract, found by calling it."""
        raise NotImplementedError(f"{self.name} has no endpoint check")

    def secret_headers(self, secret: str) -> dict[str, str]:
        """The headers that carry this platform's secret to an endpoint (`--secret`, a remote's `secret`)."""
        return {"Authorization": f"Bearer {secret}"}

    def remote_spec(self, remote: Any, client: Any) -> ModelSpec:
        """The classes of a remote endpoint of this platform, read once at start-up with `client` (httpx)."""
        raise NotImplementedError(f"{self.name} cannot serve a remote model")

    def remote_request(self, item: Any, context: Any, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        """(path after the remote's URL, JSON body) asking a remote endpoint of this platform about `item` (an
        RGB image array or a text)."""
        raise NotImplementedError(f"{self.name} cannot serve a remote model")


def discover() -> dict[str, Adapter]:
    """Every installed adapter by name. A broken one fails loudly: a platform must not vanish silently."""
    adapters = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            adapter = point.load()
        except Exception as error:
            raise RuntimeError(f"adapter {point.name!r} ({point.value}) failed to load: {error}") from error
        adapters[point.name] = adapter
    return adapters


def enabled_adapters(manifest: Manifest, adapters: dict[str, Adapter]) -> dict[str, tuple[Adapter, Any]]:
    """The platforms the manifest has a section for (and does not disable), each with its validated section;
    unknown platform names are errors."""
    unknown = sorted(set(manifest.platforms) - set(adapters))
    if unknown:
        raise ManifestError(f"{manifest.where()}: platforms: no adapter named {', '.join(unknown)} "
                            f"(installed: {', '.join(sorted(adapters)) or 'none'})")
    chosen = {}
    for name in manifest.platforms:
        adapter = adapters[name]
        section = manifest.section(name, adapter.section)
        if section.enabled:
            chosen[name] = (adapter, section)
    return chosen


async def start_service(manifest: Manifest, platforms: dict[str, tuple[Adapter, Any]],
                        load_model: Callable[[], Model] | None = None) -> Service:
    """Build the model once, off the event loop, say what each platform loses of it, and start the service:
    the one start-up path of `bridge serve` and `bridge ango` (and of `bridge serve --ray`'s ingress, whose
    `load_model` gives a stand-in for the remote model)."""
    with model_loading(manifest.name, manifest.version):
        model = await _in_daemon_thread(load_model or manifest.build_model)
    for name, (adapter, section) in platforms.items():
        for warning in adapter.check(model.spec, section, manifest):
            log.warning("%s: %s", name, warning)
    service = Service(manifest, model)
    log.info("serving %s (%d classes) on %s", manifest.name, len(model.spec.classes),
             ", ".join(platforms) or "no platform: the manifest has no `platforms` section")
    return service


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """`work()` on a thread of its own that does not hold the process open: a server stopped while a slow
    model loads exits at once instead of waiting for the load (as the default executor would)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def run() -> None:
        try:
            result = work()
        except BaseException as error:
            answer = functools.partial(done.set_exception, error)
        else:
            answer = functools.partial(done.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, answer)

    threading.Thread(target=run, name="model-load", daemon=True).start()
    return await done


def get_service(request: Request) -> Service:
    """The service, once the model is loaded."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the model is still loading")
    return service


def losses(table: Table, spec: ModelSpec, predictions: list[Prediction], tolerance: float) -> list[str]:
    """What the platform's conversion table says its answer loses of these predictions: one line per class
    and kind or aspect, e.g. "class 'eye': point dropped: Foundry documents no answer form for it"."""
    found: dict[tuple[str, str], str] = {}
    for prediction in predictions:
        cls = spec.get(prediction.label)
        rows = [cls.kind]
        rows += ["prediction.attributes"] * bool(prediction.attributes)
        rows += ["prediction.text"] * (prediction.text is not None)
        rows += ["prediction.frame"] * (prediction.frame is not None)
        for row in rows:
            conversion = table[row].at(tolerance)
            if (cls.name, row) in found or conversion.fidelity == "exact":
                continue
            how = "dropped" if conversion.fidelity == "dropped" else f"sent as {conversion.form}"
            found[cls.name, row] = f"class {cls.name!r}: {row} {how}: {conversion.why}"
    return list(found.values())


def note_losses(platform: str, table: Table, spec: ModelSpec, predictions: list[Prediction],
                tolerance: float) -> None:
    """Log, once per class, what the platform's conversion table says its answer loses of these predictions."""
    for line in losses(table, spec, predictions, tolerance):
        warn_once(platform, "", line)


async def answer(adapter: Adapter, service: Service, section: PlatformSection, job: Job) -> Any:
    """Run `job`, then the adapter's `write_answer` off the event loop, noting what its form loses."""
    result = await service.run(job)
    note_losses(adapter.name, adapter.conversions, service.spec, result.predictions,
                service.manifest.geometry.simplify_tolerance)
    with stage("convert"):
        return await asyncio.to_thread(adapter.write_answer, result, service.spec, section, service.manifest)


# --- routes that answer every failure in the platform's own error form ---------------------------------------

ErrorRenderer = Callable[[int, str], Response]


def json_error(status: int, message: str) -> Response:
    """The default error form: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


def bridge_route(render: ErrorRenderer = json_error,
                 authenticate: Callable[[Request], None] | None = None) -> type[APIRoute]:
    """A route class that checks credentials, limits the body size and answers every failure with `render`.

    `authenticate(request)` raises `Unauthorized` before anything of the body is read, so a caller without
    credentials learns nothing about the request form. Malformed JSON answers 400, a body that does not fit
    the route's request model 422, a `BridgeError` its own status, anything else 500 with the traceback in the
    log only. The server keeps serving either way.
    """

    render = noting_errors(render)  # the request's log line says what the caller was told

    class BridgeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                try:
                    if authenticate is not None:
                        authenticate(request)
                    request = LimitedRequest(request.scope, request.receive)
                    await request.body()  # enforce the size limit before FastAPI parses anything
                    return await handler(request)
                except BridgeError as error:
                    response = render(error.status, error.message)
                    response.headers.update(error.headers)  # Retry-After of a 503
                    return response
                except ClientDisconnect:
                    log.info("%s %s: the client went away before sending its whole request",
                             request.method, request.url.path)
                    return Response(status_code=400)  # nobody reads it
                except RequestValidationError as error:
                    status, message = describe_validation(error)
                    return render(status, message)
                except HTTPException as error:
                    return render(error.status_code, str(error.detail))
                except Exception as error:
                    log.exception("unexpected failure on %s %s", request.method, request.url.path)
                    return render(500, f"internal error: {type(error).__name__}")

            return route

    return BridgeRoute


class LimitedRequest(Request):
    """A request whose body may not exceed the manifest's `limits.max_request_bytes`."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self.app.state.manifest.limits.max_request_bytes
            self._body = await read_capped(self.stream(), self.headers.get("content-length"), limit,
                                           "request body", "limits.max_request_bytes")
        return self._body


def describe_validation(error: RequestValidationError) -> tuple[int, str]:
    """(400, ...) for a body that is not JSON, else (422, one line per problem naming the field)."""
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "JSON decode error")
            return 400, f"request body is not valid JSON: {reason}"
    lines = []
    for problem in problems:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        lines.append(f"{where}: {problem.get('msg')}")
    return 422, "invalid request: " + "; ".join(lines)


# --- routers built from what an adapter declares ---------------------------------------------------------------


class ErrorBody(BaseModel):
    """The default error answer."""

    error: str


ERRORS = {
    400: "The body is not JSON, base64 is broken, or a URL is not allowed (not http(s), or a private address).",
    401: "Missing or wrong credentials.",
    413: "The body, a download, an image or a video is over the manifest's limits.",
    422: "The request does not fit the schema, a parameter is invalid, or the media is not usable.",
    500: "The model failed, or returned a prediction that does not fit its classes.",
    503: "The model is still loading.",
    504: "The job ran past limits.deadline, or a download past limits.fetch_timeout.",
}
"""Every status a platform route may answer besides 200, as the OpenAPI schema declares them."""


def build_router(adapter: Adapter, section: PlatformSection, routes: list[Route]) -> APIRouter:
    """The routes under the section's base path: credentials checked first, every failure in the platform's
    error form, errors and auth declared in the OpenAPI schema."""
    scheme = adapter.auth(section)
    router = APIRouter(prefix=section.base_path.rstrip("/"), tags=[adapter.title or adapter.name],
                       route_class=bridge_route(adapter.render_error, scheme.check))
    security = scheme.openapi()
    error = adapter.error_model or ErrorBody
    responses = {status: {"model": error, "description": why} for status, why in ERRORS.items()}
    for route in routes:
        router.add_api_route(route.path, _endpoint(route), methods=[route.method], response_model=route.response,
                             summary=route.summary or None, description=inspect.getdoc(route.endpoint),
                             responses=responses, dependencies=[Depends(security)] if security else [],
                             openapi_extra=None if route.params_at is None else {"x-params-at": list(route.params_at)})
    return router


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint taking the route's request model as its body and answering JSON."""

    async def endpoint(request: Request, body: Any = None) -> Response:
        service = get_service(request)
        found = await (route.endpoint(body, service) if route.request is not None else route.endpoint(service))
        return found if isinstance(found, Response) else json_answer(found)

    parameters = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    if route.request is not None:
        parameters.append(inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            annotation=route.request))
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint
