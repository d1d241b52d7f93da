"""Label Studio's dialect: a task in, a `Job` out; a result in, the task's prediction (regions, score, model
version) out; and regions back as predictions.

`CONVERSIONS` declares what each class kind becomes with the config `label_config(spec)` writes (each kind in
its own tool); a project's config may hold a class in another tool (a box in `PolygonLabels`), which
`bridge.core.conversions` cannot know ahead: `/setup` and `bridge check` say what goes where. The forms
(`regions`): percent of the image with `original_width`/`original_height`; rectangles turn about their
top-left corner (ours about their centre: converted); polygons have one ring (`regions` keeps holes as
zero-width slits, one region per part); masks are Label Studio's own brush RLE; text spans count code points,
as Label Studio's editor does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from adapters.labelstudio.mapping import Mapping
from adapters.labelstudio.regions import from_regions, task_score, to_regions
from bridge.core.conversions import dropped, exact, lossy
from bridge.core.errors import InvalidInput
from bridge.core.model import ModelSpec, Prompts
from bridge.core.outputs import warn_once
from bridge.core.predictions import (
    Box,
    Classification,
    Node,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Tag,
)
from bridge.core.service import Job, Result, Source

PLATFORM = "labelstudio"
log = logging.getLogger("bridge.labelstudio")

_NONE = "Label Studio's image tools have no form for it"
CONVERSIONS = {
    "box": exact("rectanglelabels"),
    "rotated_box": exact("rectanglelabels"),
    "polygon": lossy("polygonlabels", "a polygon is one ring: a hole hangs from the ring above it by a "
                                      "zero-width slit, each part is a region of its own"),
    "mask": exact("brushlabels"),
    "point": exact("keypointlabels"),
    "line": dropped(_NONE),
    "ellipse": exact("ellipselabels"),
    "skeleton": lossy("keypointlabels", "one key point per node, all labelled with the class (node names are "
                                        "not sent)"),
    "cuboid": dropped(_NONE),
    "vector": dropped(_NONE),
    "tag": exact("choices"),
    "radio": exact("choices"),
    "checklist": exact("choices"),
    "text": exact("textarea"),
    "entity": exact("labels"),
    "prediction.attributes": dropped("a region's own classifications are the project's per-region controls, "
                                     "which the bridge does not fill"),
    "prediction.text": dropped("a region's own text is a per-region TextArea, which the bridge does not fill"),
    "prediction.confidence": exact("score"),
    "prompts": exact("params.context.result (a box, positive and negative clicks)"),
    "prediction.frame": dropped("the ML backend answers images and texts, not video frames"),
}
"""What Label Studio receives of each class kind with the default label config; `form` is the result type."""


@dataclass(frozen=True)
class Run:
    """What one call knows: the project's label config and where each class goes in it."""

    mapping: Mapping
    model_version: str
    empty_score: float


def data_reference(task: dict[str, Any], mapping: Mapping, reads: str) -> tuple[str, str]:
    """(data key, value) of the task's item the model reads: the object its classes' controls label."""
    if not isinstance(task.get("data"), dict):
        raise InvalidInput(f"task {task.get('id')!r} has no `data` object")
    wanted = ("Text", "HyperText", "Paragraphs") if reads == "text" else ("Image",)
    objects = [obj for target in mapping.targets.values() for obj in mapping.config.objects_of(target.control)]
    objects += list(mapping.config.objects)
    for obj in objects:
        if obj.type in wanted and obj.data_key in task["data"]:
            return obj.data_key, task["data"][obj.data_key]
    raise InvalidInput(f"task {task.get('id')!r}: no {' or '.join(wanted)} in its data "
                       f"(keys {sorted(task['data'])}) for an object of the label config")


def media_reference(value: Any, text_model: bool) -> str | None:
    """Where a task's item is fetched from (a URL, absolute or relative to Label Studio), or None when the
    value is the item itself (a text, or a `data:` URL)."""
    if not isinstance(value, str):
        raise InvalidInput(f"the task's item is a {type(value).__name__}, not a URL or a text")
    if value.startswith("data:"):
        return None
    if text_model and not value.startswith(("/", "http://", "https://")):
        return None
    return value


