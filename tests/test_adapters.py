"""What every installed adapter owes the core: a complete conversion table, and the README's conversion matrix
printed by `bridge formats`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.commands.main import main
from bridge.core.conversions import KINDS, missing_rows
from bridge.platforms.registry import discover
from tests.conftest import ROOT

ADAPTERS = discover()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_each_adapter_declares_every_kind_and_aspect(name):
    table = ADAPTERS[name].conversions
    assert missing_rows(table) == []
    for row, conversion in table.items():
        assert conversion.fidelity in ("exact", "lossy", "dropped"), row
        assert conversion.why or conversion.fidelity == "exact", f"{name}: {row} must say why it is not exact"
        assert conversion.form or conversion.fidelity == "dropped", f"{name}: {row} leaves in no form"


def test_the_readme_matrix_is_what_bridge_formats_prints(capsys):
    assert main(["formats"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| kind | " + " | ".join(sorted(ADAPTERS)) + " |")
    assert all(f"| `{kind}` |" in printed for kind in KINDS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- bridge formats -->\n") + len("<!-- bridge formats -->\n")
    end = readme.index("<!-- /bridge formats -->")
    assert readme[start:end] == printed, "run `bridge formats` and paste its output into README.md"


def test_check_lists_what_each_platform_loses(capsys):
    assert main(["check", str(ROOT / "manifests" / "coins.yaml")]) == 0
    out = capsys.readouterr().out
    # coins are masks: traced for V7 and simplified at the manifest's tolerance
    assert "class 'coin' (mask): sent as polygon: outlines simplified by up to 0.5 px" in out


def test_a_manifest_without_platforms_says_nothing_is_served(tmp_path, capsys):
    manifest = Path(tmp_path / "bare.yaml")
    manifest.write_text(f"name: bare\nmodel: {{factory: {ROOT}/examples/blur.py:BlurDetector}}\n")
    assert main(["check", str(manifest)]) == 0
    assert "no platform is served: add a section under `platforms` (" + ", ".join(sorted(ADAPTERS)) + ")" in capsys.readouterr().out


def test_a_missing_secret_names_the_variable_to_export(capsys, monkeypatch):
    monkeypatch.delenv("LABELBOX_SECRET", raising=False)
    assert main(["check", str(ROOT / "manifests" / "default.yaml")]) == 0
    out = capsys.readouterr().out
    assert "platforms.labelbox.secret is not set: the endpoint refuses every request (export LABELBOX_SECRET=...)" in out


def test_the_core_runs_without_the_ango_sdk():
    """`pip install annotation-bridge` without the `ango` extra: no SDK, nor its HTTP stack."""
    code = f"""
import sys
for name in ("imerit_ango", "requests", "socketio", "engineio", "apscheduler"):
    sys.modules[name] = None  # import fails, as where they are not installed
from bridge.commands.main import main
sys.exit(main(["check", {str(ROOT / "manifests" / "default.yaml")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "ango: 2 warning(s)" in done.stdout and "platforms.ango.secret is not set" in done.stdout
