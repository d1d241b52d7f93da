"""The manifest: one YAML file that says which model to serve and how each platform sees it.

Loaded into pydantic models so that every mistake is reported with the file and the key, e.g.
``manifests/faces.yaml: limits.deadline: Input should be greater than 0``. Strings may hold ``${NAME}`` (or
``${NAME:-default}``) to take secrets from the environment, never from the file; ``$$`` is a literal ``$``.
Anything else that looks like a reference (``$NAME``, ``${NAME SPACE}``, an unclosed ``${``) is an error
naming the key: a typo must never become the literal value of a secret. Each platform's section is validated
by its adapter's own model (`PlatformSection` subclasses), so the core names no platform.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from bridge.errors import InvalidInput
from bridge.media import MediaLimits
from bridge.model import ClassSpec, Model, ModelSpec, import_factory
from bridge.remote import RemoteModel, RemoteRef

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOLLAR = re.compile(rf"\$(?:(?P<dollar>\$)|\{{(?P<body>[^}}]*)(?P<close>\}})?|(?P<bare>{_NAME}))")
"""What a `$` may start: `$$`, `${...}` (closed or not), or a bare `$NAME`; any other `$` is a literal."""
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::-(?P<default>[^$]*))?")
"""The body of a valid `${...}`: a name, and a default that holds no further `$`."""
ENV_REFERENCE_PATTERN = rf"\$\{{{_NAME}(:-[^$}}]*)?\}}"
"""A JSON Schema `pattern` for a string holding a valid reference (the published schema accepts these)."""


class ManifestError(Exception):
    """A manifest that cannot be used; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(Strict):
    factory: str | None = Field(None, description="'package.module:Factory' or 'path/to/file.py:Factory' "
                                                  "(relative to the manifest). Called once at start-up with `params`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the factory.")
    remote: RemoteRef | None = Field(None, description="Instead of a factory: an existing endpoint of one platform "
                                                       "(V7, Labelbox, Ango), served to the others.")

    @model_validator(mode="after")
    def _factory_or_remote(self) -> ModelRef:
        if (self.factory is None) == (self.remote is None):
            raise ValueError("model.factory is required (your code), or model.remote instead (an existing "
                             "endpoint): one of the two")
        if self.remote is not None and self.params:
            raise ValueError("`params` are the factory's keyword arguments: a remote model has none")
        return self


class Limits(Strict):
    """What one request may cost. The deadline stays under V7's 30 s by default; the media limits' defaults
    are `MediaLimits`' own, so the two cannot drift apart."""

    max_request_bytes: int = Field(30 * 2**20, gt=0, description="Largest request body accepted.")
    max_download_bytes: int = Field(
        MediaLimits.max_download_bytes, gt=0, description="Largest image or video fetched from a URL.")
    max_image_pixels: int = Field(
        MediaLimits.max_image_pixels, gt=0, description="Largest image (width x height) decoded.")
    max_video_frames: int = Field(
        MediaLimits.max_video_frames, gt=0, description="Most frames of one video inferred on.")
    fetch_timeout: float = Field(MediaLimits.fetch_timeout, gt=0, description="Seconds to fetch one URL.")
    deadline: float = Field(25.0, gt=0, description="Seconds for a whole job: fetch, predict, convert.")
    concurrency: int = Field(1, gt=0, description="Predictions run at once (threads); more requests queue.")
    batch_size: int = Field(8, gt=0, description="Items handed to `predict_batch` at once: video frames, "
                                                 "and requests batched together (`batch_wait`).")
    batch_wait: float = Field(0.0, ge=0, description="Seconds a request may wait for others to share a "
                                                     "`predict_batch` call (0: no cross-request batching).")
    allow_private_urls: bool = Field(
        MediaLimits.allow_private_urls, description="Allow media URLs on private/loopback networks.")
    fetch_connections: int = Field(
        MediaLimits.fetch_connections, gt=0, description="Connections the URL fetcher keeps open at most.")
    max_decodes: int = Field(
        MediaLimits.max_decodes, gt=0, description="Images, frames and downloads decoded at once (threads): "
                                                    "bounds the memory of decoding.")
    max_queue: int = Field(16, ge=0, description="Requests that may wait for the model beyond `concurrency` "
                                                 "(per process); further ones answer 503 with Retry-After.")
    read_timeout: float = Field(10.0, gt=0, description="Seconds a request may go without sending a byte before "
                                                        "its connection is cut.")
    max_connections: int = Field(512, gt=0, description="Open connections per process; further ones are closed.")
    hard_limit: float = Field(60.0, gt=0, description="Seconds after which a model call counts as stuck for good: "
                                                      "`bridge serve --workers` replaces its worker process.")
    shutdown_grace: float = Field(10.0, gt=0, description="Seconds in-flight requests get to finish at shutdown.")
    max_vertices: int = Field(500_000, gt=0, description="Vertices one prediction's outline may have (its "
                                                         "polygon's rings, or a mask's trace): past it the request "
                                                         "fails naming the class, and a trace stops early.")

    def media(self) -> MediaLimits:
        return MediaLimits(
            max_download_bytes=self.max_download_bytes,
            max_image_pixels=self.max_image_pixels,
            max_video_frames=self.max_video_frames,
            fetch_timeout=self.fetch_timeout,
            allow_private_urls=self.allow_private_urls,
            fetch_connections=self.fetch_connections,
            max_decodes=self.max_decodes,
        )


