"""Labelbox Foundry's dialect, pure: a request in, a `Job` out; a result in, the answer keyed by feature name.

What the model receives from `{"prompt": [{"role": ..., "parts": [{"text": ...} | {"image": <base64>}]}]}`:

- an image model: the last image part of the last `user` message;
- a text model: text part number `text_part` (default -1, the last) of the last `user` message. Labelbox puts
  the data row after any instruction text, so the last text part is the row;
- `system` and `assistant` messages are accepted and not read; keys of a part besides `text` and `image`
  (`mime_type`, say) are ignored;
- inference parameters: the keys of `inference_params`, and the top-level keys the manifest's `params`
  declares (every key, when it sets `additionalProperties`), checked against it with its defaults applied.
  Labelbox's own keys (`LABELBOX_KEYS`: the ontology its document says the request includes, the
  `max_tokens` of its `model.yaml`) are never parameters; any other top-level key (`model`, `prompt_id`...)
  is what Labelbox may add: ignored, logged at debug level.

What it answers, keyed by feature name (the class name after the section's `rename`):

- box: `{"f": {"boxes": [[left, top, width, height], ...], "scores": [...]}}`;
- mask, polygon (holes kept), rotated box, ellipse: `{"f": {"masks": [{"size": [h, w], "counts": ...}]}}`,
  rasterised at the image's size (a pixel is in when its centre is), COCO compressed RLE as ASCII; a shape
  that covers no pixel centre has no mask: it is dropped, logged once per class;
- radio `"f": "option"` and free text `"f": "text"` (the core keeps one answer per item), checklist
  `"f": [options]`;
- tag classes: the options of one classification feature set by the section's `tags` (default a checklist
  named "tags" holding every tag found; `kind: radio` answers the most confident tag only);
- entity: `{"f": [{"start": 0, "end": 3, "text": "Tom"}]}`, offsets into the data row in UTF-16 code units,
  as JavaScript counts them (Labelbox's editor), `end` exclusive: `text == row.slice(start, end)` in
  JavaScript (`bridge.core.offsets`).

Points, lines, skeletons, cuboids and vectors have no Foundry form: they are dropped, logged once per class,
and listed by `bridge check` and `bridge labelbox-manifest`. Attributes and a prediction's `text` have no place
in these forms and are dropped too. `CONVERSIONS` declares all of it (`bridge formats` prints it).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from adapters.labelbox.api import LabelboxRequest
from adapters.labelbox.section import LabelboxSection
from bridge.core.conversions import dropped, exact, lossy
from bridge.core.errors import InvalidInput
from bridge.core.geometry import rasterize
from bridge.core.model import ModelSpec
from bridge.core.offsets import Utf16
from bridge.core.outputs import warn_once
from bridge.core.params import Params
from bridge.core.predictions import (
    Box,
    Classification,
    Ellipse,
    Mask,
    Polygon,
    Prediction,
    RotatedBox,
    Span,
    Tag,
)
from bridge.core.service import Job, Source

PLATFORM = "labelbox"
log = logging.getLogger("bridge.labelbox")

_AREA = ("Foundry answers areas as masks: rasterised at the image's size (pycocotools': a pixel is in when its "
         "centre is, give or take 0.17 px), so the mask lies within 0.9 px of the shape but parts thinner than a "
         "pixel may vanish: small shapes come back coarse (a 3x1 rotated box at IoU 0.1 to 1, by where it sits), "
         "and a shape that covers no pixel centre is left out (logged)")
_NONE = "Foundry documents no answer form for it"
CONVERSIONS = {
    "box": exact("rectangle"),
    "rotated_box": lossy("raster-segmentation", _AREA),
    "polygon": lossy("raster-segmentation", _AREA),
    "mask": exact("raster-segmentation"),
    "point": dropped(_NONE),
    "line": dropped(_NONE),
    "ellipse": lossy("raster-segmentation", _AREA),
    "skeleton": dropped(_NONE),
    "cuboid": dropped(_NONE),
    "vector": dropped(_NONE),
    "tag": exact("checklist"),
    "radio": exact("radio"),
    "checklist": exact("checklist"),
    "text": exact("text"),
    "entity": exact("named-entity"),
    "prediction.attributes": dropped("Foundry answers have no place for attributes"),
    "prediction.text": dropped("Foundry answers have no place for a prediction's text"),
    "prediction.confidence": lossy("scores", "only boxes carry scores; other answers carry none"),
    "prompts": dropped("Foundry sends no prompt"),
    "prediction.frame": dropped("Foundry custom models answer one image or text"),
}
"""What Labelbox Foundry receives of each class kind; the `form` is the Labelbox feature kind (ontology tool or
classification type); tag classes are options of the classification set by the section's `tags` (a checklist
by default, or a radio, which holds the most confident tag)."""

LABELBOX_KEYS = ("ontology", "max_tokens")
"""Keys of Labelbox's own that may sit beside `prompt`: its document says the request "includes the ontology",
and `max_tokens` is a key of its `model.yaml`. Never the model's parameters."""


