"""Ango's dialect read back: a model plugin's answer (`{objects, classifications, relations}`) to predictions.

The inverse of `convert.to_answer`, pure. An object or classification names its class by `schemaId`, mapped
back through the run's `categorySchema` (`ids`: class name on Ango -> schemaId; without one a schemaId is the
class name itself, as `bridge check` and remote models send it), or by `title`. Then:

- `bounding-box` (a negative width or height, which Ango's exports have when the box was drawn from another
  corner, reads as the same box), `rotated-bounding-box`, `point`, `polyline`, `polygon`, `segmentation`
  zones (region and holes), `ner` (UTF-16 offsets, with the text) map back one to one. A rotated box is
  placed by its `corners` when it has them (Ango's exports: its `x, y` there is the corner it turns about),
  else as Ango's import document has it (`x, y` the top-left corner before turning about the centre: what
  the writer sends); a mask class
  gets the zones' mask (with the image's size), an ellipse class the ellipse fitted to its polygon, a cuboid
  class its front face (the back is lost: read as the front), a skeleton class one node per `point` in order;
- nested classifications that name a mapped category are the object's attributes; `objectId` its id;
- Ango answers carry no confidence: every prediction reads 1.0.

The REST connector's envelope `{"response": ..., "session": ...}` is unwrapped. What fits no class raises
`BadAnswer` naming its JSON path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bridge.core.errors import BadAnswer
from bridge.core.geometry import fit_ellipse, polygon_to_mask
from bridge.core.model import ClassSpec, ModelSpec
from bridge.core.offsets import Utf16
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Line,
    Mask,
    Node,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
)

OBJECT_TYPES = ("bounding-box", "rotated-bounding-box", "point", "polyline", "polygon", "segmentation", "ner")


def read_answer(answer: Any, spec: ModelSpec, section: Any, ids: Mapping[str, str] | None = None,
                size: tuple[int, int] | None = None, text: str | None = None) -> list[Prediction]:
    """The predictions of an Ango answer; `ids` is the run's class mapping (name on Ango -> schemaId)."""
    if isinstance(answer, dict) and "response" in answer:
        answer = answer["response"]
    if not isinstance(answer, dict):
        raise BadAnswer("$: an Ango answer is an object {objects, classifications, relations}")
    by_ango = {section.platform_name(cls.name): cls for cls in spec.classes}
    by_id = {(ids or {}).get(name, name): cls for name, cls in by_ango.items()}
    attribute_of = {schema: name for name, schema in (ids or {}).items() if name not in by_ango}

    def class_of(entry: Any, where: str) -> ClassSpec:
        if not isinstance(entry, dict):
            raise BadAnswer(f"{where}: not an object")
        if "schemaId" in entry and entry["schemaId"] in by_id:
            return by_id[entry["schemaId"]]
        if "title" in entry and entry["title"] in by_ango:
            return by_ango[entry["title"]]
        named = {k: entry[k] for k in ("schemaId", "title") if k in entry}
        raise BadAnswer(f"{where}: {named or 'no schemaId nor title'} names none of the model's classes "
                        f"{sorted(by_id)}")

    predictions: list[Prediction] = []
    skeleton: list[Node] = []
    for index, entry in enumerate(_list(answer.get("objects", []), "$.objects")):
        where = f"$.objects[{index}]"
        cls = class_of(entry, where)
        types = [key for key in OBJECT_TYPES if key in entry]
        if len(types) != 1:
            raise BadAnswer(f"{where}: an object has exactly one of {list(OBJECT_TYPES)}, found {types or 'none'}")
        try:
            shape = _shape(types[0], entry[types[0]], cls, size, text)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise BadAnswer(f"{where}.{types[0]}: not a readable Ango {types[0]}: "
                            f"{type(error).__name__}: {error}") from None
        if isinstance(shape, Point) and cls.kind == "skeleton":  # one point per node, in order
            skeleton.append(Node(cls.nodes[len(skeleton)], shape.x, shape.y))
            if len(skeleton) < len(cls.nodes):
                continue
            shape, skeleton = Skeleton(tuple(skeleton)), []
        attributes = tuple(attribute_of[nested.get("schemaId")] for nested in entry.get("classifications") or ()
                           if isinstance(nested, dict) and nested.get("schemaId") in attribute_of)
        predictions.append(Prediction(cls.name, shape, 1.0, attributes, id=entry.get("objectId")))
    for index, entry in enumerate(_list(answer.get("classifications", []), "$.classifications")):
        where = f"$.classifications[{index}]"
        cls = class_of(entry, where)
        predictions.append(Prediction(cls.name, _classification(cls, entry.get("answer"), f"{where}.answer")))
    return predictions


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise BadAnswer(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _shape(kind: str, value: Any, cls: ClassSpec, size: tuple[int, int] | None, text: str | None) -> Any:
    if kind == "bounding-box":
        x, y, w, h = (float(value[key]) for key in ("x", "y", "width", "height"))
        box = Box(min(x, x + w), min(y, y + h), abs(w), abs(h))
        return Cuboid(box, box) if cls.kind == "cuboid" else box
    if kind == "rotated-bounding-box":
        if value.get("corners") is not None:
            return _by_corners(np.asarray(value["corners"], dtype=np.float64), value.get("rotation"))
        w, h = float(value["width"]), float(value["height"])
        return RotatedBox(float(value["x"]) + w / 2, float(value["y"]) + h / 2, w, h, float(value.get("rotation", 0)))
    if kind == "point":
        x, y = value
        return Point(float(x), float(y))
    if kind == "polyline":
        return Line(value)
    if kind == "ner":
        start, end = int(value["start"]), int(value["end"])
        if text is None:
            return Span(start, end, "")
        if start > end:
            raise ValueError(f"[{start}, {end}) ends before it starts")
        offsets = Utf16(text)
        start, end = offsets.points(start), offsets.points(end)
        return Span(start, end, text[start:end])
    if kind == "polygon":
        polygon = Polygon.from_ring(value)
    else:
        polygon = Polygon(tuple((zone["region"], *zone.get("holes", ())) for zone in value["zones"]))
    if cls.kind == "ellipse":
        return fit_ellipse(polygon.parts[0][0])
    if cls.kind == "mask" and size is not None:
        return Mask(polygon_to_mask(polygon, *size))
    return polygon


def _by_corners(corners: np.ndarray, rotation: Any) -> RotatedBox:
    """The box of Ango's exported `corners`: from the corner it turns about, the next one lies along its
    height and the last along its width (objects.md's example); `rotation` when given, else the width's
    direction, is its angle."""
    if corners.shape != (4, 2):
        raise ValueError(f"`corners` are 4 [x, y] points, got an array of shape {corners.shape}")
    across, down = corners[3] - corners[0], corners[1] - corners[0]
    angle = float(rotation) if rotation is not None else math.degrees(math.atan2(across[1], across[0]))
    cx, cy = corners.mean(axis=0)
    return RotatedBox(float(cx), float(cy), float(np.hypot(*across)), float(np.hypot(*down)), angle)


def _classification(cls: ClassSpec, answer: Any, where: str) -> Tag | Classification:
    if cls.kind == "tag":
        return Tag()
    if cls.kind in ("radio", "text") and isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]  # a list-type category (checkbox) holding the one answer
    if cls.kind == "checklist" and isinstance(answer, str):
        answer = [answer]  # a single-answer category (radio) holding one of the options
    if cls.kind == "checklist" and isinstance(answer, list) and all(isinstance(a, str) for a in answer):
        return Classification(tuple(answer))
    if cls.kind in ("radio", "text") and isinstance(answer, str):
        return Classification(answer)
    if cls.kind not in ("radio", "checklist", "text"):
        raise BadAnswer(f"{where}: class {cls.name!r} is a {cls.kind}, not a classification")
    raise BadAnswer(f"{where}: a {cls.kind} answer is {'a list of options' if cls.kind == 'checklist' else 'a string'}"
                    f", got {answer!r:.80}")

