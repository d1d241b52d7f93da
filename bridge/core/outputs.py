"""Everything between the model's return and an adapter: check, clamp, place, threshold.

One function, `finish`, runs on the worker thread in the same call as the model's `predict`, so shapely and
mask work never touch the event loop, and every adapter receives predictions it can trust:

- each prediction names one of the model's classes and carries a shape of that class's kind;
- coordinates are finite numbers, a mask has the size of the item the model saw, an entity span lies inside
  the text (and quotes it: a span whose `text` differs takes the text's own slice);
- a confidence outside [0, 1] (or NaN) is clamped (NaN to 0), logged once per class;
- a box with a negative width or height (its corners swapped) is normalised, logged once per class;
- predictions on a crop (V7's auto-annotate box) move back into full-image coordinates; shapes are clipped
  to the image, and those wholly outside it are dropped;
- a shape takes its class's kind: a mask returned for a polygon class is traced (along pixel edges, simplified
  by `geometry.simplify_tolerance`, parts under `geometry.min_area` dropped), a polygon returned for a mask
  class is rasterised, so that adapters translate by shape alone;
- predictions under the class's `min_confidence` (manifest, overridden per platform) are dropped;
- a radio or free-text class keeps one answer per item (per video frame): the most confident, logged once per
  class. A single-choice question holds one answer on every platform, so the choice is made here, once.

A model that breaks the first two rules, or returns an outline of more than `limits.max_vertices` vertices (a
polygon's rings, or a mask traced for a polygon class: the trace stops there), gets `ModelFailed` naming the
class and what is wrong: that is a bug the model's author must see, not something to paper over per platform
or to spend the deadline on.

Between predictions it checks the job's deadline (`bridge.core.admission.check_deadline`): a job answered 504
does not go on tracing its masks on a model thread.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bridge.core import geometry
from bridge.core.admission import check_deadline
from bridge.core.errors import ModelFailed
from bridge.core.model import SHAPES_OF_KIND, ClassSpec, ModelSpec
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Line,
    Mask,
    Polygon,
    Prediction,
    Shape,
    Skeleton,
    Span,
)

log = logging.getLogger("bridge")


@dataclass(frozen=True)
class Finish:
    """How one item's predictions are finished: what the model saw, where it sits, what passes."""

    seen: tuple[int, int] | None = None
    """(height, width) of the image the model was given (the crop, with a region); None for text."""
    canvas: tuple[int, int] | None = None
    """(height, width) of the full image the answer is about."""
    offset: Box | None = None
    """Where the crop sits in the full image; None when the model saw the whole image."""
    text: str | None = None
    """The text a text model read."""
    min_confidence: Mapping[str, float] = field(default_factory=dict)
    """Per class name; classes not named pass at any confidence."""
    outlines: geometry.Outlines = geometry.EXACT
    """How a mask returned for a polygon class is traced, and the vertices an outline may have."""


def finish(found: Iterable[Any], spec: ModelSpec, how: Finish) -> list[Prediction]:
    """The model's predictions for one item, checked, clamped, placed and thresholded."""
    kept = []
    for prediction in found:
        check_deadline()  # a job given up at its deadline stops here, not after its last mask
        cls = check(prediction, spec, how)
        confidence = _unit(prediction.confidence, cls)
        if confidence < how.min_confidence.get(cls.name, 0.0):
            continue
        shape = _place(_upright(prediction.shape, cls), how, cls)
        if shape is not None:
            kept.append(replace(prediction, shape=shape, confidence=confidence))
    return one_answer(kept, spec)


SINGLE_ANSWER = ("radio", "text")
"""Class kinds whose question takes one answer per item."""


def one_answer(predictions: list[Prediction], spec: ModelSpec) -> list[Prediction]:
    """The predictions with one answer per radio or free-text class and video frame: the most confident (the
    first of equals), in the place of the first; the others are dropped, logged once per class."""
    best: dict[tuple[str, int | None], int] = {}
    for index, prediction in enumerate(predictions):
        if spec.get(prediction.label).kind in SINGLE_ANSWER:
            key = (prediction.label, prediction.frame)
            if key not in best or prediction.confidence > predictions[best[key]].confidence:
                best[key] = index
    if not best:
        return predictions
    kept, first = [], set()
    for prediction in predictions:
        key = (prediction.label, prediction.frame)
        if key not in best:
            kept.append(prediction)
        elif key not in first:
            first.add(key)
            kept.append(predictions[best[key]])
        else:
            warn_once("model", prediction.label, f"a {spec.get(prediction.label).kind} question takes one "
                                                 "answer per item: of several, the most confident is kept")
    return kept


def check(prediction: Any, spec: ModelSpec, how: Finish) -> ClassSpec:
    """The prediction's class; `ModelFailed` naming the class and the fault when it does not fit."""
    if not isinstance(prediction, Prediction):
        raise ModelFailed(f"{BAD} got a {type(prediction).__name__}, not a Prediction")
    cls = spec.get(prediction.label)
    if cls is None:
        raise ModelFailed(f"{BAD} label {prediction.label!r} is not one of its classes "
                          f"{[c.name for c in spec.classes]}")
    shape = prediction.shape
    if not isinstance(shape, SHAPES_OF_KIND[cls.kind]):
        raise _bad(cls, f"is a {cls.kind} but the model returned a {type(shape).__name__}")
    if not isinstance(prediction.confidence, (int, float, np.number)) or isinstance(prediction.confidence, bool):
        raise _bad(cls, f"has confidence {prediction.confidence!r}, not a number")
    if not _finite(shape):
        raise _bad(cls, f"has a {type(shape).__name__} with a NaN, infinite or non-numeric coordinate")
    if isinstance(shape, Polygon) and (bound := how.outlines.max_vertices) is not None:
        vertices = sum(len(ring) for part in shape.parts for ring in part)
        if vertices > bound:
            raise _bad(cls, f"has a polygon of {vertices} vertices, more than {bound} (limits.max_vertices)")
    if isinstance(shape, Mask) and how.seen is not None and tuple(shape.size) != tuple(how.seen):
        raise _bad(cls, f"has a mask of {shape.size[1]}x{shape.size[0]} (width x height) on an image of "
                        f"{how.seen[1]}x{how.seen[0]}: a mask must have the size of the image the model was given")
    if isinstance(shape, Span):
        length = len(how.text or "")
        if not (isinstance(shape.start, int) and isinstance(shape.end, int) and 0 <= shape.start <= shape.end
                <= length):
            raise _bad(cls, f"has the span [{shape.start!r}, {shape.end!r}) outside the text of {length} "
                            "characters (end is exclusive)")
    if isinstance(shape, Classification):
        _check_answer(cls, shape.answer)
    return cls


