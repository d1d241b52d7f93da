"""Admission control: a job is taken when it can still be answered in time, and the job's deadline holds to
the end of its work.

A process admits a job when its expected wait (the jobs ahead of it x the model's recent time per item /
`limits.concurrency`) and its own model time fit inside `limits.deadline`; beyond that, beyond the hard cap
(`limits.concurrency + limits.max_queue` jobs), or beyond `limits.max_held_bytes` of request bodies and
decoded images held by the jobs already admitted, it answers 503 with a `Retry-After` at once instead of
waiting its way to a 504. So a burst of quick requests queues (as Ray Serve and Triton queue), and only what
could not be answered in time is refused. HTTP routes admit a job before its body is read or parsed
(`Admission.job` is re-entrant in one request: the service's own call then passes), so a refusal costs little.

A model call on a thread cannot be interrupted: one that runs past `limits.deadline` has lost its request
(which answered 504) but still holds its thread. Such calls count against the bound and the concurrency, so
hung calls turn the process away from new work instead of letting every request wait for a thread that never
comes; when all `concurrency` threads are stuck, `/readyz` answers "degraded" (503), and under `bridge serve
--workers` the supervisor replaces the worker once its oldest call passes `limits.hard_limit`.

Work that Python code does step by step stops at the deadline too: the service sets the job's deadline in a
context variable (`deadline`), which worker threads inherit, and `check_deadline()` between predictions
(`bridge.core.outputs`) and in the writers' loops (`bridge.core.pipeline`) ends a job that has been given up.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.core.errors import DeadlineExceeded, Overloaded

T = TypeVar("T")

SMALL_CALLS = 8
"""Model calls on small items whose times decide whether the next runs on the event loop (their median)."""


@dataclass
class Ticket:
    """One admitted job: the bytes it holds (its body, its decoded images), counted against the memory bound."""

    held: int = 0


_ticket: ContextVar[Ticket | None] = ContextVar("bridge_admitted", default=None)


class Admission:
    """Counts the jobs in a process, the bytes they hold, and times its model calls."""

    def __init__(self, concurrency: int, max_queue: int, deadline: float, max_held_bytes: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + max_queue
        self.deadline = deadline
        self.max_held_bytes = max_held_bytes
        self.jobs = 0
        self.held = 0
        self._calls: dict[object, float] = {}  # model calls running on threads -> start (monotonic)
        self._item_seconds = 0.0  # moving average of a model call's time per item
        self.in_flight = 0  # model calls handed to threads and not yet back
        self._small: deque[float] = deque(maxlen=SMALL_CALLS)  # seconds of the last calls on a small item

    @contextmanager
    def job(self, size: int = 0) -> Iterator[Ticket]:
        """Admit one job holding `size` bytes for the duration of the block, or raise `Overloaded` (503). Inside
        an admitted job (the route admitted it before reading its body), the job's own ticket."""
        if (admitted := _ticket.get()) is not None:
            yield admitted
            return
        self._admit(size)
        ticket = Ticket(size)
        self.jobs += 1
        self.held += size
        token = _ticket.set(ticket)
        try:
            yield ticket
        finally:
            _ticket.reset(token)
            self.jobs -= 1
            self.held -= ticket.held

    def _admit(self, size: int) -> None:
        stuck = len(self.stuck())
        free = self.concurrency - stuck
        if free <= 0:
            raise Overloaded(f"the model is stuck: its {stuck} running call(s) passed limits.deadline; "
                             "retry later", self.retry_after())
        if self.jobs + stuck >= self.capacity:
            raise Overloaded(f"the server is busy: {self.jobs} requests in progress or waiting "
                             "(limits.concurrency + limits.max_queue); retry later", self.retry_after())
        if self.held and self.held + size > self.max_held_bytes:
            raise Overloaded(f"the server is busy: its {self.jobs} requests hold {self.held / 2**20:.0f} MiB "
                             "(limits.max_held_bytes); retry later", self.retry_after())
        wait = self.expected_wait(free)
        if wait and wait + self._item_seconds > self.deadline:  # a job that starts at once is always taken
            raise Overloaded(f"the server is busy: a new request would wait about {wait:.0f} s for the model "
                             f"and miss limits.deadline ({self.deadline:g} s); retry later", self.retry_after())

    def expected_wait(self, free: int | None = None) -> float:
        """Seconds a job admitted now would wait for a model thread: the jobs beyond those running, each taking
        the model's recent time per item, shared by the threads that are not stuck."""
        free = free if free is not None else max(1, self.concurrency - len(self.stuck()))
        return max(0, self.jobs + 1 - free) * self._item_seconds / free

    def hold(self, size: int) -> None:
        """The current job holds `size` more bytes (a decoded image) until it ends."""
        if (ticket := _ticket.get()) is not None:
            ticket.held += size
            self.held += size

    async def call(self, executor: Executor, function: Callable[..., T], *args: Any, items: int = 1,
                   small: bool = False) -> T:
        """`function(*args)` on `executor` in the caller's context (its deadline, its request's timings),
        timed while it runs (a queued call that is cancelled never runs). `small`: a call on one small item."""
        token = object()
        context = contextvars.copy_context()

        def timed() -> T:
            start = self._calls[token] = time.monotonic()
            try:
                return context.run(function, *args)
            finally:
                del self._calls[token]
                self._timed(time.monotonic() - start, items, small)

        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, timed)
        finally:
            self.in_flight -= 1

    def inline(self, below: float) -> bool:
        """Whether a model call on one small item may run right here, on the event loop: no call is on a thread
        (so never two at once), and the last calls on small items took under `below` seconds (median)."""
        return (not self.in_flight and len(self._small) == SMALL_CALLS
                and statistics.median(self._small) < below)

    def run_inline(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` here (a small item, see `inline`), timed."""
        start = time.monotonic()
        try:
            return function(*args)
        finally:
            self._timed(time.monotonic() - start, 1, True)

    def _timed(self, seconds: float, items: int, small: bool) -> None:
        if small:
            self._small.append(seconds)
        self.observe(seconds / items)

    def observe(self, item_seconds: float) -> None:
        """A model call took `item_seconds` per item (also for calls that do not run on threads); a hung call
        counts as one that took the deadline."""
        item_seconds = min(item_seconds, self.deadline)
        average = self._item_seconds
        self._item_seconds = item_seconds if not average else 0.8 * average + 0.2 * item_seconds

    def stuck(self) -> list[float]:
        """Start times of the model calls running past the deadline (their requests have given up)."""
        limit = time.monotonic() - self.deadline
        return [start for start in list(self._calls.values()) if start < limit]

    def oldest_call(self) -> float | None:
        return min(list(self._calls.values()), default=None)

    @property
    def degraded(self) -> bool:
        """Every model thread is held by a stuck call."""
        return len(self.stuck()) >= self.concurrency

    def retry_after(self) -> int:
        """Seconds until a new job would likely fit (a job's time, or until the queue's wait fits the deadline
        again), at least 1, at most 60."""
        seconds = max(self._item_seconds, self.expected_wait() + self._item_seconds - self.deadline)
        return max(1, min(math.ceil(seconds), 60))


# --- the job's deadline, cooperatively ---------------------------------------------------------------------------

_deadline: ContextVar[float | None] = ContextVar("bridge_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """The work done inside the block (and on the threads it hands work to, which copy its context) stops at
    `check_deadline()` once `seconds` have passed."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The current job's deadline (`time.monotonic()` seconds), if any."""
    return _deadline.get()


@contextmanager
def until(when: float | None) -> Iterator[None]:
    """Work on behalf of several jobs (a batch) runs until `when`, the latest of their deadlines."""
    token = _deadline.set(when)
    try:
        yield
    finally:
        _deadline.reset(token)


def check_deadline() -> None:
    """Raise `DeadlineExceeded` when the current job's deadline has passed: its caller has been answered 504,
    so whatever is left of its work is thrown away."""
    when = _deadline.get()
    if when is not None and time.monotonic() > when:
        raise DeadlineExceeded("the job ran past limits.deadline; its work was stopped")
