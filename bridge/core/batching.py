"""Cross-request batching: single predictions that arrive close together go to `predict_batch` as one batch.

A GPU model answers a batch of 8 images in little more than the time of one. With `limits.batch_wait` set,
a request waits at most that long for others to join it, and a batch leaves as soon as it holds
`limits.batch_size` items. A request that gives up (its deadline passed) is left out of the batch if it has
not left yet, and its result is thrown away if it has. An error of the batch is the error of every request
in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.core.admission import current_deadline, until
from bridge.core.metrics import observe_batch
from bridge.core.model import Context
from bridge.core.outputs import Finish
from bridge.core.predictions import Prediction

BatchPredict = Callable[[list[Any], list[Context], list[Finish]], Awaitable[list[list[Prediction]]]]


class Batcher:
    """Collects single predictions for up to `wait` seconds or `size` items, then runs them as one batch."""

    def __init__(self, predict: BatchPredict, size: int, wait: float) -> None:
        self._predict = predict
        self.size = size
        self.wait = wait
        self._pending: list[tuple[Any, Context, Finish, float | None, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task] = set()

    async def predict(self, item: Any, context: Context, how: Finish = Finish()) -> list[Prediction]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, context, how, current_deadline(), future))
        if len(self._pending) >= self.size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [entry for entry in self._pending if not entry[-1].done()]
        self._pending = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)  # keep a reference until it is done
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Any, Context, Finish, float | None, asyncio.Future]]) -> None:
        items, contexts, finishes, deadlines, futures = zip(*batch)
        observe_batch("requests", len(items))
        try:
            with until(None if None in deadlines else max(deadlines)):  # the batch works for its last job
                results = await self._predict(list(items), list(contexts), list(finishes))
        except Exception as error:
            for future in futures:
                if not future.done():  # done: its request gave up
                    future.set_exception(error)
            return
        for future, result in zip(futures, results):
            if not future.done():
                future.set_result(result)
