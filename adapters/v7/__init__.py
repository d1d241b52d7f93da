"""V7 Darwin "Bring Your Own Model": `GET {base}/classes` and `POST {base}/infer`.

Register `http://HOST:PORT/v7` (the section's `base_path`) as the model's external URL; V7 appends
`/classes` and `/infer`. Answers are Darwin-JSON results that validate against V7's published response
schema. `CONVERSIONS` declares what each class kind becomes (`bridge formats` prints it):

- masks and holed or multi-part polygons leave as `polygon` with `path` plus `additional_paths` (holes and
  further parts, filled even-odd), rotated boxes as 4-corner polygons;
- ellipse angles leave in radians in [0, 2 pi), as Darwin JSON has them (ours are degrees);
- a radio or checklist answer becomes one `tag` per chosen option, named by the section's `tag_name`
  template; free text becomes a `tag` named after the class with a `text` sub-annotation;
- `attributes` leave as a list of strings: V7's schema declares `attributes` an array;
- entity spans (text) have no V7 form; vectors neither (V7 registers no standalone vector class: a
  directional vector is a sub-annotation there).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.v7 import contract
from adapters.v7 import remote as remote_model
from adapters.v7.read import read_results
from bridge import auth
from bridge.auth import Auth
from bridge.conversions import Conversion, dropped, exact, lossy
from bridge.export import Exporter, ExportSetup
from bridge.geometry import mask_to_polygon, rotated_box_corners
from bridge.manifest import Manifest, PlatformSection, Strict
from bridge.model import ClassSpec, ModelSpec, Prompts
from bridge.platforms import Adapter, Route, answer
from bridge.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Tag,
)
from bridge.service import ImageSource, Job, Result, Service, VideoSource

PLATFORM = "v7"

CONVERSIONS = {
    "box": exact("bounding_box"),
    "rotated_box": lossy("polygon", "V7 has no rotated box: its 4 corners as a polygon"),
    "polygon": Conversion("polygon", traced=True),
    "mask": Conversion("polygon", traced=True),
    "point": exact("keypoint"),
    "line": exact("line"),
    "ellipse": exact("ellipse"),
    "skeleton": exact("skeleton"),
    "cuboid": exact("cuboid"),
    "vector": dropped("V7 registers no vector class (a directional vector is a sub-annotation there)"),
    "tag": exact("tag"),
    "radio": exact("tag"),
    "checklist": exact("tag"),
    "text": exact("tag"),
    "entity": dropped("V7's model API takes images and video, not text"),
    "prediction.attributes": exact("attributes"),
    "prediction.text": lossy("text", "a free-text class's answer is its `text` sub-annotation: a prediction's "
                                     "own text is dropped on free-text classes"),
    "prediction.confidence": exact("confidence"),
    "prediction.frame": exact("frame"),
}
"""What V7 receives of each class kind; the `form` of a class kind is its V7 type in `/classes` (one `tag`
per option for radio and checklist; free text is a `tag` whose answer rides in a `text` sub-annotation)."""

V7_PARAMS = ("id", "image")
"""Keys V7 itself puts in `params` besides `bbox`; the rest are the model's parameters."""


# --- manifest section -----------------------------------------------------------------------------------------


class V7Auth(Strict):
    """How V7 proves itself: nothing, HTTP Basic, or a secret in a header of your choosing."""

    method: Literal["none", "basic", "header"] = "none"
    username: str | None = None
    password: str | None = None
    header: str = Field("X-Auth", description="Header that carries the secret (V7's `auth_secret_header`).")
    secret: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> V7Auth:
        if self.method == "basic" and not (self.username and self.password):
            raise ValueError("basic auth needs `username` and `password` (use ${ENV} for the password)")
        if self.method == "header" and not self.secret:
            raise ValueError("header auth needs `secret` (use ${ENV})")
        return self


class V7Section(PlatformSection):
    base_path: str = "/v7"
    auth: V7Auth = Field(default_factory=V7Auth)
    tag_name: str = Field("{option}", description="V7 tag name for a radio/checklist option: "
                                                  "'{option}' or e.g. '{class}: {option}'.")


# --- request and response models (what /docs shows) -----------------------------------------------------------


class V7Image(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"anyOf": [{"required": ["base64"]},
                                                                          {"required": ["url"]}]})
    url: str | None = None
    base64: str | None = None

    @model_validator(mode="after")
    def _one(self) -> V7Image:
        if not (self.url or self.base64):
            raise ValueError("an image needs `url` or `base64`")
        return self


class V7Video(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"oneOf": [{"required": ["url"]},
                                                                          {"required": ["frame_urls"]}]})
    url: str | None = None
    frame_urls: list[V7Image] | None = None

    @model_validator(mode="after")
    def _one(self) -> V7Video:
        if bool(self.url) == (self.frame_urls is not None):
            raise ValueError("a video needs exactly one of `url` and `frame_urls`")
        return self


