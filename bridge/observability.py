"""Observability: Prometheus metrics, one log line per request with its id, JSON logs, secrets kept out of logs.

The rest of the bridge only marks where things happen: `stage("predict")` (a context manager) or
`@timed("fetch")` (a decorator for functions, coroutines and generators) around a stage, `@observe_job` on
the service's `run`, `queued()` around a model call that may wait for a worker, `observe_batch(...)` where a
batch leaves. `RequestLog` (ASGI middleware) gives every HTTP request a `Record` in a context variable, so the
stages timed anywhere below it (worker threads included: `asyncio.to_thread` copies the context) add up per
request; when the answer leaves it counts the request, observes each stage's total once in
`bridge_stage_duration_seconds` and writes the request's log line. A stage timed outside any request (`bridge
ango`'s hub runs) is observed on its own.

Metrics live in prometheus-client's default registry, which also holds its process, platform and GC
collectors. With `PROMETHEUS_MULTIPROC_DIR` set before the process starts (several worker processes), every
process writes its samples to files in that folder and `/metrics` of any process answers the sum over all
(prometheus-client's multiprocess mode); process metrics are then left out, as that mode cannot merge them.

Nothing secret reaches a log line: the request line names the route, never headers or the query string, and
both formatters pass every message and traceback through `redact` (URL query strings, `Bearer`/`Basic`
credentials, `key=value` pairs whose key names a secret, and the secret values of the manifest's platform
sections, registered by the middleware).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STAGES = ("fetch", "decode", "predict", "convert", "encode")
NO_PLATFORM = "none"
QUIET_ROUTES = ("/metrics", "/healthz", "/readyz")
"""Routes that scrapers and probes call every few seconds: their lines are logged at debug level."""

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROC_DIR:  # prometheus-client writes there from the first metric on: a missing folder is made, not a crash
    os.makedirs(MULTIPROC_DIR, exist_ok=True)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)

REQUESTS = Counter("bridge_requests", "HTTP requests answered, by platform, route (its template) and status.",
                   ["platform", "route", "status"])
REQUEST_SECONDS = Histogram("bridge_request_duration_seconds", "Time from a request's arrival to its answer.",
                            ["platform", "route"], buckets=_SECONDS)
STAGE_SECONDS = Histogram("bridge_stage_duration_seconds",
                          "Time one request spent in each stage (fetch, decode, predict, convert, encode), "
                          "summed over the stage's steps (video chunks, frame URLs).",
                          ["platform", "stage"], buckets=_SECONDS)
PREDICTIONS = Counter("bridge_predictions", "Predictions the model returned (those kept by the core's checks and "
                      "thresholds), by platform and class.",
                      ["platform", "class"])
JOBS_IN_FLIGHT = Gauge("bridge_jobs_in_flight", "Jobs the service is running (fetching, decoding, predicting).",
                       multiprocess_mode="livesum")
JOBS_QUEUED = Gauge("bridge_jobs_queued", "Model calls waiting for a free worker (limits.concurrency).",
                    multiprocess_mode="livesum")
BATCH_SIZE = Histogram("bridge_batch_size", "Items per predict_batch call: requests batched together "
                       "(source=requests), video frames (source=video).", ["source"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
MODEL_LOAD_SECONDS = Gauge("bridge_model_load_seconds", "Time the model took to load at start-up.",
                           ["model", "version"], multiprocess_mode="max")


# --- per-request record and stage timing ----------------------------------------------------------------------


@dataclass
class Record:
    """What one request did, filled from wherever its work runs (event loop or worker threads)."""

    id: str
    platform: str | None = None
    predictions: int = 0
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self.stages[name] = self.stages.get(name, 0.0) + seconds


_record: ContextVar[Record | None] = ContextVar("bridge_request", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a stage of the current request (failed attempts count too: they took that time)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        record = _record.get()
        if record is not None:
            record.add_stage(name, elapsed)
        else:
            STAGE_SECONDS.labels(NO_PLATFORM, name).observe(elapsed)


def timed(name: str) -> Callable[[Callable], Callable]:
    """Decorator: `stage(name)` around each call of a function or coroutine, or each step of a generator."""

    def decorate(function: Callable) -> Callable:
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with stage(name):
                    return await function(*args, **kwargs)
            return run_async
        if inspect.isgeneratorfunction(function):
            @functools.wraps(function)
            def run_steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
                steps = function(*args, **kwargs)
                try:
                    while True:
                        with stage(name):
                            try:
                                item = next(steps)
                            except StopIteration:
                                return
                        yield item
                finally:
                    steps.close()
            return run_steps

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with stage(name):
                return function(*args, **kwargs)
        return run

    return decorate


def observe_job(run: Callable) -> Callable:
    """Decorator of `Service.run(job)`: counts the job in flight, and its predictions by platform and class."""

    @functools.wraps(run)
    async def observed(service: Any, job: Any) -> Any:
        record = _record.get()
        if record is not None:
            record.platform = job.platform
        JOBS_IN_FLIGHT.inc()
        try:
            result = await run(service, job)
        finally:
            JOBS_IN_FLIGHT.dec()
        for prediction in result.predictions:
            PREDICTIONS.labels(job.platform, prediction.label).inc()
        if record is not None:
            record.predictions += len(result.predictions)
        return result

    return observed


class Ticket:
    """A model call counted as queued until its worker starts it (`start`), or until it is given up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = True
        JOBS_QUEUED.inc()

    def start(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting = False
                JOBS_QUEUED.dec()

    def wrap(self, function: Callable) -> Callable:
        """`function`, marking the ticket started when a worker thread calls it."""

        @functools.wraps(function)
        def started(*args: Any, **kwargs: Any) -> Any:
            self.start()
            return function(*args, **kwargs)

        return started


@contextmanager
def queued() -> Iterator[Ticket]:
    """Count a model call as queued from here until `ticket.start()` (or `ticket.wrap(f)` runs), or the end."""
    ticket = Ticket()
    try:
        yield ticket
    finally:
        ticket.start()  # a call cancelled before a worker took it leaves the queue too


def note_error(message: str) -> None:
    """The message a failed request's caller is told, for the request's line."""
    record = _record.get()
    if record is not None:
        record.error = message


def noting_errors(render: Callable[[int, str], Response]) -> Callable[[int, str], Response]:
    """An error renderer `(status, message) -> Response` that also puts the message in the request's line."""

    @functools.wraps(render)
    def noted(status: int, message: str) -> Response:
        note_error(message)
        return render(status, message)

    return noted


def observe_batch(source: str, size: int) -> None:
    """A `predict_batch` call of `size` items: `requests` batched together, or `video` frames."""
    BATCH_SIZE.labels(source).observe(size)


@contextmanager
def model_loading(name: str, version: str) -> Iterator[None]:
    """Time the model's start-up load into `bridge_model_load_seconds`."""
    start = time.perf_counter()
    yield
    MODEL_LOAD_SECONDS.labels(name, version).set(time.perf_counter() - start)


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

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
access_log = logging.getLogger("bridge.access")


def request_id(given: str | None) -> str:
    """The caller's `X-Request-ID` when it is short and made of safe characters, else a new one."""
    if given and _SAFE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestLog:
    """ASGI middleware: request id (header `X-Request-ID` both ways), request metrics and the log line.

    `sections` are the enabled platforms' manifest sections by platform name: their `base_path`s name the
    platform of a route, and their secret values are registered for redaction.
    """

    def __init__(self, app: ASGIApp, sections: dict[str, Any]) -> None:
        self.app = app
        self.base_paths = sorted(((section.base_path.rstrip("/"), name) for name, section in sections.items()),
                                 key=lambda pair: -len(pair[0]))
        for section in sections.values():
            register_secrets(secret_values(section.model_dump()))

    def platform_of(self, path: str) -> str | None:
        for base, name in self.base_paths:
            if base and (path == base or path.startswith(base + "/")):
                return name
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        record = Record(id=request_id(given))
        token = _record.set(record)
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

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            finish()
            _record.reset(token)

    def finish(self, scope: Scope, record: Record, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        platform = record.platform or self.platform_of(scope["path"]) or NO_PLATFORM
        REQUESTS.labels(platform, route, str(status)).inc()
        REQUEST_SECONDS.labels(platform, route).observe(seconds)
        for name, spent in record.stages.items():
            STAGE_SECONDS.labels(platform, name).observe(spent)
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


def one_line(text: str) -> str:
    """`text` with its control characters escaped: a caller's path (`/a%0Ab`) cannot forge a log line."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def _stage_order(name: str) -> int:
    return STAGES.index(name) if name in STAGES else len(STAGES)


# --- logging: formats and redaction ---------------------------------------------------------------------------

_secrets: set[str] = set()
_SECRET_KEY = re.compile(r"secret|password|token|api_?key", re.IGNORECASE)
MIN_SECRET_LENGTH = 4
"""Registered secret values shorter than this are not redacted by value (they would garble every line)."""

_REDACTIONS = [
    # credentials after an auth scheme: "Authorization: Bearer abc", "Basic dXNlcjpwdw=="
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2[redacted]"),
    # a query string after a URL or a path: signed URLs carry their tokens there
    (re.compile(r"((?:[a-z][a-z0-9+.-]*://|/)[^\s?\"'<>]*)\?[^\s\"'<>#]+", re.IGNORECASE), r"\1?[redacted]"),
    # pairs whose key names a secret: "'apiKey': 'x'", '"secret": "x"', "password=x", "X-Amz-Signature=x"
    # (`key=value`, or a quoted key or value around a colon; prose such as "wrong secret: send..." stays)
    (re.compile(r"(?i)((?:secret|password|passwd|token|api[_-]?key|authorization|signature|credential)[\w-]*"
                r"(?:\s*=\s*[\"']?|[\"']\s*:\s*[\"']?|:\s*[\"']))[^\s\"',;&}\]]+"), r"\1[redacted]"),
]


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line (the manifest's configured secrets)."""
    _secrets.update(value for value in values if len(value) >= MIN_SECRET_LENGTH)


def secret_values(data: Any, key: str = "") -> Iterator[str]:
    """String values under keys that name a secret (`secret`, `password`, `token`, `api_key`), at any depth."""
    if isinstance(data, dict):
        for name, value in data.items():
            yield from secret_values(value, str(name))
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from secret_values(value, key)
    elif isinstance(data, str) and data and _SECRET_KEY.search(key):
        yield data


def redact(text: str) -> str:
    """`text` without credentials, URL query strings or registered secret values."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            current = _record.get()
            record.request_id = current.id if current else None
        return True


class TextFormatter(logging.Formatter):
    """`time level logger [request id]: message`, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        given = getattr(record, "request_id", None)
        record.request_id = given or "-"
        try:
            return redact(super().format(record))
        finally:
            record.request_id = given


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Every line has `time` (UTC, ISO 8601), `level`, `logger`, `message` and
    `request_id` (null outside a request); request lines add `method`, `route`, `path`, `status`,
    `platform`, `duration_ms`, `stages` ({stage: ms}), `predictions` and `error` (the message the caller
    got, or null); lines with a traceback add `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            line.update({key: redact(value) if isinstance(value, str) else value
                         for key, value in request.items()})
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


LOG_FORMATS = {"text": TextFormatter, "json": JsonFormatter}


def configure_logging(level: str, form: str = "text") -> None:
    """Every log line of the process (uvicorn's and the libraries' included) to stderr in `form`, redacted.

    Loggers that are not in the logging tree (the Ango SDK's per-run loggers) reach `logging.lastResort`,
    which gets the same handler at warning level. httpx's line per download stays at debug level: the
    request line already says what happened. Like `logging.basicConfig`, it leaves the handlers of a process
    that already has some (a program embedding the bridge, pytest) alone.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if root.handlers:
        return
    root.addHandler(_handler(form, logging.NOTSET))
    logging.lastResort = _handler(form, logging.WARNING)


def _handler(form: str, level: int) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(LOG_FORMATS[form]())
    handler.addFilter(_RequestIdFilter())
    return handler
