"""A real Label Studio server on loopback, for tests: installed once per machine, started per session.

Label Studio is too heavy (about 1 GB, 8 minutes to install) and too old in its pins to share the
project's venv, so it lives in a venv of its own under a cache folder (`$BRIDGE_CACHE`, else
`~/.cache/annotation-bridge`), with a migrated data folder beside it: the first start of a fresh
database migrates for a minute or more, a copy of the template starts in seconds. Both are built under a
file lock and marked complete only at the end, so a half-done install (a killed CI job) is rebuilt.

CI installs before the tests (`python -m tests.labelstudio_server install`, or `.ci/labelstudio`);
`LabelStudio.start()` installs too when nothing is cached. `$BRIDGE_LABELSTUDIO_VENV` names an existing
venv to use instead (it must hold label-studio 1.23.2).

The server runs in a clean environment (Label Studio reads unprefixed variables such as `HOST`, `PORT`,
`USERNAME`), with telemetry and version checks off and its SSRF guards off: only because the ML backends
under test listen on loopback.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.labelstudio_client import LabelStudioClient

VERSION = "1.23.2"
USERNAME = "bridge@example.com"
PASSWORD = "bridge-test-pass-123"
LEGACY_TOKEN = "b7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9"
"""The user's legacy API token, fixed in the template (loopback test servers only)."""

QUIET_ENV = {
    "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # no error reports leave the machine
    "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",  # nor version checks, nor analytics
    "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",  # backends under test are on loopback
    "PYTHONUNBUFFERED": "1",  # its log reaches the file as it happens (a moved port is reported there)
    # refuse predictions that do not fit the label config (1.23.2 only logs them unless this flag is on): a
    # test sees our regions refused instead of stored and silently not drawn
    "fflag_feat_utc_210_prediction_validation_15082025": "true",
}
START_TIMEOUT = 180.0
"""Seconds a copy of the template may take to answer /health on a loaded 2-core machine (about 6 s idle)."""


def cache_dir() -> Path:
    root = os.environ.get("BRIDGE_CACHE") or Path.home() / ".cache" / "annotation-bridge"
    return Path(root) / f"labelstudio-{VERSION}"


