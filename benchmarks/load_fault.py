"""Load and faults at once: 32 clients for 60 s against `bridge serve --workers 2`; stops by itself.

    pip install -e '.[bench]'
    python benchmarks/load_fault.py [--clients 32] [--seconds 60]

The model (`Faulty` below) answers one box the size of the image with the image's mean grey as confidence,
so every answer can be checked; a request's `params.fault` makes it raise or hang (30 s, far past the
2 s deadline). The clients (asyncio + httpx, keep-alive, on loopback) send a fixed mix: valid requests by
base64 and by URL, and invalid ones: not JSON, broken base64, a bad parameter, a model that raises, a model
that hangs, an image URL slower than `fetch_timeout`. Writes benchmarks/LOAD_FAULT.md and load_fault.json:
valid requests answered correctly among those admitted (an HTTP answer, not 503), 503s with and without
Retry-After, other
statuses by kind, latency p50/p99 of valid requests, the server's RSS (supervisor + workers) at start, peak
and end, and how often a stuck worker was replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml
from PIL import Image

from bridge import Box, ClassSpec, Context, InvalidInput, ModelSpec, Prediction

ROOT = Path(__file__).resolve().parents[1]
HANG = 30.0
MIX = [  # (kind, weight)
    ("valid", 60), ("valid url", 10), ("not json", 5), ("bad base64", 5), ("bad param", 5), ("model raises", 5),
    ("model hangs", 2), ("slow url", 8),
]


class Faulty:
    """One box over the whole image, confidence = mean grey / 255; `fault` "raise" raises, "hang" hangs."""

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        fault = context.params.get("fault")
        if fault == "raise":
            raise RuntimeError("a fault, on purpose")
        if fault == "hang":
            time.sleep(HANG)
        if image.size == 0:
            raise InvalidInput("empty image")
        height, width = image.shape[:2]
        return [Prediction("thing", Box(0, 0, width, height), float(image.mean()) / 255)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def images(count: int = 8) -> list[tuple[bytes, dict]]:
    """PNGs of different sizes and greys, with the V7 result each must get."""
    out = []
    for i in range(count):
        height, width = 24 + 8 * i, 40 + 4 * i
        array = np.full((height, width, 3), 20 + 25 * i, np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        expected = {"name": "thing", "label": "thing", "confidence": float(array.mean()) / 255,
                    "bounding_box": {"x": 0.0, "y": 0.0, "w": float(width), "h": float(height)}}
        out.append((buffer.getvalue(), expected))
    return out


def upstream(files: dict[str, bytes]) -> ThreadingHTTPServer:
    """Serves /files/N, and /slow which answers after 5 s (over the manifest's 2 s fetch_timeout)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/slow":
                time.sleep(5)
                body = files["0"]
            else:
                body = files.get(self.path.rsplit("/", 1)[-1], b"")
            try:
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request_for(kind: str, rng: random.Random, pictures, media: str) -> tuple[bytes, dict | None]:
    """(body, expected V7 result or None when the request is not valid)."""
    index = rng.randrange(len(pictures))
    data, expected = pictures[index]
    encoded = base64.b64encode(data).decode()
    body: dict = {"image": {"base64": encoded}}
    if kind == "valid url":
        body = {"image": {"url": f"{media}/files/{index}"}}
    elif kind == "not json":
        return b'{"image": {"base64": ', None
    elif kind == "bad base64":
        body = {"image": {"base64": "%%%not base64%%%"}}
    elif kind == "bad param":
        body["params"] = {"fault": 12}
    elif kind == "model raises":
        body["params"] = {"fault": "raise"}
    elif kind == "model hangs":
        body["params"] = {"fault": "hang"}
    elif kind == "slow url":
        body = {"image": {"url": f"{media}/slow"}}
    return json.dumps(body).encode(), expected if kind.startswith("valid") else None


async def client(base: str, until: float, seed: int, pictures, media: str, records: list) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    async with httpx.AsyncClient(timeout=HANG + 10) as http:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            body, expected = request_for(kind, rng, pictures, media)
            start = time.monotonic()
            try:
                answer = await http.post(f"{base}/v7/infer", content=body,
                                         headers={"content-type": "application/json"})
                status, retry_after = answer.status_code, answer.headers.get("retry-after")
                correct = status == 200 and answer.json().get("results") == [expected]
            except httpx.HTTPError as error:  # no answer: refused (no worker listening) or cut
                status, retry_after, correct = type(error).__name__, None, False
                await asyncio.sleep(0.2)
            records.append({"kind": kind, "status": status, "retry_after": retry_after, "correct": correct,
                            "seconds": time.monotonic() - start})
            if status == 503:
                await asyncio.sleep(min(float(retry_after or 1), 1.0))  # a polite client backs off


def rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pictures = images()
    media_server = upstream({str(i): data for i, (data, _) in enumerate(pictures)})
    media = f"http://127.0.0.1:{media_server.server_address[1]}"
    folder = Path(tempfile.mkdtemp(prefix="bridge-load-"))
    manifest = folder / "faulty.yaml"
    limits = {"deadline": 2, "hard_limit": 6, "concurrency": 2, "max_queue": 8, "fetch_timeout": 1,
              "read_timeout": 5, "shutdown_grace": 2, "allow_private_urls": True}
    manifest.write_text(yaml.safe_dump({
        "name": "faulty", "model": {"factory": "benchmarks.load_fault:Faulty"}, "limits": limits,
        "params": {"type": "object", "properties": {"fault": {"enum": ["raise", "hang"]}}},
        "platforms": {"v7": {}}}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    command = [str(Path(sys.executable).parent / "bridge"), "serve", str(manifest), "--port", str(port),
               "--workers", str(args.workers)]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the server did not start; see {log_path}")
            time.sleep(0.3)
        time.sleep(2)  # both workers loaded
        supervisor = psutil.Process(server.pid)
        memory = [rss(supervisor)]
        records: list[dict] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                memory.append(rss(supervisor))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        until = time.monotonic() + args.seconds

        async def run_all() -> None:
            await asyncio.wait_for(
                asyncio.gather(*(client(base, until, seed, pictures, media, records) for seed in range(args.clients))),
                args.seconds + HANG + 30)

        asyncio.run(run_all())
        time.sleep(1)
        stop.set()
        sampler.join()
        memory.append(rss(supervisor))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        media_server.shutdown()
    report(args, command, records, memory, log_path.read_text(errors="replace"), limits)


def report(args, command, records, memory, log, limits) -> None:
    valid = [r for r in records if r["kind"].startswith("valid")]
    admitted = [r for r in valid if isinstance(r["status"], int) and r["status"] != 503]
    refused = [r for r in records if r["status"] == 503]
    latencies = sorted(r["seconds"] for r in valid if r["status"] == 200)
    by_kind: dict[str, Counter] = {}
    for r in records:
        by_kind.setdefault(r["kind"], Counter())[str(r["status"])] += 1
    summary = {
        "command": " ".join(["python benchmarks/load_fault.py", f"--clients {args.clients}",
                             f"--seconds {args.seconds:g}", f"--workers {args.workers}"]),
        "limits": limits,
        "requests": len(records),
        "valid": len(valid),
        "valid_admitted": len(admitted),
        "valid_admitted_correct": sum(r["correct"] for r in admitted),
        "refused_503": len(refused),
        "refused_503_with_retry_after": sum(r["retry_after"] is not None for r in refused),
        "by_kind": {kind: dict(counts) for kind, counts in by_kind.items()},
        "valid_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "valid_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "rss_mib": {"start": memory[0] / 2**20, "peak": max(memory) / 2**20, "end": memory[-1] / 2**20},
        "workers_replaced": log.count("replacing it"),
        "tracebacks_in_log": log.count("Traceback"),
    }
    (ROOT / "benchmarks/load_fault.json").write_text(json.dumps(summary, indent=1) + "\n")
    wrong = summary["valid_admitted"] - summary["valid_admitted_correct"]
    lines = [
        "# Load and faults", "",
        f"Made by `{summary['command']}` on this project's 2-CPU machine (shared with other work), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Limits: "
        + ", ".join(f"`{k}` {v}" for k, v in limits.items()) + ". Hung calls sleep "
        f"{HANG:g} s.", "",
        f"- requests: {summary['requests']}, of which valid: {summary['valid']}",
        f"- valid and admitted (an HTTP answer other than 503): {summary['valid_admitted']}; answered correctly: "
        f"{summary['valid_admitted_correct']} ({wrong} not)",
        f"- 503: {summary['refused_503']}, with Retry-After: {summary['refused_503_with_retry_after']}",
        f"- valid latency (200s): p50 {summary['valid_p50_ms']:.0f} ms, p99 {summary['valid_p99_ms']:.0f} ms",
        f"- server RSS (supervisor + workers): start {summary['rss_mib']['start']:.0f} MiB, peak "
        f"{summary['rss_mib']['peak']:.0f} MiB, end {summary['rss_mib']['end']:.0f} MiB",
        f"- stuck workers replaced: {summary['workers_replaced']}; tracebacks in the server log: "
        f"{summary['tracebacks_in_log']} (one per `model raises`, which logs the model's traceback)", "",
        "| kind | " + " | ".join(sorted({s for c in by_kind.values() for s in c})) + " |",
    ]
    statuses = sorted({s for c in by_kind.values() for s in c})
    lines.append("| --- |" + " ---: |" * len(statuses))
    for kind, _ in MIX:
        counts = by_kind.get(kind, Counter())
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |")
    (ROOT / "benchmarks/LOAD_FAULT.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
