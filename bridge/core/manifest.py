"""The manifest: one YAML file that says which model to serve and how each platform sees it.

Loaded into pydantic models so that every mistake is reported with the file and the key, e.g.
``manifests/faces.yaml: limits.deadline: Input should be greater than 0``. Strings may hold ``${NAME}`` (or
``${NAME:-default}``) to take secrets from the environment, never from the file; ``$$`` is a literal ``$``.
Anything else that looks like a reference (``$NAME``, ``${NAME SPACE}``, an unclosed ``${``) is an error
naming the key: a typo must never become the literal value of a secret. Each platform's section is validated
by its adapter's own model (`PlatformSection` subclasses), so the core names no platform.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.core.geometry import Outlines
from bridge.core.media import MediaLimits
from bridge.core.model import ClassSpec

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


class RemoteAuth(BaseModel):
    """Credentials the remote expects; each value may be `${NAME}` from the environment."""

    model_config = ConfigDict(extra="forbid")
    basic: str | None = Field(None, description="HTTP Basic as 'USER:PASSWORD'.")
    bearer: str | None = Field(None, description="Sent as `Authorization: Bearer <bearer>`.")
    secret: str | None = Field(None, description="The platform's own secret form (V7 `X-Auth`, Labelbox a "
                                                 "bearer token, Ango the `Secret` header).")
    headers: dict[str, str] = Field(default_factory=dict, description="Further headers, e.g. V7's own secret "
                                                                       "header name.")


class RemoteRef(BaseModel):
    """`model.remote`: an existing endpoint of one platform."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://", description="V7: the base (as registered with V7); Labelbox: the "
                                                        "endpoint; Ango: the REST connector's base.")
    platform: str = Field(description="The dialect the endpoint speaks: an installed adapter (v7, labelbox, ango).")
    auth: RemoteAuth = Field(default_factory=RemoteAuth)
    model_yaml: Path | None = Field(None, description="Labelbox: the endpoint's model.yaml (relative to the "
                                                      "manifest), for its features.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a request that could not connect.")


class ModelRef(Strict):
    factory: str | None = Field(None, description="'package.module:Factory' or 'path/to/file.py:Factory' "
                                                  "(relative to the manifest). Called once at start-up with `params`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the factory; a relative "
                                   "path that names a file or folder beside the manifest is passed as its absolute path.")
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
    max_answer_bytes: int = Field(16 * 2**20, gt=0, description="Largest answer read from a remote model's endpoint, "
                                                               "as sent and once decoded (gzip); larger ones are a 502.")
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
    inline_below: float = Field(0.0, ge=0, description="Seconds under which a model's recent calls on small "
                                                       "items (128x128 pixels) make the next run on the event "
                                                       "loop rather than a thread (0: never). Only for a model "
                                                       "that cannot hang: such a call holds every connection of "
                                                       "the process until it returns.")
    max_queue: int = Field(256, ge=0, description="Hard cap on requests waiting for the model beyond "
                                                  "`concurrency` (per process); below it a request is refused "
                                                  "(503 with Retry-After) only when its expected wait would "
                                                  "miss `deadline`.")
    max_held_bytes: int = Field(2**30, gt=0, description="Bytes of request bodies and decoded images the "
                                                         "requests of a process may hold; further requests "
                                                         "answer 503 with Retry-After.")
    read_timeout: float = Field(10.0, gt=0, description="Seconds a request's headers may take to arrive, and "
                                                        "that it may go without sending a byte of its body, "
                                                        "before its connection is cut.")
    min_upload_rate: int = Field(65536, gt=0, description="Bytes per second a request's body must average (after "
                                                          "`read_timeout`s of grace) before its connection is cut.")
    max_connections: int = Field(512, gt=0, description="Open connections per process; past it the connection "
                                                        "that has waited longest for its client is closed.")
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

    enabled: bool = Field(True, description="false: the section is kept but the platform is not served.")
    base_path: str = Field("", description="Where the platform's routes are mounted ('' = the adapter's).")
    rename: dict[str, str] = Field(default_factory=dict, description="Model class name -> name on the platform.")
    min_confidence: MinConfidence | None = Field(
        None, description="Overrides the manifest's `min_confidence` for this platform (number or "
                          "{default, classes}).")

    def platform_name(self, class_name: str) -> str:
        return self.rename.get(class_name, class_name)


class Manifest(Strict):
    name: str = Field(min_length=1, description="The model's name, shown on the platforms (Labelbox's model.yaml, "
                                                "the API docs).")
    version: str = Field("0.1.0", description="The model's version, shown on the platforms and in the metrics.")
    description: str = Field("", description="One line about the model, shown on the platforms.")
    readme: str = Field("", description="Markdown about the model: intended use, limitations (Labelbox's "
                                        "model.yaml).")
    model: ModelRef = Field(description="The model to serve: your code (`factory`) or an existing endpoint "
                                        "(`remote`).")
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
    limits: Limits = Field(default_factory=Limits, description="What one request may cost, and the process's "
                                                               "connection and shutdown limits.")
    geometry: Geometry = Field(default_factory=Geometry, description="How mask outlines are traced.")
    video_frame_stride: int = Field(1, gt=0, description="Infer on every n-th frame of a video URL.")
    ray: dict[str, Any] = Field(default_factory=dict, description="Deployment on Ray Serve (`bridge serve --ray`): "
                                "replicas and what each reserves; validated by `bridge.serving.ray_settings`.")
    platforms: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="One section per platform to serve (`v7: {}` serves it with defaults); "
                                          "a platform without a section is not served.")

    _path: Path | None = PrivateAttr(None)
    _variables: dict[str, str] = PrivateAttr(default_factory=dict)

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
            raise ManifestError(describe(error, self.where(), prefix=f"platforms.{platform}")) from None

    def outlines(self) -> Outlines:
        """How masks become outlines here: `geometry` and `limits.max_vertices`."""
        return Outlines(self.geometry.simplify_tolerance, self.geometry.min_area, self.limits.max_vertices)

    def min_confidence_for(self, platform: str) -> MinConfidence:
        """The manifest's thresholds under the platform section's own, when it has one."""
        section = self.platforms.get(platform) or {}
        if section.get("min_confidence") is None:
            return self.min_confidence
        return MinConfidence.model_validate(section["min_confidence"]).over(self.min_confidence)


PROJECT_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "default.yaml"
"""The default manifest shipped in the package (`bridge/manifests`, the repository's `manifests/` folder)."""


def default_manifest() -> Path:
    """The manifest of a command that names none: `manifests/default.yaml` in the current folder if there is
    one, else the package's own (which a wheel install carries too)."""
    local = Path("manifests/default.yaml")
    return local if local.is_file() else PROJECT_MANIFEST


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
        raise ManifestError(describe(error, str(path))) from None
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


def references(raw: Any, keys: tuple[str, ...] = ()) -> Iterator[tuple[str, str, str | None]]:
    """Each valid `${NAME}` or `${NAME:-default}` of a manifest as written (before substitution): its key, the
    variable's name and its default (None without one). For the configuration reference (`bridge reference`)."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            yield from references(value, (*keys, str(key)))
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            yield from references(value, (*keys, str(index)))
    elif isinstance(raw, str):
        for match in _DOLLAR.finditer(raw):
            reference = _REFERENCE.fullmatch(match["body"]) if match["close"] else None
            if reference is not None:
                yield ".".join(keys), reference["name"], reference["default"]


def describe(error: ValidationError, where: str, prefix: str = "") -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        lines.append(f"{where}: {key or '(top)'}: {item['msg']}")
    return "\n".join(lines)
