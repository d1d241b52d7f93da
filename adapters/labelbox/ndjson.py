"""Labelbox's file import for `bridge prelabel`: prediction NDJSON (any plan), in two files.

One JSON object per annotation, keyed by the data row's global key (the item's identity) and named by the
feature (the class name after the section's `rename`), as `labelbox.data.serialization.ndjson` reads them:

- box `bbox {top, left, height, width}`; point `point {x, y}`; line `line [{x, y}, ...]`;
- polygon: one `polygon [{x, y}, ...]` per part (a polygon tool has no holes); rotated boxes as their 4
  corners, ellipses as 64 points; a mask a polygon class returns is traced first;
- mask `mask {png}`: a base64 PNG of the item's size, 1 inside and 0 outside (a polygon a mask class returns
  is rasterised);
- entity `location {start, end}` in UTF-16 code units (JavaScript's count, as Labelbox's text editor), `end`
  inclusive (the SDK's `TextEntity` allows `start == end`: one code unit), so a span `[start, end)` leaves as
  `end - 1`;
- radio `answer {name}`, checklist `answer [{name}, ...]` (every option found), free text `answer "..."`;
  tag classes answer the classification the section's `tags` names, as the Foundry endpoint does;
- confidences where the SDK's own serializer puts them (`NDJsonConverter`): objects and free text at the top,
  a radio's inside its `answer`, a checklist's on each option.

Skeletons, cuboids and vectors have no NDJSON form here and are dropped; so are attributes and a prediction's
`text` (Labelbox nests them as classifications that your ontology would have to declare).

Two files, assembled from one part per item at the end of every run: `labelbox/predictions.ndjson` with the
confidences, for a model run (`model_run.add_predictions`, an MEA prediction import, keeps them), and
`labelbox/mal.ndjson` without them, for model-assisted labelling (`MALPredictionImport`: the SDK warns that MAL
ignores confidences, so the file carries none).
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
from bridge.core.offsets import Utf16
from bridge.core.predictions import Line, Point, Prediction, Span
from bridge.core.service import Result
from bridge.platforms.export import (
    NO_PROMPTS,
    ExportSetup,
    Item,
    file_name,
    parts,
    parts_dir,
    write_atomic,
)

OUTPUT = "predictions.ndjson"
"""For a model run (`model_run.add_predictions`): the predictions with their confidences."""
MAL = "mal.ndjson"
"""For model-assisted labelling (`MALPredictionImport`): the same annotations without confidences."""

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
    "radio": exact("radio answer"),
    "checklist": exact("checklist answer"),
    "text": exact("text answer"),
    "entity": exact("location"),
    "prediction.attributes": dropped("nested classifications need your ontology's feature names"),
    "prediction.text": dropped("nested classifications need your ontology's feature names"),
    "prediction.confidence": lossy("confidence", f"{OUTPUT} (a model run's predictions) keeps it where the SDK "
                                                 "puts it (a radio's in its answer, a checklist's per option); "
                                                 f"{MAL} (model-assisted labelling) has none: Labelbox ignores "
                                                 "confidences there"),
    "prediction.frame": dropped("bridge prelabel reads images, not videos"),
    "prompts": NO_PROMPTS,
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
        data = b"".join(part.read_bytes() for part in found)
        write_atomic(out_dir / OUTPUT, data)
        mal = "".join(json.dumps(without_confidence(json.loads(line))) + "\n" for line in data.splitlines())
        write_atomic(out_dir / MAL, mal.encode("utf-8"))
        return [out_dir / OUTPUT, out_dir / MAL]


def ndjson_lines(global_key: str, result: Result, spec: ModelSpec, section: LabelboxSection,
                 tolerance: float = 0.0) -> list[dict[str, Any]]:
    """The prediction-import lines of one data row, with confidences where the SDK puts them."""
    lines: list[dict[str, Any]] = []
    best: dict[str, tuple[float, str]] = {}  # a radio of tags: the most confident tag
    chosen: dict[str, dict[str, float]] = {}  # checklist questions: each option found, at its best confidence

    def line(name: str, **form: Any) -> dict[str, Any]:
        return {"uuid": str(uuid.uuid4()), "name": name, "dataRow": {"globalKey": global_key}, **form}

    for prediction in result.predictions:
        cls = spec.get(prediction.label)
        name, shape, confidence = section.platform_name(cls.name), prediction.shape, prediction.confidence
        if cls.kind == "tag" and section.tags.kind == "checklist":
            _choose(chosen, section.tags.question, confidence, [name])
        elif cls.kind == "tag":
            if section.tags.question not in best or confidence > best[section.tags.question][0]:
                best[section.tags.question] = (confidence, name)
        elif cls.kind == "checklist":
            _choose(chosen, name, confidence, shape.answer)
        elif cls.kind == "radio":  # one per item (`bridge.core.outputs.one_answer`)
            lines.append(line(name, answer={"name": shape.answer, "confidence": confidence}))
        elif cls.kind == "text":
            lines.append(line(name, answer=shape.answer, confidence=confidence))
        else:
            lines += [line(name, **form, confidence=confidence) for form in _objects(prediction, cls.kind, result,
                                                                                       tolerance)]
    lines += [line(question, answer={"name": tag, "confidence": confidence})
              for question, (confidence, tag) in best.items()]
    lines += [line(question, answer=[{"name": option, "confidence": score} for option, score in options.items()])
              for question, options in chosen.items()]
    return lines


def without_confidence(value: Any) -> Any:
    """A line without any `confidence` key, for model-assisted labelling."""
    if isinstance(value, dict):
        return {key: without_confidence(item) for key, item in value.items() if key != "confidence"}
    if isinstance(value, list):
        return [without_confidence(item) for item in value]
    return value


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
        if shape.end == shape.start:
            return []
        offsets = Utf16(result.text or "")
        return [{"location": {"start": offsets.units(shape.start), "end": offsets.units(shape.end) - 1}}]
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


def _choose(chosen: dict[str, dict[str, float]], question: str, confidence: float, options: Any) -> None:
    found = chosen.setdefault(question, {})
    for option in options:
        found[option] = max(found.get(option, 0.0), confidence)
