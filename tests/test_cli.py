"""The `bridge` command as a user runs it: the installed console script in a real process, real files.

A user's mistake (a syntax error in the model file, a port out of range, a model constructor that raises)
prints one line naming the file or the option and exits with status 2, never a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.commands.main import main
from tests.conftest import b64, free_port

BRIDGE = Path(sys.executable).with_name("bridge")

MODEL = '''
from bridge import Box, ClassSpec, ModelSpec, Prediction


class Detector:
    spec = ModelSpec(classes=[ClassSpec(name="{label}", kind="box")])

    def predict(self, image, context):
        return [Prediction("{label}", Box(0, 0, 4, 4))]


class Broken:
    spec = Detector.spec

    def __init__(self):
        raise RuntimeError("weights not found in /nowhere")
'''


def run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BRIDGE), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def write_model(folder: Path, factory: str = "detector.py:Detector", label: str = "thing",
                source: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "detector.py").write_text(MODEL.replace("{label}", label) if source is None else source)
    manifest = folder / "manifest.yaml"
    manifest.write_text(f"name: t\nmodel:\n  factory: {factory}\nplatforms:\n  v7: {{}}\n")
    return manifest


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("bridge: ")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"bridge {version('annotation-bridge')}"


def test_a_syntax_error_in_the_model_file(tmp_path, capsys):
    manifest = write_model(tmp_path, source="class Detector:\n    def predict(self, image, context)\n")
    assert main(["check", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bridge: ") and len(err.splitlines()) == 1
    assert f"{tmp_path / 'detector.py'}, line 2: SyntaxError" in err
    # and `bridge serve` says the same, from a real process
    done = run("serve", str(manifest), "--port", str(free_port()))
    assert_one_line_error(done, f"{tmp_path / 'detector.py'}, line 2: SyntaxError")


@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_model_constructor_that_raises(tmp_path, command):
    manifest = write_model(tmp_path, factory="detector.py:Broken")
    extra = ["--port", str(free_port())] if command == "serve" else []
    done = run(command, str(manifest), *extra)
    assert_one_line_error(done, str(manifest), "detector.py:Broken", "RuntimeError: weights not found in /nowhere")


KINDS = "'box', 'rotated_box', 'polygon', 'mask', 'point', 'line', 'ellipse', 'skeleton', 'cuboid', 'vector', " \
        "'tag', 'radio', 'checklist', 'text' or 'entity'"
WRONG_KIND = {
    "at the top": ("from bridge import ClassSpec, ModelSpec\n\n"
                   "SPEC = ModelSpec(classes=[ClassSpec(name='thing', kind='boxes')])\n\n\n"
                   "class Detector:\n    spec = SPEC\n\n    def predict(self, image, context):\n        return []\n",
                   "model.factory: {file}, line 3: ClassSpec: kind: Input should be " + KINDS + ", got 'boxes'"),
    "in __init__": ("from bridge import ClassSpec, ModelSpec\n\n\n"
                    "class Detector:\n    def __init__(self):\n"
                    "        self.spec = ModelSpec(classes=[ClassSpec(name='thing', kind='boxes')])\n\n"
                    "    def predict(self, image, context):\n        return []\n",
                    "model: detector.py:Detector: {file}, line 6: ClassSpec: kind: Input should be " + KINDS
                    + ", got 'boxes'"),
}


@pytest.mark.parametrize("where", sorted(WRONG_KIND))
def test_a_wrong_kind_in_the_model_file_is_one_line(tmp_path, where):
    """The README promises one line naming the file: pydantic's own error spans four, with a link."""
    source, words = WRONG_KIND[where]
    manifest = write_model(tmp_path, source=source)
    done = run("check", str(manifest))
    assert_one_line_error(done, f"bridge: {manifest}: " + words.format(file=tmp_path / "detector.py"))


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range(tmp_path, capsys, port):
    with pytest.raises(SystemExit) as exit:
        main(["serve", str(write_model(tmp_path)), "--port", port])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in err
    assert f"argument --port: {port!r} is not a port number (0-65535)" in err


def test_samples_lists_the_bundled_samples_and_prints_the_path_of_one():
    listed = run("samples")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[:3]] == ["astronaut.jpg", "coins.png", "contact.txt"]
    path = Path(run("samples", "astronaut.jpg").stdout.strip())
    assert path.is_absolute() and path.read_bytes().startswith(b"\xff\xd8\xff")  # a JPEG
    assert_one_line_error(run("samples", "photo.jpg"), "no sample named 'photo.jpg'; samples: astronaut.jpg, ")


# --- bridge init ----------------------------------------------------------------------------------------------


