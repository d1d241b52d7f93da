"""Admission by expected wait, refused early, bounded by memory; and a job's deadline through its conversion.

Real servers on loopback ports (the app in this process, so a test can look at its threads), real models
(`tests.service_models`). Counts and statuses only: nothing here times the server.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from bridge.serving.app import create_app
from tests.conftest import b64, encode_image
from tests.test_serving import infer, wait_until

BIG = b64(encode_image(np.zeros((600, 600, 3), np.uint8)))


def post(base: str, image: str = BIG, timeout: float = 60, **params: Any) -> httpx.Response:
    return httpx.post(f"{base}/v7/infer", json={"image": {"base64": image}, "params": params}, timeout=timeout)


def converting(where: str, besides: frozenset[int] = frozenset()) -> frozenset[int]:
    """The threads of this process (other than `besides`: another test's) running code of `where` (a file
    name) right now."""
    return frozenset(ident for ident, frame in sys._current_frames().items() if ident not in besides
                     and any(where in f.f_code.co_filename for f in _stack(frame)))


def _stack(frame: Any) -> list[Any]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


# --- admission ------------------------------------------------------------------------------------------------


def test_a_burst_that_fits_the_deadline_queues_instead_of_being_refused(serve_app, make_manifest):
    """32 requests at once to one process with `concurrency: 1` (the defaults otherwise): all answered, none
    refused, where the old fixed queue of 16 refused half."""
    app = create_app(make_manifest(model={"factory": "tests.service_models:Gate"}))
    base = serve_app(app)
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: infer(base, hold=0.01).status_code, range(32)))
    assert statuses == [200] * 32


def test_beyond_what_the_deadline_allows_requests_are_refused_at_once_with_retry_after(serve_app, make_manifest):
    """A model of ~0.5 s per call and a 2 s deadline: a burst of 12 gets a few answers and 503s for the rest,
    never a 504 (nobody was admitted to wait past the deadline)."""
    app = create_app(make_manifest(model={"factory": "tests.service_models:Gate"},
                                   limits={"deadline": 2, "concurrency": 1}))
    base = serve_app(app)
    assert infer(base, hold=0.5).status_code == 200  # the model's time, learnt
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: infer(base, hold=0.5), range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert 504 not in statuses
    assert 200 in statuses and 503 in statuses
    refused = [a for a in answers if a.status_code == 503]
    assert all(int(a.headers["retry-after"]) >= 1 and a.headers["connection"] == "close" for a in refused)
    assert all("miss limits.deadline" in a.json()["error"] for a in refused)


def test_a_refusal_comes_before_the_body_is_read(serve_app, make_manifest):
    """Past the hard cap, a request is answered 503 from its headers alone: the body it announced is never
    waited for."""
    app = create_app(make_manifest(model={"factory": "tests.service_models:Gate"},
                                   limits={"concurrency": 1, "max_queue": 0}))
    base = serve_app(app)
    model = app.state.service.model
    holder = threading.Thread(target=infer, args=(base,))
    holder.start()
    try:
        wait_until(model.started.is_set, 10, "the model started")
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v7/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 503") and b"retry-after" in head.lower()
    finally:
        model.release.set()
        holder.join(30)


def test_past_the_memory_bound_new_requests_are_refused(serve_app, make_manifest):
    """A job holding a 600x600 image (1 MiB decoded) and `max_held_bytes` of 1 MiB: the next is refused."""
    app = create_app(make_manifest(model={"factory": "tests.service_models:Gate"},
                                   limits={"concurrency": 1, "max_held_bytes": 2**20}))
    base = serve_app(app)
    model = app.state.service.model
    holder = threading.Thread(target=post, args=(base,))
    holder.start()
    try:
        wait_until(model.started.is_set, 10, "the model started")
        refused = post(base)
        assert refused.status_code == 503 and "limits.max_held_bytes" in refused.json()["error"]
    finally:
        model.release.set()
        holder.join(30)
    assert app.state.service.admission.held == 0
    assert post(base, hold=0).status_code == 200


# --- the deadline holds through conversion ----------------------------------------------------------------------


def _given_up(serve_app: Callable[..., str], make_manifest: Callable[..., Any], kind: str, where: str) -> None:
    app = create_app(make_manifest(model={"factory": "tests.service_models:ManyMasks"},
                                   limits={"deadline": 3, "concurrency": 1}))
    base = serve_app(app)
    answers: list[httpx.Response] = []
    others = converting(where)
    job = threading.Thread(target=lambda: answers.append(post(base, kind=kind)))
    job.start()
    wait_until(lambda: converting(where, others), 30, "the conversion started")
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}  # served while it converts
    job.join(60)
    (answer,) = answers
    assert answer.status_code == 504 and "limits.deadline" in answer.json()["error"]
    # converting all 2,000 masks takes minutes; the work stops at the next mask instead
    wait_until(lambda: not converting(where, others), 20, "the conversion stopped")
    assert post(base, kind=kind, count=1).status_code == 200  # the model's thread is free again


def test_a_job_tracing_masks_after_predict_answers_504_at_the_deadline_and_its_work_stops(serve_app,
                                                                                         make_manifest):
    _given_up(serve_app, make_manifest, "outline", "bridge/core/outputs.py")


def test_a_job_whose_answer_is_still_being_written_at_the_deadline_stops_writing(serve_app, make_manifest):
    _given_up(serve_app, make_manifest, "area", "adapters/v7/convert.py")