class Geometry(Strict):
    simplify_tolerance: float = Field(
        0.5, ge=0, description="Pixels a traced mask outline may move when simplified (0: exact pixel edges)."
    )
    min_area: float = Field(
        4.0, ge=0, description="Pixels: a simplified outline drops parts and holes smaller than this (at "
                               "simplify_tolerance 0 nothing is dropped)."
    )


class RayScaling(Strict):
    """How `bridge serve --ray` deploys the model on Ray Serve: its replicas (fixed, or autoscaled between
    `min_replicas` and `max_replicas`) and what each reserves, and the ingress that speaks the platforms."""

    replicas: int = Field(1, gt=0, description="Model replicas, each loading the model once (when "
                                               "autoscaling: the count it starts with, min_replicas by default).")
    min_replicas: int | None = Field(None, ge=0, description="Autoscale down to this many (1 by default; "
                                                             "needs max_replicas).")
    max_replicas: int | None = Field(None, gt=0, description="Autoscale up to this many replicas.")
    max_ongoing_requests: int | None = Field(
        None, gt=0, description="Requests one model replica takes at once (default limits.batch_size, so "
                                "that a whole batch can gather).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each model replica reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each model replica reserves.")
    ingress_replicas: int = Field(1, gt=0, description="Replicas of the ingress (HTTP routes, decoding, "
                                                       "conversions).")
    ingress_num_cpus: float = Field(0.5, ge=0, description="CPUs each ingress replica reserves.")

    @property
    def min_replicas_or_default(self) -> int:
        return 1 if self.min_replicas is None else self.min_replicas

    @model_validator(mode="after")
    def _bounds(self) -> RayScaling:
        if self.max_replicas is None:
            if self.min_replicas is not None:
                raise ValueError("min_replicas needs max_replicas")
            return self
        low = self.min_replicas_or_default
        if low > self.max_replicas:
            raise ValueError(f"min_replicas ({low}) is above max_replicas ({self.max_replicas})")
        if "replicas" in self.model_fields_set and not low <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas ({self.replicas}) must lie within min_replicas ({low}) and "
                             f"max_replicas ({self.max_replicas})")
        return self


