"""Every serving comparison of the performance issues, side by side: writes benchmarks/REPORT.md and report.json.

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[test,bench]'   # Flask, gunicorn, LitServe
    apt-get install wrk                                                               # the load generator
    .venv-bench/bin/python benchmarks/run.py [--rounds 3] [--seconds 4] [--ray-venv .venv-ray]

The bench venv has no Ango SDK (LitServe needs a newer uvicorn than the SDK's pin), so the bridge runs on the
uvicorn and FastAPI a user without Ango gets. With `--ray-venv` (a venv with `.[test,ray]`), a local Ray
cluster is started (`ray start --head`) and `bridge serve --ray` and a plain Ray Serve deployment of the same
model (benchmarks/ray_plain.py) join it, both behind Serve's one proxy.

Every target runs as a user gets it: the shipped manifests and limits (`bridge serve`'s default log level,
`max_queue`, ...), nothing raised for the benchmark. All servers start at once on loopback ports and stay
idle between runs; each round runs every (comparison, clients) cell once for every target, one after another
(each waits until the previous one has worked off what wrk left queued), so a busy machine slows the targets
alike. A cell's figure is the median over rounds of the answers that were 2xx per second (a rate made of
503s is no win): every non-2xx answer and socket error is counted beside it. wrk keeps its connections open
(as V7's and Labelbox's clients may), so the spread over workers is measured as each worker's share of the
CPU time the workers used during the cell (1.00 = even). Nothing is asserted.

Comparisons:
1. a no-op model (one fixed box) through `/v7/infer` and `/labelbox/infer` vs a bare FastAPI endpoint that
   parses the same JSON and decodes the same 64x64 JPEG (one process each);
2. the face detector on a 64x64 JPEG, 2 processes each, at 1 to 128 clients: `bridge serve --workers 2` vs
   V7's Flask pattern under `gunicorn -w2` (the baseline), the bridge with `limits.inline_below` 5 ms (the
   opt-in that runs a fast model on the event loop for small images), a bare FastAPI endpoint under
   `uvicorn --workers 2`, LitServe with 2 workers, and with `--ray-venv` `bridge serve --ray` and a plain Ray
   Serve deployment, 2 replicas each; on 512x512, the bridge vs the model alone in 2 processes (the ceiling);
4. examples/shapes.py with `limits.batch_wait` (manifests/shapes.yaml) vs the same without, one process.
Goal 3 (geometry) is benchmarks/bench_geometry.py's.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
SECRET = "bench-secret"

WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(secret)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n{"requests": %%d, "seconds": %%f, "non2xx": %%d, "errors": %%d, "p50": %%f, "p99": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jpeg(size: int) -> bytes:
    from skimage import data

    image = Image.fromarray(data.astronaut())
    if size != 512:
        image = image.crop((150, 40, 300, 190)).resize((size, size))  # the face, small
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_shape() -> bytes:
    from examples.shapes import draw

    buffer = io.BytesIO()
    Image.fromarray(draw(np.random.default_rng(7), 1)[0]).save(buffer, "PNG")
    return buffer.getvalue()


def v7_body(image: bytes) -> bytes:
    return json.dumps({"image": {"base64": base64.b64encode(image).decode()}}).encode()


def labelbox_body(image: bytes) -> bytes:
    return json.dumps({"prompt": [{"role": "user", "parts": [{"text": "find it"},
                                                             {"image": base64.b64encode(image).decode()}]}]}).encode()


@dataclass
class Target:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    prefix: str = ""
    """Where its routes sit (a Ray Serve application's route prefix)."""
    cpu: bool = True
    """Whether its processes are its children (not a Ray cluster's), for the spread over workers."""
    process: subprocess.Popen | None = None

    def start(self, folder: Path) -> None:
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        log = open(folder / f"{self.name}.log", "wb")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT), "LABELBOX_SECRET": SECRET,
                                             **self.env})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{path}"

    def wait(self, path: str, body: bytes, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see its log")
            try:
                answer = httpx.post(self.url(path), content=body, timeout=10,
                                    headers={"content-type": "application/json",
                                             "authorization": f"Bearer {SECRET}"})
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    def workers(self) -> list[psutil.Process]:
        """The processes that serve: the children doing the work, or the process itself."""
        main = psutil.Process(self.process.pid)
        children = [c for c in main.children() if "resource_tracker" not in " ".join(c.cmdline())]
        return children or [main]

    def stop(self) -> None:
        """SIGTERM to its process group (LitServe's workers outlive their parent otherwise), SIGKILL after 30 s."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


UVICORN_FAST = ["--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]


def bare_fastapi() -> Target:
    """The least a FastAPI server does for a no-op request (`baselines.bare_app`), as fast as uvicorn runs."""
    return Target("bare FastAPI", [str(BIN / "uvicorn"), "--factory", "benchmarks.baselines:bare_app", "--port",
                                   "{port}", *UVICORN_FAST])


def noop_manifest(folder: Path) -> Path:
    """A manifest of the no-op model (`baselines.NoOp`), served to V7 and Labelbox."""
    path = folder / "noop.yaml"
    path.write_text(yaml.safe_dump({"name": "noop", "model": {"factory": "benchmarks.baselines:NoOp"},
                                    "platforms": {"v7": {}, "labelbox": {"secret": SECRET}}}))
    return path


def variant(folder: Path, manifest: str, factory: str, name: str, **limits: object) -> Path:
    """A shipped manifest with other `limits`, written to `folder` (its factory made absolute for the move)."""
    keys = yaml.safe_load((ROOT / "manifests" / manifest).read_text())
    keys["model"]["factory"] = str(ROOT / factory)
    path = folder / name
    path.write_text(yaml.safe_dump({**keys, "limits": {**keys.get("limits", {}), **limits}}))
    return path


def bridge(name: str, manifest: str, *args: str) -> Target:
    """`bridge serve` as shipped (its default log level: a line per request)."""
    return Target(name, [str(BIN / "bridge"), "serve", manifest, "--port", "{port}", *args])


def cpu_times(processes: list[psutil.Process]) -> list[float]:
    times = []
    for process in processes:
        try:
            t = process.cpu_times()
            times.append(t.user + t.system)
        except psutil.Error:
            times.append(0.0)
    return times


def wrk(target: Target, path: str, body_file: Path, clients: int, seconds: float, folder: Path) -> dict:
    script = folder / f"wrk-{body_file.stem}.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT % {"body": body_file, "secret": SECRET})
    workers = target.workers() if target.cpu else []
    before = cpu_times(workers)
    out = subprocess.run(["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "30s",
                          "-s", str(script), target.url(path)], capture_output=True, text=True, timeout=seconds + 60)
    used = [after - b for after, b in zip(cpu_times(workers), before)]
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"requests"')]
    if not lines:
        raise RuntimeError(f"wrk on {target.name}: {out.stdout}\n{out.stderr}")
    result = json.loads(lines[-1])
    result["rps"] = (result["requests"] - result["non2xx"]) / result["seconds"]  # answered OK, per second
    if len(used) > 1 and sum(used) > 0:
        result["spread"] = min(used) / max(used)
    return result


def settle(target: Target, timeout: float = 60) -> None:
    """Wait until the target has worked off what wrk left queued (it keeps answering after wrk stops), so
    that the next cell does not share the CPU with it."""
    workers = target.workers() if target.cpu else []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_times(workers))
        time.sleep(0.3)
        if sum(cpu_times(workers)) - before < 0.03:
            return


def model_alone(image: bytes, processes: int, seconds: float) -> dict:
    from benchmarks.baselines import model_alone as loop

    counter = multiprocessing.get_context("spawn").Value("q", 0)
    workers = [multiprocessing.get_context("spawn").Process(target=loop, args=(image, seconds, counter))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 120)
    return {"rps": counter.value / seconds, "p50": None, "p99": None, "non2xx": 0, "errors": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="length of one wrk run")
    parser.add_argument("--clients", default="1,8,32", help="clients of every comparison")
    parser.add_argument("--many", default="128", help="more clients, for the 2-process face comparison")
    parser.add_argument("--ray-venv", type=Path, help="a venv with .[test,ray]: adds the Ray Serve targets")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    if args.ray_venv and not (args.ray_venv / "bin/ray").exists():
        sys.exit(f"{args.ray_venv} has no Ray (pip install -e '.[test,ray]' in it)")
    clients = [int(c) for c in args.clients.split(",")]
    many = clients + [int(c) for c in args.many.split(",") if c]
    folder = Path(tempfile.mkdtemp(prefix="bridge-bench-"))

    bodies = {}
    for name, data in {"v7-64": v7_body(jpeg(64)), "lb-64": labelbox_body(jpeg(64)), "v7-512": v7_body(jpeg(512)),
                       "v7-shape": v7_body(png_shape())}.items():
        bodies[name] = folder / f"{name}.json"
        bodies[name].write_bytes(data)

    shapes_nobatch = variant(folder, "shapes.yaml", "examples/shapes.py:ShapeClassifier", "shapes-nobatch.yaml",
                             batch_wait=0)
    faces = str(ROOT / "manifests/default.yaml")
    # the opt-in: the model on the event loop for small images
    faces_inline = variant(folder, "default.yaml", "examples/faces.py:FaceDetector", "faces-inline.yaml",
                           inline_below=0.005)
    inline = "bridge faces --workers 2, inline_below 5 ms"
    peers = ["bridge faces --workers 2", inline, "Flask gunicorn -w2", "FastAPI, uvicorn --workers 2",
             "LitServe, 2 workers"]
    targets = {t.name: t for t in [
        bridge("bridge no-op", str(noop_manifest(folder))),
        bare_fastapi(),
        bridge("bridge faces --workers 2", faces, "--workers", "2"),
        bridge(inline, str(faces_inline), "--workers", "2"),
        Target("Flask gunicorn -w2", [str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}", "--log-level",
                                      "warning", "benchmarks.baselines:flask_app()"]),
        Target("FastAPI, uvicorn --workers 2", [str(BIN / "uvicorn"), "--factory",
                                                "benchmarks.baselines:bare_faces_app", "--workers", "2",
                                                "--port", "{port}", *UVICORN_FAST]),
        Target("LitServe, 2 workers", [sys.executable, "benchmarks/litserve_faces.py", "{port}"]),
        bridge("shapes batch_wait 20 ms", str(ROOT / "manifests/shapes.yaml")),
        bridge("shapes no batching", str(shapes_nobatch)),
    ]}
    ray_head = None
    if args.ray_venv:  # one local cluster; both applications behind Serve's one proxy
        ray_bin, ray_head, proxy = args.ray_venv / "bin", f"127.0.0.1:{free_port()}", free_port()
        ray_env = {"RAY_AUTH_MODE": "token"}  # the cluster `ray start` makes takes its token only
        subprocess.run([str(ray_bin / "ray"), "start", "--head", "--port", ray_head.split(":")[1], "--num-cpus", "8",
                        "--disable-usage-stats"], check=True, capture_output=True)
        targets["plain Ray Serve, 2 replicas"] = Target(
            "plain Ray Serve, 2 replicas", [str(ray_bin / "python"), "benchmarks/ray_plain.py", ray_head, str(proxy),
                                            "2"], env=ray_env, port=proxy, prefix="/plain", cpu=False)
        targets["bridge serve --ray, 2 replicas"] = Target(
            "bridge serve --ray, 2 replicas", [str(ray_bin / "bridge"), "serve", faces, "--ray", "--address", ray_head,
                                               "--port", str(proxy)], env=ray_env, port=proxy, cpu=False)
        peers += ["bridge serve --ray, 2 replicas", "plain Ray Serve, 2 replicas"]
    comparisons = [  # (goal, title, path, body, [targets], baseline, clients)
        ("1", "no-op model, V7 64x64 JPEG", "/v7/infer", "v7-64", ["bridge no-op", "bare FastAPI"], "bare FastAPI",
         clients),
        ("1", "no-op model, Labelbox 64x64 JPEG", "/labelbox/infer", "lb-64", ["bridge no-op", "bare FastAPI"],
         "bare FastAPI", clients),
        ("2", "faces, 2 processes, 64x64 JPEG", "/v7/infer", "v7-64", peers, "Flask gunicorn -w2", many),
        ("2", "faces, 2 workers, 512x512 JPEG", "/v7/infer", "v7-512",
         ["bridge faces --workers 2", "Flask gunicorn -w2", "model alone, 2 processes"], "model alone, 2 processes",
         clients),
        ("4", "shapes, 1 process, 64x64 PNG", "/v7/infer", "v7-shape",
         ["shapes batch_wait 20 ms", "shapes no batching"], "shapes no batching", clients),
    ]
    results: dict[str, dict[str, dict[int, list[dict]]]] = {}
    started = time.time()
    try:
        for target in targets.values():
            target.start(folder)
            if "Ray" in target.name:  # the plain deployment starts Serve's proxy; then the bridge joins it
                target.wait("/v7/infer", bodies["v7-64"].read_bytes())
        for target in targets.values():
            body = bodies["v7-shape" if "shapes" in target.name else "v7-64"].read_bytes()
            target.wait("/v7/infer", body)
        time.sleep(2)
        for round_ in range(args.rounds):
            for goal, title, path, body, names, _, counts in comparisons:
                for c in counts:
                    for name in names:
                        if name == "model alone, 2 processes":
                            figure = model_alone(jpeg(512), 2, args.seconds)
                        else:
                            figure = wrk(targets[name], path, bodies[body], c, args.seconds, folder)
                            settle(targets[name])
                        results.setdefault(title, {}).setdefault(name, {}).setdefault(c, []).append(figure)
                        print(f"round {round_ + 1} | {title} | c={c} | {name}: {figure['rps']:.1f} req/s",
                              flush=True)
    finally:
        for target in targets.values():
            target.stop()
        if ray_head:
            subprocess.run([str(args.ray_venv / "bin/ray"), "stop"], capture_output=True)
    write_report(args, comparisons, results, time.time() - started)


def median(figures: list[dict], key: str) -> float | None:
    values = [f[key] for f in figures if f.get(key) is not None]
    return statistics.median(values) if values else None


def write_report(args, comparisons, results, elapsed) -> None:
    command = "python benchmarks/run.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                     if v is not None)
    load = os.getloadavg()
    lines = [
        "# Serving benchmarks", "",
        f"Made by `{command}` on {platform.node()} ({os.cpu_count()} CPUs, {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, in {elapsed / 60:.0f} min; load average at the end "
        f"{load[0]:.1f}. The machine was shared with other work: figures are medians of {args.rounds} interleaved "
        f"rounds of {args.seconds:g} s wrk runs, and only the ratios mean much. `ok/s` counts 2xx answers per "
        "second; `x base` is its ratio to the comparison's baseline; `bad` counts the answers that were not 2xx "
        "and the socket errors, over all rounds; `spread` is the least busy worker's CPU time over the busiest "
        "one's at the most clients (1.00: even).", ""]
    for goal, title, _, _, names, baseline, counts in comparisons:
        lines += [f"## Goal {goal}: {title}", "",
                  "| target | " + " | ".join(f"c={c}: ok/s | x base | p50 ms | p99 ms | bad" for c in counts)
                  + " | spread |",
                  "| --- |" + " ---: | ---: | ---: | ---: | ---: |" * len(counts) + " ---: |"]
        for name in names:
            cells, spreads = [], []
            for c in counts:
                figures = results[title][name][c]
                rps, base = median(figures, "rps"), median(results[title][baseline][c], "rps")
                p50, p99 = median(figures, "p50"), median(figures, "p99")
                bad = sum(f["non2xx"] + f["errors"] for f in figures)
                cells.append(f"{rps:.1f} | {rps / base:.2f} | " + (f"{p50:.1f} | {p99:.1f}" if p50 else "- | -")
                             + f" | {bad}")
                if c == max(counts):  # with fewer connections than workers, some must idle
                    spreads += [f["spread"] for f in figures if "spread" in f]
            spread = f"{statistics.median(spreads):.2f}" if spreads else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread} |")
        lines.append("")
    (ROOT / "benchmarks/REPORT.md").write_text("\n".join(lines) + "\n")
    (ROOT / "benchmarks/report.json").write_text(json.dumps(
        {"command": command, "cpus": os.cpu_count(), "load_average": load, "results": results}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
