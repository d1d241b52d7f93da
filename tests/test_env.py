"""`${NAME}` in a manifest: what the loader substitutes, what it refuses, and what the published schema accepts.

A mistyped reference must never become the literal value (a secret of "$LABELBOX_SECRET" would let anyone who
guesses the typo in): every broken `${` form, and a bare `$NAME`, is a manifest error naming the key.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.commands.reference import full_manifest_schema
from bridge.core.manifest import ManifestError, load_manifest
from bridge.platforms.registry import discover

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "manifests").glob("*.yaml"))


def manifest_with_secret(tmp_path: Path, secret: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "model": {"factory": "m.py:M"},
                                    "platforms": {"labelbox": {"secret": secret}}}), encoding="utf-8")
    return path


@pytest.mark.parametrize("written, words", [
    ("$LABELBOX_SECRET", "write ${LABELBOX_SECRET}"),
    ("Bearer-$LABELBOX_SECRET", "write ${LABELBOX_SECRET}"),
    ("${LABELBOX SECRET}", "not a variable reference"),
    ("${LABELBOX_SECRET", "unclosed"),
    ("${}", "not a variable reference"),
    ("${1SECRET}", "not a variable reference"),
    ("${LABELBOX_SECRET:default}", "not a variable reference"),
    ("${LABELBOX_SECRET-default}", "not a variable reference"),
    ("${A:-${B}}", "not a variable reference"),
    ("ok ${LABELBOX_SECRET} and ${ broken", "unclosed"),
])
def test_a_broken_reference_is_an_error_naming_the_key(tmp_path, monkeypatch, written, words):
    monkeypatch.setenv("LABELBOX_SECRET", "s3cret")
    path = manifest_with_secret(tmp_path, written)
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    message = str(error.value)
    assert message.startswith(f"{path}: platforms.labelbox.secret: ")
    assert words in message


@pytest.mark.parametrize("written, value", [
    ("${LABELBOX_SECRET}", "s3cret"),
    ("${LABELBOX_SECRET:-other}", "s3cret"),
    ("${BRIDGE_TEST_UNSET:-a b}", "a b"),
    ("${BRIDGE_TEST_UNSET:-}", ""),
    ("pa$$word", "pa$word"),           # $$ is a literal $
    ("costs $5, 100%$ {x}", "costs $5, 100%$ {x}"),  # a $ that starts no name stays as written
])
def test_good_references_and_literal_dollars(tmp_path, monkeypatch, written, value):
    monkeypatch.setenv("LABELBOX_SECRET", "s3cret")
    monkeypatch.delenv("BRIDGE_TEST_UNSET", raising=False)
    assert load_manifest(manifest_with_secret(tmp_path, written)).platforms["labelbox"]["secret"] == value


# --- the published schema -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = full_manifest_schema(discover())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_shipped_manifests_fit_the_schema_as_written(validator, path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)] == []


def test_the_schema_takes_a_reference_wherever_the_environment_may_give_a_value(validator):
    good = {"name": "${NAME:-x}", "model": {"factory": "m.py:M"},
            "limits": {"deadline": "${DEADLINE}", "allow_private_urls": "${PRIVATE:-false}",
                       "concurrency": "${WORKERS:-2}"},
            "input": "${INPUT:-image}", "video_frame_stride": "${STRIDE}",
            "platforms": {"v7": {"enabled": "${V7_ON:-true}", "auth": {"method": "${V7_AUTH_METHOD:-none}"}},
                          "labelbox": {"requests_per_second": "${RPS}", "tags": {"kind": "${KIND}"}},
                          "ango": {"reconnect_delay": "${ANGO_RETRY:-2}"}}}
    assert list(validator.iter_errors(good)) == []


@pytest.mark.parametrize("limits", [
    {"deadline": "soon"}, {"deadline": "$DEADLINE"}, {"deadline": "${DEADLINE"}, {"deadline": "${DEAD LINE}"},
    {"concurrency": 0}, {"allow_private_urls": "yes"},
])
def test_the_schema_still_refuses_what_is_not_a_reference(validator, limits):
    assert list(validator.iter_errors({"name": "x", "model": {"factory": "m.py:M"}, "limits": limits}))
