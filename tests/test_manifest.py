"""The manifest: loading and its errors, ${ENV} secrets, inference params, building the model, the CLI.

Manifests are real files in a temporary folder; models are real modules written next to them or imported
as packages. Platform sections are checked with a toy adapter, so these tests hold whatever adapters are
installed, and with the installed ones where the CLI is concerned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import Field

from bridge.commands.main import main
from bridge.commands.reference import full_manifest_schema
from bridge.core.errors import InvalidInput
from bridge.core.loading import build_model
from bridge.core.manifest import (
    ManifestError,
    PlatformSection,
    _substitute,
    load_manifest,
)
from bridge.core.model import ModelSpec
from bridge.core.params import Params
from bridge.platforms.protocol import Adapter
from bridge.platforms.registry import Platforms, discover
from bridge.serving.app import create_app

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "manifests" / "default.yaml"

MODEL_SOURCE = '''
from bridge import Box, ClassSpec, ModelSpec, Prediction


class Detector:
    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="box")])

    def __init__(self, size=10, label="thing"):
        self.size = size
        self.label = label

    def predict(self, image, context):
        return [Prediction(self.label, Box(0, 0, self.size, self.size))]


class NoSpec:
    def __init__(self, answer="yes"):
        self.answer = answer

    def predict(self, item, context):
        return []


def make_detector(**params):
    return Detector(**params)


class Broken:
    def __init__(self):
        raise RuntimeError("weights not found")


NOT_A_MODEL = 42


class WrongSpec:
    spec = {"classes": [{"name": "thing", "kind": "box"}]}

    def predict(self, item, context):
        return []


class NoPredict:
    spec = Detector.spec
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def manifest_file(tmp_path: Path, name: str = "manifest.yaml", **keys) -> Path:
    keys.setdefault("name", "test")
    keys.setdefault("model", {"factory": "models/detector.py:Detector"})
    return write(tmp_path / name, yaml.safe_dump(keys))


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """models/detector.py next to where the tests write their manifests."""
    return write(tmp_path / "models" / "detector.py", MODEL_SOURCE)


def load_error(path: Path) -> str:
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    return str(error.value)


# --- load errors name the file and the key ----------------------------------------------------------------------


def test_missing_factory(tmp_path):
    path = manifest_file(tmp_path, model={"params": {"size": 3}})
    message = load_error(path)
    assert str(path) in message and "model.factory" in message and "required" in message


def test_wrong_types_in_limits_are_all_reported(tmp_path):
    path = manifest_file(tmp_path, limits={"deadline": "soon", "concurrency": 0, "max_request_bytes": -1})
    lines = load_error(path).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: limits.") for line in lines)
    assert any("limits.deadline" in line and "number" in line for line in lines)
    assert any("limits.concurrency" in line and "greater than 0" in line for line in lines)
    assert any("limits.max_request_bytes" in line for line in lines)


@pytest.mark.parametrize("keys, where", [
    ({"colour": "red"}, "colour"),
    ({"limits": {"deadlin": 3}}, "limits.deadlin"),
    ({"model": {"factory": "a:b", "param": {}}}, "model.param"),
    ({"geometry": {"tolerance": 1}}, "geometry.tolerance"),
])
def test_unknown_keys_are_refused(tmp_path, keys, where):
    message = load_error(manifest_file(tmp_path, **keys))
    assert f": {where}: Extra inputs are not permitted" in message


@pytest.mark.parametrize("schema, reason", [
    ({"type": "object", "properties": {"t": {"type": 12}}}, "not a valid JSON Schema"),
    ({"type": "object", "properties": {"t": {"minimum": "zero"}}}, "not a valid JSON Schema"),
    ({"type": "string"}, "must describe an object"),
])
def test_bad_params_schema(tmp_path, schema, reason):
    path = manifest_file(tmp_path, params=schema)
    message = load_error(path)
    assert message.startswith(f"{path}: params:") and reason in message


def test_bad_classes(tmp_path):
    path = manifest_file(tmp_path, classes=[{"name": "q", "kind": "radio"}, {"name": "p", "kind": "blob"}])
    message = load_error(path)
    assert "classes.0" in message and "needs `options`" in message
    assert "classes.1.kind" in message


def test_bad_yaml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path / "broken.yaml", "name: x\nmodel: [unclosed\n")
    message = load_error(path)
    assert str(path) in message and "not valid YAML" in message and "line 2" in message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_a_manifest_is_a_mapping(tmp_path, text):
    path = write(tmp_path / "odd.yaml", text)
    assert "a manifest is a mapping of keys" in load_error(path)


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nowhere.yaml")
    assert "cannot read manifest" in message and "nowhere.yaml" in message and "No such file" in message


def test_a_good_manifest_loads_with_defaults(tmp_path):
    manifest = load_manifest(manifest_file(tmp_path))
    assert manifest.path == (tmp_path / "manifest.yaml").resolve()
    assert manifest.base_dir == tmp_path.resolve()
    assert manifest.limits.deadline < 30  # under V7's 30 s
    assert manifest.limits.concurrency == 1
    media = manifest.limits.media()
    assert media.allow_private_urls is False and media.fetch_timeout == manifest.limits.fetch_timeout


# --- ${ENV} ------------------------------------------------------------------------------------------------------


def test_environment_substitution(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_TEST_TOKEN", "s3cret")
    monkeypatch.setenv("BRIDGE_TEST_DEADLINE", "7.5")
    monkeypatch.delenv("BRIDGE_TEST_UNSET", raising=False)
    path = manifest_file(
        tmp_path,
        description="token ${BRIDGE_TEST_TOKEN}, twice: ${BRIDGE_TEST_TOKEN}",
        readme="${BRIDGE_TEST_UNSET:-fallback} and ${BRIDGE_TEST_UNSET:-} end",
        version="${BRIDGE_TEST_TOKEN:-ignored}",
        limits={"deadline": "${BRIDGE_TEST_DEADLINE}", "concurrency": "${BRIDGE_TEST_UNSET:-3}"},
        model={"factory": "models/detector.py:Detector", "params": {"size": 5, "label": "$$NOT_A_VARIABLE"}},
    )
    manifest = load_manifest(path)
    assert manifest.description == "token s3cret, twice: s3cret"
    assert manifest.readme == "fallback and  end"
    assert manifest.version == "s3cret"  # a set variable wins over the default
    assert manifest.limits.deadline == 7.5 and manifest.limits.concurrency == 3  # then validated as numbers
    assert manifest.model.params == {"size": 5, "label": "$NOT_A_VARIABLE"}  # $$ is a literal $
    assert "s3cret" not in path.read_text()  # the secret never was in the file


def test_missing_environment_variable_names_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("BRIDGE_TEST_MISSING", raising=False)
    path = manifest_file(tmp_path, platforms={"toy": {"keys": ["a", "${BRIDGE_TEST_MISSING}"]}})
    message = load_error(path)
    assert message == f"{path}: platforms.toy.keys.1: environment variable BRIDGE_TEST_MISSING is not set"


def test_substitution_leaves_other_values_alone():
    raw = {"a": 1, "b": [True, None, 2.5], "c": {"d": "${BRIDGE_TEST_X:-x}"}}
    assert _substitute(raw, "f", [], {}) == {"a": 1, "b": [True, None, 2.5], "c": {"d": "x"}}


# --- inference params ---------------------------------------------------------------------------------------------


PARAMS = {
    "type": "object",
    "properties": {
        "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "mode": {"enum": ["fast", "accurate"], "default": "fast"},
        "size": {"type": "integer"},
        "nested": {"type": "object", "properties": {"k": {"type": "integer"}}},
    },
}


def test_resolve_params_defaults_and_overrides(tmp_path):
    manifest = load_manifest(manifest_file(tmp_path, params=PARAMS))
    assert Params(manifest.params).resolve(None) == {"threshold": 0.5, "mode": "fast"}
    assert Params(manifest.params).resolve({}) == {"threshold": 0.5, "mode": "fast"}
    assert Params(manifest.params).resolve({"threshold": 0.9, "size": 3}) == {"threshold": 0.9, "mode": "fast", "size": 3}
    # a misspelt parameter is refused, naming the known ones, unless the schema opens the object
    with pytest.raises(InvalidInput, match="unknown parameter extra; this model's parameters: mode, nested, size, "
                                           "threshold"):
        Params(manifest.params).resolve({"extra": "kept"})
    opened = load_manifest(manifest_file(tmp_path, params={**PARAMS, "additionalProperties": True}))
    assert Params(opened.params).resolve({"extra": "kept"})["extra"] == "kept"
    # defaults are not shared between requests
    Params(manifest.params).resolve({"mode": "accurate"})
    assert Params(manifest.params).resolve({})["mode"] == "fast"


@pytest.mark.parametrize("given, name, words", [
    ({"threshold": 2}, "threshold", "maximum"),
    ({"threshold": "high"}, "threshold", "number"),
    ({"mode": "slow"}, "mode", "fast"),
    ({"size": 1.5}, "size", "integer"),
    ({"nested": {"k": "x"}}, "nested.k", "integer"),
])
def test_invalid_params_are_422_naming_the_parameter(tmp_path, given, name, words):
    manifest = load_manifest(manifest_file(tmp_path, params=PARAMS))
    with pytest.raises(InvalidInput) as error:
        Params(manifest.params).resolve(given)
    assert error.value.status == 422
    assert error.value.message.startswith(f"invalid parameter {name}:")
    assert words in error.value.message


def test_required_and_closed_params(tmp_path):
    schema = {"type": "object", "required": ["prompt"], "additionalProperties": False,
              "properties": {"prompt": {"type": "string"}}}
    manifest = load_manifest(manifest_file(tmp_path, params=schema))
    with pytest.raises(InvalidInput, match="'prompt' is a required property"):
        Params(manifest.params).resolve({})
    with pytest.raises(InvalidInput, match="unknown parameter other; this model's parameters: prompt"):
        Params(manifest.params).resolve({"prompt": "a", "other": 1})
    assert Params(manifest.params).resolve({"prompt": "a"}) == {"prompt": "a"}


# --- building the model ---------------------------------------------------------------------------------------------


def test_build_model_from_a_file_relative_to_the_manifest(tmp_path, models):
    path = manifest_file(tmp_path, model={"factory": "models/detector.py:Detector",
                                                "params": {"size": 7}})
    model = build_model(load_manifest(path), discover())
    assert model.size == 7 and model.spec.classes[0].name == "thing"
    # a manifest in a sub-folder reaches the model with ../
    sub = manifest_file(tmp_path / "manifests", model={"factory": "../models/detector.py:make_detector",
                                                       "params": {"size": 2}})
    assert build_model(load_manifest(sub), discover()).size == 2


def test_build_model_from_a_package(tmp_path, monkeypatch):
    write(tmp_path / "site" / "bridge_test_pkg" / "__init__.py", "")
    write(tmp_path / "site" / "bridge_test_pkg" / "detectors.py", MODEL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    manifest = load_manifest(manifest_file(tmp_path, model={"factory": "bridge_test_pkg.detectors:Detector",
                                                            "params": {"label": "thing", "size": 4}}))
    model = build_model(manifest, discover())
    assert type(model).__module__ == "bridge_test_pkg.detectors" and model.size == 4
    # the project's own example, by package path
    faces = load_manifest(manifest_file(tmp_path, name="faces.yaml",
                                        model={"factory": "examples.faces:FaceDetector"}))
    monkeypatch.syspath_prepend(str(ROOT))
    assert [c.name for c in build_model(faces, discover()).spec.classes] == ["face", "eye"]


def test_a_model_without_spec_takes_the_manifest_classes(tmp_path, models):
    manifest = load_manifest(manifest_file(
        tmp_path, model={"factory": "models/detector.py:NoSpec", "params": {"answer": "no"}}, input="text",
        classes=[{"name": "mood", "kind": "radio", "options": ["happy", "sad"]}, {"name": "who", "kind": "entity"}],
    ))
    model = build_model(manifest, discover())
    assert isinstance(model.spec, ModelSpec) and model.answer == "no"
    assert model.spec.input == "text"
    assert [(c.name, c.kind, c.options) for c in model.spec.classes] == [("mood", "radio", ("happy", "sad")),
                                                                         ("who", "entity", ())]


def test_a_model_without_spec_and_without_classes(tmp_path, models):
    path = manifest_file(tmp_path, model={"factory": "models/detector.py:NoSpec"})
    with pytest.raises(ManifestError, match="declares no `spec`, so the manifest needs `classes`") as error:
        build_model(load_manifest(path), discover())
    assert str(path.resolve()) in str(error.value)


@pytest.mark.parametrize("factory, words", [
    ("models/detector.py", "not of the form"),
    ("models/missing.py:Detector", "no file"),
    ("models/detector.py:Nope", "has no attribute 'Nope'"),
    ("no_such_package_xyz.module:Model", "No module named 'no_such_package_xyz'"),
    ("models/detector.py:NOT_A_MODEL", "'int' object is not callable"),
    ("models/detector.py:WrongSpec", "must give an object with a `spec: ModelSpec`"),
    ("models/detector.py:NoPredict", "must give an object with a `spec: ModelSpec` and a `predict"),
])
def test_factory_errors_name_the_file_and_the_key(tmp_path, models, factory, words):
    path = manifest_file(tmp_path, model={"factory": factory})
    with pytest.raises(ManifestError) as error:
        build_model(load_manifest(path), discover())
    message = str(error.value)
    assert str(path.resolve()) in message and words in message
    assert "model.factory" in message or factory in message


@pytest.mark.parametrize("factory, params, words", [
    ("models/detector.py:Detector", {"colour": "red"}, "colour"),
    ("models/detector.py:Broken", {}, "weights not found"),
])
def test_a_factory_that_raises_is_a_manifest_error(tmp_path, models, factory, params, words):
    path = manifest_file(tmp_path, model={"factory": factory, "params": params})
    with pytest.raises(ManifestError) as error:
        build_model(load_manifest(path), discover())
    message = str(error.value)
    assert str(path.resolve()) in message and "model" in message and words in message


# --- platform sections --------------------------------------------------------------------------------------------


class ToySection(PlatformSection):
    base_path: str = "/toy"
    keys: list[str] = Field(default_factory=list)
    rate: float = Field(1.0, gt=0)


class Toy(Adapter):
    name = "toy"
    section = ToySection


def test_unknown_platform_section_is_an_error(tmp_path, models):
    manifest = load_manifest(manifest_file(tmp_path, platforms={"toy": {}, "nonesuch": {"enabled": True}}))
    with pytest.raises(ManifestError) as error:
        served(manifest, {"toy": Toy()})
    message = str(error.value)
    assert "platforms: no adapter named nonesuch" in message and "installed: toy" in message
    assert str(manifest.path) in message
    with pytest.raises(ManifestError, match="no adapter named nonesuch"):
        create_app(manifest, {"toy": Toy()})
    with pytest.raises(ManifestError, match="no adapter named nonesuch"):
        create_app(manifest)  # the installed adapters do not know it either


def test_platform_sections_are_validated_by_their_adapter(tmp_path, models):
    manifest = load_manifest(manifest_file(tmp_path, platforms={"toy": {"rate": 0, "colour": 1}}))
    with pytest.raises(ManifestError) as error:
        served(manifest, {"toy": Toy()})
    message = str(error.value)
    assert f"{manifest.path}: platforms.toy.rate: Input should be greater than 0" in message
    assert f"{manifest.path}: platforms.toy.colour: Extra inputs are not permitted" in message


def test_enabled_and_disabled_platforms(tmp_path, models):
    on = load_manifest(manifest_file(tmp_path, platforms={"toy": {"keys": ["a"], "rename": {"thing": "Thing"}}}))
    ((adapter, section),) = served(on, {"toy": Toy()}).values()
    assert isinstance(section, ToySection) and section.keys == ["a"] and section.platform_name("thing") == "Thing"
    absent = load_manifest(manifest_file(tmp_path, name="absent.yaml"))
    assert served(absent, {"toy": Toy()}) == {}  # no section: not served
    empty = load_manifest(manifest_file(tmp_path, name="empty.yaml", platforms={"toy": None}))
    assert list(served(empty, {"toy": Toy()})) == ["toy"]  # an empty section: defaults, served
    off = load_manifest(manifest_file(tmp_path, name="off.yaml", platforms={"toy": {"enabled": False}}))
    assert served(off, {"toy": Toy()}) == {}


# --- the CLI ------------------------------------------------------------------------------------------------------


def test_manifest_schema_command(capsys):
    assert main(["manifest-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    installed = discover()
    assert "v7" in installed
    platforms = schema["$defs"]["Platforms"]["properties"]
    assert set(installed) <= set(platforms)
    for key in ("name", "model", "params", "limits", "platforms"):
        assert key in schema["properties"]
    assert {"name", "model"} <= set(schema["required"])
    validator = jsonschema.Draft202012Validator(schema)
    # the default manifest fits the published schema as written (${ENV} included: tests/test_env.py)
    raw = yaml.safe_load(DEFAULT.read_text())
    assert list(validator.iter_errors(raw)) == []
    # and the schema catches what the loader catches
    bad = {"name": "x", "model": {"factory": "a:b"}, "limits": {"deadline": "soon"}, "colour": 1}
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "'colour' was unexpected" in messages and "'soon' is not valid" in messages


def test_manifest_schema_includes_any_adapter_section():
    schema = full_manifest_schema({"toy": Toy()})
    toy = schema["$defs"]["ToySection"]["properties"]
    assert {"keys", "rate", "enabled", "base_path", "rename"} <= set(toy)
    assert schema["$defs"]["Platforms"]["properties"]["toy"]


def test_manifest_schema_console_script():
    script = Path(sys.executable).with_name("bridge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]
    done = subprocess.run([*command, "manifest-schema"], capture_output=True, text=True, timeout=60, check=True)
    assert "V7Section" in json.loads(done.stdout)["$defs"]


def test_check_the_default_manifest(capsys, monkeypatch):
    for name in ("V7_AUTH_METHOD", "V7_USERNAME", "V7_PASSWORD", "V7_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["check", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT}: face-detector 1.0.0, 2 classes, image input" in out
    assert "  v7: ok" in out


def test_check_reports_manifest_errors_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("V7_AUTH_METHOD", "basic")  # and no username/password: the v7 section is incomplete
    monkeypatch.delenv("V7_USERNAME", raising=False)
    monkeypatch.delenv("V7_PASSWORD", raising=False)
    assert main(["check", str(DEFAULT)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bridge: {DEFAULT}: platforms.v7.auth")
    assert "basic auth needs" in err and "Traceback" not in err

    broken = manifest_file(tmp_path, limits={"deadline": -1})
    assert main(["check", str(broken)]) == 2
    assert f"{broken}: limits.deadline" in capsys.readouterr().err


def test_check_reports_a_model_that_fails_to_build(tmp_path, models, capsys):
    path = manifest_file(tmp_path, model={"factory": "models/detector.py:Detector", "params": {"colour": 1}})
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path.resolve()) in err and "colour" in err


def served(manifest, adapters):
    return Platforms.of(manifest, adapters).served


def test_relative_paths_in_model_params_are_the_manifests_as_the_factory_is(tmp_path, monkeypatch, capsys):
    """The README's flow: `bridge check my_model/manifest.yaml` from the project's root, with
    `params: {weights: model.pt}` beside the manifest."""
    from bridge.commands.main import main

    folder = tmp_path / "my_model"
    (folder / "weights").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights!")
    (folder / "weights" / "extra.bin").write_bytes(b"more")
    (folder / "model.py").write_text(
        "from pathlib import Path\n"
        "from bridge import ClassSpec, ModelSpec\n"
        "class Weighted:\n"
        "    spec = ModelSpec(classes=[ClassSpec(name='thing', kind='box')])\n"
        "    def __init__(self, weights, extra, mode, absolute):\n"
        "        assert Path(weights).read_bytes() == b'weights!' and Path(weights).is_absolute(), weights\n"
        "        assert [Path(p).read_bytes() for p in extra['files']] == [b'more'], extra\n"
        "        assert mode == 'fast' and absolute == '/nonexistent/model.pt', (mode, absolute)\n"
        "    def predict(self, image, context):\n"
        "        return []\n")
    (folder / "manifest.yaml").write_text(yaml.safe_dump({
        "name": "weighted", "model": {"factory": "model.py:Weighted", "params": {
            "weights": "model.pt", "extra": {"files": ["weights/extra.bin"]}, "mode": "fast",
            "absolute": "/nonexistent/model.pt"}}}))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "my_model/manifest.yaml"]) == 0, capsys.readouterr().err