class MinConfidence(Strict):
    """Confidence under which predictions are dropped: one number for every class, or a default and classes."""

    default: float = Field(0.0, ge=0, le=1, description="For classes not named under `classes`.")
    classes: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Model class name -> its own threshold.")

    @model_validator(mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return {"default": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def over(self, base: MinConfidence) -> MinConfidence:
        """These thresholds over `base`'s: a default given here wins, classes named here win."""
        default = self.default if "default" in self.model_fields_set else base.default
        return MinConfidence(default=default, classes={**base.classes, **self.classes})


class PlatformSection(Strict):
    """What every platform section has; adapters subclass it with their own keys."""

    enabled: bool = True
    base_path: str = Field("", description="Where the platform's routes are mounted ('' = the adapter's).")
    rename: dict[str, str] = Field(default_factory=dict, description="Model class name -> name on the platform.")
    min_confidence: MinConfidence | None = Field(
        None, description="Overrides the manifest's `min_confidence` for this platform (number or "
                          "{default, classes}).")

    def platform_name(self, class_name: str) -> str:
        return self.rename.get(class_name, class_name)


class Manifest(Strict):
    name: str = Field(min_length=1)
    version: str = "0.1.0"
    description: str = ""
    readme: str = ""
    model: ModelRef
    input: Literal["image", "text"] | None = Field(
        None, description="'image' or 'text', when the model does not declare a spec.")
    classes: list[ClassSpec] | None = Field(None, description="Classes, when the model does not declare a spec.")
    params: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema of the inference parameters, with defaults; requests are validated against it.",
    )
    min_confidence: MinConfidence = Field(
        default_factory=MinConfidence,
        description="Predictions under this confidence are dropped before any platform sees them: a number, "
                    "or {default, classes: {class: threshold}}; a platform section may override it.")
    limits: Limits = Field(default_factory=Limits)
    geometry: Geometry = Field(default_factory=Geometry)
    video_frame_stride: int = Field(1, gt=0, description="Infer on every n-th frame of a video URL.")
    ray: RayScaling = Field(default_factory=RayScaling, description="Deployment on Ray Serve (`--ray`).")
    platforms: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="One section per platform to serve (`v7: {}` serves it with defaults); "
                                          "a platform without a section is not served.")

    _path: Path | None = PrivateAttr(None)
    _variables: dict[str, str] = PrivateAttr(default_factory=dict)
    _params_validator: jsonschema.protocols.Validator | None = PrivateAttr(None)
    _default_params: Mapping[str, Any] | None = PrivateAttr(None)

    @field_validator("params")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ValueError(f"not a valid JSON Schema: {error.message}") from None
        if schema.get("type", "object") != "object":
            raise ValueError("the params schema must describe an object")
        return schema

    @model_validator(mode="after")
    def _params_in_one_place(self) -> Manifest:
        both = sorted(set(self.model.params) & set(self.params.get("properties", {})))
        if both:
            raise ValueError(f"{', '.join(both)} is both a load-time argument (model.params) and an inference "
                             "parameter (params): keep it under `params` (with a `default`) if each request may "
                             "set it and the model reads context.params, else under `model.params` only")
        return self

    @property
    def path(self) -> Path | None:
        """The file this manifest was read from."""
        return self._path

    def variable_of(self, key: str) -> str | None:
        """The environment variable a key's value came from (`platforms.labelbox.secret` -> `LABELBOX_SECRET`)."""
        return self._variables.get(key)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def where(self) -> str:
        return str(self.path) if self.path else self.name

    # --- platform sections ---

    def section(self, platform: str, model: type[PlatformSection]) -> PlatformSection:
        """The platform's section validated by its adapter's model (defaults when the manifest has none)."""
        try:
            return model.model_validate(self.platforms.get(platform) or {})
        except ValidationError as error:
            raise ManifestError(_describe(error, self.where(), prefix=f"platforms.{platform}")) from None

    # --- the model ---

    def build_model(self) -> Model:
        """Import the factory, call it with its params, and make sure the result has a usable spec; or connect
        to the remote endpoint (`bridge.remote`)."""
        if self.model.remote is not None:
            return self._remote_model(self.model.remote)
        try:
            factory = import_factory(self.model.factory, self.base_dir)
        except (ValueError, ImportError) as error:
            raise ManifestError(f"{self.where()}: model.factory: {error}") from None
        except SyntaxError as error:  # the user's model file: name it and the line
            raise ManifestError(f"{self.where()}: model.factory: {error.filename}, line {error.lineno}: "
                                f"SyntaxError: {error.msg}") from None
        except Exception as error:  # the model module raised while importing: a missing dependency, a typo...
            raise ManifestError(f"{self.where()}: model.factory: importing {self.model.factory} failed: "
                                f"{type(error).__name__}: {error}") from error
        try:
            model = factory(**self.model.params)
        except Exception as error:  # a wrong keyword in model.params, missing weights...: name the manifest
            raise ManifestError(f"{self.where()}: model: {self.model.factory} with model.params failed: "
                                f"{type(error).__name__}: {error}") from error
        if getattr(model, "spec", None) is None:
            if not self.classes:
                raise ManifestError(f"{self.where()}: the model declares no `spec`, so the manifest needs "
                                    "`classes`")
            model.spec = ModelSpec(classes=self.classes, input=self.input or "image")
        if not isinstance(model.spec, ModelSpec) or not callable(getattr(model, "predict", None)):
            raise ManifestError(f"{self.where()}: {self.model.factory} must give an object with a "
                                "`spec: ModelSpec` and a `predict(item, context)` method")
        return model

    def _remote_model(self, remote: RemoteRef) -> Model:
        from bridge.platforms import discover  # the adapters import this module

        if remote.model_yaml is not None:
            remote = remote.model_copy(update={"model_yaml": self.base_dir / remote.model_yaml})
        try:
            return RemoteModel.connect(remote, discover(), self.classes, self.input, self.limits.deadline)
        except ValueError as error:
            raise ManifestError(f"{self.where()}: {error}") from None

    # --- inference parameters ---

    def resolve_params(self, given: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """Defaults from the params schema under the request's values, validated, read-only; 422 names the
        parameter. A parameter the schema does not declare is refused unless it sets `additionalProperties`.
        A request without parameters gets the defaults, validated once (no schema walk per request).

        NaN and infinities (JSON's `NaN`, `Infinity`, or `1e400`) are refused first: NaN compares false with
        everything, so it would pass any `minimum`/`maximum` of the schema.
        """
        if not given and self._default_params is not None:
            return self._default_params
        if where := _non_finite(given):
            raise InvalidInput(f"invalid parameter {where}: not a finite number")
        properties = self.params.get("properties", {})
        given = given or {}
        if self.params.get("additionalProperties", False) is False:
            unknown = sorted(set(given) - set(properties))
            if unknown:
                known = ", ".join(sorted(properties)) or "none"
                raise InvalidInput(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                                   f"{', '.join(unknown)}; this model's parameters: {known}")
        params = {k: v["default"] for k, v in properties.items() if isinstance(v, dict) and "default" in v}
        params.update(given)
        if self._params_validator is None:
            self._params_validator = jsonschema.Draft202012Validator(self.params)
        error = jsonschema.exceptions.best_match(self._params_validator.iter_errors(params))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "params"
            raise InvalidInput(f"invalid parameter {where}: {error.message}")
        resolved = MappingProxyType(params)
        if not given:
            self._default_params = resolved
        return resolved

    def min_confidence_for(self, platform: str) -> MinConfidence:
        """The manifest's thresholds under the platform section's own, when it has one."""
        section = self.platforms.get(platform) or {}
        if section.get("min_confidence") is None:
            return self.min_confidence
        return MinConfidence.model_validate(section["min_confidence"]).over(self.min_confidence)


def _non_finite(value: Any) -> str | None:
    """The path ("a.b.0") of the first NaN or infinite number in a JSON value, or None (iterative: request
    values may be nested deep)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "params"
        if isinstance(item, Mapping):
            stack += [(f"{where}.{k}" if where else str(k), v) for k, v in item.items()]
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}.{i}" if where else str(i), v) for i, v in enumerate(item)]
    return None


def load_manifest(path: str | Path) -> Manifest:
    """Read, substitute `${ENV}` and validate a manifest file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a mapping of keys, got {type(raw).__name__}")
    variables: dict[str, str] = {}
    raw = _substitute(raw, str(path), [], variables)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as error:
        raise ManifestError(_describe(error, str(path))) from None
    manifest._path = path.resolve()
    manifest._variables = variables
    return manifest


def _substitute(value: Any, where: str, keys: list[str], variables: dict[str, str]) -> Any:
    """`value` with its `${NAME}` references replaced; `variables` records which key read which variable."""
    if isinstance(value, dict):
        return {k: _substitute(v, where, [*keys, str(k)], variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, where, [*keys, str(i)], variables) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def fail(reason: str) -> ManifestError:
        return ManifestError(f"{where}: {'.'.join(keys)}: {reason}")

    def replace(match: re.Match) -> str:
        if match["dollar"]:
            return "$"
        if match["bare"]:
            raise fail(f"${match['bare']} is not substituted: write ${{{match['bare']}}} (or $$ for a literal $)")
        if not match["close"]:
            raise fail(f"unclosed {match[0]!r}: write ${{NAME}} or ${{NAME:-default}}")
        reference = _REFERENCE.fullmatch(match["body"])
        if reference is None:
            raise fail(f"{match[0]!r} is not a variable reference: write ${{NAME}} or ${{NAME:-default}}")
        name, default = reference["name"], reference["default"]
        variables[".".join(keys)] = name
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise fail(f"environment variable {name} is not set")

    return _DOLLAR.sub(replace, value)


def _describe(error: ValidationError, where: str, prefix: str = "") -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        lines.append(f"{where}: {key or '(top)'}: {item['msg']}")
    return "\n".join(lines)


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
