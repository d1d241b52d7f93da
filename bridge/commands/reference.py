"""Reference output: what every platform receives of each class kind (`bridge formats`), the manifest's JSON
Schema for editors (`bridge manifest-schema`), each platform's section and the `ray` section included, and the
configuration reference made from that schema (`bridge reference`, kept in docs/configuration.md): every
manifest key, and every environment variable the project's manifests and the bridge read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model

from bridge.commands import init
from bridge.core import conversions
from bridge.core.manifest import (
    ENV_REFERENCE_PATTERN,
    PROJECT_MANIFEST,
    Manifest,
    PlatformSection,
    references,
)
from bridge.platforms.protocol import Adapter
from bridge.serving.ray_settings import RayScaling

REFERENCE_FILE = "docs/configuration.md"


def add(commands: argparse._SubParsersAction, adapters: dict[str, Adapter]) -> None:
    schema = commands.add_parser("manifest-schema", help="print the manifest's JSON Schema")
    schema.set_defaults(func=lambda args: _print(json.dumps(full_manifest_schema(adapters), indent=2) + "\n"))
    formats = commands.add_parser("formats", help="print what each platform receives of each class kind")
    formats.set_defaults(func=lambda args: _print(
        conversions.markdown({name: adapters[name].conversions for name in sorted(adapters)})))
    reference = commands.add_parser("reference", help=f"print the configuration reference ({REFERENCE_FILE}): "
                                                      "every manifest key and environment variable")
    reference.set_defaults(func=lambda args: _print(configuration_reference(adapters)))


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


def full_manifest_schema(adapters: dict[str, Adapter]) -> dict[str, Any]:
    """The manifest's schema with each adapter's section and the `ray` section; any constrained value may be a
    `${NAME}`."""
    return accept_env_references(full_manifest(adapters).model_json_schema())


def full_manifest(adapters: dict[str, Adapter]) -> type[BaseModel]:
    """The manifest as one model: each adapter's section under `platforms`, and the `ray` section."""
    platforms = create_model(
        "Platforms",
        __config__=ConfigDict(extra="forbid"),
        **{name: (adapter.section | None, None) for name, adapter in sorted(adapters.items())},
    )
    described = {name: Manifest.model_fields[name].description for name in ("platforms", "ray")}
    return create_model("Manifest", __base__=Manifest,
                        platforms=(platforms, Field(None, description=described["platforms"])),
                        ray=(RayScaling, Field(None, description=described["ray"])))


# --- the published JSON Schema --------------------------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_ANNOTATIONS = ("title", "description", "default", "examples")


def accept_env_references(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` where every constrained scalar (number, boolean, enum, ...) may also be a `${NAME}` string.

    The loader substitutes every string before validating, so `deadline: ${DEADLINE}` is a good manifest;
    the published schema must say so, or editors flag the project's own manifests.
    """
    reference = {"type": "string", "pattern": ENV_REFERENCE_PATTERN,
                 "description": "Taken from the environment: ${NAME} or ${NAME:-default}."}
    schema = _with_references(schema, {"$ref": "#/$defs/EnvReference"})
    schema.setdefault("$defs", {})["EnvReference"] = reference
    return schema


def _with_references(node: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    node = dict(node)
    for key in _SCHEMA_MAPS:
        if key in node:
            node[key] = {name: _with_references(sub, reference) for name, sub in node[key].items()}
    for key in _SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            node[key] = _with_references(node[key], reference)
    for key in _SCHEMA_LISTS:
        if key in node:
            node[key] = [_with_references(sub, reference) for sub in node[key]]
    scalar = node.get("type") in ("number", "integer", "boolean", "null") or "enum" in node or "const" in node
    constrained_string = node.get("type") == "string" and {"pattern", "format", "maxLength"} & set(node)
    if not (scalar or constrained_string) or node.get("type") == "null":
        return node
    annotations = {k: node.pop(k) for k in _ANNOTATIONS if k in node}
    return {**annotations, "anyOf": [node, reference]}


# --- the configuration reference ------------------------------------------------------------------------------

PROCESS_VARIABLES = {
    "PROMETHEUS_MULTIPROC_DIR": "An empty folder (made if missing) where every process of `bridge serve --workers` "
                                "(or of any process manager) writes its metrics, so that `/metrics` reports their "
                                "sum; set it before the processes start. Unset: each process counts its own.",
    "RAY_AUTH_MODE": "Read by Ray: `token` makes `bridge serve --ray --address ...` send the cluster's token "
                     "(`~/.ray/auth_token`, or `RAY_AUTH_TOKEN`).",
    "RAY_AUTH_TOKEN": "Read by Ray: the token of a Ray cluster with token authentication.",
    "ML_BLOCK_LOCAL_IP": "Read by Label Studio, not the bridge: `false` lets it call an ML backend on a loopback "
                         "or private address (with `SSRF_PROTECTION_ENABLED=false`; see the README's Label Studio "
                         "section for what that opens).",
    "SSRF_PROTECTION_ENABLED": "Read by Label Studio, not the bridge: `false` lets the webhook it makes for a "
                               "backend on a private address through (with `ML_BLOCK_LOCAL_IP=false`).",
    "CVAT_ACCESS_TOKEN": "Read by cvat-cli, not the bridge: the CVAT personal access token that `function "
                         "create-native`, `function run-agent` and `task auto-annotate` send.",
    "BRIDGE_RELOAD": "Set by `bridge serve --reload` for the processes it restarts (what to serve): not yours to set.",
    "CONNECTOR": "Set by the bridge while it imports the Ango SDK (REST for `bridge serve`, WS for `bridge ango`), "
                 "then restored: not yours to set.",
}
"""Variables read by the bridge (or the libraries it drives) rather than through a manifest's `${NAME}`."""


