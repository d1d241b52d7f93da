"""How `bridge serve` runs an app under uvicorn: one start-up path for one process and for each `--workers` worker.

What it adds to uvicorn's defaults, and why:

- httptools and uvloop (from `uvicorn[standard]`): HTTP parsing in C, a faster event loop;
- TCP_NODELAY on every accepted connection. asyncio only sets it on sockets whose `proto` is TCP, and a
  listening socket made with `socket.socket(AF_INET)` (as uvicorn's `--workers` mode makes it, uvicorn issue
  #3149) has `proto` 0, so its connections answered small requests after Nagle's 40 ms delay;
- a read timeout (`limits.read_timeout`): a connection whose request stops arriving (headers or body) is
  cut, where uvicorn would wait for ever; and at most `limits.max_connections` connections, beyond which a
  new one is closed at once, so half-sent requests cannot take every file descriptor;
- no access log (one line per request is the app's own business), and a shutdown grace period
  (`limits.shutdown_grace`) after which the process ends even if a model call still hangs in its thread;
- `--workers` workers each bind a socket of their own with SO_REUSEPORT, which listens (and so joins the
  kernel's group for the port) only once the worker's model is loaded: the kernel spreads connections over
  the workers by their addresses (a shared socket lets whichever worker wakes first take most keep-alive
  connections), and a worker still loading, or restarted after a crash, gets none. One process listens at
  once and answers 503 until its model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.core.errors import UsageError
from bridge.core.manifest import Limits, Manifest
from bridge.serving.app import create_app

log = logging.getLogger("bridge")


class BridgeConfig(uvicorn.Config):
    """uvicorn's configuration, carrying the manifest's connection limits to `BridgeHTTP` (a class of its
    module, so that the reloader can hand it to its worker processes)."""

    def __init__(self, app: Any, limits: Limits, **options: Any) -> None:
        super().__init__(app, **options)
        self.read_timeout = limits.read_timeout
        self.max_connections = limits.max_connections


class BridgeHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TCP_NODELAY, a read timeout and a cap on connections."""

    _timer: asyncio.TimerHandle | None = None
    _reading = True  # a connection is opened to send a request

    @property
    def read_timeout(self) -> float:
        return self.config.read_timeout

    @property
    def max_connections(self) -> int:
        return self.config.max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            log.warning("refused a connection: %d open (limits.max_connections)", len(self.connections))
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._reading = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._reading = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:  # None: refused in connection_made
            super().connection_lost(exc)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _read_timed_out(self) -> None:
        """No byte for `read_timeout` s while a request is incomplete: cut it (idle keep-alive is uvicorn's)."""
        if self._reading and not self.transport.is_closing():
            client = "%s:%d" % self.client if self.client else "a client"
            log.info("%s sent nothing for %g s in the middle of a request (limits.read_timeout): connection cut",
                     client, self.read_timeout)
            self.transport.close()


class WorkerStatus:
    """Shared memory through which a `--workers` worker tells its supervisor it is alive and not stuck.

    Two doubles in `time.monotonic()` seconds (one clock for every process on the machine): the last tick
    of the worker's event loop (0 until it serves), and the start of its oldest model call still running
    (0: none).
    """

    def __init__(self, array: Any) -> None:
        self.array = array

    def write(self, heartbeat: float, oldest_call: float) -> None:
        self.array[0], self.array[1] = heartbeat, oldest_call

    def read(self) -> tuple[float, float]:
        return self.array[0], self.array[1]


class BridgeServer(uvicorn.Server):
    """A uvicorn server that reports its heartbeat to a supervisor, when it has one; a worker's socket
    (`deferred`) listens only once the model is loaded."""

    def __init__(self, config: uvicorn.Config, status: WorkerStatus | None = None,
                 deferred: socket.socket | None = None) -> None:
        super().__init__(config)
        self.status = status
        self.deferred = deferred

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[] if self.deferred is not None else sockets)

    async def on_tick(self, counter: int) -> bool:
        service = getattr(self.config.app.state, "service", None)  # type: ignore[union-attr]
        if service is not None and self.deferred is not None:
            await self._listen(self.deferred)
            self.deferred = None
        if self.status is not None and service is not None:  # no heartbeat until the model is loaded
            self.status.write(time.monotonic(), service.admission.oldest_call() or 0.0)
        return await super().on_tick(counter)

    async def _listen(self, sock: socket.socket) -> None:
        """What uvicorn's `startup` does with a socket it is given, later."""
        config = self.config

        def protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore
                                              app_state=self.lifespan.state, _loop=_loop)

        server = await asyncio.get_running_loop().create_server(protocol, sock=sock, backlog=config.backlog)
        self.servers.append(server)
        log.info("worker %d listening on http://%s:%d", os.getpid(), config.host, config.port)


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound TCP socket; uvicorn makes it listen when it starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """`listening_socket`, or a `UsageError` saying why the address cannot be had (a busy port)."""
    try:
        return listening_socket(host, port, reuse_port)
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port}: {os.strerror(error.errno)}") from None


def uvicorn_config(app: Any, manifest: Manifest, host: str, port: int, log_level: str = "info",
                   **options: Any) -> BridgeConfig:
    """The uvicorn configuration of every `bridge serve` process, one process, a worker or a reloaded one
    (`options`: the reloader's). Logging is the command's (`bridge.core.logs.configure_logging`)."""
    limits = manifest.limits
    return BridgeConfig(app, limits, host=host, port=port, http=BridgeHTTP, loop="uvloop", ws="none",
                        lifespan="on", log_config=None, access_log=False, log_level=log_level, timeout_keep_alive=5,
                        timeout_graceful_shutdown=int(max(1, round(limits.shutdown_grace))), **options)


def stopper(server: uvicorn.Server) -> Callable[[], None]:
    """A call that ends `server` once it has started: asked to exit during its start-up, uvicorn skips its
    shutdown, and the app's lifespan is cancelled with a traceback (a model that fails at once)."""

    def stop() -> None:
        if server.started:
            server.should_exit = True
        else:
            asyncio.get_running_loop().call_later(0.05, stop)

    return stop


def run(manifest: Manifest, host: str, port: int, *, log_level: str = "info", playground: bool = True,
        reuse_port: bool = False, status: WorkerStatus | None = None, sock: socket.socket | None = None
        ) -> str | None:
    """Serve `manifest`'s model on host:port (or on `sock`, already bound) until SIGINT/SIGTERM, then end
    within the grace period. Returns why the model failed to load (which stops the server), or None.
    A port this binds is bound before the model loads, so a busy port is reported at once (`UsageError`)."""
    app = create_app(manifest, playground=playground)
    if sock is None:
        sock = listen(host, port, reuse_port)
    config = uvicorn_config(app, manifest, host, port, log_level)
    server = BridgeServer(config, status, deferred=sock) if reuse_port else BridgeServer(config, status)
    app.state.stop = stopper(server)  # a model that fails to load ends the server
    server.run(sockets=None if reuse_port else [sock])
    if app.state.load_error:
        return app.state.load_error
    _exit_past_stuck_threads()
    return None


def _exit_past_stuck_threads() -> None:
    """A model thread that still hangs would keep the interpreter from exiting: leave without it."""
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
             and t.is_alive()]
    if stuck:
        log.warning("%d model call(s) still running at shutdown; exiting without them", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
