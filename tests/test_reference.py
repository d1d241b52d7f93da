"""One reference for configuration: docs/configuration.md is what `bridge reference` prints, made from the
manifest's schema (every platform's section and the `ray` section included), and it names every environment
variable the project's manifests and README set."""

from __future__ import annotations

import re

import pytest
import yaml

from bridge.commands.main import main
from bridge.commands.reference import PROCESS_VARIABLES, full_manifest_schema, manifest_keys
from bridge.core.manifest import references
from bridge.platforms.registry import discover
from tests.conftest import ROOT

ADAPTERS = discover()
DOC = ROOT / "docs" / "configuration.md"


def test_the_reference_file_is_what_bridge_reference_prints(capsys):
    assert main(["reference"]) == 0
    assert DOC.read_text(encoding="utf-8") == capsys.readouterr().out, \
        "run `bridge reference > docs/configuration.md`"


def test_every_key_of_the_schema_has_a_row_with_a_type_and_a_meaning():
    rows = {key: (kind, meaning) for key, kind, _, meaning in manifest_keys(ADAPTERS)}
    assert [key for key, (kind, meaning) in rows.items() if not kind or not meaning] == []
    schema = full_manifest_schema(ADAPTERS)
    assert set(schema["properties"]) <= set(rows)
    for name, adapter in ADAPTERS.items():  # each platform's own keys, and the ray section's
        own = set(adapter.section.model_fields) - {"enabled", "rename", "min_confidence", "base_path"}
        assert {f"platforms.{name}.{key}" for key in own} <= set(rows)
    assert {"ray.replicas", "ray.num_gpus", "limits.deadline", "model.remote.url", "classes[].kind",
            "platforms.<name>.rename", "platforms.v7.auth.method"} <= set(rows)


def test_every_variable_the_manifests_and_the_readme_set_is_in_the_reference():
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", DOC.read_text(encoding="utf-8"), re.M))
    in_manifests = {name for path in sorted((ROOT / "manifests").glob("*.yaml"))
                    for _, name, _ in references(yaml.safe_load(path.read_text(encoding="utf-8")))}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    in_readme = set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)=", readme))  # V7_AUTH_METHOD=basic, export ...
    assert {"REMOTE_V7_URL", "BRIDGE_ALLOW_PRIVATE_URLS", "V7_AUTH_METHOD", "RAY_AUTH_MODE"} <= in_manifests | in_readme
    assert in_manifests | set(PROCESS_VARIABLES) <= documented
    assert in_readme - documented == set(), "a variable the README sets is missing from docs/configuration.md"


def test_bridge_help_points_at_the_reference(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "`bridge reference`" in out and "docs/configuration.md" in out