def configuration_reference(adapters: dict[str, Adapter]) -> str:
    """docs/configuration.md: the manifest's keys from its schema, then the environment variables."""
    keys = list(manifest_keys(adapters))
    meaning = {key: text for key, _, _, text in keys}
    lines = [
        "# Configuration reference",
        "",
        f"<!-- `bridge reference` prints this file; tests/test_reference.py keeps {REFERENCE_FILE} equal to it -->",
        "",
        "Every key of a manifest (the YAML file `bridge serve`, `check`, `prelabel` and `ango` take), and every "
        "environment variable the project's manifests and the bridge read. It is made from the manifest's schema, "
        "which `bridge manifest-schema` prints as JSON Schema for editors.",
        "",
        "Any value may come from the environment: `${NAME}`, or `${NAME:-default}` when NAME may be unset (an unset "
        "NAME without a default is an error naming the key); `$$` is a literal `$`. Secrets belong there, never "
        "in the file.",
        "",
        "## Manifest keys",
        "",
        "`platforms.<name>` keys hold for every platform; below them, each platform's own keys (and defaults "
        "that differ).",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
        *(f"| `{key}` | {kind} | {default} | {text} |" for key, kind, default, text in keys),
        "",
        "## Environment variables",
        "",
        "### Read by the project's manifests",
        "",
        "The manifests in `manifests/` (shipped in the package) and the one `bridge init` writes read these; your "
        "own manifest reads whichever it names. Each sets the key it stands for (see above).",
        "",
        "| variable | sets | default | read by |",
        "| --- | --- | --- | --- |",
    ]
    for name, uses in sorted(manifest_variables().items()):
        for (key, default), readers in sorted(uses.items()):
            shown = "" if default is None else f"`{default}`" if default else "empty"
            lines.append(f"| `{name}` | `{key}`: {_meaning(key, meaning)} | {shown} | "
                         f"{', '.join(readers)} |")
    lines += ["", "### Read by the bridge", "", "| variable | what |", "| --- | --- |",
              *(f"| `{name}` | {text} |" for name, text in PROCESS_VARIABLES.items()),
              "", "`bridge check URL` reads any credential given as `env:NAME` from the environment.", ""]
    return "\n".join(lines)


