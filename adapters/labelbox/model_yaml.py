"""The `model.yaml` Labelbox's team asks for, from the manifest: every key its document names (pure)."""

from __future__ import annotations

from typing import Any

import yaml

from adapters.labelbox.convert import CONVERSIONS
from adapters.labelbox.section import LabelboxSection
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec

DOCUMENTED_FEATURE_KINDS = ("text", "radio", "checklist", "rectangle", "raster-segmentation", "named-entity",
                            "polygon", "point", "edge")
"""`allowed_feature_kinds` values, in the order Labelbox's document lists them."""

TOOLS = ("rectangle", "raster-segmentation", "named-entity")

PLACEHOLDER_SECRET = "<the endpoint's bearer secret: platforms.labelbox.secret>"



def ontology(spec: ModelSpec, section: LabelboxSection) -> dict[str, Any]:
    """The model's output ontology: tools for boxes, masks and entities; classifications with options."""
    tools: list[dict[str, Any]] = []
    classifications: list[dict[str, Any]] = []
    for cls in spec.classes:
        if cls.kind == "tag":
            continue
        kind, name = feature_kind(cls.kind, section), section.platform_name(cls.name)
        if kind in TOOLS and {"name": name, "tool": kind} not in tools:
            tools.append({"name": name, "tool": kind})
        elif kind in ("radio", "checklist", "text"):
            classifications.append(_classification(name, kind, cls.options))
    tags = [section.platform_name(cls.name) for cls in spec.classes if cls.kind == "tag"]
    if tags:
        classifications.append(_classification(section.tags.question, section.tags.kind, tags))
    return {"media_type": spec.input.upper(), "classifications": classifications, "tools": tools}


def feature_kind(kind: str, section: LabelboxSection) -> str | None:
    """The Labelbox feature kind a class kind answers as (the table's form); None when it is dropped."""
    conversion = CONVERSIONS[kind]
    if conversion.fidelity == "dropped":
        return None
    return section.tags.kind if kind == "tag" else conversion.form


def _classification(name: str, kind: str, options: tuple[str, ...] | list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"instructions": name, "name": name, "type": kind}
    if kind != "text":
        entry["options"] = [{"label": o, "value": o, "position": i} for i, o in enumerate(options)]
    return entry


def model_yaml(manifest: Manifest, spec: ModelSpec, section: LabelboxSection, endpoint: str,
               secret: str) -> dict[str, Any]:
    """Labelbox's `model.yaml` as a dict: every key its document names, values from its documented sets."""
    found = ontology(spec, section)
    kinds = {tool["tool"] for tool in found["tools"]} | {c["type"] for c in found["classifications"]}
    document: dict[str, Any] = {
        "name": manifest.name,
        "inference_endpoint": endpoint,
        "secrets": secret,
        "requests_per_second": section.requests_per_second,
        "description": manifest.description or manifest.name,
        "readme": _readme(manifest, spec, section),
        "allowed_asset_types": section.allowed_asset_types or [spec.input],
        "allowed_feature_kinds": [kind for kind in DOCUMENTED_FEATURE_KINDS if kind in kinds],
        "ontology": found,
        "inference_params_json_schema": {"properties": manifest.params.get("properties", {}),
                                         **({"required": manifest.params["required"]}
                                            if "required" in manifest.params else {})},
    }
    if section.max_tokens is not None:
        document["max_tokens"] = section.max_tokens
    return document


def _readme(manifest: Manifest, spec: ModelSpec, section: LabelboxSection) -> str:
    """The manifest's readme, then what each Labelbox feature holds."""
    lines = [manifest.readme.rstrip(), "### Features"] if manifest.readme.strip() else ["### Features"]
    for cls in spec.classes:
        feature = section.tags.question if cls.kind == "tag" else section.platform_name(cls.name)
        kind = feature_kind(cls.kind, section)
        if kind is not None:
            about = f": {cls.description}" if cls.description else ""
            option = f" (option {section.platform_name(cls.name)!r})" if cls.kind == "tag" else ""
            lines.append(f"- `{feature}` ({kind}){option}{about}")
    return "\n".join(lines) + "\n"


def render_yaml(document: dict[str, Any]) -> str:
    """YAML in the document's key order, multi-line strings as literal blocks."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=4096)


def check(spec: ModelSpec, section: LabelboxSection, params: dict[str, Any]) -> list[str]:
    """Beyond the conversion table: features several classes share, params keys model.yaml cannot carry."""
    features: dict[str, list[str]] = {}
    for cls in spec.classes:
        if feature_kind(cls.kind, section) is not None:
            feature = section.tags.question if cls.kind == "tag" else section.platform_name(cls.name)
            features.setdefault(feature, []).append("(tags)" if cls.kind == "tag" else cls.name)
    warnings = [f"classes {sorted(set(names))} share the Labelbox feature {feature!r}; their answers are merged"
                for feature, names in features.items() if len(set(names)) > 1]
    lost = sorted(set(params) - {"type", "properties", "required"})
    if lost:
        warnings.append(f"params schema keys {lost} are not in model.yaml (Labelbox reads `properties` and "
                        "`required`); the endpoint still enforces them")
    return warnings
