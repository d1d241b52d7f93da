"""How `bridge serve` runs an app under uvicorn: one start-up path for one process and for each `--workers` worker.

What it adds to uvicorn's defaults, and why:

- httptools and uvloop (from `uvicorn[standard]`): HTTP parsing in C, a faster event loop;
- TCP_NODELAY on every accepted connection. asyncio only sets it on sockets whose `proto` is TCP, and a
  listening socket made with `socket.socket(AF_INET)` (as uvicorn's `--workers` mode makes it, uvicorn issue
  #3149) has `proto` 0, so its connections answered small requests after Nagle's 40 ms delay;
- bounded request reads (`limits.read_timeout`, `limits.min_upload_rate`): a request whose headers or body
  arrive too slowly, even a byte at a time, is cut, where uvicorn would wait for ever; and at most
  `limits.max_connections` connections, past which a new one closes the one that has waited longest for its
  client, so slow clients can take neither every file descriptor nor the next caller's turn (`BridgeHTTP`);
- no access log (one line per request is the app's own business), and a shutdown grace period
  (`limits.shutdown_grace`) after which the process ends even if a model call still hangs in its thread;
- `--workers` workers each bind a socket of their own with SO_REUSEPORT, which listens (and so joins the
  kernel's group for the port) only once the worker's model is loaded: the kernel spreads connections over
  the workers by their addresses (a shared socket lets whichever worker wakes first take most keep-alive
  connections), and a worker still loading, or restarted after a crash, gets none until it serves; then a
  worker over its share of the connections closes some after their answer, so that they come back spread
  over all. One process listens at once and answers 503 until its model is loaded.
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
    """uvicorn's configuration, carrying the manifest's connection limits (and a worker's status, shared with
    its supervisor) to `BridgeHTTP` (a class of its module, so that the reloader can hand it to its worker
    processes)."""

    def __init__(self, app: Any, limits: Limits, status: WorkerStatus | None = None, **options: Any) -> None:
        super().__init__(app, **options)
        self.read_timeout = limits.read_timeout
        self.min_upload_rate = limits.min_upload_rate
        self.max_request_bytes = limits.max_request_bytes
        self.max_connections = limits.max_connections
        self.status = status


CLOSE = (b"connection", b"close")


class BridgeHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TCP_NODELAY, bounded request reads, room for new connections, and
    connections handed back to the kernel when this worker holds more than its share.

    - A request's headers must arrive within `read_timeout` of its first byte, and its body within
      `read_timeout` + its length / `min_upload_rate`, with no pause of `read_timeout` on the way: a client
      that sends a byte now and then is cut like one that sends nothing.
    - At `max_connections`, a new connection closes the one that has waited longest for its client (idle
      between requests, or still sending one); only when every connection is busy with a request is the new
      one refused. So slow clients cannot lock out the next caller, `/healthz` included.
    - Under `--workers`, a worker holding more connections than its share (`WorkerStatus`) answers its next
      request with `Connection: close`: the client reconnects, and the kernel may give it to another worker
      (a replaced worker gets its share of keep-alive clients back within a few requests).
    """

    _timer: asyncio.TimerHandle | None = None
    _due: float | None = None  # when the request being read must be complete (None: not reading one)
    _waiting_since: float | None = None  # since when the connection waits for its client (None: busy)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.config.max_connections and not self._make_room():
            log.warning("refused a connection: %d open, each busy with a request (limits.max_connections)",
                        len(self.connections))
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._waiting_since = time.monotonic()  # not the loop's clock, which one loop iteration shares
        self._due = self.loop.time() + self.config.read_timeout
        self._arm()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for its client; False when all are busy."""
        waiting = [c for c in self.connections if isinstance(c, BridgeHTTP) and c._waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since)
        log.info("%s: closed after %.0f s waiting for its client, to make room for a new connection "
                 "(limits.max_connections)", oldest._who(), time.monotonic() - oldest._waiting_since)
        oldest.transport.abort()
        oldest.connection_lost(None)  # abort() reports it later; the room is needed now
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._due is not None:
            self._arm()

    def on_message_begin(self) -> None:
        if self._due is None:  # a keep-alive connection's next request
            self._due = self.loop.time() + self.config.read_timeout
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        length = self.config.max_request_bytes  # chunked: as long as it may be
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit():
                length = min(int(value), length)
        self._due = self.loop.time() + self.config.read_timeout + length / self.config.min_upload_rate
        status = self.config.status
        close = status is not None and 0 < status.share() < len(self.connections)
        if close:  # answer with `Connection: close`, then close: uvicorn 0.24 does it for a request that asks
            self.headers.append(CLOSE)
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = OneSend(self.transport)
            if close:
                self.cycle.keep_alive = False  # later uvicorns, from the request's cycle

    def on_message_complete(self) -> None:
        self._due = self._waiting_since = None
        if self._timer is not None:
            self._timer.cancel()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._due is None:  # not already reading the next request
            self._waiting_since = time.monotonic()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._waiting_since = self._due = None
        if self.transport is not None and self in self.connections:  # not refused, not closed for room
            super().connection_lost(exc)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        when = min(self.loop.time() + self.config.read_timeout, self._due)
        self._timer = self.loop.call_at(when, self._read_timed_out)

    def _read_timed_out(self) -> None:
        """The request being read is late, or paused for `read_timeout`: cut it (idle keep-alive is uvicorn's)."""
        if self._due is None or self.transport.is_closing():
            return
        if self.loop.time() >= self._due:
            log.info("%s did not send its request in time (limits.read_timeout, limits.min_upload_rate): "
                     "connection cut", self._who())
        else:
            log.info("%s sent nothing for %g s in the middle of a request (limits.read_timeout): connection cut",
                     self._who(), self.config.read_timeout)
        self.transport.close()

    def _who(self) -> str:
        return "%s:%d" % self.client if self.client else "a client"


class OneSend:
    """A connection's transport as one response writes to it: the head waits for the first bytes of the body,
    so that a small answer leaves in one send (one system call and one packet, not two: with TCP_NODELAY each
    write is sent at once). Everything else is the transport's."""

    __slots__ = ("transport", "head", "started")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            if len(data) < 65536:
                data = head + data
            else:
                self.transport.write(head)
        elif not self.started and not data.startswith(b"HTTP/1.1 100 "):  # "100 Continue" leaves at once
            self.started = True
            self.head = data
            return
        self.transport.write(data)

    def close(self) -> None:
        if self.head is not None:
            self.transport.write(self.head)
            self.head = None
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class WorkerStatus:
    """Shared memory through which a `--workers` worker and its supervisor talk.

    Four doubles: the last tick of the worker's event loop (`time.monotonic()` seconds, one clock for every
    process on the machine; 0 until it serves), the start of its oldest model call still running (0: none),
    the connections it holds (the worker writes them), and its share of all the workers' connections (the
    supervisor writes it; 0: no share, one worker serves).
    """

    SIZE = 4

    def __init__(self, array: Any) -> None:
        self.array = array

    def write(self, heartbeat: float, oldest_call: float, connections: int) -> None:
        self.array[0], self.array[1], self.array[2] = heartbeat, oldest_call, connections

    def read(self) -> tuple[float, float]:
        return self.array[0], self.array[1]

    def connections(self) -> int:
        return int(self.array[2])

    def share(self) -> int:
        return int(self.array[3])

    def set_share(self, share: int) -> None:
        self.array[3] = share


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
            self.status.write(time.monotonic(), service.admission.oldest_call() or 0.0,
                              len(self.server_state.connections))
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
                   status: WorkerStatus | None = None, **options: Any) -> BridgeConfig:
    """The uvicorn configuration of every `bridge serve` process, one process, a worker or a reloaded one
    (`options`: the reloader's). Logging is the command's (`bridge.core.logs.configure_logging`)."""
    limits = manifest.limits
    return BridgeConfig(app, limits, status, host=host, port=port, http=BridgeHTTP, loop="uvloop", ws="none",
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
    config = uvicorn_config(app, manifest, host, port, log_level, status)
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