def manifest_keys(adapters: dict[str, Adapter]) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every manifest key, in the schema's order; the platforms' sections give
    the keys every section has once (`platforms.<name>.KEY`), then each its own (and those whose default
    differs)."""
    schema = full_manifest(adapters).model_json_schema()
    common = PlatformSection.model_json_schema(ref_template="#/$defs/{model}")
    shared = common["properties"]
    for key, node, required in _walk(schema, schema, ""):
        if key.startswith("platforms."):
            continue
        yield _row(schema, key, node, required)
        if key != "platforms":
            continue
        yield _row(schema, "platforms.<name>", {"type": "object", "properties": {}, "description": (
            "A platform's section: the keys below hold for every platform; each platform's own follow.")}, False)
        for sub, sub_node, sub_required in _walk(schema, common, "platforms.<name>"):
            yield _row(schema, sub, sub_node, sub_required)
        for name, section in _object(schema, node)["properties"].items():
            yield _row(schema, f"platforms.{name}", section, False)
            section = _object(schema, section)
            own = {k: {"description": shared.get(k, {}).get("description"), **v}
                   for k, v in section["properties"].items() if v != shared.get(k)}
            for sub, sub_node, sub_required in _walk(schema, {**section, "properties": own}, f"platforms.{name}"):
                yield _row(schema, sub, sub_node, sub_required)


def _walk(schema: dict[str, Any], node: dict[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(key, schema, required) of each property below `node`, depth first (a list of objects as `key[]`)."""
    node = _object(schema, node)
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, sub, name in required
        target = _object(schema, sub)
        if target.get("type") == "array" and "properties" in _object(schema, target.get("items", {})):
            yield from _walk(schema, target["items"], key + "[]")
        elif "properties" in target:
            yield from _walk(schema, target, key)


def _object(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node` with its `$ref` followed and its `null` option dropped."""
    options = [option for option in node.get("anyOf", [node]) if option.get("type") != "null"]
    if len(options) == 1:
        node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    while "$ref" in node:
        target = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _row(schema: dict[str, Any], key: str, node: dict[str, Any], required: bool) -> tuple[str, str, str, str]:
    target = _object(schema, node)
    if required:
        default = "required"
    elif target.get("default") is None:
        default = ""
    elif target["default"] == "":
        default = "empty"
    else:
        value = target["default"]
        default = f"`{value if isinstance(value, str) else json.dumps(value)}`"
    text = node.get("description") or target.get("description") or ""
    return key, _type(schema, node), default, text.replace("|", "\\|").replace("\n", " ")


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    options = [_object(schema, option) for option in node.get("anyOf", [node]) if option.get("type") != "null"]
    return " or ".join(dict.fromkeys(_one_type(schema, option) for option in options))


def _one_type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node = _object(schema, node)
    if "enum" in node:
        names = [f"`{value}`" for value in node["enum"]]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema, node.get('items', {}))}"
    if kind == "object":
        values = node.get("additionalProperties")
        if "properties" in node or not isinstance(values, dict):
            return "mapping" if "properties" in node or values is False else "mapping of any keys"
        return f"mapping of names to {_type(schema, values)}"
    if kind == "string" and node.get("format") == "path":
        return "path"
    bounds = []
    if "exclusiveMinimum" in node:
        bounds.append(f"> {node['exclusiveMinimum']}")
    if "minimum" in node:
        bounds.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        bounds.append(f"≤ {node['maximum']}")
    return " ".join([kind, ", ".join(bounds)]).strip()


def manifest_variables() -> dict[str, dict[tuple[str, str | None], list[str]]]:
    """Variable -> (key it sets, its default) -> the manifests that read it: the project's and the starter."""
    written = {f"`{path.name}`": path.read_text(encoding="utf-8")
               for path in sorted(PROJECT_MANIFEST.parent.glob("*.yaml"))}
    written["`bridge init`"] = init.MANIFEST.format(name="my-model")
    found: dict[str, dict[tuple[str, str | None], list[str]]] = {}
    for manifest, text in written.items():
        for key, name, default in references(yaml.safe_load(text)):
            found.setdefault(name, {}).setdefault((key, default), []).append(manifest)
    return found


def _meaning(key: str, meaning: dict[str, str]) -> str:
    """What `key` means: its row's, told once for every platform when it is a shared key
    (`platforms.v7.enabled` as `platforms.<name>.enabled`), else its nearest parent's (`model.params.x`)."""
    parts = key.split(".")
    while parts:
        generic = ["platforms", "<name>", *parts[2:]] if parts[0] == "platforms" and len(parts) > 2 else parts
        found = meaning.get(".".join(parts)) or meaning.get(".".join(generic))
        if found:
            return found
        parts.pop()
    return ""
