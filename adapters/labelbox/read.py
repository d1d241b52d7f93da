"""Labelbox's dialect read back: a Foundry answer (keyed by feature name) to neutral predictions.

The inverse of `to_answer`, pure. A feature is matched to a class by its Labelbox name (after the section's
`rename`); the feature named by the section's `tags` answers tag classes (each option a class) unless a class
has that name itself. What the answer holds decides the shape, the class's kind what it becomes:

- boxes with their scores (one score per box);
- COCO RLE masks: a mask class gets the mask, a polygon class its outline traced along pixel edges, a
  rotated-box or ellipse class the shape fitted to it (Foundry rasterised them);
- radio, free text (a string) and checklist (a list) answers; entity spans `{start, end, text}`, whose
  offsets count UTF-16 code units (JavaScript's), read back into code points with the text.

Confidence: boxes carry scores; nothing else does, so other predictions read 1.0. `spec_from_model_yaml`
gives the classes of a remote endpoint from its `model.yaml` ontology.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bridge.core.errors import BadAnswer
from bridge.core.geometry import fit_ellipse, fit_rotated_box, mask_to_polygon
from bridge.core.model import ClassSpec, ModelSpec
from bridge.core.offsets import Utf16
from bridge.core.predictions import (
    Box,
    Classification,
    Mask,
    Prediction,
    RotatedBox,
    Span,
    Tag,
)

KIND_OF_FEATURE = {"rectangle": "box", "raster-segmentation": "mask", "named-entity": "entity",
                   "polygon": "polygon", "point": "point", "radio": "radio", "checklist": "checklist",
                   "text": "text"}
"""The class kind each Labelbox feature kind reads as."""


def read_answer(answer: Any, spec: ModelSpec, section: Any, size: tuple[int, int] | None = None,
                text: str | None = None) -> list[Prediction]:
    """The predictions of a Labelbox answer; `size` (height, width) checks mask sizes, `text` quotes spans."""
    if not isinstance(answer, dict):
        raise BadAnswer("$: a Labelbox answer is an object keyed by feature name")
    features = {section.platform_name(cls.name): cls for cls in spec.classes if cls.kind != "tag"}
    tags = {section.platform_name(cls.name): cls for cls in spec.classes if cls.kind == "tag"}
    predictions: list[Prediction] = []
    for feature, value in answer.items():
        where = f"$[{feature!r}]"
        if feature in features:
            predictions += _read(features[feature], value, where, size, text)
        elif feature == section.tags.question and tags:
            for index, option in enumerate([value] if isinstance(value, str) else value):
                if option not in tags:
                    raise BadAnswer(f"{where}[{index}]: {option!r} is none of the tag classes {sorted(tags)}")
                predictions.append(Prediction(tags[option].name, Tag()))
        else:
            raise BadAnswer(f"{where}: no class of the model is the feature {feature!r} "
                            f"(features: {sorted(features) + ([section.tags.question] if tags else [])})")
    return predictions


def _read(cls: ClassSpec, value: Any, where: str, size: tuple[int, int] | None,
          text: str | None) -> list[Prediction]:
    if cls.kind in ("radio", "text"):
        if not isinstance(value, str):
            raise BadAnswer(f"{where}: a {cls.kind} answer is a string, got {type(value).__name__}")
        return [Prediction(cls.name, Classification(value))]
    if cls.kind == "checklist":
        if not isinstance(value, list) or not all(isinstance(option, str) for option in value):
            raise BadAnswer(f"{where}: a checklist answer is a list of option strings")
        return [Prediction(cls.name, Classification(tuple(value)))]
    if cls.kind == "entity":
        return [Prediction(cls.name, _span(span, f"{where}[{i}]", text)) for i, span in enumerate(_list(value, where))]
    if isinstance(value, dict) and "boxes" in value:
        boxes, scores = _list(value["boxes"], f"{where}.boxes"), _list(value.get("scores"), f"{where}.scores")
        if len(boxes) != len(scores):
            raise BadAnswer(f"{where}: {len(boxes)} boxes and {len(scores)} scores: one score per box")
        return [Prediction(cls.name, _box(box, f"{where}.boxes[{i}]"), _score(score, f"{where}.scores[{i}]"))
                for i, (box, score) in enumerate(zip(boxes, scores))]
    if isinstance(value, dict) and "masks" in value:
        return [Prediction(cls.name, _area(cls, _mask(rle, f"{where}.masks[{i}]", size)))
                for i, rle in enumerate(_list(value["masks"], f"{where}.masks"))]
    raise BadAnswer(f"{where}: class {cls.name!r} ({cls.kind}) reads `boxes` or `masks`, got {value!r:.80}")


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise BadAnswer(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _box(box: Any, where: str) -> Box:
    if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
        raise BadAnswer(f"{where}: a box is [left, top, width, height], got {box!r}")
    return Box(*map(float, box))


def _score(score: Any, where: str) -> float:
    if not _number(score):
        raise BadAnswer(f"{where}: a score is a number, got {score!r}")
    return float(score)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mask(rle: Any, where: str, size: tuple[int, int] | None) -> Mask:
    if not (isinstance(rle, dict) and isinstance(rle.get("size"), list) and "counts" in rle):
        raise BadAnswer(f"{where}: a mask is COCO RLE {{\"size\": [h, w], \"counts\": ...}}")
    if size is not None and list(rle["size"]) != list(size):
        raise BadAnswer(f"{where}.size: {rle['size']} is not the image's [height, width] {list(size)}")
    try:
        mask = Mask.from_rle(rle)
        mask.array  # noqa: B018 - decode now: a broken RLE is the answer's fault
    except Exception as error:
        raise BadAnswer(f"{where}.counts: not COCO RLE: {type(error).__name__}: {error}") from None
    return mask


def _area(cls: ClassSpec, mask: Mask) -> Any:
    """The mask as the class's kind: itself, its traced outline, or the rotated box or ellipse fitted to it."""
    if cls.kind == "polygon":
        return mask_to_polygon(mask.array)
    if cls.kind == "ellipse":
        outline = mask_to_polygon(mask.array)
        return fit_ellipse(np.concatenate([part[0] for part in outline.parts]))
    if cls.kind == "rotated_box":  # around the pixels' centres, then half a pixel further on each side
        box = fit_rotated_box(np.argwhere(mask.array)[:, ::-1] + 0.5)
        return RotatedBox(box.cx, box.cy, box.w + 1, box.h + 1, box.angle)
    return mask


