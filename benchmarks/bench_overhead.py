"""What does the bridge add to a model's own time? The face detector direct vs through POST /v7/infer.

    python benchmarks/bench_overhead.py [--repeat 30] [--format jpeg|png]

In the same run, on `skimage.data.astronaut()` (512 x 512):

- direct: `FaceDetector.predict(array, context)` in this process, the image already decoded (the baseline);
- decode + predict: the image bytes decoded by the bridge's `decode_image`, then predict, in this process;
- V7 base64: `POST /v7/infer` with the image as base64 in the JSON body;
- V7 URL: `POST /v7/infer` with an image URL, which the bridge fetches from a local HTTP server.

The bridge runs as `bridge serve` in a subprocess (real uvicorn on a loopback port), the client keeps its
connection open, as V7 does. The rounds are interleaved so that a busy machine slows every path alike.
Each row shows the median and 90th percentile latency, the ratio of medians to direct, and the milliseconds
added: the median over rounds of (this path - direct) in the same round, which cancels most of the noise of
a shared machine. Ratios and added milliseconds are the numbers to compare; nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.commands.file_server import FileServer  # noqa: E402
from bridge.core.media import MediaLimits, decode_image  # noqa: E402
from bridge.core.model import Context  # noqa: E402
from bridge.platforms.registry import discover
from examples.faces import FaceDetector  # noqa: E402

PARAMS = {"threshold": 0.0, "min_neighbors": 5}  # what the manifest's params schema resolves to


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_file(body: bytes, kind: str) -> tuple[FileServer, str]:
    server = FileServer()
    return server, server.add("/astronaut", body, kind)


def write_manifest(folder: Path) -> Path:
    """The default manifest's model and params, V7 only, loopback URLs allowed (the image server is local)."""
    default = yaml.safe_load((ROOT / "manifests" / "default.yaml").read_text())
    platforms = {name: {"enabled": False} for name in discover() if name != "v7"}
    platforms["v7"] = {"base_path": "/v7"}
    manifest = {
        "name": "bench-faces",
        "model": {**default["model"], "factory": str(ROOT / "examples" / "faces.py") + ":FaceDetector"},
        "params": default["params"],
        "limits": {"allow_private_urls": True},
        "platforms": platforms,
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def start_bridge(manifest: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--log-level", "warning", "serve", str(manifest), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"bridge serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise SystemExit("bridge serve did not become ready in 60 s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="measured rounds (after 3 warm-up rounds)")
    parser.add_argument("--format", choices=["jpeg", "png"], default="jpeg", help="how the image travels")
    args = parser.parse_args()

    from skimage import data

    image = data.astronaut()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, args.format.upper(), **({"quality": 90} if args.format == "jpeg" else {}))
    encoded = buffer.getvalue()
    model = FaceDetector(scale_factor=1.1, min_neighbors=5)
    context = Context(params=PARAMS, platform="direct")
    limits = MediaLimits()
    faces_direct = sum(p.label == "face" for p in model.predict(image, context))

    with tempfile.TemporaryDirectory() as folder:
        process, base = start_bridge(write_manifest(Path(folder)))
        files, url = serve_file(encoded, f"image/{args.format}")
        client = httpx.Client(timeout=30)
        b64_body = json.dumps({"image": {"base64": base64.b64encode(encoded).decode()}}).encode()
        url_body = json.dumps({"image": {"url": url}}).encode()
        headers = {"content-type": "application/json"}

        def post(body: bytes) -> Callable[[], None]:
            def call() -> None:
                answer = client.post(f"{base}/v7/infer", content=body, headers=headers)
                results = answer.json().get("results", [])
                if answer.status_code != 200 or sum(r["name"].lower() == "face" for r in results) != faces_direct:
                    raise SystemExit(f"unexpected answer {answer.status_code}: {answer.text[:300]}")
            return call

        paths: dict[str, Callable[[], object]] = {
            "direct (predict on the array)": lambda: model.predict(image, context),
            "decode + predict (in-process)": lambda: model.predict(decode_image(encoded, limits), context),
            "V7 /infer, base64 over HTTP": post(b64_body),
            "V7 /infer, URL over HTTP": post(url_body),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        try:
            for round_ in range(3 + args.repeat):
                for name, call in paths.items():
                    start = time.perf_counter()
                    call()
                    if round_ >= 3:
                        times[name].append(time.perf_counter() - start)
        finally:
            client.close()
            files.close()
            process.terminate()
            process.wait(timeout=10)

    direct_samples = times["direct (predict on the array)"]
    direct = statistics.median(direct_samples)
    print(f"astronaut 512x512 as {args.format.upper()} ({len(encoded) / 1024:.0f} KiB), "
          f"{args.repeat} rounds, {faces_direct} face(s) found on every path, {os.cpu_count()} CPUs")
    print(f"{'path':<32} {'median ms':>10} {'p90 ms':>8} {'x direct':>9} {'added ms':>9}")
    print("-" * 72)
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = float(np.percentile(samples, 90))
        added = statistics.median(b - a for a, b in zip(direct_samples, samples))  # paired: same round
        print(f"{name:<32} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / direct:>8.2f}x "
              f"{added * 1000:>+9.1f}")


if __name__ == "__main__":
    main()
