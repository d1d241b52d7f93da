"""V7's dialect read back: a BYOM `/infer` answer (Darwin-JSON results) to neutral predictions.

The inverse of `to_results`, pure. Results are matched to the model's classes by V7 name (after the
section's `rename`; radio and checklist options by the section's `tag_name`), which `convert.names` keeps
unique, so each name reads back as one class and option:

- `polygon`: `path` and `additional_paths` are filled even-odd, as V7 draws them, and rebuilt into parts and
  holes; a mask class gets the mask of that outline (when the image's size is known), a rotated-box class the
  box whose 4 corners the polygon is;
- `ellipse` and `directional_vector` angles come back from radians to degrees;
- option tags of one checklist class (same frame) merge into one answer; a free-text class's answer is its
  `text` sub-annotation; on other classes `text` is the prediction's text, `attributes` its attributes.

A result that fits no class, or no V7 form, raises `BadAnswer` naming its JSON path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adapters.v7.convert import names
from bridge.core.errors import BadAnswer
from bridge.core.geometry import from_rings, polygon_to_mask
from bridge.core.model import ClassSpec, ModelSpec
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Node,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Tag,
    Vector,
)

MAIN_TYPES = ("bounding_box", "cuboid", "directional_vector", "ellipse", "line", "keypoint", "polygon", "skeleton",
              "tag")
"""V7's main annotation types: a result has exactly one."""


def read_results(answer: Any, spec: ModelSpec, section: Any, size: tuple[int, int] | None = None) -> list[Prediction]:
    """The predictions of a V7 answer (`{"status", "results"}`, or the results list itself)."""
    if isinstance(answer, dict):
        if answer.get("status") == "failed":
            raise BadAnswer(f"$.status: the endpoint failed: {answer.get('error') or 'no error message'}")
        answer = answer.get("results")
    if not isinstance(answer, list):
        raise BadAnswer("$.results: not a list of results")
    try:
        known = names(spec, section)
    except ValueError as error:
        raise BadAnswer(f"$: cannot read V7 names back: {error}") from None
    predictions: list[Prediction] = []
    checklists: dict[tuple[str, int | None], int] = {}  # (class, frame) -> index of its merged answer
    for index, result in enumerate(answer):
        where = f"$.results[{index}]"
        if not isinstance(result, dict) or not isinstance(result.get("name"), str):
            raise BadAnswer(f"{where}: a result is an object with a `name`")
        if result["name"] not in known:
            raise BadAnswer(f"{where}.name: {result['name']!r} is none of the model's V7 names {sorted(known)}")
        cls, option = known[result["name"]]
        try:
            prediction = _read(result, cls, option, size)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise BadAnswer(f"{where}: not a readable V7 result: {type(error).__name__}: {error}") from None
        if cls.kind == "checklist":
            key = (cls.name, prediction.frame)
            if key in checklists:
                merged = predictions[checklists[key]]
                answers = (*merged.shape.answer, *prediction.shape.answer)
                predictions[checklists[key]] = Prediction(merged.label, Classification(answers), merged.confidence,
                                                          merged.attributes, merged.text, merged.frame)
                continue
            checklists[key] = len(predictions)
        predictions.append(prediction)
    return predictions


def _read(result: dict[str, Any], cls: ClassSpec, option: str | None, size: tuple[int, int] | None) -> Prediction:
    main = [key for key in MAIN_TYPES if key in result]
    if len(main) != 1:
        raise ValueError(f"exactly one main type is required, found {main or 'none'}")
    value = result[main[0]]
    text = result.get("text")
    text = text["text"] if isinstance(text, dict) else None
    if cls.kind in ("radio", "checklist"):
        shape: Any = Classification(option if cls.kind == "radio" else (option,))
    elif cls.kind == "text":
        shape, text = Classification(text or ""), None
    else:
        shape = _shape(main[0], value, cls, size)
    attributes = tuple(str(a) for a in result.get("attributes") or ())
    return Prediction(cls.name, shape, float(result.get("confidence", 1.0)), attributes, text, result.get("frame"))


def _shape(kind: str, value: dict[str, Any], cls: ClassSpec, size: tuple[int, int] | None) -> Any:
    if kind == "bounding_box":
        return _box(value)
    if kind == "tag":
        return Tag()
    if kind == "keypoint":
        return Point(float(value["x"]), float(value["y"]))
    if kind == "line":
        return Line(_ring(value["path"]))
    if kind == "ellipse":
        return Ellipse(float(value["center"]["x"]), float(value["center"]["y"]), float(value["radius"]["x"]),
                       float(value["radius"]["y"]), math.degrees(float(value["angle"])))
    if kind == "skeleton":
        return Skeleton(tuple(Node(name, float(node["x"]), float(node["y"]), bool(node.get("occluded", False)))
                              for name, node in zip(cls.nodes, value["nodes"], strict=True)))
    if kind == "cuboid":
        return Cuboid(_box(value["front"]), _box(value["back"]))
    if kind == "directional_vector":
        return Vector(math.degrees(float(value["angle"])), float(value["length"]))
    rings = [_ring(value["path"]), *(_ring(path) for path in value.get("additional_paths") or ())]
    if cls.kind == "rotated_box" and len(rings) == 1 and len(rings[0]) == 4:
        return _rotated_box(rings[0])
    if cls.kind == "mask" and size is not None:
        return Mask(polygon_to_mask(Polygon(tuple((ring,) for ring in rings)), *size))  # even-odd, as V7 fills
    return from_rings(rings)


def _rotated_box(corners: np.ndarray) -> RotatedBox:
    """The box whose corners these are, as `rotated_box_corners` orders them (from the unrotated top-left, on
    round the box): its first side gives the width and the angle, its last the height."""
    across, down = corners[1] - corners[0], corners[3] - corners[0]
    cx, cy = corners.mean(axis=0)
    angle = math.degrees(math.atan2(across[1], across[0]))
    return RotatedBox(float(cx), float(cy), float(np.hypot(*across)), float(np.hypot(*down)), angle)


def _box(value: dict[str, Any]) -> Box:
    return Box(float(value["x"]), float(value["y"]), float(value["w"]), float(value["h"]))


def _ring(path: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[float(p["x"]), float(p["y"])] for p in path], dtype=np.float64).reshape(-1, 2)
