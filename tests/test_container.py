"""The container of plain `bridge serve` (deploy/Dockerfile) and KubeRay's image: their build contexts.

Docker's engine does not run on this project's machines (only its client), so the images are not built here.
What can be checked is checked: the Dockerfile's `COPY` sources exist and are let into the context by its
`.dockerignore` (matched as Docker matches it), no secret (`model.yaml`, `.env`) can enter either context,
the files the build stage copies are enough to build the wheel it installs (its build step, run here), the
entry point is the installed `bridge` console script serving on 0.0.0.0 with the default manifest, the user
is not root, the health check asks `/healthz`, and no secret is baked into the image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
KUBERAY = ROOT / "deploy" / "kuberay" / "Dockerfile"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line, continuations joined, comments left out."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


class DockerIgnore:
    """A `.dockerignore` as Docker reads it (moby/patternmatcher): a path is left out when the last pattern
    matching it, or one of its parent folders, is not a `!` exception; `*` and `?` stay within one folder,
    `**` spans any number of them."""

    def __init__(self, path: Path) -> None:
        self.patterns = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            self.patterns.append((re.compile(self._regex(pattern)), negated))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "^", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return out + "$"

    def ignores(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        ignored = False
        for regex, negated in self.patterns:
            if any(regex.match(candidate) for candidate in candidates):
                ignored = not negated
        return ignored


def copied(dockerfile: Path) -> list[str]:
    """The context sources of the Dockerfile's `COPY`s (not those from another stage)."""
    sources = []
    for word, rest in instructions(dockerfile):
        if word == "COPY" and "--from=" not in rest:
            args = [arg for arg in rest.split() if not arg.startswith("--")]
            sources += args[:-1]
    return sources


def context_files(source: str, ignore: DockerIgnore) -> list[Path]:
    """The files (and links) under `source` in the checkout that the context holds, as Docker would send them."""
    root = ROOT / source
    paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
    return [path for path in paths if (path.is_file() or path.is_symlink())
            and not ignore.ignores(path.relative_to(ROOT).as_posix())]


IGNORE = DockerIgnore(DOCKERFILE.with_name("Dockerfile.dockerignore"))
SECRETS = ["model.yaml", "bridge/model.yaml", "examples/sub/model.yaml", ".env", "manifests/prod.env",
           "adapters/v7/.env"]


def test_copy_sources_exist_and_are_in_the_context():
    sources = copied(DOCKERFILE)
    assert "." not in sources, "copy the sources the build needs, not the whole context"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not IGNORE.ignores(source.rstrip("/")), f"{source} is left out of the context"
        assert context_files(source, IGNORE), f"nothing of {source} reaches the context"


@pytest.mark.parametrize("dockerignore", [DOCKERFILE.with_name("Dockerfile.dockerignore"),
                                          KUBERAY.with_name("Dockerfile.dockerignore")], ids=["serve", "kuberay"])
def test_no_secret_enters_the_build_context(dockerignore):
    """`bridge labelbox-manifest -o model.yaml` writes Labelbox's secret there; .env files hold the others."""
    ignore = DockerIgnore(dockerignore)
    assert [path for path in SECRETS if not ignore.ignores(path)] == []
    assert ignore.ignores(".venv/bin/python") and ignore.ignores(".git/config")
    assert not ignore.ignores("bridge/core/manifest.py") and not ignore.ignores("manifests/default.yaml")


def test_the_dockerignore_matches_as_docker_does():
    """The matcher the two tests above rely on: Docker's rules on a small ignore file."""
    path = ROOT / "deploy" / "Dockerfile.dockerignore"
    ignore = DockerIgnore(path)
    assert ignore.ignores("tests/test_app.py") and ignore.ignores("docs/configuration.md")
    assert not ignore.ignores("bridge/serving/playground/static/app.js")  # let in by `!bridge`
    assert ignore.ignores("bridge/__pycache__/x.pyc") and ignore.ignores("adapters/v7/__pycache__")
    assert DockerIgnore._regex("**/model.yaml") == r"^(.*/)?model\.yaml$"
    assert DockerIgnore._regex("a/*.py") == r"^a/[^/]*\.py$"


def test_the_build_stage_has_what_the_wheel_needs(tmp_path):
    """The build stage's files, copied as its COPYs do, build the wheel the image installs (its RUN line,
    run here), and that wheel carries the default manifest and the examples."""
    steps = instructions(DOCKERFILE)
    build = [rest for word, rest in steps if word == "RUN"][0]
    assert build == "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ."
    stage = tmp_path / "src"
    for source in copied(DOCKERFILE):
        for path in context_files(source, IGNORE):
            target = stage / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                target.symlink_to(path.readlink())
            else:
                shutil.copy2(path, target)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--no-deps",
                           "--wheel-dir", str(tmp_path / "wheels"), "."], cwd=stage, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("annotation_bridge-*.whl")  # the final stage's `ls` finds one
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bridge/manifests/default.yaml", "bridge/examples/faces.py", "bridge/samples/astronaut.jpg",
            "adapters/v7/v7-inference-response.schema.json"} <= names


def test_the_image_serves_the_default_manifest_as_a_user_that_is_not_root():
    stage = final_stage(DOCKERFILE)
    words = [word for word, _ in stage]
    (base,) = [rest for word, rest in stage if word == "FROM"]
    assert re.fullmatch(r"python:3\.11(-slim)?(@sha256:[0-9a-f]+)?", base), base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"

    # the entry point is the installed console script, serving on every address with the default manifest
    (entrypoint,) = [json.loads(rest) for word, rest in stage if word == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] == "bridge" and scripts["bridge"] == "bridge.commands.main:main"
    assert entrypoint[1] == "serve" and entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    port = entrypoint[entrypoint.index("--port") + 1]
    assert not [arg for arg in entrypoint[2:] if not arg.startswith("--") and arg not in ("0.0.0.0", port)], \
        "no manifest named: `bridge serve` takes the package's default one, and `docker run IMAGE MANIFEST` another"
    assert "CMD" not in words  # a manifest given to `docker run` is appended to the entry point
    (install,) = [rest for word, rest in stage if word == "RUN"]
    assert 'pip install --no-cache-dir "$(ls /wheels/annotation_bridge-*.whl)[${EXTRAS}]"' in install

    # a user that is not root, set after every RUN (which needs root to install)
    (user,) = [rest for word, rest in stage if word == "USER"]
    assert user.split(":")[0] not in ("root", "0") and f"--uid {user.split(':')[0]}" in install
    assert words.index("USER") > max(i for i, word in enumerate(words) if word == "RUN")
    assert words.index("USER") < words.index("ENTRYPOINT")

    # a health check on /healthz, at the port served
    (health,) = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health and "CMD" in health
    assert f"EXPOSE {port}" in [f"{word} {rest}" for word, rest in stage]


def test_no_secret_is_baked_into_the_image():
    """Secrets come from the environment at `docker run` (-e, --env-file): no ENV or ARG names one, and no
    COPY takes a model.yaml or an .env file."""
    for dockerfile in (DOCKERFILE, KUBERAY):
        for word, rest in instructions(dockerfile):
            if word in ("ENV", "ARG"):
                assert not re.search(r"SECRET|PASSWORD|TOKEN|API_KEY", rest, re.I), rest
    for source in copied(DOCKERFILE):
        assert not [p for p in context_files(source, IGNORE) if p.name == "model.yaml" or p.suffix == ".env"]
