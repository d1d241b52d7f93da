"""The README's first commands, run as a newcomer runs them: the Quickstart (serve, then the first answer from
a bundled sample) and "Serve your own model" (`bridge init`, `check`, `serve --reload`, then curl).

Each `bash` block of the section is read from the README and run as written, in a folder of its own, with
two substitutions: `.venv/bin/` is this venv's, and port 8000 a free one. `bridge serve` runs in the
background until its model is ready; `export` lines set the environment of the commands after them; what a
command prints is compared with the `# ...` lines under it (its parts between `...` in order).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

BIN = Path(sys.executable).parent


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def steps(block: str) -> list[tuple[str, str]]:
    """(command, what the README says it prints) for each command of a bash block."""
    found: list[tuple[str, str]] = []
    command: list[str] = []
    for line in block.splitlines():
        if line.startswith("#"):
            if found and not command:
                found[-1] = (found[-1][0], found[-1][1] + line.lstrip("#").strip())
            continue
        if not line.strip():
            continue
        command.append(line)
        if not line.rstrip().endswith("\\"):
            found.append(("\n".join(command), ""))
            command = []
    return found


class Session:
    """A newcomer's terminal: a folder, an environment, and the servers it started (stopped at the end)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.env = {**os.environ}
        self.servers: list[subprocess.Popen] = []

    def run(self, block: str) -> None:
        for command, expected in steps(block):
            command = command.replace(".venv/bin/", f"{BIN}/").replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
            if command.startswith("export "):
                self.env.update(word.split("=", 1) for word in shlex.split(command)[1:])
            elif re.search(r"bin/bridge serve\b", command):
                self.serve(command)
            else:
                done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.folder, env=self.env,
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, (command, done.stderr)
                assert_prints(done.stdout, expected, command)

    def serve(self, command: str) -> None:
        """`bridge serve ...` (the last command of its line, after any `&&`) in the background, until ready."""
        words = shlex.split(command.split("&&")[-1].split("#")[0])
        server = subprocess.Popen([*words, "--port", str(self.port)], cwd=self.folder, env=self.env,
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.servers.append(server)
        deadline = time.monotonic() + 90
        while not ready(f"http://127.0.0.1:{self.port}/readyz"):
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)

    def close(self) -> None:
        for server in self.servers:  # each in its own session: the reloader and its worker alike
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def assert_prints(printed: str, expected: str, command: str) -> None:
    """Each part of `expected` between `...` appears in `printed`, in order."""
    at = 0
    for part in filter(None, (piece.strip() for piece in expected.split("..."))):
        found = printed.find(part, at)
        assert found != -1, f"{command}\nprinted {printed!r}\nthe README shows {part!r}"
        at = found + len(part)


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:
    terminal = Session(tmp_path)
    yield terminal
    terminal.close()


def bash_blocks(title: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section(title), re.S)


def test_the_quickstart_answers_from_a_bundled_sample(session):
    """Install (already done here), serve, first answer: no file of one's own, no test install."""
    install, first_answer = bash_blocks("Quickstart")[:2]
    assert install.strip().endswith("&& .venv/bin/bridge serve")
    assert "photo.jpg" not in first_answer and "bridge samples astronaut.jpg" in first_answer
    session.run(install.strip().rpartition("&& ")[2])  # the folder has no manifests/: the packaged default
    session.run(first_answer)


def test_serve_your_own_model_as_written(session):
    start, first_answers = bash_blocks("Serve your own model")[:2]
    assert "--reload" in start and "bridge samples astronaut.jpg" in first_answers
    session.run(start)
    assert sorted(p.name for p in (session.folder / "my_model").iterdir()) == ["manifest.yaml", "model.py"]
    session.run(first_answers)


def test_every_link_in_the_readme_leads_somewhere():
    """Each `[text](target)`: a `#section` is one of the README's headings (GitHub's anchors), a path exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    anchors = {re.sub(r"[^\w\- ]", "", title.lower().replace("`", "")).replace(" ", "-")
               for title in re.findall(r"(?m)^#{1,6} (.+)$", prose)}
    targets = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert len(targets) > 20
    broken = [t for t in targets if not t.startswith(("http://", "https://"))
              and (t[1:] not in anchors if t.startswith("#") else not (ROOT / t.split("#")[0]).exists())]
    assert not broken, broken
