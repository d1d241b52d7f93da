"""`bridge serve --workers N`: N worker processes, each loading the model once, watched by a supervisor.

Each worker runs `bridge.serving.server.run` with its own SO_REUSEPORT listening socket on the same port, so the
kernel spreads connections over the workers that have loaded their model. The supervisor (this process,
which loads no model) starts a new worker when one dies, and replaces one that is stuck: its event loop
has not ticked, or its oldest model call has run, for longer than `limits.hard_limit`. A stuck worker keeps
its socket (answering 503) until its successor serves, then gets SIGTERM (its other requests have
`limits.shutdown_grace` to finish), then SIGKILL. SIGTERM or SIGINT to the
supervisor stops every worker the same way. A worker that dies before it ever served is a broken start-up
(the log says why), and the supervisor then stops rather than restarting it for ever. The supervisor also
tells each worker its share of the connections they hold between them (`WorkerStatus`), so that connections
pinned to one worker (keep-alive clients after a restart, or an uneven hash) are spread again.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import multiprocess

from bridge.core.logs import configure_logging
from bridge.core.manifest import load_manifest
from bridge.core.metrics import MULTIPROC_DIR
from bridge.serving.server import WorkerStatus, listening_socket, run

log = logging.getLogger("bridge")

POLL = 0.2  # seconds between the supervisor's looks at its workers
STARTUP_LIMIT = 120.0  # seconds a stuck worker waits for its successor to serve before it is stopped anyway


def _worker_main(manifest_path: str, host: str, port: int, log_level: str, log_format: str, playground: bool,
                 status: WorkerStatus) -> None:
    """A worker process: load the manifest and serve it on a socket of its own; exit 2 if the model fails."""
    configure_logging(log_level, log_format)
    if run(load_manifest(manifest_path), host, port, log_level=log_level, playground=playground,
           reuse_port=True, status=status):
        sys.exit(2)


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    status: WorkerStatus
    started: float
    stopping_since: float | None = None
    successor: Worker | None = None


class Supervisor:
    def __init__(self, manifest_path: Path, host: str, port: int, workers: int, log_level: str = "info",
                 log_format: str = "text", playground: bool = False) -> None:
        self.manifest_path = str(manifest_path)
        self.manifest = load_manifest(manifest_path)
        self.host, self.port, self.count = host, port, workers
        self.worker_args = (log_level, log_format, playground)
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Worker | None] = [None] * workers
        self.retiring: list[Worker] = []
        self.stop = False

    def run(self) -> int:
        """Start the workers and watch them until SIGTERM/SIGINT; 0, or 2 when the port is busy or a worker's
        model fails to load."""
        try:  # the port is free: fail here if not, rather than in every worker
            listening_socket(self.host, self.port, reuse_port=False).close()
        except OSError as error:
            log.error("cannot listen on %s:%d: %s", self.host, self.port, error.strerror)
            return 2
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.count):
            self._start(index)
        log.info("supervising %d workers on http://%s:%d", self.count, self.host, self.port)
        code = 0
        while not self.stop:
            time.sleep(POLL)
            if self.stop or (code := self._watch()):
                break
        self._stop_all()
        return code

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop = True

    def _start(self, index: int) -> None:
        status = WorkerStatus(self.context.Array("d", WorkerStatus.SIZE, lock=False))  # one per process: a retiring
        process = self.context.Process(                                  # worker keeps writing its own
            target=_worker_main, name=f"bridge-worker-{index}",
            args=(self.manifest_path, self.host, self.port, *self.worker_args, status))
        process.start()
        self.slots[index] = Worker(process, status, time.monotonic())

    def _watch(self) -> int:
        now = time.monotonic()
        limits = self.manifest.limits
        for index, worker in enumerate(self.slots):
            heartbeat, oldest_call = worker.status.read()
            if not worker.process.is_alive():
                if heartbeat == 0.0 and worker.process.exitcode > 0:  # not a signal: its model failed to load
                    log.error("worker %d (pid %d) exited with code %s before its model loaded; stopping",
                              index, worker.process.pid, worker.process.exitcode)
                    return 2
                log.warning("worker %d (pid %d) exited with code %s; starting another",
                            index, worker.process.pid, worker.process.exitcode)
                self._reap(worker)
                self._start(index)
            elif heartbeat and now - heartbeat > limits.hard_limit:
                log.error("worker %d (pid %d): its event loop has not run for %.0f s (limits.hard_limit); "
                          "replacing it", index, worker.process.pid, now - heartbeat)
                self._retire(worker, index)
            elif oldest_call and now - oldest_call > limits.hard_limit:
                log.error("worker %d (pid %d): a model call has run for %.0f s (limits.hard_limit); "
                          "replacing it", index, worker.process.pid, now - oldest_call)
                self._retire(worker, index)
        for worker in list(self.retiring):
            if not worker.process.is_alive():
                self._reap(worker)
                self.retiring.remove(worker)
            elif worker.stopping_since is None:
                successor = worker.successor
                if (successor.status.read()[0] or not successor.process.is_alive()
                        or now - successor.started > STARTUP_LIMIT):
                    worker.process.terminate()
                    worker.stopping_since = now
            elif now - worker.stopping_since > limits.shutdown_grace + 5:
                worker.process.kill()
        self._share()
        return 0

    def _share(self) -> None:
        """Each serving worker's share of their connections, so that one holding more closes some after their
        answer (`BridgeHTTP`): keep-alive clients pinned to a survivor come back spread over its replacement
        too. 0 (no share) while fewer than two serve."""
        serving = [w for w in self.slots if w is not None and w.status.read()[0] and w.process.is_alive()]
        total = sum(w.status.connections() for w in serving)
        share = math.ceil(total / len(serving)) if len(serving) > 1 else 0
        for worker in serving:
            worker.status.set_share(share)

    def _retire(self, worker: Worker, index: int) -> None:
        """Start its successor now; SIGTERM the stuck worker once the successor serves (until then it keeps
        the port, answering 503, so that the port never goes without a listener), SIGKILL after the grace."""
        self._start(index)
        worker.successor = self.slots[index]
        self.retiring.append(worker)

    @staticmethod
    def _reap(worker: Worker) -> None:
        """Join a dead worker; in Prometheus' multiprocess mode, drop its live gauges from the sums."""
        worker.process.join()
        if MULTIPROC_DIR:
            multiprocess.mark_process_dead(worker.process.pid)

    def _stop_all(self) -> None:
        workers = [w for w in self.slots if w is not None] + self.retiring
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + self.manifest.limits.shutdown_grace + 5
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker pid %d did not stop in time; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.join(5)
        log.info("all workers stopped")


def serve(manifest_path: Path, host: str, port: int, workers: int, log_level: str = "info",
          log_format: str = "text", playground: bool = False) -> int:
    return Supervisor(manifest_path, host, port, workers, log_level, log_format, playground).run()
