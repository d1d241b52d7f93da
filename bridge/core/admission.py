"""Admission control: a bounded queue in front of the model, and the knowledge of which model calls are stuck.

A process takes at most `limits.concurrency + limits.max_queue` jobs at once; the next one answers 503 with a
`Retry-After` at once instead of waiting its way to a 504. A model call on a thread cannot be interrupted:
one that runs past `limits.deadline` has lost its request (which answered 504) but still holds its thread.
Such calls count against the bound too, so hung calls turn the process away from new work instead of
letting every request wait for a thread that never comes; when all `concurrency` threads are stuck,
`/readyz` answers "degraded" (503), and under `bridge serve --workers` the supervisor replaces the worker
once its oldest call passes `limits.hard_limit`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any, TypeVar

from bridge.core.errors import Overloaded

T = TypeVar("T")


class Admission:
    """Counts the jobs in a process and times its model calls."""

    def __init__(self, concurrency: int, max_queue: int, deadline: float) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + max_queue
        self.deadline = deadline
        self.jobs = 0
        self._calls: dict[object, float] = {}  # model calls running on threads -> start (monotonic)
        self._job_seconds = 0.0  # moving average of a job's duration, for Retry-After

    @contextmanager
    def job(self) -> Iterator[None]:
        """Admit one job for the duration of the block, or raise `Overloaded` (503)."""
        stuck = len(self.stuck())
        if stuck >= self.concurrency:
            raise Overloaded(f"the model is stuck: its {stuck} running call(s) passed limits.deadline; "
                             "retry later", self.retry_after())
        if self.jobs + stuck >= self.capacity:
            raise Overloaded(f"the server is busy: {self.jobs} requests in progress or waiting "
                             "(limits.concurrency + limits.max_queue); retry later", self.retry_after())
        self.jobs += 1
        start = time.monotonic()
        try:
            yield
        finally:
            self.jobs -= 1
            elapsed = time.monotonic() - start
            self._job_seconds = elapsed if not self._job_seconds else 0.8 * self._job_seconds + 0.2 * elapsed

    async def call(self, executor: Executor, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on `executor`, timed while it runs (a queued call that is cancelled never runs)."""
        token = object()

        def timed() -> T:
            self._calls[token] = time.monotonic()
            try:
                return function(*args)
            finally:
                del self._calls[token]

        return await asyncio.get_running_loop().run_in_executor(executor, timed)

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
        """Seconds until a slot is likely free: the queue's length times a job's usual duration."""
        seconds = self._job_seconds * max(self.jobs, 1) / self.concurrency
        return max(1, min(math.ceil(seconds), 60))
