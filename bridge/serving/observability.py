"""Observability of the HTTP server: one log line per request with its id, request metrics, `/metrics`.

`RequestLog` (ASGI middleware) gives every HTTP request a `Record` (`bridge.core.metrics.recording`); when the
answer leaves it counts the request, observes each stage's total once in `bridge_stage_duration_seconds` and
writes the request's log line. The request line names the route, never headers or the query string.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.core.logs import one_line, register_secrets, secret_values
from bridge.core.metrics import (
    MULTIPROC_DIR,
    NO_PLATFORM,
    REQUEST_SECONDS,
    REQUESTS,
    STAGE_SECONDS,
    STAGES,
    Record,
    child,
    recording,
    stage,
)
from bridge.platforms.registry import Platforms
from bridge.serving.responses import JSONResponse

QUIET_ROUTES = ("/metrics", "/healthz", "/readyz")
"""Routes that scrapers and probes call every few seconds: their lines are logged at debug level."""


def json_answer(content: Any, status_code: int = 200) -> JSONResponse:
    """A JSON response, its serialisation timed as the `encode` stage."""
    with stage("encode"):
        return JSONResponse(content, status_code=status_code)


# --- /metrics -----------------------------------------------------------------------------------------------


async def metrics() -> Response:
    """Prometheus metrics in the text format; summed over all worker processes in multiprocess mode."""
    registry = REGISTRY
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)



# --- the request line -----------------------------------------------------------------------------------------

_SAFE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
access_log = logging.getLogger("bridge.access")


def request_id(given: str | None) -> str:
    """The caller's `X-Request-ID` when it is short and made of safe characters, else a new one."""
    if given and _SAFE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestLog:
    """ASGI middleware: request id (header `X-Request-ID` both ways), request metrics and the log line.

    A request's platform is the one its job names, else the one that owns its path (`Platforms.owner`); the
    served platforms' secret values are registered for redaction.
    """

    def __init__(self, app: ASGIApp, platforms: Platforms) -> None:
        self.app = app
        self.platforms = platforms
        for _, section in platforms.served.values():
            register_secrets(secret_values(section.model_dump()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        record = Record(id=request_id(given))
        status, finished = 500, False
        start = time.perf_counter()

        def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                self.finish(scope, record, status, time.perf_counter() - start)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", record.id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()  # before the last bytes leave: the caller finds the line and the counts once answered
            await send(message)

        with recording(record):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                finish()

    def finish(self, scope: Scope, record: Record, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        platform = record.platform or self.platforms.owner(scope["path"]) or NO_PLATFORM
        child(REQUESTS, platform, route, str(status)).inc()
        child(REQUEST_SECONDS, platform, route).observe(seconds)
        for name, spent in record.stages.items():
            child(STAGE_SECONDS, platform, name).observe(spent)
        stages = {name: round(spent * 1000, 2) for name, spent in sorted(record.stages.items(),
                                                                        key=lambda s: _stage_order(s[0]))}
        fields = {"method": scope.get("method", ""), "route": route, "path": scope["path"], "status": status,
                  "platform": None if platform == NO_PLATFORM else platform,
                  "duration_ms": round(seconds * 1000, 2), "stages": stages, "predictions": record.predictions,
                  "error": record.error}
        text = " ".join(f"{name} {ms:g}" for name, ms in stages.items())
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        access_log.log(level, "%s %s %d %s %.1f ms%s, %d predictions%s", fields["method"],
                       one_line(scope["path"]), status, platform, seconds * 1000, f" ({text} ms)" if text else "",
                       record.predictions, f": {one_line(record.error)}" if record.error else "",
                       extra={"request": fields, "request_id": record.id})



def _stage_order(name: str) -> int:
    return STAGES.index(name) if name in STAGES else len(STAGES)
