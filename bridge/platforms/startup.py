"""Starting a service: the one start-up path of every mode (`bridge serve` and its workers and reloads, the
Ray ingress, `bridge ango`, `bridge prelabel`, `bridge labelbox-manifest`).

The model is built once (`bridge.core.loading`, handed the installed adapters for a remote model), off the
event loop; what each served platform loses of it is logged; then the service starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from bridge.core.loading import build_model
from bridge.core.manifest import Manifest
from bridge.core.metrics import model_loading, prepare_multiprocess
from bridge.core.model import Model
from bridge.core.service import Service
from bridge.platforms.registry import Platforms

log = logging.getLogger("bridge")
T = TypeVar("T")


async def start_service(manifest: Manifest, platforms: Platforms,
                        load_model: Callable[[], Model] | None = None) -> Service:
    """Build the model once, off the event loop, say what each platform loses of it, and start the service.
    `load_model` replaces the manifest's model (the Ray ingress's stand-in for its model deployment)."""
    prepare_multiprocess()
    with model_loading(manifest.name, manifest.version):
        model = await _in_daemon_thread(load_model or functools.partial(build_model, manifest, platforms.adapters))
    for name, (adapter, section) in platforms.served.items():
        for warning in adapter.check(model.spec, section, manifest):
            log.warning("%s: %s", name, warning)
    service = Service(manifest, model)
    if platforms.served:
        log.info("serving %s (%d classes) on %s", manifest.name, len(model.spec.classes), ", ".join(platforms.served))
    else:  # bridge prelabel, or a manifest without `platforms` (which `bridge check` points out)
        log.info("loaded %s (%d classes)", manifest.name, len(model.spec.classes))
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
