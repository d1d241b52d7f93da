"""Ango's dialect, both ways and pure: run messages in (parameters, class mapping), answers out.

`CONVERSIONS` declares what each class kind becomes (`bridge formats` prints it):

- each class answers with the `schemaId` that `categorySchema` maps its name (after the section's `rename`)
  to; predictions of unmapped classes are dropped (the run's log says which); with no mapping at all
  (`categorySchema` null or empty) objects and classifications carry `title` (the class name) instead;
- boxes, points, lines (`polyline`) and entity spans (`ner`) map one to one; a polygon answers `polygon`
  unless holes or several parts make it `segmentation` zones; a mask answers `segmentation`; an ellipse
  leaves as a 64-point `polygon`, a skeleton as one `point` per node, a cuboid as the `bounding-box` of its
  front face; vectors have no Ango form;
- a rotated box answers as Ango's import document has it: `x, y` the top-left corner of the box before it
  turns, `width`, `height`, and `rotation` in degrees (-180..180, clockwise on screen) about the box's
  centre ("Boxes rotate from their center"). Ango's exports add `corners`; its import document does not
  name them, so none are sent;
- `ner` offsets count UTF-16 code units, as Ango's editor (JavaScript) does (`bridge.core.offsets`);
- classifications answer the option text (a string, or a list for a checklist), free text its text, a tag
  the class name; attributes that the mapping names become nested classifications answering themselves.
  When `categorySchema` gives the type (`tool`) of the category a class or attribute is mapped to, the
  answer takes that type's form: a list for a checkbox or a multiple dropdown, a string for the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.ango.section import AngoSection
from bridge.core.conversions import Conversion, dropped, exact, lossy
from bridge.core.errors import InvalidInput
from bridge.core.geometry import to_polygon
from bridge.core.model import ModelSpec
from bridge.core.offsets import Utf16
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
    Span,
    Tag,
)
from bridge.core.service import Job, Result, Source

PLATFORM = "ango"
log = logging.getLogger("bridge.ango")

_CLASSIFICATION = "classification"
CONVERSIONS = {
    "box": exact("bounding-box"),
    "rotated_box": exact("rotated-bounding-box"),
    "polygon": Conversion("polygon", traced=True),
    "mask": Conversion("segmentation", traced=True),
    "point": exact("point"),
    "line": exact("polyline"),
    "ellipse": lossy("polygon", "Ango has no ellipse: a 64-point polygon"),
    "skeleton": lossy("point", "Ango has no skeleton: one point per node (node names are not sent)"),
    "cuboid": lossy("bounding-box", "Ango has no cuboid for images: the bounding box of its front face"),
    "vector": dropped("Ango has no vector"),
    "tag": exact(_CLASSIFICATION),
    "radio": exact(_CLASSIFICATION),
    "checklist": exact(_CLASSIFICATION),
    "text": exact(_CLASSIFICATION),
    "entity": exact("ner"),
    "prediction.attributes": lossy("classifications", "only attributes the run's class mapping names become "
                                                      "nested classifications"),
    "prediction.text": dropped("Ango's answer has no free text on an object"),
    "prediction.confidence": dropped("Ango's answer carries no confidence"),
    "prompts": dropped("a model plugin's run carries no prompt"),
    "prediction.frame": dropped("a model plugin answers one image"),
}
"""What Ango receives of each class kind and aspect of a prediction."""


def run_params(config_json: Any) -> dict[str, Any]:
    """The model's parameters as `configJSON` (a JSON string, or empty) gives them; the service resolves them
    against the manifest's `params`."""
    if config_json is None or (isinstance(config_json, str) and not config_json.strip()):
        return {}
    if not isinstance(config_json, str):
        raise InvalidInput(f"configJSON must be a JSON string, got {type(config_json).__name__}")
    try:
        given = json.loads(config_json)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"configJSON is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("configJSON is nested too deeply to be the model's parameters") from None
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise InvalidInput(f"configJSON must be a JSON object of the model's parameters, got "
                           f"{type(given).__name__}")
    return given


