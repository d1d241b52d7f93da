"""`bridge serve` as a user runs it: real processes on loopback ports, with and without `--workers`.

Admission (503 + Retry-After beyond the queue, readiness that notices stuck model calls), workers that are
replaced when killed or stuck, half-sent requests cut after `limits.read_timeout`, a client that leaves
mid-body logged as one INFO line, and SIGTERM that ends within `limits.shutdown_grace`. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from bridge.serving.app import create_app
from tests.conftest import ROOT, b64, encode_image, free_port
from tests.test_observability import scrape, value

IMAGE = b64(encode_image(np.zeros((8, 8, 3), np.uint8)))
ENDED = (0, -signal.SIGTERM)  # uvicorn 0.29 and later end by the signal they caught, once shut down


def infer(base: str, timeout: float = 30, **params: Any) -> httpx.Response:
    return httpx.post(f"{base}/v7/infer", json={"image": {"base64": IMAGE}, "params": params}, timeout=timeout)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.05)
    return value


class Served:
    """`bridge serve MANIFEST` in a subprocess, its log in a file."""

    def __init__(self, manifest: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", str(manifest), "--port", str(self.port), *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self.ready, 60, "server ready")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"bridge serve exited:\n{self.log()}")
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> set[int]:
        """Pids of the supervisor's worker processes (not multiprocessing's resource tracker)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        found = set()
        for child in children:
            try:
                if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text():
                    found.add(int(child))
            except FileNotFoundError:
                pass
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `bridge serve` on a manifest of the given keys (V7 served, loopback URLs allowed); stopped after
    the test."""
    started: list[Served] = []

    def start(*args: str, **keys: Any) -> Served:
        keys.setdefault("name", "serving-test")
        keys.setdefault("limits", {}).setdefault("allow_private_urls", True)
        keys.setdefault("platforms", {"v7": {}})
        path = tmp_path / f"manifest-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(keys), encoding="utf-8")
        served = Served(path, tmp_path / f"server-{len(started)}.log", *args)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def half_sent_request(port: int, sent: bytes = b'{"image": ') -> socket.socket:
    """A connection that promised 1000 bytes of body and sent a few."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v7/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + sent)
    return sock


# --- admission, in one process ----------------------------------------------------------------------------------


def test_beyond_the_queue_requests_answer_503_with_retry_after(serve_app, make_manifest):
    manifest = make_manifest(model={"factory": "tests.service_models:Gate"},
                             limits={"concurrency": 1, "max_queue": 1})
    app = create_app(manifest)
    base = serve_app(app)
    model = app.state.service.model
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(infer(base)))  # holds the model
    second = threading.Thread(target=lambda: answers.append(infer(base)))  # waits in the queue
    try:
        first.start()
        wait_until(model.started.is_set, 10, "the model started")
        second.start()
        wait_until(lambda: app.state.service.admission.jobs == 2, 10, "the second request queued")
        refused = infer(base)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["status"] == "failed" and "busy" in refused.json()["error"]
    finally:
        model.release.set()
        first.join(30)
        second.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert infer(base).status_code == 200  # the queue drained: admitted again


