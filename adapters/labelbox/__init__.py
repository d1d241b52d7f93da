"""Labelbox Foundry custom model: `POST {base}/infer`, and the `model.yaml` Labelbox's team asks for.

Give Labelbox `https://HOST/labelbox/infer` (the section's `base_path` + `/infer`) as the HTTP endpoint and the
section's `secret` as the model's secret. Every request must carry `Authorization: Bearer <secret>`, checked
in constant time before the body is parsed; without a configured secret the endpoint refuses every request,
so it is never open by accident. `bridge labelbox-manifest MANIFEST --endpoint URL` writes the `model.yaml`.

What the model receives from `{"prompt": [{"role": ..., "parts": [{"text": ...} | {"image": <base64>}]}]}`:

- an image model: the last image part of the last `user` message;
- a text model: text part number `text_part` (default -1, the last) of the last `user` message. Labelbox puts
  the data row after any instruction text, so the last text part is the row;
- `system` and `assistant` messages are accepted and not read;
- inference parameters: every key beside `prompt`, then the keys of `inference_params` (which win), checked
  against the manifest's `params` schema with its defaults applied.

What it answers, keyed by feature name (the class name after the section's `rename`):

- box: `{"f": {"boxes": [[left, top, width, height], ...], "scores": [...]}}`;
- mask, polygon (holes kept), rotated box, ellipse: `{"f": {"masks": [{"size": [h, w], "counts": ...}]}}`,
  rasterised at the image's size (a pixel is in when its centre is), COCO compressed RLE as ASCII;
- radio `"f": "option"` and free text `"f": "text"` (the most confident answer), checklist `"f": [options]`;
- tag classes: the options of one classification feature set by the section's `tags` (default a checklist
  named "tags" holding every tag found; `kind: radio` answers the most confident tag only);
- entity: `{"f": [{"start": 0, "end": 3, "text": "Tom"}]}`, offsets into the data row, `end` exclusive
  (Python slicing): `text == row[start:end]`.

Points, lines, skeletons, cuboids and vectors have no Foundry form: they are dropped, logged once per class,
and listed by `bridge check` and `bridge labelbox-manifest`. Attributes and a prediction's `text` have no place
in these forms and are dropped too. `CONVERSIONS` declares all of it (`bridge formats` prints it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.labelbox import contract
from adapters.labelbox import remote as remote_model
from adapters.labelbox.read import read_answer
from bridge import auth
from bridge.auth import Auth
from bridge.cli import add_manifest_argument, manifest_from
from bridge.conversions import dropped, exact, lossy
from bridge.errors import InvalidInput
from bridge.export import Exporter, ExportSetup
from bridge.geometry import rasterize
from bridge.manifest import Manifest, PlatformSection, Strict
from bridge.model import ModelSpec
from bridge.platforms import Adapter, Route, answer
from bridge.predictions import Box, Classification, Ellipse, Mask, Polygon, Prediction, RotatedBox, Span, Tag
from bridge.service import ImageSource, Job, Result, Service

PLATFORM = "labelbox"

_AREA = "Foundry answers areas as masks: rasterised at the image's size (a pixel is in when its centre is)"
_NONE = "Foundry documents no answer form for it"
CONVERSIONS = {
    "box": exact("rectangle"),
    "rotated_box": lossy("raster-segmentation", _AREA),
    "polygon": lossy("raster-segmentation", _AREA),
    "mask": exact("raster-segmentation"),
    "point": dropped(_NONE),
    "line": dropped(_NONE),
    "ellipse": lossy("raster-segmentation", _AREA),
    "skeleton": dropped(_NONE),
    "cuboid": dropped(_NONE),
    "vector": dropped(_NONE),
    "tag": exact("checklist"),
    "radio": exact("radio"),
    "checklist": exact("checklist"),
    "text": exact("text"),
    "entity": exact("named-entity"),
    "prediction.attributes": dropped("Foundry answers have no place for attributes"),
    "prediction.text": dropped("Foundry answers have no place for a prediction's text"),
    "prediction.confidence": lossy("scores", "only boxes carry scores; other answers carry none"),
    "prediction.frame": dropped("Foundry custom models answer one image or text"),
}
"""What Labelbox Foundry receives of each class kind; the `form` is the Labelbox feature kind (ontology tool or
classification type); tag classes are options of the classification set by the section's `tags` (a checklist
by default, or a radio). A radio or free-text feature holds one answer: of several, the most confident."""

DOCUMENTED_FEATURE_KINDS = ("text", "radio", "checklist", "rectangle", "raster-segmentation", "named-entity",
                            "polygon", "point", "edge")
"""`allowed_feature_kinds` values, in the order Labelbox's document lists them."""

