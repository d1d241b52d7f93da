"""Metrics: Prometheus counters and histograms, and the timing of each stage of a request.

The rest of the bridge only marks where things happen: `stage("predict")` (a context manager) or
`@timed("fetch")` (a decorator for functions, coroutines and generators) around a stage, `job_in_flight(...)`
around a job, `queued()` around a model call that may wait for a worker, `observe_batch(...)` where a batch
leaves. Serving (`bridge.serving.observability.RequestLog`) gives every HTTP request a `Record` in a
context variable (`recording`), so the stages timed anywhere below it (worker threads included:
`asyncio.to_thread` copies the context) add up per request; a stage timed outside any request (`bridge ango`'s
hub runs, `bridge prelabel`) is observed on its own.

Metrics live in prometheus-client's default registry, which also holds its process, platform and GC
collectors. With `PROMETHEUS_MULTIPROC_DIR` set before the process starts (several worker processes), every
process writes its samples to files in that folder and `/metrics` of any process answers the sum over all
(prometheus-client's multiprocess mode); the command that starts makes the folder (`prepare_multiprocess`).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

STAGES = ("fetch", "decode", "predict", "convert", "encode")
NO_PLATFORM = "none"

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def prepare_multiprocess() -> None:
    """Make the multiprocess folder if it is named and missing (prometheus-client writes there from a metric's
    first value on), then the gauges that have no labels, whose value exists from their creation. Called when
    a command starts, never at import."""
    if MULTIPROC_DIR:
        os.makedirs(MULTIPROC_DIR, exist_ok=True)
    _gauges()


@functools.cache
def _gauges() -> tuple[Gauge, Gauge]:
    """(jobs in flight, model calls queued): made on first use, after `prepare_multiprocess`."""
    return (Gauge("bridge_jobs_in_flight", "Jobs the service is running (fetching, decoding, predicting).",
                  multiprocess_mode="livesum"),
            Gauge("bridge_jobs_queued", "Model calls waiting for a free worker (limits.concurrency).",
                  multiprocess_mode="livesum"))

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
BATCH_SIZE = Histogram("bridge_batch_size", "Items per predict_batch call: requests batched together "
                       "(source=requests), video frames (source=video).", ["source"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
MODEL_LOAD_SECONDS = Gauge("bridge_model_load_seconds", "Time the model took to load at start-up.",
                           ["model", "version"], multiprocess_mode="max")


@functools.cache
def child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: the labels of a request's metrics come from a few values."""
    return metric.labels(*values)


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
def recording(record: Record) -> Iterator[Record]:
    """Attribute the stages, predictions and error of the work done inside the block to `record`."""
    token = _record.set(record)
    try:
        yield record
    finally:
        _record.reset(token)


def current() -> Record | None:
    """The record of the request being served, if any."""
    return _record.get()


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
            child(STAGE_SECONDS, NO_PLATFORM, name).observe(elapsed)


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


@contextmanager
def job_in_flight(platform: str) -> Iterator[None]:
    """Count a job in flight for the block, and name its platform on the request's record."""
    record = _record.get()
    if record is not None:
        record.platform = platform
    _gauges()[0].inc()
    try:
        yield
    finally:
        _gauges()[0].dec()


def observe_predictions(platform: str, predictions: Sequence[Any]) -> None:
    """The predictions a job kept, by platform and class (and on the request's record)."""
    for prediction in predictions:
        child(PREDICTIONS, platform, prediction.label).inc()
    record = _record.get()
    if record is not None:
        record.predictions += len(predictions)


class Ticket:
    """A model call counted as queued until its worker starts it (`start`), or until it is given up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = True
        _gauges()[1].inc()

    def start(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting = False
                _gauges()[1].dec()

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


def observe_batch(source: str, size: int) -> None:
    """A `predict_batch` call of `size` items: `requests` batched together, or `video` frames."""
    BATCH_SIZE.labels(source).observe(size)


@contextmanager
def model_loading(name: str, version: str) -> Iterator[None]:
    """Time the model's start-up load into `bridge_model_load_seconds`."""
    start = time.perf_counter()
    yield
    MODEL_LOAD_SECONDS.labels(name, version).set(time.perf_counter() - start)
