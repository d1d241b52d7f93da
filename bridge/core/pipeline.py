"""The one answer path: run a job, then write each platform's form of its result.

Every caller goes through `answer` (or `answers`, for several forms of one result): the platforms' routes,
Ango's plugin runs (interactive and batch), the playground, and `bridge prelabel` with its exporters. So in
one place: the job's parameters resolved once, the job admitted and run under the deadline, the writing done
under the same deadline (off the event loop unless the answer is small), its work stopped between writers
and predictions once the deadline has passed, and what each form loses of the result logged once per class
(`bridge.core.conversions.losses`: the wording `bridge check` uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridge.core.admission import check_deadline
from bridge.core.conversions import Table, carried, losses
from bridge.core.outputs import warn_once
from bridge.core.service import Job, Result, Service


@dataclass(frozen=True)
class Writer:
    """One form of a job's result: a platform's answer, an import file's entry. `table` declares what the form
    loses (None: nothing, it is not a platform's form)."""

    platform: str
    table: Table | None
    write: Callable[[Result], Any]
    """Pure and thread-safe: it runs on a worker thread."""


async def answer(service: Service, job: Job, writer: Writer) -> Any:
    """Run `job` and write `writer`'s form of its result."""
    (written,) = await answers(service, job, [writer])
    return written


async def answers(service: Service, job: Job, writers: Sequence[Writer]) -> list[Any]:
    """Run `job` once and write each writer's form of its result, in order. A job past its deadline stops
    between writers, and between the predictions a writer converts one by one."""

    def write(result: Result) -> list[Any]:
        rows = carried(service.spec, result.predictions)
        tolerance = service.manifest.geometry.simplify_tolerance
        for writer in writers:
            if writer.table is not None:
                for line in losses(writer.table, service.spec, rows, tolerance):
                    warn_once(writer.platform, "", line)
        paced = replace(result, predictions=Paced(result.predictions))
        written = []
        for writer in writers:
            check_deadline()
            written.append(writer.write(paced))
        return written

    return await service.run(job, then=write)


class Paced(list):
    """A result's predictions that check the job's deadline before handing out each one: a writer converting
    them in a loop (a mask traced, an area rasterised) stops once its job has been answered 504."""

    def __iter__(self) -> Iterator[Any]:
        for prediction in super().__iter__():
            check_deadline()
            yield prediction
