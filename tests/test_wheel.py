"""`pip install annotation-bridge && bridge serve`: a wheel carries what serving needs, the default manifest
and the example models the project's manifests name (`bridge/manifests`, `bridge/examples`: links to the
repository's `manifests/` and `examples/` folders).

The wheel is built as a user builds it (`pip wheel --no-deps .`, from a copy of this checkout) and installed
in a fresh venv outside the checkout. Its dependencies are this venv's (a `.pth` file points at them), so the
test needs no download beyond the build's own setuptools: what is tested is the wheel's own files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port

LEFT_OUT = shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                  ".hypothesis", "test-artifacts", "tests", "benchmarks", "model.yaml")


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    return done


def test_a_wheel_installed_outside_the_checkout_serves_the_default_manifest(tmp_path):
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, symlinks=True, ignore=LEFT_OUT)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", tmp_path / "wheels", cwd=source)
    (wheel,) = (tmp_path / "wheels").glob("annotation_bridge-*.whl")

    venv = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)  # this pip installs into it
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", "--no-index",
        wheel, cwd=tmp_path)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp_path).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # this venv's, after the wheel's
    shutil.rmtree(source)  # nothing of the checkout is left to lean on

    elsewhere = tmp_path / "elsewhere"  # no manifests/ here: the default manifest is the package's
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    bridge = venv / "bin" / "bridge"
    where = json.loads(run(venv / "bin" / "python", "-c", "import bridge, bridge.examples, json; "
                           "print(json.dumps([bridge.__file__, bridge.examples.__file__]))", cwd=elsewhere).stdout)
    assert all(path.startswith(str(site)) for path in where), where

    checked = run(bridge, "check", cwd=elsewhere, env=env).stdout
    assert checked.startswith(f"{site}/bridge/manifests/default.yaml: face-detector 1.0.0, 2 classes"), checked
    sample = Path(run(bridge, "samples", "astronaut.jpg", cwd=elsewhere, env=env).stdout.strip())
    assert sample.is_relative_to(site) and sample.is_file()

    port = free_port()
    server = subprocess.Popen([bridge, "serve", "--port", str(port)], cwd=elsewhere, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "the installed server did not become ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        classes = httpx.get(f"{base}/v7/classes", timeout=10).json()
        assert classes == [{"name": "Face", "type": "bounding_box"}, {"name": "Eye", "type": "keypoint"}]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