def _span(span: Any, where: str, text: str | None) -> Span:
    if not (isinstance(span, dict) and isinstance(span.get("start"), int) and isinstance(span.get("end"), int)):
        raise BadAnswer(f"{where}: a span is {{\"start\": int, \"end\": int, \"text\": str}}")
    start, end = span["start"], span["end"]
    if text is None:
        return Span(start, end, span.get("text", ""))
    offsets = Utf16(text)
    try:
        if start > end:
            raise ValueError(f"[{start}, {end}) ends before it starts")
        start, end = offsets.points(start), offsets.points(end)
    except ValueError as error:
        raise BadAnswer(f"{where}: {error} (offsets count UTF-16 code units)") from None
    quoted = text[start:end]
    if "text" in span and span["text"] != quoted:
        raise BadAnswer(f"{where}.text: {span['text']!r} does not quote the text at [{span['start']}, "
                        f"{span['end']}) (UTF-16 code units): {quoted!r}")
    return Span(start, end, quoted)


def spec_from_model_yaml(document: Any, where: str = "model.yaml") -> ModelSpec:
    """The classes of a Labelbox model from its `model.yaml`: one per ontology tool and classification."""
    try:
        found = document["ontology"]
        classes = [ClassSpec(name=tool["name"], kind=KIND_OF_FEATURE[tool["tool"]]) for tool in found.get("tools", [])]
        for entry in found.get("classifications", []):
            options = tuple(o.get("value", o.get("label")) for o in entry.get("options", []))
            classes.append(ClassSpec(name=entry["name"], kind=KIND_OF_FEATURE[entry["type"]], options=options))
        media = str(found.get("media_type") or (document.get("allowed_asset_types") or ["image"])[0]).lower()
        return ModelSpec(classes=classes, input="text" if media == "text" else "image")
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{where}: not a Labelbox model.yaml with an `ontology` of tools and classifications "
                         f"({type(error).__name__}: {error})") from None
