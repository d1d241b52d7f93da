"""Ango's dialect read back: a model plugin's answer (`{objects, classifications, relations}`) to predictions.

The inverse of `convert.to_answer`, pure. An object or classification names its class by `schemaId`, mapped
back through the run's `categorySchema` (`ids`: class name on Ango -> schemaId; without one a schemaId is the
class name itself, as `bridge check` and remote models send it), or by `title`. Then:

- `bounding-box`, `rotated-bounding-box` (top-left and rotation back to centre and angle), `point`,
  `polyline`, `polygon`, `segmentation` zones (region and holes), `ner` map back one to one; a mask class
  gets the zones' mask (with the image's size), an ellipse class the ellipse fitted to its polygon, a cuboid
  class its front face (the back is lost: read as the front), a skeleton class one node per `point` in order;
- nested classifications that name a mapped category are the object's attributes; `objectId` its id;
- Ango answers carry no confidence: every prediction reads 1.0.

The REST connector's envelope `{"response": ..., "session": ...}` is unwrapped. What fits no class raises
`BadAnswer` naming its JSON path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.core.errors import BadAnswer
from bridge.core.geometry import fit_ellipse, polygon_to_mask
from bridge.core.model import ClassSpec, ModelSpec
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
        box = Box(float(value["x"]), float(value["y"]), float(value["width"]), float(value["height"]))
        return Cuboid(box, box) if cls.kind == "cuboid" else box
    if kind == "rotated-bounding-box":
        w, h = float(value["width"]), float(value["height"])
        return RotatedBox(float(value["x"]) + w / 2, float(value["y"]) + h / 2, w, h, float(value.get("rotation", 0)))
    if kind == "point":
        x, y = value
        return Point(float(x), float(y))
    if kind == "polyline":
        return Line(value)
    if kind == "ner":
        start, end = int(value["start"]), int(value["end"])
        if text is not None and not 0 <= start <= end <= len(text):
            raise ValueError(f"[{start}, {end}) lies outside the text of {len(text)} characters")
        return Span(start, end, text[start:end] if text is not None else "")
    if kind == "polygon":
        polygon = Polygon.from_ring(value)
    else:
        polygon = Polygon(tuple((zone["region"], *zone.get("holes", ())) for zone in value["zones"]))
    if cls.kind == "ellipse":
        return fit_ellipse(polygon.parts[0][0])
    if cls.kind == "mask" and size is not None:
        return Mask(polygon_to_mask(polygon, *size))
    return polygon


def _classification(cls: ClassSpec, answer: Any, where: str) -> Tag | Classification:
    if cls.kind == "tag":
        return Tag()
    if cls.kind == "checklist" and isinstance(answer, list) and all(isinstance(a, str) for a in answer):
        return Classification(tuple(answer))
    if cls.kind in ("radio", "text") and isinstance(answer, str):
        return Classification(answer)
    if cls.kind not in ("radio", "checklist", "text"):
        raise BadAnswer(f"{where}: class {cls.name!r} is a {cls.kind}, not a classification")
    raise BadAnswer(f"{where}: a {cls.kind} answer is {'a list of options' if cls.kind == 'checklist' else 'a string'}"
                    f", got {answer!r:.80}")