def to_job(request: LabelboxRequest, reads: Literal["image", "text"], section: LabelboxSection,
           params: Params) -> Job:
    """The neutral job: the image or text of the last user message, and the inference params (`params` is the
    manifest's: it says which top-level keys are parameters)."""
    users = [message for message in request.prompt if message.role == "user"]
    if not users:
        raise InvalidInput("the prompt has no `user` message; the data row comes in the last one")
    parts = users[-1].parts
    texts = [part.text for part in parts if part.text is not None]
    images = [part.image for part in parts if part.image is not None]
    given = parameters(request, params)
    if reads == "image":
        if not images:
            raise InvalidInput("this model reads images, and the last user message has no `image` part "
                               f"({len(texts)} text part(s))")
        return Job(platform=PLATFORM, image=Source(base64=images[-1]), params=given)
    if not texts:
        raise InvalidInput("this model reads text, and the last user message has no `text` part "
                           f"({len(images)} image part(s))")
    if not -len(texts) <= section.text_part < len(texts):
        raise InvalidInput(f"platforms.labelbox.text_part is {section.text_part}, and the last user message "
                           f"has {len(texts)} text part(s)")
    return Job(platform=PLATFORM, text=texts[section.text_part], params=given)


def parameters(request: LabelboxRequest, params: Params) -> dict[str, Any]:
    """The request's inference parameters: the top-level keys `params` declares (all but Labelbox's own, when
    its schema is open), under the keys of `inference_params`. Other top-level keys are Labelbox's: ignored."""
    open_schema = params.schema.get("additionalProperties", False) is not False
    given, ignored = {}, []
    for key, value in (request.model_extra or {}).items():
        if key not in LABELBOX_KEYS and (open_schema or key in params.properties):
            given[key] = value
        else:
            ignored.append(key)
    if ignored:
        log.debug("labelbox: ignored the request keys %s: not parameters of this model (%s)",
                  ", ".join(map(repr, ignored)), ", ".join(params.properties) or "none")
    return {**given, **(request.inference_params or {})}


def to_answer(predictions: list[Prediction], spec: ModelSpec, section: LabelboxSection,
              size: tuple[int, int] | None = None, text: str | None = None) -> dict[str, Any]:
    """Labelbox's answer keyed by feature name; `size` (h, w) rasterises areas, `text` turns span offsets into
    UTF-16 code units. Predictions come checked from the core (spans inside and quoting the text, one answer
    per radio and free-text class), so this only translates, by shape."""
    answer: dict[str, Any] = {}
    best: dict[str, tuple[float, str]] = {}  # a radio of tags: the most confident tag
    offsets = Utf16(text) if text is not None else None
    for prediction in predictions:
        cls = spec.get(prediction.label)
        if CONVERSIONS[cls.kind].fidelity == "dropped":
            continue
        name, shape, confidence = section.platform_name(cls.name), prediction.shape, prediction.confidence
        if isinstance(shape, Box):
            entry = answer.setdefault(name, {"boxes": [], "scores": []})
            entry["boxes"].append(_ltwh(shape))
            entry["scores"].append(confidence)
        elif isinstance(shape, (Mask, Polygon, RotatedBox, Ellipse)):
            mask = rasterize(shape, *size)
            if mask.array.any():
                answer.setdefault(name, {"masks": []})["masks"].append(mask.rle)
            else:
                warn_once(PLATFORM, cls.name, "a shape that covers no pixel centre has no mask: left out (Foundry "
                                              "answers areas as masks of the image's pixels)")
        elif isinstance(shape, Span):
            start, end = (offsets.units(shape.start), offsets.units(shape.end)) if offsets else (shape.start, shape.end)
            answer.setdefault(name, []).append({"start": start, "end": end, "text": shape.text})
        elif isinstance(shape, Tag) and section.tags.kind == "checklist":
            _add_options(answer, section.tags.question, [name])
        elif isinstance(shape, Tag):
            _keep_best(best, section.tags.question, confidence, name)
        elif isinstance(shape, Classification) and not isinstance(shape.answer, str):
            _add_options(answer, name, shape.answer)
        elif isinstance(shape, Classification):  # radio, text: one per item (`bridge.core.outputs.one_answer`)
            answer[name] = shape.answer
    answer.update({feature: value for feature, (_, value) in best.items()})
    return answer


def _ltwh(box: Box) -> list[float]:
    return [float(box.x), float(box.y), float(box.w), float(box.h)]  # clipped to the image by the core


def _add_options(answer: dict[str, Any], feature: str, options: tuple[str, ...] | list[str]) -> None:
    chosen = answer.setdefault(feature, [])
    for option in options:
        if option not in chosen:
            chosen.append(option)


def _keep_best(best: dict[str, tuple[float, str]], feature: str, confidence: float, value: str) -> None:
    if feature not in best or confidence > best[feature][0]:
        best[feature] = (confidence, value)
