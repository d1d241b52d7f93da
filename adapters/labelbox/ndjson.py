"""Labelbox's file import for `bridge prelabel`: prediction NDJSON for model-assisted labelling (any plan).

One JSON object per annotation, keyed by the data row's global key (the item's identity) and named by the
feature (the class name after the section's `rename`), as `labelbox.data.serialization.ndjson` reads them:

- box `bbox {top, left, height, width}`; point `point {x, y}`; line `line [{x, y}, ...]`;
- polygon: one `polygon [{x, y}, ...]` per part (a polygon tool has no holes); rotated boxes as their 4
  corners, ellipses as 64 points; a mask a polygon class returns is traced first;
- mask `mask {png}`: a base64 PNG of the item's size, 1 inside and 0 outside (a polygon a mask class returns
  is rasterised);
- entity `location {start, end}`, `end` inclusive (the SDK's `TextEntity` allows `start == end`: one
  character), so a span `[start, end)` leaves as `end - 1`;
- radio `answer {name}` (the most confident), checklist `answer [{name}, ...]` (every option found), free
  text `answer "..."` (the most confident); tag classes answer the classification the section's `tags`
  names, as the Foundry endpoint does;
- every annotation carries the prediction's `confidence`.

Skeletons, cuboids and vectors have no NDJSON form here and are dropped; so are attributes and a prediction's
`text` (Labelbox nests them as classifications that your ontology would have to declare).

`labelbox/predictions.ndjson` is assembled from one part per item at the end of every run (upload it with
`MALPredictionImport.create_from_file` or, for a model run, `model_run.add_predictions`).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.labelbox.section import LabelboxSection
from bridge.core.conversions import Table, dropped, exact, lossy
from bridge.core.geometry import rasterize, to_polygon
from bridge.core.model import ModelSpec
from bridge.core.predictions import Line, Point, Prediction, Span
from bridge.core.service import Result
from bridge.platforms.export import (
    ExportSetup,
    Item,
    file_name,
    parts,
    parts_dir,
    write_atomic,
)

OUTPUT = "predictions.ndjson"

CONVERSIONS: Table = {
    "box": exact("bbox"),
    "rotated_box": lossy("polygon", "Labelbox has no rotated box: its 4 corners as a polygon"),
    "polygon": lossy("polygon", "a polygon tool has no holes: holes are dropped, each part is a polygon"),
    "mask": exact("mask (png)"),
    "point": exact("point"),
    "line": exact("line"),
    "ellipse": lossy("polygon", "Labelbox has no ellipse: a 64-point polygon"),
    "skeleton": dropped("Labelbox prediction imports have no skeleton"),
    "cuboid": dropped("Labelbox prediction imports have no cuboid for images"),
    "vector": dropped("Labelbox has no vector"),
    "tag": lossy("checklist/radio answer", "tags answer the classification platforms.labelbox.tags names"),
    "radio": lossy("radio answer", "one answer per item: the most confident"),
    "checklist": exact("checklist answer"),
    "text": lossy("text answer", "one answer per item: the most confident"),
    "entity": exact("location"),
    "prediction.attributes": dropped("nested classifications need your ontology's feature names"),
    "prediction.text": dropped("nested classifications need your ontology's feature names"),
    "prediction.confidence": exact("confidence"),
    "prediction.frame": dropped("bridge prelabel reads images, not videos"),
}


class PredictionNdjson:
    """Writes each item's lines to a part, and `predictions.ndjson` from every part."""

    conversions = CONVERSIONS

    def __init__(self, section: LabelboxSection, setup: ExportSetup) -> None:
        self.section = section
        self.spec = setup.spec
        self.tolerance = setup.manifest.geometry.simplify_tolerance

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        lines = ndjson_lines(item.identity, result, self.spec, self.section, self.tolerance)
        data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        part = parts_dir(out_dir) / f"{file_name(item.identity)}.ndjson"
        write_atomic(part, data)
        return [part]

    def finish(self, out_dir: Path) -> list[Path]:
        found = parts(out_dir, ".ndjson")
        if not found:
            return []
        write_atomic(out_dir / OUTPUT, b"".join(part.read_bytes() for part in found))
        return [out_dir / OUTPUT]


