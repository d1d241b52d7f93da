"""Reference output: what every platform receives of each class kind (`bridge formats`), and the manifest's
JSON Schema for editors (`bridge manifest-schema`), each platform's section and the `ray` section included."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ConfigDict, create_model

from bridge.core import conversions
from bridge.core.manifest import ENV_REFERENCE_PATTERN, Manifest
from bridge.platforms.protocol import Adapter
from bridge.serving.ray_settings import RayScaling


def add(commands: argparse._SubParsersAction, adapters: dict[str, Adapter]) -> None:
    schema = commands.add_parser("manifest-schema", help="print the manifest's JSON Schema")
    schema.set_defaults(func=lambda args: _print(json.dumps(full_manifest_schema(adapters), indent=2) + "\n"))
    formats = commands.add_parser("formats", help="print what each platform receives of each class kind")
    formats.set_defaults(func=lambda args: _print(
        conversions.markdown({name: adapters[name].conversions for name in sorted(adapters)})))


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


def full_manifest_schema(adapters: dict[str, Adapter]) -> dict[str, Any]:
    """The manifest's schema with each adapter's section and the `ray` section; any constrained value may be a
    `${NAME}`."""
    platforms = create_model(
        "Platforms",
        __config__=ConfigDict(extra="forbid"),
        **{name: (adapter.section | None, None) for name, adapter in sorted(adapters.items())},
    )
    full = create_model("Manifest", __base__=Manifest, platforms=(platforms, None), ray=(RayScaling, None))
    return accept_env_references(full.model_json_schema())


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