@dataclass(frozen=True)
class Installation:
    """A venv holding Label Studio and a migrated data folder with the test user."""

    venv: Path
    template: Path

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def package(self) -> Path:
        """Label Studio's installed package (its templates, its frontend's sources in `web/`...)."""
        found = subprocess.run([str(self.python), "-c", "import label_studio; print(label_studio.__file__)"],
                               capture_output=True, text=True, check=True)
        return Path(found.stdout.strip()).parent

    def run_python(self, code: str, data: Any = None) -> Any:
        """Run `code` in Label Studio's venv (its SDK, which cannot share our venv: it pins an older OpenCV),
        with `data` as JSON on its stdin; what it prints is read back as JSON."""
        done = subprocess.run([str(self.python), "-c", code], input=json.dumps(data), capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError(f"Label Studio's python failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)


def install(cache: Path | None = None) -> Installation:
    """The cached installation, built (or rebuilt when incomplete) if needed; safe to call concurrently."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        venv = _venv(cache)
        template = cache / "template"
        if not (template / ".complete").is_file():
            _build_template(venv, template)
        return Installation(venv, template)


def _venv(cache: Path) -> Path:
    given = os.environ.get("BRIDGE_LABELSTUDIO_VENV")
    if given:
        venv = Path(given)
        if _installed_version(venv) != VERSION:
            raise RuntimeError(f"$BRIDGE_LABELSTUDIO_VENV={venv} does not hold label-studio {VERSION}")
        return venv
    venv = cache / "venv"
    marker = venv / ".complete"
    if marker.is_file() and _installed_version(venv) == VERSION:
        return venv
    print(f"installing label-studio {VERSION} into {venv} (about 8 minutes, once per machine)", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={VERSION}"], check=True)
    if _installed_version(venv) != VERSION:
        raise RuntimeError(f"label-studio {VERSION} did not install into {venv}")
    marker.write_text(VERSION)
    return venv


def _installed_version(venv: Path) -> str | None:
    """Label Studio's version in a venv whose command and main packages are there; None otherwise."""
    python = venv / "bin" / "python"
    if not python.is_file() or not (venv / "bin" / "label-studio").is_file():
        return None
    # imports that touch no settings (importing label_studio.server would create a data folder in $HOME)
    check = "import importlib.metadata as m, django, rest_framework, label_studio_sdk; print(m.version('label-studio'))"
    found = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def _build_template(venv: Path, template: Path) -> None:
    """Migrate a fresh database and create the test user with a legacy token (about a minute)."""
    print(f"migrating a Label Studio data folder into {template} (once per install)", file=sys.stderr)
    shutil.rmtree(template, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix="template-", dir=template.parent))
    try:
        subprocess.run([str(venv / "bin" / "label-studio"), "init", "--quiet", "--username", USERNAME,
                        "--password", PASSWORD, "--user-token", LEGACY_TOKEN, "--enable-legacy-api-token"],
                       env=_environment(building), check=True, timeout=900)
        (building / ".complete").write_text(VERSION)
        building.rename(template)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """Only what Label Studio needs: it reads many unprefixed variables (HOST, PORT, USERNAME, DEBUG...)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(data_dir), "LANG": "C.UTF-8",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), **QUIET_ENV, **extra}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class LabelStudio:
    """One Label Studio server on a free loopback port, on its own copy of the template.

    Use as a context manager (or `start()` / `stop()`): `url`, `token` and `client()` reach it; `log` is
    its output. Its data folder and log live in `workdir`, a temporary folder removed at `stop()` unless one
    is given (give one to keep the log of a failing run).
    """

    def __init__(self, installation: Installation | None = None, workdir: Path | None = None) -> None:
        self.installation = installation
        self._temporary = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="labelstudio-"))
        self.token = LEGACY_TOKEN
        self.url = ""
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "labelstudio.log"

    def start(self) -> LabelStudio:
        """Starts it and waits until it answers; on failure, stops what started and says why (with its log)."""
        try:
            self.installation = self.installation or install()
            data = self.workdir / "data"
            shutil.copytree(self.installation.template, data)
            for _ in range(3):  # the free port may be taken before Label Studio binds it: try another
                port = _free_port()
                self.url = f"http://127.0.0.1:{port}"
                with open(self.log, "ab") as log:
                    self.process = subprocess.Popen(
                        [str(self.installation.executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
                         "-p", str(port)],
                        env=_environment(data, HOST=self.url), stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, start_new_session=True)
                if self._wait_until_up(port):
                    return self
                self._kill()
            raise RuntimeError("Label Studio found each free port taken before it could bind it")
        except Exception as error:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""
            self.stop()
            raise RuntimeError(f"{error}\n--- Label Studio's log, last lines ---\n{tail}") from error

    def _wait_until_up(self, port: int) -> bool:
        """True once it answers /health on `port`; False when it moved to another port (it does so silently)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if f"Port {port} is in use" in self.log.read_text(errors="replace"):
                return False
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited ({self.process.returncode})")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Label Studio did not answer /health within {START_TIMEOUT:.0f} s")

    def client(self, **headers: str) -> LabelStudioClient:
        """A REST client authenticated with the legacy token (or with the given headers)."""
        return LabelStudioClient(self.url, headers or {"Authorization": f"Token {self.token}"})

    def stop(self) -> None:
        """Stops its whole process group (the server and anything it spawned) and removes a temporary workdir."""
        self._kill()
        if self._temporary:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.process = None

    def __enter__(self) -> LabelStudio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str]) -> int:
    """`install`: build the cache (CI runs this before the tests); `serve`: run a server until Ctrl-C."""
    if argv[:1] == ["install"]:
        found = install()
        print(f"label-studio {VERSION}: {found.venv}; template {found.template}")
        return 0
    if argv[:1] == ["serve"]:
        with LabelStudio() as server:
            print(f"{server.url}  Authorization: Token {server.token}  (log {server.log})", flush=True)
            try:
                server.process.wait()
            except KeyboardInterrupt:
                pass
        return 0
    print("usage: python -m tests.labelstudio_server install|serve", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