# --- workers ------------------------------------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_requests_keep_being_answered(serve):
    served = serve("--workers", "2", model={"factory": "tests.service_models:Finder"})
    workers = wait_until(lambda: len(served.workers()) == 2 and served.workers(), 30, "two workers")
    wait_until(lambda: all(f"worker {pid} listening" in served.log() for pid in workers), 60, "both listen")
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(lambda: (w := served.workers()) and victim not in w and len(w) == 2 and w, 30,
                          "a new worker")
    assert len(replaced - workers) == 1
    for _ in range(20):  # new connections each time: both workers' sockets take them
        assert infer(served.base).status_code == 200
    assert "exited with code -9; starting another" in served.log()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_after_a_worker_is_killed_keep_alive_clients_spread_over_its_replacement(serve):
    """24 keep-alive clients, one worker killed: once the replacement listens, none is refused and the
    replacement does its share of the work (the survivor closes connections past its share after their
    answer, and they come back spread by the kernel)."""
    served = serve("--workers", "2", model={"factory": "tests.service_models:Finder"})
    workers = wait_until(lambda: len(served.workers()) == 2 and served.workers(), 30, "two workers")
    wait_until(lambda: served.log().count("serving serving-test") == 2, 60, "both models loaded")
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.post(f"{served.base}/v7/infer", json={"image": {"base64": IMAGE}})
                                    .status_code)
                except httpx.TransportError:
                    statuses.append(0)  # the killed worker's connections

    clients = [threading.Thread(target=client) for _ in range(24)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        (survivor,) = workers - {victim}
        (new,) = wait_until(lambda: (w := served.workers() - {survivor}) and victim not in w and w, 30,
                            "a new worker")
        wait_until(lambda: served.log().count("serving serving-test") == 3, 60, "its model loaded")
        time.sleep(0.5)  # it listens within a tick of loading
        before, ticks = len(statuses), (cpu_ticks(survivor), cpu_ticks(new))
        time.sleep(2.5)
        after = statuses[before:]
        used = (cpu_ticks(survivor) - ticks[0], cpu_ticks(new) - ticks[1])
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    assert len(after) > 24 and after.count(503) == 0 and set(after) == {200}, sorted(set(after))
    assert used[1] >= 0.25 * used[0], used  # capacity came back: the replacement works too


def test_a_model_fast_on_small_images_that_hangs_once_leaves_the_process_answering(serve):
    """With the shipped limits, a model that answered small images quickly and then hangs on one: the process
    keeps answering (its health check at once, the hung request with its 504 at the deadline). A model call
    run on the event loop would hold every connection of the process until the call returned."""
    served = serve(model={"factory": "tests.service_models:Gate"}, limits={"deadline": 2},
                   params={"type": "object", "properties": {"hold": {"type": "number"}}})
    for _ in range(12):  # fast calls on an 8x8 image
        assert infer(served.base, hold=0).status_code == 200
    with ThreadPoolExecutor(1) as pool:
        hung = pool.submit(infer, served.base, 60, hold=60)
        wait_until(lambda: hung.done() or value(scrape(served.base), "bridge_jobs_in_flight") >= 1, 30,
                   "the hanging call in flight")
        assert httpx.get(f"{served.base}/healthz", timeout=30).status_code == 200
        answer = hung.result(60)
    assert answer.status_code == 504 and "limits.deadline" in answer.json()["error"]


def test_a_model_call_stuck_past_the_hard_limit_gets_its_worker_replaced(serve):
    served = serve("--workers", "1", model={"factory": "tests.service_models:Gate", "params": {"limit": 120}},
                   # the checks of the stuck state run between the deadline and the hard limit: 5 s for two
                   # requests, so a loaded machine does not see the worker replaced before they are done
                   limits={"deadline": 1, "hard_limit": 6, "concurrency": 1, "shutdown_grace": 1},
                   params={"type": "object", "properties": {"hold": {"type": "number"}}})
    (stuck,) = wait_until(served.workers, 30, "a worker")
    assert infer(served.base).status_code == 504  # the model hangs past the deadline, its thread with it

    # every model thread is stuck: not ready, and new work is refused at once instead of waiting to a 504
    assert httpx.get(f"{served.base}/readyz").json()["status"] == "degraded"
    refused = infer(served.base)
    assert refused.status_code == 503 and "retry-after" in refused.headers

    wait_until(lambda: (w := served.workers()) and stuck not in w, 30, "the stuck worker replaced")
    wait_until(served.ready, 30, "the new worker ready")
    assert infer(served.base, hold=0).status_code == 200
    assert "a model call has run for" in served.log()


# --- connections: read timeout, disconnects, shutdown -----------------------------------------------------------


def test_a_body_that_stops_arriving_is_cut_after_the_read_timeout(serve):
    served = serve(model={"factory": "tests.service_models:Finder"}, limits={"read_timeout": 1})
    sock = half_sent_request(served.port)
    with sock:
        assert sock.recv(65536) == b""  # the server closed it (the socket's own timeout is 30 s)
    assert infer(served.base).status_code == 200
    wait_until(lambda: "limits.read_timeout" in served.log(), 10, "the log line")
    log = served.log()
    assert "connection cut" in log and "Traceback" not in log and " ERROR " not in log


def test_a_connection_that_sends_nothing_is_cut_too(serve):
    served = serve(model={"factory": "tests.service_models:Finder"}, limits={"read_timeout": 1})
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"POST /v7/infer HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert sock.recv(65536) == b""


def test_a_client_leaving_mid_body_is_one_info_line(serve):
    served = serve(model={"factory": "tests.service_models:Finder"})
    for _ in range(3):
        half_sent_request(served.port).close()
    wait_until(lambda: served.log().count("went away") == 3, 10, "three log lines")
    log = served.log()
    assert "Traceback" not in log and " ERROR " not in log
    assert infer(served.base).status_code == 200


def test_sigterm_ends_within_the_grace_period_while_a_client_holds_a_half_sent_request(serve):
    served = serve(model={"factory": "tests.service_models:Finder"},
                   limits={"read_timeout": 300, "shutdown_grace": 1})
    sock = half_sent_request(served.port)
    with sock:
        time.sleep(0.2)  # the request is in the app, waiting for its body
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(20) in ENDED  # 20 s bounds the test; the grace period is 1 s


def test_sigterm_ends_a_worker_whose_model_hangs(serve):
    served = serve(model={"factory": "tests.service_models:Gate", "params": {"limit": 120}},
                   limits={"deadline": 1, "shutdown_grace": 1})
    assert infer(served.base).status_code == 504  # its thread hangs on
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(20) in ENDED


def test_past_max_connections_a_new_connection_closes_the_one_waiting_longest(serve):
    served = serve(model={"factory": "tests.service_models:Finder"},
                   limits={"max_connections": 2, "read_timeout": 300})
    held = [half_sent_request(served.port) for _ in range(2)]
    try:
        assert infer(served.base).status_code == 200  # room was made for it
        assert held[0].recv(65536) == b""  # the one that had waited longest was closed
    finally:
        for sock in held:
            sock.close()
    assert "to make room for a new connection" in served.log()


def test_when_every_connection_is_busy_a_new_one_is_closed_at_once(serve):
    served = serve(model={"factory": "tests.service_models:Gate", "params": {"limit": 8}},
                   limits={"max_connections": 2, "concurrency": 2},
                   params={"type": "object", "additionalProperties": True})
    busy = [threading.Thread(target=infer, args=(served.base,)) for _ in range(2)]
    for thread in busy:
        thread.start()
    try:
        time.sleep(1)  # both requests are with the model (it holds them for 20 s)
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as extra:
            try:
                assert extra.recv(65536) == b""  # closed by the server, long before the model lets go
            except ConnectionResetError:
                pass
    finally:
        for thread in busy:
            thread.join(30)
    assert "each busy with a request (limits.max_connections)" in served.log()
    assert infer(served.base, wait=False).status_code == 200


def test_600_drip_clients_are_cut_and_a_normal_client_keeps_being_answered(serve):
    """600 connections each sending a header line every 0.5 s (under the 2 s read_timeout between bytes, which
    alone never cut them) against one process with the default 512 connections: every one is cut, and a
    normal client is answered all along, `/healthz` too."""
    served = serve(model={"factory": "tests.service_models:Finder"}, limits={"read_timeout": 2})
    drips: list[socket.socket] = []
    for _ in range(600):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", served.port))
        drips.append(sock)
    statuses: list[int] = []
    stop = threading.Event()

    def normal_client() -> None:
        while not stop.is_set():
            statuses.append(infer(served.base, timeout=20).status_code)
            statuses.append(httpx.get(f"{served.base}/healthz", timeout=20).status_code)

    client = threading.Thread(target=normal_client)
    client.start()
    cut = set()
    try:
        for tick in range(10):  # 5 s: two and a half times the read timeout
            for index, sock in enumerate(drips):
                if index in cut:
                    continue
                try:
                    sock.send(b"POST /v7/infer HTTP/1.1\r\n" if tick == 0 else b"X-Drip: %d\r\n" % tick)
                except BlockingIOError:
                    pass  # still connecting, or a full buffer: the next tick tries again
                except OSError:
                    cut.add(index)
            time.sleep(0.5)
    finally:
        stop.set()
        client.join(60)
        for sock in drips:
            sock.close()
    assert len(cut) == 600
    assert len(statuses) >= 4 and set(statuses) == {200}
    assert "did not send its request in time" in served.log()
