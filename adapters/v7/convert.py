"""V7's dialect, pure: a request in, a `Job` out; a result in, Darwin-JSON results out; the class listing.

`CONVERSIONS` declares what each class kind becomes (`bridge formats` prints it):

- masks and holed or multi-part polygons leave as `polygon` with `path` plus `additional_paths` (holes and
  further parts, filled even-odd), rotated boxes as 4-corner polygons;
- ellipse angles leave in radians in [0, 2 pi), as Darwin JSON has them (ours are degrees);
- a radio or checklist answer becomes one `tag` per chosen option, named by the section's `tag_name`
  template (`{class}: {option}` by default); free text becomes a `tag` named after the class with a `text`
  sub-annotation. Every name V7 receives is unique in the model (`names`: a clash is a start-up error), so
  an answer reads back to one class and option;
- `attributes` leave as a list of strings: V7's schema declares `attributes` an array;
- entity spans (text) have no V7 form; vectors neither (V7 registers no standalone vector class: a
  directional vector is a sub-annotation there);
- video results carry `frame`, the index of the frame: V7's response schema defines no per-frame result, so
  the key is the bridge's own (read back by its reader; V7 itself documents nothing it does with it).
"""

from __future__ import annotations

import math
from typing import Any

from adapters.v7.api import V7InferRequest
from adapters.v7.section import V7Section
from bridge.core.conversions import Conversion, dropped, exact, lossy
from bridge.core.errors import InvalidInput
from bridge.core.geometry import mask_to_polygon, rotated_box_corners
from bridge.core.model import ClassSpec, ModelSpec, Prompts
from bridge.core.predictions import (
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
from bridge.core.service import Job, Source, VideoSource

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
    "prompts": exact("params.bbox (a box)"),
    "prediction.frame": lossy("frame", "V7's response schema defines no frame: `frame` (the frame's index) is "
                                       "the bridge's own key, read back by the bridge; V7 documents no per-frame "
                                       "result"),
}
"""What V7 receives of each class kind; the `form` of a class kind is its V7 type in `/classes` (one `tag`
per option for radio and checklist; free text is a `tag` whose answer rides in a `text` sub-annotation)."""

V7_PARAMS = ("id", "image")
"""Keys V7 itself puts in `params` besides `bbox`; the rest are the model's parameters."""


def to_job(request: V7InferRequest) -> Job:
    """The neutral job of a V7 request: the media, the model's params, and the auto-annotate box."""
    bbox = request.params.bbox
    if bbox is not None and (bbox.w == 0 or bbox.h == 0):
        raise InvalidInput(f"params.bbox is empty ({bbox.w:g} x {bbox.h:g} pixels at {bbox.x:g}, {bbox.y:g}): "
                           "draw an auto-annotate box with an area")
    prompts = Prompts(box=Box(bbox.x, bbox.y, bbox.w, bbox.h)) if bbox else Prompts()
    model_params = {k: v for k, v in (request.params.model_extra or {}).items() if k not in V7_PARAMS}
    image = video = None
    if request.image is not None:
        image = Source(url=request.image.url, base64=request.image.base64)
    else:
        frames = tuple(Source(url=f.url, base64=f.base64) for f in request.video.frame_urls or ())
        video = VideoSource(url=request.video.url, frames=frames)
    return Job(platform=PLATFORM, image=image, video=video, params=model_params, prompts=prompts)


def names(spec: ModelSpec, section: V7Section) -> dict[str, tuple[ClassSpec, str | None]]:
    """V7 name -> (class, option) of each class (by its V7 name, after `rename`) and of each radio and
    checklist option (by its tag name). `ValueError` naming the clash when two are the same: V7 would hold one
    class for both, and an answer could not say which it is."""
    found: dict[str, tuple[ClassSpec, str | None]] = {}
    clashes = []
    for cls in spec.classes:
        options = cls.options if cls.kind in ("radio", "checklist") else (None,)
        for option in options:
            name = section.platform_name(cls.name) if option is None else _tag_name(section, cls, option)
            if name in found:
                clashes.append(f"{name!r} is {_what(*found[name])} and {_what(cls, option)}")
            found.setdefault(name, (cls, option))
    if clashes:
        raise ValueError(f"V7 names must be unique in a model: {'; '.join(clashes)} (set platforms.v7.tag_name "
                         "to a template with {class}, e.g. '{class}: {option}', or rename the classes)")
    return found


def _what(cls: ClassSpec, option: str | None) -> str:
    return f"class {cls.name!r}" if option is None else f"option {option!r} of class {cls.name!r}"


def v7_classes(spec: ModelSpec, section: V7Section) -> list[dict[str, str]]:
    """The `/classes` answer: one entry per class, one tag per radio/checklist option."""
    return [{"name": name, "type": CONVERSIONS[cls.kind].form} for name, (cls, _) in names(spec, section).items()
            if CONVERSIONS[cls.kind].fidelity != "dropped"]


def to_results(predictions: list[Prediction], spec: ModelSpec, section: V7Section,
               tolerance: float) -> list[dict[str, Any]]:
    """Darwin-JSON results: exactly one main annotation type each, confidence in [0, 1]."""
    results = []
    for prediction in predictions:
        cls = spec.get(prediction.label)
        for name, main in main_types(prediction, cls, section, tolerance):
            result: dict[str, Any] = {"name": name, "label": name, "confidence": prediction.confidence, **main}
            if prediction.attributes:
                result["attributes"] = list(prediction.attributes)
            if prediction.text is not None and "text" not in result:
                result["text"] = {"text": prediction.text}
            if prediction.frame is not None:
                result["frame"] = prediction.frame
            results.append(result)
    return results


def main_types(prediction: Prediction, cls: ClassSpec, section: V7Section,
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