def test_init_writes_a_starter_that_check_accepts_and_never_overwrites(tmp_path, capsys, monkeypatch):
    for name in ("V7_AUTH_METHOD", "LABELBOX_SECRET", "ANGO_PLUGIN_ID", "ANGO_PLUGIN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "My Model"
    assert main(["init", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.yaml", "model.py"]
    assert f"check {folder / 'manifest.yaml'}" in capsys.readouterr().out
    raw = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert raw["name"] == "my-model" and set(raw["platforms"]) == {"v7", "labelbox", "ango"}
    assert main(["check", str(folder / "manifest.yaml")]) == 0
    out = capsys.readouterr().out
    assert "my-model 0.1.0, 1 classes, image input" in out and "  v7: ok" in out
    (folder / "model.py").write_text("# mine\n")
    assert main(["init", str(folder)]) == 2
    assert "model.py exists: not overwriting it" in capsys.readouterr().err
    assert (folder / "model.py").read_text() == "# mine\n"


def test_init_then_serve_on_every_platform(tmp_path, started, astronaut_jpeg):
    assert run("init", "starter", cwd=tmp_path).returncode == 0
    port = free_port()
    env = {**os.environ, "LABELBOX_SECRET": "lb-secret", "ANGO_PLUGIN_SECRET": "ango-secret"}
    process = subprocess.Popen([str(BRIDGE), "serve", "starter/manifest.yaml", "--port", str(port)], cwd=tmp_path,
                               env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/readyz"), "the starter model")
    image = b64(astronaut_jpeg)

    v7 = httpx.post(f"{base}/v7/infer", json={"image": {"base64": image}}, timeout=30).json()
    assert v7["status"] == "succeeded"
    ((result,),) = [v7["results"]]
    assert result["name"] == "object" and set(result["bounding_box"]) == {"x", "y", "w", "h"}

    prompt = {"prompt": [{"role": "user", "parts": [{"image": image}]}], "brightness": 250}
    bearer = {"Authorization": "Bearer lb-secret"}
    labelbox = httpx.post(f"{base}/labelbox/infer", json=prompt, headers=bearer, timeout=30)
    assert labelbox.status_code == 200 and len(labelbox.json()["object"]["boxes"]) == 1
    assert httpx.post(f"{base}/labelbox/infer", json=prompt, timeout=30).status_code == 401
    too_bright = httpx.post(f"{base}/labelbox/infer", json={**prompt, "brightness": 256}, headers=bearer)
    assert too_bright.status_code == 422 and "brightness" in too_bright.json()["error"]

    assert httpx.get(f"{base}/ango/heartbeat", headers={"Secret": "ango-secret"}).status_code == 200
    assert httpx.get(f"{base}/ango/heartbeat", headers={"Secret": "wrong"}).status_code == 401


# --- serve --reload -------------------------------------------------------------------------------------------


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts, each in its own session; all are stopped (SIGINT, then SIGKILL) after it."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def wait_for(check, what: str, timeout: float = 60):
    """Poll `check()` until it gives a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    """Whether a server answers 200 (while the reloader restarts, its socket accepts but nobody answers)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_reload_picks_up_an_edited_model_and_manifest(tmp_path, started):
    manifest = write_model(tmp_path, label="cat")
    port = free_port()
    process = subprocess.Popen([str(BRIDGE), "serve", str(manifest), "--port", str(port), "--reload"],
                               cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    started.append(process)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    base = f"http://127.0.0.1:{port}"

    def classes() -> list[str]:
        answer = httpx.get(f"{base}/v7/classes", timeout=5)
        return [c["name"] for c in answer.json()] if answer.status_code == 200 else []

    assert wait_for(classes, "the first model") == ["cat"]
    (tmp_path / "detector.py").write_text(MODEL.replace("{label}", "dog"))
    assert wait_for(lambda: classes() == ["dog"], "the edited model")
    # a manifest broken by an edit is reported in one line, and the reloader waits for the next change
    manifest.write_text(manifest.read_text() + "limits: {deadline: -1}\n")
    error = f"bridge: {manifest}: limits.deadline: Input should be greater than 0\n"
    wait_for(lambda: error in output, "the broken manifest's error")
    manifest.write_text(manifest.read_text().replace("deadline: -1", "deadline: 5")
                        .replace("v7: {}", "v7: {rename: {dog: Dog}}"))
    assert wait_for(lambda: classes() == ["Dog"], "the edited manifest")
    assert not [line for line in output if "Traceback" in line or "change detected" in line]
    assert any(f"listening on http://127.0.0.1:{port}" in line for line in output)


def test_serve_reload_with_a_broken_model_says_why_on_every_route(tmp_path, started, astronaut_jpeg):
    """Under --reload a model that fails to load keeps the server up: the platforms' routes, like /readyz, say
    the load error (not "the model is still loading") until an edit fixes it."""
    manifest = write_model(tmp_path, factory="detector.py:Broken")
    port = free_port()
    process = subprocess.Popen([str(BRIDGE), "serve", str(manifest), "--port", str(port), "--reload"],
                               cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    started.append(process)
    base = f"http://127.0.0.1:{port}"
    reason = "the model failed to load: " + str(manifest)

    def failed() -> dict | None:
        answer = httpx.get(f"{base}/readyz", timeout=5)
        return answer.json() if answer.status_code == 503 and answer.json()["status"] == "failed" else None

    assert "RuntimeError: weights not found in /nowhere" in wait_for(failed, "the load error")["error"]
    classes = httpx.get(f"{base}/v7/classes", timeout=5)
    infer = httpx.post(f"{base}/v7/infer", json={"image": {"base64": b64(astronaut_jpeg)}}, timeout=30)
    for answer in (classes, infer):
        assert answer.status_code == 503
        assert answer.json()["status"] == "failed" and answer.json()["error"].startswith(reason)
        assert "weights not found in /nowhere" in answer.json()["error"]
    playground = httpx.get(f"{base}/playground/info", timeout=5)
    assert playground.status_code == 503 and "weights not found in /nowhere" in playground.json()["error"]
    # the fix is picked up
    manifest.write_text(manifest.read_text().replace("detector.py:Broken", "detector.py:Detector"))
    assert wait_for(lambda: answers(f"{base}/v7/classes"), "the fixed model")