LIST_TOOLS = ("checkbox", "multi-dropdown", "tree-dropdown")
"""Ango classification types whose answer is a list of options (its export format's `tool`s); the others
(`radio`, `single-dropdown`, `text`) answer a string."""


def class_tools(category_schema: Any) -> dict[str, str]:
    """`modelClass` -> the type (`tool`) of the category it is mapped to, for the entries that give it."""
    return {entry["modelClass"]: entry["tool"] for entry in category_schema or ()
            if isinstance(entry, dict) and isinstance(entry.get("tool"), str)
            and isinstance(entry.get("modelClass"), str)}


def class_ids(category_schema: Any) -> dict[str, str] | None:
    """`modelClass` -> `schemaId` from `categorySchema`; None when the user mapped nothing (answer titles)."""
    if not category_schema:
        return None
    if not isinstance(category_schema, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("modelClass"), str)
        and isinstance(entry.get("schemaId"), str) for entry in category_schema
    ):
        raise InvalidInput("categorySchema must be a list of {\"schemaId\": ..., \"modelClass\": ...} objects")
    return {entry["modelClass"]: entry["schemaId"] for entry in category_schema}


def to_job(params: Mapping[str, Any], url: str, text: bool = False) -> Job:
    """The neutral job of one run: the asset at `url` (a base64 `data:` URL carries the asset itself, as a
    remote bridge sends it), an image, or for a text model (`text`) its content read as UTF-8."""
    source = Source(base64=url) if url.startswith("data:") else Source(url=url)
    if text:
        return Job(platform=PLATFORM, text=source, params=params)
    return Job(platform=PLATFORM, image=source, params=params)


@dataclass(frozen=True)
class AngoRun:
    """What one run knows: its class mapping (`categorySchema`: `modelClass` -> `schemaId`; None when the user
    mapped nothing: answers carry titles), whether it keeps the task's answer (`overwrite` false), and where
    what the mapping drops is told (the run's log, which the user reads in Ango)."""

    ids: dict[str, str] | None = None
    overwrite: bool = True
    note: Callable[[str], None] = log.warning
    tools: Mapping[str, str] = field(default_factory=dict)
    """`modelClass` -> the type of the category it is mapped to, where `categorySchema` says (`class_tools`)."""


def write(result: Result, spec: ModelSpec, section: AngoSection, tolerance: float, run: AngoRun) -> dict[str, list]:
    """A run's answer; what the run's mapping drops is told in the run's log."""
    answer, unmapped, attributes = to_answer(result.predictions, spec, section, run.ids, tolerance, run.tools,
                                             result.text)
    if unmapped:
        run.note(f"dropped the predictions of {', '.join(map(repr, unmapped))}: no label category is "
                       "mapped to them in this run's class mapping")
    if attributes:
        run.note(f"left out the attributes {', '.join(map(repr, attributes))}: no label category of "
                       "this run's class mapping names them")
    if not run.overwrite:
        unmerged = [c for c in answer["classifications"] if "schemaId" not in c]
        if unmerged:  # the SDK merges classifications into the task's answer by schemaId
            answer["classifications"] = [c for c in answer["classifications"] if "schemaId" in c]
            run.note(f"left out the classifications {', '.join(repr(c['title']) for c in unmerged)}: "
                           "keeping the task's answer (overwrite off) merges classifications by label "
                           "category, and none is mapped to them in this run's class mapping")
    return answer