def _check_answer(cls: ClassSpec, answer: str | tuple[str, ...]) -> None:
    if cls.kind == "radio" and (not isinstance(answer, str) or answer not in cls.options):
        raise _bad(cls, f"answered {answer!r}, not one of its options {list(cls.options)}")
    if cls.kind == "checklist" and (isinstance(answer, str) or not set(answer) <= set(cls.options)):
        raise _bad(cls, f"answered {answer!r}, not a list of its options {list(cls.options)}")
    if cls.kind == "text" and not isinstance(answer, str):
        raise _bad(cls, f"is free text but answered {answer!r}")


BAD = "the model returned a bad prediction:"


def _bad(cls: ClassSpec, fault: str) -> ModelFailed:
    return ModelFailed(f"{BAD} class {cls.name!r} {fault}")


def _finite(shape: Shape) -> bool:
    """Whether every coordinate of the shape is a finite number (masks and answers have none)."""
    return all(_finite_numbers(value) for value in _coordinates(shape))


def _coordinates(shape: Shape) -> Iterable[Any]:
    if isinstance(shape, Polygon):
        return [ring for part in shape.parts for ring in part]
    if isinstance(shape, Line):
        return [shape.points]
    if isinstance(shape, Skeleton):
        return [(node.x, node.y) for node in shape.nodes]
    if isinstance(shape, Cuboid):
        return [*_coordinates(shape.front), *_coordinates(shape.back)]
    if isinstance(shape, (Mask, Classification, Span)):
        return []
    return [getattr(shape, name) for name in _field_names(type(shape))]


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def _finite_numbers(value: Any) -> bool:
    """Whether a coordinate, or every number of an array-like of them, is finite (an int past a double is not)."""
    try:
        if isinstance(value, (float, int)):  # a box's or a point's coordinate, without numpy's ~2 us
            return math.isfinite(value)
        return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
    except (TypeError, ValueError, OverflowError):
        return False


def _unit(confidence: float, cls: ClassSpec) -> float:
    """Clamp to [0, 1], NaN to 0; say so once per class, since a model that does it does it every time."""
    value = float(confidence)
    clamped = min(max(value, 0.0), 1.0) if not math.isnan(value) else 0.0
    if clamped != value:
        warn_once("model", cls.name, "confidences outside [0, 1] are clamped to it (NaN to 0): the model should "
                                     "return probabilities")
    return clamped


def _upright(shape: Shape, cls: ClassSpec) -> Shape:
    """A box (or a cuboid's face) with a negative width or height, as the same box with its corners in order:
    a model that swaps corners means that box, and every platform drops or refuses a negative size."""
    if isinstance(shape, Cuboid):
        front, back = _upright(shape.front, cls), _upright(shape.back, cls)
        return shape if (front, back) == (shape.front, shape.back) else Cuboid(front, back)
    if not isinstance(shape, Box) or (shape.w >= 0 and shape.h >= 0):
        return shape
    warn_once("model", cls.name, "a box with a negative width or height (corners swapped) is normalised: "
                                 "x, y should be its top-left corner")
    return Box(min(shape.x, shape.x + shape.w), min(shape.y, shape.y + shape.h), abs(shape.w), abs(shape.h))


def _place(shape: Shape, how: Finish, cls: ClassSpec) -> Shape | None:
    """Into full-image coordinates, clipped to the image; None when nothing of it is inside."""
    if isinstance(shape, Span):
        if how.text is None:
            return shape
        quoted = how.text[shape.start:shape.end]
        if quoted != shape.text:
            warn_once("model", cls.name, "a span's text differs from the text at its offsets; the text's own "
                                         "slice is kept")
            return Span(shape.start, shape.end, quoted)
        return shape
    if how.canvas is None:
        return shape
    height, width = how.canvas
    if how.offset is not None:
        shape = geometry.translate(shape, how.offset.x, how.offset.y, canvas=how.canvas)
    shape = geometry.clip(shape, width, height)
    if cls.kind == "polygon" and isinstance(shape, Mask):
        try:
            shape = how.outlines.trace(shape.array)
        except geometry.TooComplex as too_many:
            raise _bad(cls, f"returned a mask for a polygon class: {too_many}") from None
        return shape if shape.parts else None
    if cls.kind == "mask" and isinstance(shape, Polygon):
        return geometry.rasterize(shape, height, width)
    return shape


_warned: set[tuple[str, str, str]] = set()


def warn_once(where: str, class_name: str, message: str) -> None:
    """Log a fault or a loss once per place and class, not once per prediction."""
    key = (where, class_name, message)
    if key not in _warned:
        _warned.add(key)
        log.warning("%s: %s", where, f"class {class_name!r}: {message}" if class_name else message)