TOOLS = ("rectangle", "raster-segmentation", "named-entity")

AssetType = Literal["image", "text", "video", "html", "conversational"]

LABELBOX_KEYS = ("ontology",)
"""Keys Labelbox itself may put beside `prompt` (its doc says the request "includes the ontology"); the
other keys are the model's inference parameters."""

PLACEHOLDER_SECRET = "<the endpoint's bearer secret: platforms.labelbox.secret>"


# --- manifest section -----------------------------------------------------------------------------------------


class LabelboxTags(Strict):
    """Which classification feature tag classes answer: each tag class is one of its options."""

    question: str = Field("tags", min_length=1, description="Feature name of the classification.")
    kind: Literal["checklist", "radio"] = Field(
        "checklist", description="checklist: every tag found; radio: the most confident tag only.")


class LabelboxSection(PlatformSection):
    base_path: str = "/labelbox"
    secret: str | None = Field(None, description="Bearer secret Labelbox sends (use ${ENV}); unset or empty: "
                                                 "every request is refused.")
    text_part: int = Field(-1, description="Which text part of the last user message a text model reads "
                                           "(Python index: -1 is the last, 0 the first).")
    tags: LabelboxTags = Field(default_factory=LabelboxTags)
    requests_per_second: float = Field(1.0, gt=0, description="model.yaml: your estimate of the throughput.")
    allowed_asset_types: list[AssetType] | None = Field(
        None, min_length=1, description="model.yaml: asset types Labelbox may send (default: the model's input).")
    max_tokens: int | None = Field(None, gt=0, description="model.yaml: token limit, for LLM-like models.")


# --- request and response models (what /docs shows) -----------------------------------------------------------


class LabelboxPart(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["text"]},
                                                                           {"required": ["image"]}]})
    text: str | None = None
    image: str | None = Field(None, description="Base64-encoded image (a `data:...;base64,` prefix is allowed).")

    @model_validator(mode="after")
    def _one(self) -> LabelboxPart:
        if (self.text is None) == (self.image is None):
            raise ValueError("a part holds exactly one of `text` and `image`")
        return self


class LabelboxMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    parts: list[LabelboxPart] = Field(min_length=1)