def to_job(value: str, url: str | None, headers: dict[str, str], text_model: bool, prompts: Prompts) -> Job:
    """The neutral job of one task's item: `value` is the task's data value, `url` where to fetch it (None:
    the value is the item), `headers` the credentials for it."""
    if text_model and url is None and not value.startswith("data:"):
        return Job(platform=PLATFORM, text=value)
    source = Source(url=url, headers=headers) if url else Source(base64=value)
    if text_model:
        return Job(platform=PLATFORM, text=source)
    return Job(platform=PLATFORM, image=source, prompts=prompts)


def write(result: Result, run: Run, tolerance: float) -> dict[str, Any]:
    """One task's prediction: its regions, its score (the lowest confidence, else the manifest's
    `empty_score`) and the model version. Answers to one choices control are one region."""
    regions: list[dict[str, Any]] = []
    choices: dict[str, dict[str, Any]] = {}
    kept: list[Prediction] = []
    for prediction in result.predictions:
        target = run.mapping.targets.get(prediction.label)
        if target is None:
            continue  # told at /setup
        try:
            found = to_regions(prediction, target.control, result.size, target.label, tolerance)
        except ValueError as error:
            warn_once(PLATFORM, prediction.label, f"dropped: {error}")
            continue
        kept.append(prediction)
        for region in found:
            merged = choices.get(region["from_name"]) if "choices" in region["value"] else None
            if merged is None:
                regions.append(region)
                if "choices" in region["value"]:
                    choices[region["from_name"]] = region
            else:
                merged["value"]["choices"] += [c for c in region["value"]["choices"]
                                               if c not in merged["value"]["choices"]]
                merged["score"] = max(merged["score"], region["score"])
    score = task_score(kept)
    return {"result": regions, "score": run.empty_score if score is None else score,
            "model_version": run.model_version}


def read(answer: Any, mapping: Mapping, spec: ModelSpec) -> list[Prediction]:
    """The predictions of a task's prediction (its `result` list, or a whole `/predict` answer's first task),
    each under its class, in the shape of its kind: the regions `write` split (a polygon's parts, a skeleton's
    nodes: ids `<id>-<k>`) come back as one prediction; a choices region of tag classes is one `Tag` per
    chosen option."""
    if isinstance(answer, dict) and isinstance(answer.get("results"), list):
        answer = answer["results"][0] if answer["results"] else {}
    results = answer.get("result", []) if isinstance(answer, dict) else answer
    found: list[Prediction] = []
    pieces: dict[tuple[str, str], list[Prediction]] = {}  # (class, region id) -> its parts or nodes
    for region in results:
        control = mapping.config.control(region["from_name"])
        (prediction,) = from_regions([region], mapping.config)
        shape = prediction.shape
        if isinstance(shape, Classification) and mapping.class_of(control.name, None) is None:
            answers = (shape.answer,) if isinstance(shape.answer, str) else shape.answer
            found += [Prediction(name, Tag(), prediction.confidence) for option in answers
                      if (name := mapping.class_of(control.name, option)) is not None]
            continue
        labelled = control.result_type.endswith("labels")
        name = mapping.class_of(control.name, prediction.label if labelled else None)
        if name is None:
            continue
        kind = spec.get(name).kind
        base = re.sub(r"-\d+$", "", prediction.id or "")
        if kind in ("polygon", "skeleton") and base != prediction.id:
            if (name, base) not in pieces:
                pieces[name, base] = []
                found.append(Prediction(name, Tag(), prediction.confidence, id=base))  # its place, filled below
            pieces[name, base].append(prediction)
            continue
        if kind == "rotated_box" and isinstance(shape, Box):
            shape = RotatedBox(shape.x + shape.w / 2, shape.y + shape.h / 2, shape.w, shape.h, 0.0)
        found.append(Prediction(name, shape, prediction.confidence, id=prediction.id))
    return [_joined(p, pieces[p.label, p.id], spec) if (p.label, p.id) in pieces else p for p in found]


def _joined(placeholder: Prediction, pieces: list[Prediction], spec: ModelSpec) -> Prediction:
    """A polygon's parts as one polygon, a skeleton's points as its nodes (in the class's node order)."""
    cls = spec.get(placeholder.label)
    if cls.kind == "polygon":
        shape: Any = Polygon(tuple(part for piece in pieces for part in piece.shape.parts))
    else:
        shape = Skeleton(tuple(Node(node, piece.shape.x, piece.shape.y) for node, piece in zip(cls.nodes, pieces)))
    return Prediction(placeholder.label, shape, placeholder.confidence, id=placeholder.id)
