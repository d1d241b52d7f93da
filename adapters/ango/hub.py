"""`bridge ango`: the SDK's ModelPlugin over its Socket.IO connector, connected to the Ango hub for good.

`serve` imports `imerit_ango.plugins` with `CONNECTOR=WS` (the SDK reads it once), so it runs in a process of
its own (`bridge ango`); importing this module does nothing. The SDK's own connection code ends the process
when the hub goes away:
`on_disconnect` makes a new client through `_connect_ws`, which calls `os._exit(1)` if the hub is not back
at once, and the 60 s `heartbeat` calls `os._exit(1)` when it cannot be sent. `HubPlugin` replaces only that
(one connection at a time, re-made with exponential backoff; no heartbeat while the hub is away) and keeps
the SDK's message handling: `on_plugin`, `_handle_workflow`, `_run_workflow`, the run logger. An answer that
is ready while the hub is away is held (`answers_kept`, `answers_max_age`) and delivered on reconnection, or
logged as lost at ERROR with its session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from adapters.ango import adapter
from adapters.ango.batch import batch_plugin
from adapters.ango.plugin import model_plugin, plugin_class, sdk_plugins
from adapters.ango.section import AngoSection
from bridge.core.manifest import Manifest
from bridge.platforms.registry import Platforms, discover
from bridge.platforms.startup import start_service

log = logging.getLogger("bridge.ango")

NAMESPACE = "/plugin"


def hub_plugin_class(timeout: float) -> type:
    """The SDK's ModelPlugin (Socket.IO) with a connection that outlives the hub's restarts."""
    import socketio

    class HubPlugin(plugin_class(sdk_plugins("WS"), "WS", timeout)):
        closing = False
        section = AngoSection()

        def __init__(self, *args: Any, **keys: Any) -> None:
            super().__init__(*args, **keys)
            self.held: deque[tuple[float, dict[str, Any]]] = deque()
            self.holding = threading.Lock()

        def emit(self, event: str, data: Any = None, namespace: str | None = None, callback: Any = None) -> None:
            """An answer the hub cannot take now is held for the reconnection."""
            try:
                super().emit(event, data, namespace=namespace, callback=callback)
            except socketio.exceptions.SocketIOError:
                if event != "response":
                    raise
                self.hold(data)

        def hold(self, answer: dict[str, Any]) -> None:
            with self.holding:
                if len(self.held) >= self.section.answers_kept:
                    _, lost = self.held.popleft()
                    log.error("lost the answer of run %s: %d answers already wait for the hub (answers_kept)",
                              lost.get("session", ""), self.section.answers_kept)
                self.held.append((time.monotonic(), answer))
            log.warning("held the answer of run %s until the hub is back", answer.get("session", ""))

        def deliver_held(self) -> None:
            """On reconnection: the held answers, oldest first; those past `answers_max_age` are lost."""
            while True:
                with self.holding:
                    if not self.held:
                        return
                    since, answer = self.held.popleft()
                session, age = answer.get("session", ""), time.monotonic() - since
                if age > self.section.answers_max_age:
                    log.error("lost the answer of run %s: it waited %.0f s for the hub (answers_max_age)", session,
                              age)
                    continue
                try:
                    super().emit("response", answer)
                except socketio.exceptions.SocketIOError:
                    with self.holding:
                        self.held.appendleft((since, answer))
                    return
                log.warning("delivered the answer of run %s, held while the hub was away", session)

        def connect_forever(self, section: AngoSection) -> None:
            """Connect to the section's hub and stay connected: after a drop, retry with exponential backoff."""
            self.section = section
            for job in self.scheduler.get_jobs():
                job.reschedule("interval", seconds=section.heartbeat_interval)
            url, connections, failures = section.hub_url, 0, 0

            def backoff() -> float:
                return min(section.reconnect_delay * 2 ** (failures - 1), section.reconnect_max_delay)

            while not self.closing:
                client = socketio.Client(reconnection=False)
                client.register_namespace(self)
                try:
                    client.connect(url, namespaces=[NAMESPACE], transports=["websocket"], wait_timeout=10)
                except socketio.exceptions.ConnectionError as error:
                    failures += 1
                    log.warning("cannot reach the Ango hub at %s (%s); retrying in %.1f s", url, error,
                                backoff())
                    time.sleep(backoff())
                    continue
                log.log(logging.WARNING if connections else logging.INFO, "%s the Ango hub at %s as plugin %s",
                        "reconnected to" if connections else "connected to", url, self.id)
                connections, since = connections + 1, time.monotonic()
                self.deliver_held()
                client.wait()
                # a hub that drops the plugin at once (a refused secret, say) is not retried in a tight loop
                failures = 0 if time.monotonic() - since > section.reconnect_max_delay else failures + 1
                if failures:
                    time.sleep(backoff())

        def on_disconnect(self, reason: str | None = None) -> None:
            """Instead of the SDK's reconnection, which exits on failure: `connect_forever` reconnects."""
            if not self.closing:
                log.warning("lost the connection to the Ango hub (%s); reconnecting", reason or "disconnected")

        def heartbeat(self) -> None:
            """The SDK's heartbeat exits the process when it cannot be sent; here it waits for the hub."""
            try:
                self.emit("heartbeat", {"id": self.id, "secret": self.secret})
            except Exception as error:
                log.info("no heartbeat while the hub is away (%s)", error or type(error).__name__)

        def on_plugin(self, data: dict[str, Any]) -> None:
            """The SDK's handling. Out of it, an exception would only print a traceback from a Socket.IO
            thread (the SDK raises after reporting a failed run to the hub): one log line instead."""
            try:
                super().on_plugin(data)
            except Exception as error:
                log.info("run %s ended with an error: %s", data.get("session", ""), error)

        def close(self) -> None:
            self.closing = True
            self.scheduler.shutdown(wait=False)
            if self.client is not None and self.client.connected:
                self.client.disconnect()

    return HubPlugin


def serve(manifest: Manifest, section: AngoSection, batch: bool = False) -> int:
    """Run the service on an event loop in a background thread and the plugin on this one, until Ctrl-C;
    `batch`: as a Batch Model plugin (`adapters.ango.batch`)."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # the SDK's heartbeat job: 2 lines a beat
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="ango-service", daemon=True).start()
    starting = start_service(manifest, Platforms(discover(), {"ango": (adapter, section)}))
    service = asyncio.run_coroutine_threadsafe(starting, loop).result()
    plugin_cls = hub_plugin_class(manifest.limits.fetch_timeout)
    if batch:
        plugin = batch_plugin(plugin_cls, adapter, service, section, loop)
    else:
        plugin = model_plugin(plugin_cls, adapter, service, section, loop)
    try:
        plugin.connect_forever(section)
    except KeyboardInterrupt:
        log.warning("stopping the Ango plugin")
    finally:
        plugin.close()
        asyncio.run_coroutine_threadsafe(service.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
    return 0