class V7Region(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN, Infinity and 1e400 are not a box
    x: float
    y: float
    w: float = Field(ge=0)
    h: float = Field(ge=0)


class V7Params(BaseModel):
    """V7's own keys; any other key is a parameter of the model."""

    model_config = ConfigDict(extra="allow")
    bbox: V7Region | None = Field(None, description="The auto-annotate box: the model sees this region.")


class V7InferRequest(BaseModel):
    """V7's inference request; the `{"details": {...}}` envelope and `external_model` are tolerated."""

    # V7's published rule; the `details` envelope and `params.image` are accepted beside it
    model_config = ConfigDict(extra="allow", json_schema_extra={"oneOf": [{"required": ["image"]},
                                                                          {"required": ["video"]}]})
    image: V7Image | None = None
    video: V7Video | None = None
    params: V7Params = Field(default_factory=V7Params)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("details"), dict):
            data = {**data, **data["details"]}
        if data.get("params") is None:
            data = {**data, "params": {}}
        if "image" not in data and "video" not in data:
            params = data.get("params")
            if isinstance(params, dict) and isinstance(params.get("image"), dict):
                data = {**data, "image": params["image"]}
        return data

    @model_validator(mode="after")
    def _one(self) -> V7InferRequest:
        if (self.image is None) == (self.video is None):
            raise ValueError("the request needs exactly one of `image` and `video`")
        return self


class V7Class(BaseModel):
    name: str
    type: str


class V7InferResponse(BaseModel):
    status: Literal["succeeded", "failed"]
    results: list[dict[str, Any]] = Field(description="Darwin-JSON results, one main annotation type each.")
    error: str | None = None


# --- conversions (pure) ---------------------------------------------------------------------------------------


def to_job(request: V7InferRequest) -> Job:
    """The neutral job of a V7 request: the media, the model's params, and the auto-annotate box."""
    bbox = request.params.bbox
    prompts = Prompts(box=Box(bbox.x, bbox.y, bbox.w, bbox.h)) if bbox else Prompts()
    model_params = {k: v for k, v in (request.params.model_extra or {}).items() if k not in V7_PARAMS}
    image = video = None
    if request.image is not None:
        image = ImageSource(url=request.image.url, base64=request.image.base64)
    else:
        frames = tuple(ImageSource(url=f.url, base64=f.base64) for f in request.video.frame_urls or ())
        video = VideoSource(url=request.video.url, frames=frames)
    return Job(platform=PLATFORM, image=image, video=video, params=model_params, prompts=prompts)


def v7_classes(spec: ModelSpec, section: V7Section) -> list[dict[str, str]]:
    """The `/classes` answer: one entry per class, one tag per radio/checklist option."""
    classes = []
    for cls in spec.classes:
        conversion = CONVERSIONS[cls.kind]
        if conversion.fidelity == "dropped":
            continue
        if cls.kind in ("radio", "checklist"):
            classes += [{"name": _tag_name(section, cls, option), "type": conversion.form} for option in cls.options]
        else:
            classes.append({"name": section.platform_name(cls.name), "type": conversion.form})
    return classes


def to_results(predictions: list[Prediction], spec: ModelSpec, section: V7Section,
               tolerance: float) -> list[dict[str, Any]]:
    """Darwin-JSON results: exactly one main annotation type each, confidence in [0, 1]."""
    results = []
    for prediction in predictions:
        cls = spec.get(prediction.label)
        for name, main in _main_types(prediction, cls, section, tolerance):
            result: dict[str, Any] = {"name": name, "label": name, "confidence": prediction.confidence, **main}
            if prediction.attributes:
                result["attributes"] = list(prediction.attributes)
            if prediction.text is not None and "text" not in result:
                result["text"] = {"text": prediction.text}
            if prediction.frame is not None:
                result["frame"] = prediction.frame
            results.append(result)
    return results


def _main_types(prediction: Prediction, cls: ClassSpec, section: V7Section,
                tolerance: float) -> list[tuple[str, dict[str, Any]]]:
    """(V7 class name, {main type: value}) pairs; several for a checklist, none for what V7 cannot take."""
    name = section.platform_name(cls.name)
    shape = prediction.shape
    if isinstance(shape, Classification):
        if cls.kind == "text":
            return [(name, {"tag": {}, "text": {"text": shape.answer}})]
        options = (shape.answer,) if isinstance(shape.answer, str) else shape.answer
        return [(_tag_name(section, cls, option), {"tag": {}}) for option in options]
    if CONVERSIONS[cls.kind].fidelity == "dropped":
        return []
    main = _geometry(shape, tolerance)
    return [(name, main)] if main else []