class LabelboxRequest(BaseModel):
    """Labelbox's request; keys beside `prompt` (and those under `inference_params`) are inference params."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {"prompt": [
        {"role": "user", "parts": [{"text": "what is in this image?"}, {"image": "<base64>"}]}]}})
    prompt: list[LabelboxMessage] = Field(min_length=1)
    inference_params: dict[str, Any] | None = None


class LabelboxRLE(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (column-major runs), as pycocotools.mask.encode gives.")


class LabelboxBoxes(BaseModel):
    boxes: list[list[float]] = Field(description="[left, top, width, height] in pixels.")
    scores: list[float]


class LabelboxMasks(BaseModel):
    masks: list[LabelboxRLE]


class LabelboxEntity(BaseModel):
    start: int
    end: int = Field(description="Exclusive: text == row[start:end].")
    text: str


LabelboxAnswer = dict[str, LabelboxBoxes | LabelboxMasks | list[LabelboxEntity] | list[str] | str]
"""The answer: one entry per feature name."""


# --- conversions (pure) ---------------------------------------------------------------------------------------


def to_job(request: LabelboxRequest, reads: Literal["image", "text"], section: LabelboxSection) -> Job:
    """The neutral job: the image or text of the last user message, and the inference params."""
    users = [message for message in request.prompt if message.role == "user"]
    if not users:
        raise InvalidInput("the prompt has no `user` message; the data row comes in the last one")
    parts = users[-1].parts
    texts = [part.text for part in parts if part.text is not None]
    images = [part.image for part in parts if part.image is not None]
    params = {k: v for k, v in (request.model_extra or {}).items() if k not in LABELBOX_KEYS}
    params.update(request.inference_params or {})
    if reads == "image":
        if not images:
            raise InvalidInput("this model reads images, and the last user message has no `image` part "
                               f"({len(texts)} text part(s))")
        return Job(platform=PLATFORM, image=ImageSource(base64=images[-1]), params=params)
    if not texts:
        raise InvalidInput("this model reads text, and the last user message has no `text` part "
                           f"({len(images)} image part(s))")
    if not -len(texts) <= section.text_part < len(texts):
        raise InvalidInput(f"platforms.labelbox.text_part is {section.text_part}, and the last user message "
                           f"has {len(texts)} text part(s)")
    return Job(platform=PLATFORM, text=texts[section.text_part], params=params)


def to_answer(predictions: list[Prediction], spec: ModelSpec, section: LabelboxSection,
              size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Labelbox's answer keyed by feature name; `size` (h, w) rasterises areas. Predictions come checked from
    the core (spans inside and quoting the text), so this only translates, by shape."""
    answer: dict[str, Any] = {}
    best: dict[str, tuple[float, str]] = {}  # radio and free-text features: the most confident answer
    for prediction in predictions:
        cls = spec.get(prediction.label)
        if CONVERSIONS[cls.kind].fidelity == "dropped":
            continue
        name, shape, confidence = section.platform_name(cls.name), prediction.shape, prediction.confidence
        if isinstance(shape, Box):
            entry = answer.setdefault(name, {"boxes": [], "scores": []})
            entry["boxes"].append(_ltwh(shape))
            entry["scores"].append(confidence)
        elif isinstance(shape, (Mask, Polygon, RotatedBox, Ellipse)):
            mask = rasterize(shape, *size)
            if mask.array.any():
                answer.setdefault(name, {"masks": []})["masks"].append(mask.rle)
        elif isinstance(shape, Span):
            answer.setdefault(name, []).append({"start": shape.start, "end": shape.end, "text": shape.text})
        elif isinstance(shape, Tag) and section.tags.kind == "checklist":
            _add_options(answer, section.tags.question, [name])
        elif isinstance(shape, Tag):
            _keep_best(best, section.tags.question, confidence, name)
        elif isinstance(shape, Classification) and not isinstance(shape.answer, str):
            _add_options(answer, name, shape.answer)
        elif isinstance(shape, Classification):  # radio, text
            _keep_best(best, name, confidence, shape.answer)
    answer.update({feature: value for feature, (_, value) in best.items()})
    return answer


def _ltwh(box: Box) -> list[float]:
    return [float(box.x), float(box.y), float(box.w), float(box.h)]  # clipped to the image by the core


def _add_options(answer: dict[str, Any], feature: str, options: tuple[str, ...] | list[str]) -> None:
    chosen = answer.setdefault(feature, [])
    for option in options:
        if option not in chosen:
            chosen.append(option)


def _keep_best(best: dict[str, tuple[float, str]], feature: str, confidence: float, value: str) -> None:
    if feature not in best or confidence > best[feature][0]:
        best[feature] = (confidence, value)


# --- model.yaml (pure) ----------------------------------------------------------------------------------------


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


# --- command and adapter ---------------------------------------------------------------------------------------


