"""The platforms' HTTP routes: built from what each adapter declares, every failure in the platform's form.

One route class for every adapter: credentials are checked before any of the body is read (a caller without
them learns nothing about the request form), then a job route admits its job (`bridge.core.admission`: a
refusal costs no parsing), the body is capped at `limits.max_request_bytes`, read as JSON whatever its
declared `Content-Type` (`curl -d` says form-urlencoded, some clients say nothing or text/plain) while a
multipart upload is refused with 415 saying what to send, and parsed and validated against the route's
request model in one pass (pydantic's JSON parser: no dict in between, no FastAPI dependency solving; FastAPI
keeps only the OpenAPI declaration). Every failure is answered in the platform's error form
(`Adapter.error_body`) with the status of a `BridgeError`: malformed JSON 400, a body that does not fit the
route's request model 422, anything unexpected 500 with the traceback in the log only. The server keeps
serving either way.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import (
    HTTPException,  # FastAPI raises Starlette's own for unreadable bodies
)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.core.errors import BadRequest, BridgeError, InvalidInput, NotReady, Overloaded
from bridge.core.media import read_capped
from bridge.core.metrics import note_error
from bridge.core.service import Service
from bridge.platforms.protocol import Adapter, Route
from bridge.serving.observability import json_answer
from bridge.serving.responses import JSONResponse

log = logging.getLogger("bridge")

ErrorBody = Callable[[BridgeError], Any]
"""A platform's error form: the JSON body answering an error (`Adapter.error_body`)."""


def default_error_body(error: BridgeError) -> Any:
    """`{"error": message}` and the error's fields: the form of routes that belong to no platform."""
    return {"error": error.message, **error.fields}


def error_response(body: ErrorBody, error: BridgeError) -> Response:
    """The answer to `error` in a platform's form; the message goes on the request's log line. A refusal for
    want of room closes the connection: a keep-alive client reconnects, maybe to a less busy worker."""
    note_error(error.message)
    headers = {**error.headers, "Connection": "close"} if isinstance(error, Overloaded) else error.headers
    return JSONResponse(body(error), status_code=error.status, headers=headers or None)


def get_service(request: Request) -> Service:
    """The service, once the model is loaded."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady(request.app.state.load_error or "the model is still loading")
    return service


def bridge_route(body: ErrorBody = default_error_body,
                 authenticate: Callable[[Request], None] | None = None) -> type[APIRoute]:
    """A route class that checks credentials, admits a job before reading its body, limits the body size,
    parses it once, and answers every failure with `body`."""

    class BridgeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            declared: Route | None = getattr(self.endpoint, "declared", None)
            handler = super().get_route_handler() if declared is None else None

            async def route(request: Request) -> Response:
                try:
                    if authenticate is not None:
                        authenticate(request)
                    if handler is None:
                        return await run(declared, request)
                    request = LimitedRequest(as_json(request.scope), request.receive)
                    await request.body()  # enforce the size limit before FastAPI parses anything
                    return await handler(request)
                except ClientDisconnect:
                    log.info("%s %s: the client went away before sending its whole request",
                             request.method, request.url.path)
                    return Response(status_code=400)  # nobody reads it
                except Exception as error:
                    return error_response(body, as_bridge_error(error, request))

            self.direct = route if declared is not None else None
            return route

    return BridgeRoute


class Direct:
    """ASGI middleware: a request to an adapter's route goes straight to its route function (`bridge_route`),
    past Starlette's exception middleware, router matching and endpoint wrapping, which it does not need
    (the route function answers every failure itself); anything else goes through the app as usual."""

    def __init__(self, app: ASGIApp, routes: list[Any]) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], APIRoute] = {
            (method, route.path): route for route in routes if getattr(route, "direct", None) is not None
            and "{" not in route.path for method in route.methods}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        scope["route"] = route
        response = await route.direct(Request(scope, receive, send))
        await response(scope, receive, send)


async def run(declared: Route, request: Request) -> Response:
    """An adapter's route: its job admitted (503 before the body is read), its body read within the limit and
    validated against its request model in one pass, its answer as JSON."""
    service = get_service(request)
    if declared.request is None:
        return json_answer(await declared.endpoint(service))
    as_json(request.scope)  # a multipart upload: 415
    size = request.headers.get("content-length")
    with service.admission.job(int(size) if size and size.isdigit() else 0):
        body = await LimitedRequest(request.scope, request.receive).body()
        return json_answer(await declared.endpoint(parse(declared.request, body), service))


def parse(model: type[BaseModel], body: bytes) -> BaseModel:
    """The body as `model`, parsed and validated in one pass: 400 when it is not JSON, 422 naming each field
    that does not fit (the same lines FastAPI's own parsing gave)."""
    if not body:
        raise InvalidInput("invalid request: body: Field required")
    try:
        try:
            return model.model_validate_json(body)
        except ValidationError as error:
            if not any(problem["type"] == "json_invalid" for problem in error.errors()):
                raise
        # what pydantic's parser refuses and Python's takes (a lone surrogate, for the URL check to name), or
        # refused by both, with Python's reason
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequest(f"request body is not valid JSON: {error}") from None
        return model.model_validate(data)
    except ValidationError as error:
        raise describe_validation(RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors(include_url=False)]
        )) from None