def to_answer(predictions: list[Prediction], spec: ModelSpec, section: AngoSection, ids: dict[str, str] | None,
              tolerance: float = 0.0, tools: Mapping[str, str] | None = None,
              text: str | None = None) -> tuple[dict[str, list], list[str], list[str]]:
    """Ango's answer JSON; the (platform) names of the classes dropped because `ids` does not map them; the
    attributes left out because `ids` does not map them (without a mapping, attributes cannot be sent).
    `tools` gives the type of the categories mapped to, `text` the text that `ner` offsets count in."""
    objects: list[dict[str, Any]] = []
    classifications: list[dict[str, Any]] = []
    unmapped: set[str] = set()
    attributes: set[str] = set()
    tools = tools or {}
    offsets = Utf16(text) if text is not None else None
    for prediction in predictions:
        cls = spec.get(prediction.label)
        name = section.platform_name(cls.name)
        if CONVERSIONS[cls.kind].fidelity == "dropped":
            continue
        ref = {"title": name} if ids is None else {"schemaId": ids[name]} if name in ids else None
        if ref is None:
            unmapped.add(name)
        elif isinstance(prediction.shape, (Classification, Tag)):
            classifications.append({**ref, "answer": _as_tool(_answer(prediction.shape, name), tools.get(name))})
        else:
            extra = _nested(prediction, ids, tools)
            attributes.update(a for a in prediction.attributes if not ids or a not in ids)
            for geometry in _geometries(prediction.shape, tolerance, offsets):
                objects.append({**ref, **extra, **geometry})
    answer = {"objects": objects, "classifications": classifications, "relations": []}
    return answer, sorted(unmapped), sorted(attributes)


def _answer(shape: Classification | Tag, name: str) -> str | list[str]:
    if isinstance(shape, Tag):
        return name
    return shape.answer if isinstance(shape.answer, str) else list(shape.answer)


def _as_tool(answer: str | list[str], tool: str | None) -> str | list[str]:
    """The answer in the form of the category's type, when it is known: a list for a checkbox or multiple
    dropdown, a string for the others (a list of one option gives that option)."""
    if tool in LIST_TOOLS and isinstance(answer, str):
        return [answer]
    if tool is not None and tool not in LIST_TOOLS and isinstance(answer, list) and len(answer) == 1:
        return answer[0]
    return answer


def _nested(prediction: Prediction, ids: dict[str, str] | None, tools: Mapping[str, str]) -> dict[str, Any]:
    """`objectId` from the prediction's id, and its attributes that the mapping names as classifications."""
    extra: dict[str, Any] = {}
    if prediction.id is not None:
        extra["objectId"] = prediction.id
    nested = [{"schemaId": ids[a], "answer": _as_tool(a, tools.get(a))} for a in prediction.attributes
              if ids and a in ids]
    if nested:
        extra["classifications"] = nested
    return extra


def _geometries(shape: Any, tolerance: float, offsets: Utf16 | None = None) -> list[dict[str, Any]]:
    """The Ango shape(s) of one neutral shape: several for a skeleton, none for an empty outline."""
    if isinstance(shape, Cuboid):
        shape = shape.front
    if isinstance(shape, Box):
        return [{"bounding-box": {"x": float(shape.x), "y": float(shape.y),
                                  "width": float(shape.w), "height": float(shape.h)}}]
    if isinstance(shape, RotatedBox):
        return [{"rotated-bounding-box": {"x": float(shape.cx - shape.w / 2), "y": float(shape.cy - shape.h / 2),
                                          "width": float(shape.w), "height": float(shape.h),
                                          "rotation": (float(shape.angle) + 180.0) % 360.0 - 180.0}}]
    if isinstance(shape, Point):
        return [{"point": [float(shape.x), float(shape.y)]}]
    if isinstance(shape, Skeleton):
        return [{"point": [float(node.x), float(node.y)]} for node in shape.nodes]
    if isinstance(shape, Line):
        return [{"polyline": shape.points.tolist()}]
    if isinstance(shape, Span):
        if offsets is None:
            return [{"ner": {"start": shape.start, "end": shape.end}}]
        return [{"ner": {"start": offsets.units(shape.start), "end": offsets.units(shape.end)}}]
    if isinstance(shape, (Polygon, Mask, Ellipse)):
        polygon = to_polygon(shape, tolerance)
        if not polygon.parts:
            return []
        if isinstance(shape, Mask) or polygon.has_holes or len(polygon.parts) > 1:
            zones = [{"region": part[0].tolist(), "holes": [hole.tolist() for hole in part[1:]]}
                     for part in polygon.parts]
            return [{"segmentation": {"zones": zones}}]
        return [{"polygon": polygon.parts[0][0].tolist()}]
    raise TypeError(f"no Ango form for {type(shape).__name__}")