def write_model_yaml(args: argparse.Namespace) -> int:
    """`bridge labelbox-manifest`: the model.yaml on stdout or in a file; warnings on stderr."""
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, LabelboxSection)
    endpoint = urlsplit(args.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
        print(f"bridge labelbox-manifest: --endpoint must be an http(s) URL, got {args.endpoint!r}", file=sys.stderr)
        return 2
    if not (section.secret or args.placeholder_secret):
        print("bridge labelbox-manifest: platforms.labelbox.secret is not set; set it from the environment "
              "(secret: ${LABELBOX_SECRET}) or pass --placeholder-secret", file=sys.stderr)
        return 2
    spec = manifest.build_model().spec
    warnings = adapter.check(spec, section, manifest)
    if PLATFORM not in manifest.platforms or not section.enabled:
        warnings.append("the manifest has no enabled platforms.labelbox section: `bridge serve` does not serve "
                        "this endpoint")
    if endpoint.scheme != "https":
        warnings.append("the endpoint is not https: the bearer secret would cross the internet in clear")
    if not endpoint.path.endswith(f"{section.base_path.rstrip('/')}/infer"):
        warnings.append(f"the endpoint's path {endpoint.path!r} does not end with {section.base_path}/infer")
    secret = PLACEHOLDER_SECRET if args.placeholder_secret else section.secret
    if not args.placeholder_secret:
        warnings.append("the file holds the endpoint's secret (`secrets`): send it privately and keep it out of "
                        "version control, or pass --placeholder-secret")
    text = render_yaml(model_yaml(manifest, spec, section, args.endpoint, secret))
    if args.output is None:
        sys.stdout.write(text)
    else:
        if not args.placeholder_secret:  # owner-only before the secret is written
            args.output.touch(mode=0o600)
            args.output.chmod(0o600)
        args.output.write_text(text, encoding="utf-8")
    for warning in warnings:
        print(f"bridge labelbox-manifest: warning: {warning}", file=sys.stderr)
    return 0


class LabelboxAdapter(Adapter):
    name = PLATFORM
    title = "Labelbox Foundry"
    section = LabelboxSection
    conversions = CONVERSIONS

    def auth(self, section: LabelboxSection) -> Auth:
        return auth.bearer(section.secret, "platforms.labelbox.secret")

    def write_answer(self, result: Result, spec: ModelSpec, section: LabelboxSection,
                     manifest: Manifest) -> dict[str, Any]:
        return to_answer(result.predictions, spec, section, result.size)

    def read_answer(self, answer: Any, spec: ModelSpec, section: LabelboxSection,
                    size: tuple[int, int] | None = None, text: str | None = None) -> list[Prediction]:
        return read_answer(answer, spec, section, size, text)

    def remote_spec(self, remote: Any, client: Any) -> ModelSpec:
        return remote_model.remote_spec(remote, client)

    def remote_request(self, item: Any, context: Any, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        return remote_model.remote_request(item, context, spec, remote)

    def check_endpoint(self, probe: Any) -> list[Any]:
        return contract.check(probe)

    def routes(self, section: LabelboxSection) -> list[Route]:
        async def infer(body: LabelboxRequest, service: Service) -> dict[str, Any]:
            """Run the model on the last user message's image or text; the answer is keyed by feature name."""
            return await answer(self, service, section, to_job(body, service.spec.input, section))

        return [Route("POST", "/infer", infer, LabelboxRequest, LabelboxAnswer, params_at=())]

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser("labelbox-manifest", help="write the model.yaml Labelbox Foundry asks for")
        add_manifest_argument(parser)
        parser.add_argument("--endpoint", required=True,
                            help="the public URL Labelbox will POST to, e.g. https://models.example.com/labelbox/infer")
        parser.add_argument("-o", "--output", type=Path, default=None,
                            help="file to write (default: standard output); holding the secret, it is made 0600")
        parser.add_argument("--placeholder-secret", action="store_true",
                            help="write a placeholder instead of the secret (send the secret separately)")
        parser.set_defaults(func=write_model_yaml)

    def check(self, spec: ModelSpec, section: LabelboxSection, manifest: Manifest) -> list[str]:
        return super().check(spec, section, manifest) + check(spec, section, manifest.params)

    def exporter(self, section: LabelboxSection, setup: ExportSetup) -> Exporter:
        from adapters.labelbox.ndjson import PredictionNdjson

        return PredictionNdjson(section, setup)


adapter = LabelboxAdapter()
