"""What an adapter offers the core, how the core finds adapters, and the route class they share.

Adapters are found through the `bridge.adapters` entry-point group, so the core names none of them and
another package can add a platform by declaring its own entry point::

    [project.entry-points."bridge.adapters"]
    cvat = "my_package.cvat:adapter"
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Coroutine
from importlib.metadata import entry_points
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException  # FastAPI raises Starlette's own for unreadable bodies

from bridge.errors import BridgeError, NotReady
from bridge.manifest import PlatformSection
from bridge.media import read_capped
from bridge.model import ModelSpec
from bridge.service import Service

log = logging.getLogger("bridge")

ENTRY_POINT_GROUP = "bridge.adapters"


class Adapter:
    """A platform. Subclass it and override what the platform has; the defaults offer nothing."""

    name: str = ""
    section: type[PlatformSection] = PlatformSection
    """The pydantic model of this platform's manifest section."""

    def router(self, section: PlatformSection) -> APIRouter | None:
        """HTTP routes, mounted by `bridge serve` when the section is enabled."""
        return None

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        """Extra `bridge` sub-commands; each sets `func=callable(args) -> int` on its parser."""

    def check(self, spec: ModelSpec, section: PlatformSection) -> list[str]:
        """Warnings about this model on this platform: classes it cannot receive, lossy conversions."""
        return []


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


def get_service(request: Request) -> Service:
    """FastAPI dependency: the service, once the model is loaded."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the model is still loading")
    return service


_warned: set[tuple[str, str, str]] = set()


def warn_once(platform: str, class_name: str, message: str) -> None:
    """Log a lossy or impossible conversion once per platform and class, not once per prediction."""
    key = (platform, class_name, message)
    if key not in _warned:
        _warned.add(key)
        log.warning("%s: class %r: %s", platform, class_name, message)


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

    class BridgeRoute(APIRoute):
        error_renderer = staticmethod(render)  # also the form of unknown paths under the router's prefix

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
                    log.info("%s %s -> %d: %s", request.method, request.url.path, error.status, error.message)
                    return render(error.status, error.message)
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