def _geometry(shape: Any, tolerance: float) -> dict[str, Any] | None:
    if isinstance(shape, Box):
        return {"bounding_box": _box(shape)}
    if isinstance(shape, Tag):
        return {"tag": {}}
    if isinstance(shape, Mask):
        shape = mask_to_polygon(shape.array, tolerance)
    if isinstance(shape, RotatedBox):
        shape = Polygon.from_ring(rotated_box_corners(shape))
    if isinstance(shape, Polygon):
        rings = [ring for part in shape.parts for ring in part]
        if not rings:
            return None
        polygon: dict[str, Any] = {"path": _path(rings[0])}
        if len(rings) > 1:
            polygon["additional_paths"] = [_path(ring) for ring in rings[1:]]
        return {"polygon": polygon}
    if isinstance(shape, Point):
        return {"keypoint": {"x": float(shape.x), "y": float(shape.y)}}
    if isinstance(shape, Line):
        return {"line": {"path": _path(shape.points)}}
    if isinstance(shape, Ellipse):
        return {"ellipse": {"center": {"x": float(shape.cx), "y": float(shape.cy)},
                            "radius": {"x": float(shape.rx), "y": float(shape.ry)},
                            "angle": _radians(shape.angle)}}
    if isinstance(shape, Skeleton):
        return {"skeleton": {"nodes": [{"name": n.name, "x": float(n.x), "y": float(n.y),
                                        "occluded": bool(n.occluded)} for n in shape.nodes]}}
    if isinstance(shape, Cuboid):
        return {"cuboid": {"front": _box(shape.front), "back": _box(shape.back)}}
    raise TypeError(f"no V7 form for {type(shape).__name__}")


def _box(box: Box) -> dict[str, float]:
    return {"x": float(box.x), "y": float(box.y), "w": float(box.w), "h": float(box.h)}  # clipped by the core


def _path(ring: Any) -> list[dict[str, float]]:
    return [{"x": x, "y": y} for x, y in ring.tolist()]


def _radians(degrees: float) -> float:
    return math.radians(float(degrees) % 360.0)


def _tag_name(section: V7Section, cls: ClassSpec, option: str) -> str:
    return section.tag_name.format(**{"class": section.platform_name(cls.name), "option": option})


def failed(status: int, message: str) -> JSONResponse:
    """V7's failure form: V7 logs it and moves on to the next item."""
    return JSONResponse({"status": "failed", "results": [], "error": message}, status_code=status)


class V7Failed(BaseModel):
    status: Literal["failed"]
    results: list[dict[str, Any]]
    error: str


class V7Adapter(Adapter):
    name = PLATFORM
    title = "V7 Darwin"
    section = V7Section
    conversions = CONVERSIONS
    error_model = V7Failed

    def auth(self, section: V7Section) -> Auth:
        given = section.auth
        if given.method == "basic":
            return auth.basic(given.username, given.password, "platforms.v7.auth.password")
        if given.method == "header":
            return auth.header(given.header, given.secret, "platforms.v7.auth.secret")
        return auth.none()

    def render_error(self, status: int, message: str) -> Response:
        return failed(status, message)

    def write_answer(self, result: Result, spec: ModelSpec, section: V7Section, manifest: Manifest) -> dict[str, Any]:
        results = to_results(result.predictions, spec, section, manifest.geometry.simplify_tolerance)
        return {"status": "succeeded", "results": results}

    def read_answer(self, answer: Any, spec: ModelSpec, section: V7Section, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        return read_results(answer, spec, section, size)

    def remote_spec(self, remote: Any, client: Any) -> ModelSpec:
        return remote_model.remote_spec(remote, client)

    def remote_request(self, item: Any, context: Any, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        return remote_model.remote_request(item, context, spec, remote)

    def check_endpoint(self, probe: Any) -> list[Any]:
        return contract.check(probe)

    def secret_headers(self, secret: str) -> dict[str, str]:
        return {V7Auth.model_fields["header"].default: secret}

    def routes(self, section: V7Section) -> list[Route]:
        async def classes(service: Service) -> list[dict[str, str]]:
            """The classes V7 links to its own: name and main annotation type."""
            return v7_classes(service.spec, section)

        async def infer(body: V7InferRequest, service: Service) -> dict[str, Any]:
            """Run the model on an image or a video; results in full-image coordinates."""
            return await answer(self, service, section, to_job(body))

        return [Route("GET", "/classes", classes, response=list[V7Class]),
                Route("POST", "/infer", infer, V7InferRequest, V7InferResponse, params_at=("params",))]

    def exporter(self, section: V7Section, setup: ExportSetup) -> Exporter:
        from adapters.v7.darwin_json import DarwinJson

        return DarwinJson(section, setup)


adapter = V7Adapter()
