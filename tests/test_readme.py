"""What a newcomer copies from the READMEs and finds in the checkout works as written.

The command lines are checked for the traps a new user fell into; the commands themselves run in the tests
of what they exercise (test_cli, test_ango_local, ...).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]


def test_scripts_run_with_the_projects_venv():
    """A bare `python script.py` is the system's Python, without the project's packages (No module named httpx)."""
    for readme in READMES:
        bare = re.findall(r"(?<![\w/.])python3? (?!-m venv)\S+\.py", readme.read_text(encoding="utf-8"))
        assert bare == [], f"{readme.name}: write .venv/bin/python: {bare}"


def test_the_license_is_the_one_pyproject_names():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_files_holding_secrets_or_scratch_are_ignored_by_git():
    """`bridge labelbox-manifest -o model.yaml` writes Labelbox's secret into model.yaml."""
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert {"model.yaml", "photo.jpg", ".venv/"} <= set(ignored)