def as_bridge_error(error: Exception, request: Request) -> BridgeError:
    """What to tell the caller about a failure: a `BridgeError` as it is; malformed JSON (400) and a body
    that does not fit the request model (422) in one line; an `HTTPException` with its status; anything else
    a 500 whose traceback stays in the log."""
    if isinstance(error, BridgeError):
        return error
    if isinstance(error, RequestValidationError):
        return describe_validation(error)
    if isinstance(error, HTTPException):
        return BridgeError(str(error.detail), status=error.status_code)
    log.error("unexpected failure on %s %s", request.method, request.url.path, exc_info=error)
    return BridgeError(f"internal error: {type(error).__name__}")


JSON_TYPE = (b"content-type", b"application/json")


def as_json(scope: dict[str, Any]) -> dict[str, Any]:
    """The request's scope with its body declared JSON: FastAPI parses a body only when its `Content-Type`
    says JSON, and otherwise answers an opaque 422 ("Input should be a valid dictionary"). Every platform
    route takes JSON, so a body is read as JSON whatever it was declared; a multipart upload (a form with a
    file, as Label Studio and CVAT users try) is not JSON at all: 415 saying what to send."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name != b"content-type"]
    declared = dict(scope.get("headers", ())).get(b"content-type", b"").split(b";")[0].strip().lower()
    if declared.startswith(b"multipart/"):
        raise BridgeError(f"the body is a {declared.decode('latin-1')} upload: send the request as a JSON body "
                          "(Content-Type: application/json), with an image as a URL or base64 inside it",
                          status=415)
    if declared == JSON_TYPE[1] or declared.endswith(b"+json"):
        return scope
    return {**scope, "headers": [*headers, JSON_TYPE]}


class LimitedRequest(Request):
    """A request whose body may not exceed the manifest's `limits.max_request_bytes`."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self.app.state.manifest.limits.max_request_bytes
            self._body = await read_capped(self.stream(), self.headers.get("content-length"), limit,
                                           "request body", "limits.max_request_bytes")
        return self._body


def describe_validation(error: RequestValidationError) -> BridgeError:
    """A 400 for a body that is not JSON, else a 422 with one line per problem naming the field."""
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "JSON decode error")
            return BadRequest(f"request body is not valid JSON: {reason}")
    lines = []
    for problem in problems:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        lines.append(f"{where}: {problem.get('msg')}")
    return InvalidInput("invalid request: " + "; ".join(lines))


class DefaultErrorBody(BaseModel):
    """The default error answer."""

    error: str


ERRORS = {
    400: "The body is not JSON, base64 is broken, or a URL is not allowed (not http(s), or a private address).",
    401: "Missing or wrong credentials.",
    413: "The body, a download, an image or a video is over the manifest's limits.",
    415: "The body is a multipart upload: send JSON.",
    422: "The request does not fit the schema, a parameter is invalid, or the media is not usable.",
    500: "The model failed, or returned a prediction that does not fit its classes.",
    503: "The model is still loading, or failed to load (the message says why); or the server is busy.",
    504: "The job ran past limits.deadline, or a download past limits.fetch_timeout.",
}
"""Every status a platform route may answer besides 200, as the OpenAPI schema declares them."""


def build_router(adapter: Adapter, section: Any) -> APIRouter | None:
    """The adapter's routes under the section's base path (None when it has none): credentials checked
    first, every failure in the platform's error form, errors and auth declared in the OpenAPI schema."""
    routes = adapter.routes(section)
    if not routes:
        return None
    scheme = adapter.auth(section)
    router = APIRouter(prefix=section.base_path.rstrip("/"), tags=[adapter.title or adapter.name],
                       route_class=bridge_route(adapter.error_body, scheme.check))
    public = bridge_route(adapter.error_body)
    security = scheme.openapi()
    error = adapter.error_model or DefaultErrorBody
    responses = {status: {"model": error, "description": why} for status, why in ERRORS.items()}
    for route in routes:
        router.add_api_route(route.path, _endpoint(route), methods=[route.method], response_model=route.response,
                             summary=route.summary or None, description=inspect.getdoc(route.endpoint),
                             responses=responses,
                             dependencies=[Depends(security)] if security and not route.public else [],
                             route_class_override=public if route.public else None,
                             openapi_extra=None if route.params_at is None else {"x-params-at": list(route.params_at)})
    return router


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint taking the route's request model as its body and answering JSON: its signature is
    what the OpenAPI schema declares; requests go through `run` (the route class finds the route in
    `declared`)."""

    async def endpoint(request: Request, body: Any = None) -> Response:
        return await run(route, request)  # what `bridge_route` calls directly, without FastAPI's parsing

    parameters = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    if route.request is not None:
        parameters.append(inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            annotation=route.request))
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.declared = route  # type: ignore[attr-defined]
    return endpoint