def ndjson_lines(global_key: str, result: Result, spec: ModelSpec, section: LabelboxSection,
                 tolerance: float = 0.0) -> list[dict[str, Any]]:
    """The prediction-import lines of one data row."""
    lines: list[dict[str, Any]] = []
    best: dict[str, tuple[float, Any]] = {}  # radio and free-text questions: the most confident answer
    chosen: dict[str, tuple[float, list[str]]] = {}  # checklist questions: every option found

    def line(name: str, confidence: float, **form: Any) -> dict[str, Any]:
        return {"uuid": str(uuid.uuid4()), "name": name, "dataRow": {"globalKey": global_key}, **form,
                "confidence": confidence}

    for prediction in result.predictions:
        cls = spec.get(prediction.label)
        name, shape, confidence = section.platform_name(cls.name), prediction.shape, prediction.confidence
        if cls.kind == "tag":
            if section.tags.kind == "checklist":
                _choose(chosen, section.tags.question, confidence, [name])
            else:
                _keep_best(best, section.tags.question, confidence, {"name": name})
        elif cls.kind == "checklist":
            _choose(chosen, name, confidence, list(shape.answer))
        elif cls.kind == "radio":
            _keep_best(best, name, confidence, {"name": shape.answer})
        elif cls.kind == "text":
            _keep_best(best, name, confidence, shape.answer)
        else:
            lines += [line(name, confidence, **form) for form in _objects(prediction, cls.kind, result, tolerance)]
    lines += [line(name, confidence, answer=answer) for name, (confidence, answer) in best.items()]
    lines += [line(name, confidence, answer=[{"name": option} for option in options])
              for name, (confidence, options) in chosen.items()]
    return lines


def _objects(prediction: Prediction, kind: str, result: Result, tolerance: float) -> list[dict[str, Any]]:
    shape = prediction.shape
    if kind == "box":
        return [{"bbox": {"top": float(shape.y), "left": float(shape.x), "height": max(float(shape.h), 0.0),
                          "width": max(float(shape.w), 0.0)}}]
    if kind == "point" and isinstance(shape, Point):
        return [{"point": {"x": float(shape.x), "y": float(shape.y)}}]
    if kind == "line" and isinstance(shape, Line):
        return [{"line": _xy(shape.points)}]
    if kind == "entity" and isinstance(shape, Span):
        return [{"location": {"start": shape.start, "end": shape.end - 1}}] if shape.end > shape.start else []
    if kind == "mask":
        mask = rasterize(shape, *result.size).array
        return [{"mask": {"png": _png(mask)}}] if mask.any() else []
    if kind in ("polygon", "rotated_box", "ellipse"):
        polygon = to_polygon(shape, tolerance)
        return [{"polygon": _xy(part[0])} for part in polygon.parts if len(part[0]) >= 3]
    return []  # skeleton, cuboid, vector: no form


def _xy(points: np.ndarray) -> list[dict[str, float]]:
    return [{"x": x, "y": y} for x, y in points.tolist()]


def _png(mask: np.ndarray) -> str:
    """A single-channel PNG, 1 inside the mask and 0 outside (the SDK refuses values above 1)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _keep_best(best: dict[str, tuple[float, Any]], question: str, confidence: float, answer: Any) -> None:
    if question not in best or confidence > best[question][0]:
        best[question] = (confidence, answer)


def _choose(chosen: dict[str, tuple[float, list[str]]], question: str, confidence: float, options: list[str]) -> None:
    top, found = chosen.get(question, (0.0, []))
    chosen[question] = (max(top, confidence), found + [o for o in options if o not in found])

