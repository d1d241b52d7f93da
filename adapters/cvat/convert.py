"""The CVAT dialect, pure: the function's labels, neutral predictions as CVAT's annotations, and back.

- `function_labels(spec, section)`: the labels a function declares, in CVAT's `Label` JSON form (what
  `GET /api/labels` lists), and the ids its annotations carry. A label's id is its class's position in the
  model's spec; a skeleton node's sublabel id and an attribute's id are positions within their label. CVAT
  matches the function's labels with the task's **by name** (after the section's `rename`) and replaces every
  id with the task's own, so these ids never reach a task.
- `to_cvat(predictions, labels, ...)`: predictions as the annotations a detection function returns, as JSON
  (`{"tags": [...], "shapes": [...]}`, CVAT's `LabeledImageRequest` and `LabeledShapeRequest` fields, frame 0):
  those at or above the request's `conf_threshold`, masks as polygons when it sets `conv_mask_to_poly`.
  Every number is a plain `float` (cvat-sdk refuses numpy floats: `ApiTypeError`).
- `read_annotations(annotations, labels, spec, ...)`: CVAT's annotation JSON (a task's, with its label ids,
  or a function's answer) back to predictions.
- `prompts_from_cvat` and `to_interaction`: for a model that takes prompts, served as an interaction function
  (click or box to segment): CVAT's prompts as ours, checked; the model's areas as the `mask` results CVAT's
  UI reads (it ignores interaction results of other types).

CVAT's forms, as its server reads and writes them (`cvat_sdk.auto_annotation`, CVAT's `LabeledShape`):

- boxes and rotated boxes: `rectangle`, points `[x1, y1, x2, y2]` of the unrotated box and `rotation`
  (degrees in [0, 360), clockwise on screen about the centre: ours);
- ellipses: `ellipse`, points `[cx, cy, cx + rx, cy - ry]` and `rotation`;
- polygons: a CVAT polygon is one ring without holes: each part leaves as a `polygon` of its exterior, and the
  parts of one prediction share a `group` (1, 2... per frame), which the reader puts back together. Masks:
  `mask`, points as `cvat_sdk.masks.encode_mask` makes them (row-major run lengths, zeros first, inside the
  mask's box, then the box `[x1, y1, x2, y2]` inclusive); with `conv_mask_to_poly`, polygons traced along
  pixel edges (simplified by `geometry.simplify_tolerance`), grouped likewise;
- points: `points` `[x, y]`; lines: `polyline`; cuboids: `cuboid`, 8 corners in the order CVAT's canvas draws
  them (front-left top, bottom, front-right top, bottom, back-right top, bottom, back-left top, bottom);
- skeletons: `skeleton` with one `points` element per node of the class, in its order; a node the prediction
  lacks is sent `outside` (CVAT wants every element), at the mean of the others;
- tags: `tag`. A radio class is a tag label with a `radio` attribute named like the label; a checklist class a
  tag label with one `checkbox` attribute per option; a free-text class a tag label with a `text` attribute
  named like the label;
- a prediction's `attributes`: `checkbox` attributes of the class, those the section's `attributes` declares
  for it ("true" when the prediction carries it, else "false"); others are dropped;
- confidence: `score` on shapes; a tag has none in CVAT.

Predictions come checked from the core (known classes, shapes that fit their kind, masks of the image's
size, answers among the options), so writing only translates. Nothing here imports cvat-sdk: the function
that cvat-cli loads (`adapters.cvat.function`) makes the SDK's objects of this JSON.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bridge.core.conversions import Table, dropped, exact, lossy
from bridge.core.errors import InvalidInput
from bridge.core.geometry import mask_to_polygon, polygon_to_mask, rasterize
from bridge.core.model import ClassSpec, ModelSpec, Prompts
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
)

PLATFORM = "cvat"

CONVERSIONS: Table = {
    "box": exact("rectangle"),
    "rotated_box": exact("rectangle (rotation)"),
    "polygon": lossy("polygon", "a CVAT polygon is one ring: holes are filled, and each part is a polygon of its "
                                "own (the parts grouped)"),
    "mask": exact("mask"),
    "point": exact("points"),
    "line": exact("polyline"),
    "ellipse": exact("ellipse"),
    "skeleton": exact("skeleton"),
    "cuboid": exact("cuboid"),
    "vector": dropped("CVAT has no vector shape"),
    "tag": exact("tag"),
    "radio": exact("tag (radio attribute)"),
    "checklist": lossy("tag (checkbox attributes)", "one checkbox per option: the answers come back in the "
                                                    "options' order"),
    "text": exact("tag (text attribute)"),
    "entity": dropped("CVAT's functions annotate images, not text"),
    "prediction.attributes": lossy("checkbox attributes", "only those platforms.cvat.attributes declares for the "
                                                          "class leave"),
    "prediction.text": dropped("CVAT's shapes and tags carry no free text"),
    "prediction.confidence": lossy("score", "a tag has no score in CVAT: tags read back at 1.0"),
    "prediction.frame": dropped("a function annotates one frame at a time: CVAT numbers the frames itself"),
    "prompts": exact("interaction function (positive and negative points, a box)"),
}
"""A detection function's answer, as the agent completes a request with it."""

MASKS_AS_POLYGONS = lossy("polygon", "the request asked for polygons (conv_mask_to_poly): masks are traced, holes "
                                     "filled, parts grouped")
"""The `mask` row of a request that sets `conv_mask_to_poly` (CVAT's "Convert masks to polygons")."""

INTERACTION: Table = {
    **{kind: dropped("an interaction answers masks: CVAT's UI ignores other results") for kind in CONVERSIONS},
    "mask": exact("mask"),
    **{kind: lossy("mask", "an interaction answers masks: rasterised at the image's size (a pixel is in when its "
                           "centre is)") for kind in ("box", "rotated_box", "polygon", "ellipse")},
    "prediction.attributes": dropped("an interaction's result carries only its confidence"),
    "prediction.text": dropped("an interaction's result carries only its confidence"),
    "prediction.confidence": exact("CONFIDENCE attribute"),
    "prediction.frame": CONVERSIONS["prediction.frame"],
}
"""An interaction function's answer (a model that takes prompts): one `mask` per area."""

LABEL_TYPES = {"box": "rectangle", "rotated_box": "rectangle", "polygon": "polygon", "mask": "mask",
               "point": "points", "line": "polyline", "ellipse": "ellipse", "skeleton": "skeleton",
               "cuboid": "cuboid", "tag": "tag", "radio": "tag", "checklist": "tag", "text": "tag"}
"""The CVAT label type of each class kind CVAT has (the others are dropped)."""

TAG_KINDS = ("tag", "radio", "checklist", "text")


@dataclass(frozen=True)
class Attribute:
    name: str
    input_type: str
    """checkbox, radio or text."""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Label:
    """One class as a label of the function: its CVAT name, type and the ids its annotations carry."""

    cls: ClassSpec
    name: str
    id: int
    attributes: tuple[Attribute, ...]
    """In id order: the answer's attributes (radio, checklist, text), then the declared checkboxes."""
    declared: tuple[str, ...]
    """Prediction attributes declared for the class (`platforms.cvat.attributes`)."""

    @property
    def type(self) -> str:
        return LABEL_TYPES[self.cls.kind]

    @property
    def attribute_ids(self) -> dict[str, int]:
        return {attribute.name: i for i, attribute in enumerate(self.attributes)}

    def json(self) -> dict[str, Any]:
        """As CVAT's API lists a label (`Label`, sublabels included), with the function's ids."""
        return {"id": self.id, "name": self.name, "type": self.type,
                "attributes": [{"id": i, "name": a.name, "input_type": a.input_type, "values": list(a.values)}
                               for i, a in enumerate(self.attributes)],
                "sublabels": [{"id": i, "name": node, "type": "points", "attributes": []}
                              for i, node in enumerate(self.cls.nodes)]}


def function_labels(spec: ModelSpec, rename: Mapping[str, str] | None = None,
                    attributes: Mapping[str, Sequence[str]] | None = None) -> dict[str, Label]:
    """The function's labels by class name: one per class of a kind CVAT has, named after `rename`, with the
    checkbox attributes `attributes` declares per class. A `ValueError` says what CVAT could not tell apart."""
    rename, attributes = rename or {}, attributes or {}
    if unknown := sorted(set(attributes) - {cls.name for cls in spec.classes}):
        raise ValueError(f"attributes are declared for classes the model does not have: {unknown}")
    labels: dict[str, Label] = {}
    for index, cls in enumerate(spec.classes):
        if cls.kind not in LABEL_TYPES:
            continue
        name = rename.get(cls.name, cls.name)
        if same := [label.cls.name for label in labels.values() if label.name == name]:
            raise ValueError(f"classes {[*same, cls.name]} are all named {name!r} in CVAT: a label name must "
                             "be unique")
        declared = tuple(attributes.get(cls.name, ()))
        found = (*_answer_attributes(cls, name), *(Attribute(a, "checkbox") for a in declared))
        names = [a.name for a in found]
        if len(set(names)) < len(names):
            raise ValueError(f"class {cls.name!r}: attribute names repeat in {names}")
        labels[cls.name] = Label(cls, name, index, found, declared)
    return labels


def _answer_attributes(cls: ClassSpec, name: str) -> tuple[Attribute, ...]:
    """The attributes that hold a classification's answer."""
    if cls.kind == "radio":
        return (Attribute(name, "radio", cls.options),)
    if cls.kind == "checklist":
        return tuple(Attribute(option, "checkbox") for option in cls.options)
    if cls.kind == "text":
        return (Attribute(name, "text"),)
    return ()


# --- neutral -> CVAT ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CvatRun:
    """What only one request knows (CVAT's `DetectionFunctionContext`), and the function's labels, made once."""

    conf_threshold: float | None = None
    """Only predictions at least this confident (a CVAT user's "Threshold"); None: all."""
    conv_mask_to_poly: bool = False
    """Masks as polygons (a CVAT user's "Convert masks to polygons")."""
    interaction: bool = False
    """An interaction function's answer (masks for the prompts), not a detection function's."""
    labels: Mapping[str, Label] | None = None

    def table(self, spec: ModelSpec) -> Table:
        """What this request's answer loses of the model's predictions (a model without tags loses no score)."""
        if self.interaction:
            return INTERACTION
        table = {**CONVERSIONS, "mask": MASKS_AS_POLYGONS} if self.conv_mask_to_poly else CONVERSIONS
        if not any(cls.kind in TAG_KINDS for cls in spec.classes):
            table = {**table, "prediction.confidence": exact("score")}
        return table


def write(predictions: Iterable[Prediction], size: tuple[int, int], spec: ModelSpec, rename: Mapping[str, str],
          attributes: Mapping[str, Sequence[str]], tolerance: float, run: CvatRun) -> dict[str, list[dict]]:
    """A request's answer: the detection function's annotations, or the interaction function's masks."""
    if run.interaction:
        return to_interaction(predictions, size)
    labels = run.labels if run.labels is not None else function_labels(spec, rename, attributes)
    return to_cvat(predictions, labels, size=size, conf_threshold=run.conf_threshold,
                   conv_mask_to_poly=run.conv_mask_to_poly, tolerance=tolerance)


def to_cvat(predictions: Iterable[Prediction], labels: Mapping[str, Label], *, size: tuple[int, int],
            conf_threshold: float | None = None, conv_mask_to_poly: bool = False,
            tolerance: float = 0.0) -> dict[str, list[dict[str, Any]]]:
    """A detection function's answer for these predictions on an image of `size` (height, width): those at or
    above `conf_threshold`, masks as polygons when `conv_mask_to_poly`, classes CVAT lacks left out."""
    tags: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    groups = itertools.count(1)
    for prediction in predictions:
        label = labels.get(prediction.label)
        if label is None or (conf_threshold is not None and prediction.confidence < conf_threshold):
            continue
        if label.cls.kind in TAG_KINDS:
            attributes = _answer(prediction.shape, label) + _declared(prediction, label)
            tags.append({"label_id": label.id, "frame": 0, "attributes": attributes})
        else:
            shapes += _shapes(prediction, label, size, conv_mask_to_poly, tolerance, groups)
    return {"tags": tags, "shapes": shapes}


def _shapes(prediction: Prediction, label: Label, size: tuple[int, int], conv_mask_to_poly: bool,
            tolerance: float, groups: Iterator[int]) -> list[dict[str, Any]]:
    shape = prediction.shape

    def annotation(kind: str, points: Any, **more: Any) -> dict[str, Any]:
        return {"type": kind, "label_id": label.id, "frame": 0, "points": floats(points), **more,
                "score": float(prediction.confidence), "attributes": _declared(prediction, label)}

    if isinstance(shape, Box):
        return [annotation("rectangle", [shape.x, shape.y, shape.x + shape.w, shape.y + shape.h])]
    if isinstance(shape, RotatedBox):
        corners = [shape.cx - shape.w / 2, shape.cy - shape.h / 2, shape.cx + shape.w / 2, shape.cy + shape.h / 2]
        return [annotation("rectangle", corners, rotation=float(shape.angle % 360))]
    if isinstance(shape, Ellipse):
        return [annotation("ellipse", [shape.cx, shape.cy, shape.cx + shape.rx, shape.cy - shape.ry],
                           rotation=float(shape.angle % 360))]
    if isinstance(shape, Point):
        return [annotation("points", [shape.x, shape.y])]
    if isinstance(shape, Line):
        return [annotation("polyline", shape.points)]
    if isinstance(shape, Cuboid):
        return [annotation("cuboid", cuboid_points(shape))]
    if isinstance(shape, Skeleton):
        return [annotation("skeleton", [], elements=_elements(shape, label))]
    if label.cls.kind == "mask" and not conv_mask_to_poly:
        array = shape.array if isinstance(shape, Mask) else polygon_to_mask(shape, *size)
        return [annotation("mask", encode_mask(array))] if array.any() else []
    polygon = mask_to_polygon(shape.array, tolerance) if isinstance(shape, Mask) else shape
    rings = [part[0] for part in polygon.parts if len(part[0]) >= 3]
    group = {"group": next(groups)} if len(rings) > 1 else {}
    return [annotation("polygon", ring, **group) for ring in rings]


def floats(values: Any) -> list[float]:
    """Plain Python floats, flattened: what the SDK's `points` accepts (numpy floats are refused)."""
    return [float(value) for value in np.asarray(values, dtype=np.float64).ravel()]


def cuboid_points(cuboid: Cuboid) -> list[float]:
    """CVAT's 8 corners (16 numbers) of a cuboid, in its canvas's order."""
    front, back = cuboid.front, cuboid.back
    return floats([front.x, front.y, front.x, front.y + front.h,
                   front.x + front.w, front.y, front.x + front.w, front.y + front.h,
                   back.x + back.w, back.y, back.x + back.w, back.y + back.h,
                   back.x, back.y, back.x, back.y + back.h])


def _elements(skeleton: Skeleton, label: Label) -> list[dict[str, Any]]:
    found = {node.name: node for node in skeleton.nodes}
    centre = np.mean([[n.x, n.y] for n in skeleton.nodes], axis=0) if skeleton.nodes else np.zeros(2)
    elements = []
    for index, name in enumerate(label.cls.nodes):
        node = found.get(name)
        where, flags = (centre, {"outside": True}) if node is None else ([node.x, node.y],
                                                                          {"occluded": bool(node.occluded)})
        elements.append({"type": "points", "label_id": index, "frame": 0, "points": floats(where), **flags})
    return elements


def _answer(shape: Tag | Classification, label: Label) -> list[dict[str, Any]]:
    ids, kind = label.attribute_ids, label.cls.kind
    if kind in ("radio", "text"):
        return [{"spec_id": ids[label.name], "value": str(shape.answer)}]
    if kind == "checklist":
        return [{"spec_id": ids[option], "value": "true" if option in shape.answer else "false"}
                for option in label.cls.options]
    return []


def _declared(prediction: Prediction, label: Label) -> list[dict[str, Any]]:
    ids = label.attribute_ids
    return [{"spec_id": ids[name], "value": "true" if name in prediction.attributes else "false"}
            for name in label.declared]


def encode_mask(mask: np.ndarray) -> list[float]:
    """A non-empty (H, W) mask as CVAT's `mask` points, as `cvat_sdk.masks.encode_mask` makes them: the run
    lengths of its box's pixels row by row, zeros first (a leading 0 when the first pixel is in), then the box
    `[x1, y1, x2, y2]`, inclusive."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x1, y1, x2, y2 = int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[-1])
    flat = mask[y1:y2 + 1, x1:x2 + 1].ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    return [0.0] * bool(flat[0]) + floats(runs) + [float(x1), float(y1), float(x2), float(y2)]


def decode_mask(points: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """The (H, W) mask of CVAT's `mask` points on an image of `size` (height, width); a `ValueError` says what
    does not fit."""
    *runs, x1, y1, x2, y2 = (int(value) for value in points)
    if not runs or not (0 <= x1 <= x2 < size[1] and 0 <= y1 <= y2 < size[0]):
        raise ValueError(f"a mask's box [{x1}, {y1}, {x2}, {y2}] does not fit an image of {size[1]}x{size[0]}")
    width, height = x2 - x1 + 1, y2 - y1 + 1
    inside = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    if inside.size != width * height:
        raise ValueError(f"a mask's runs cover {inside.size} pixels, its box {width * height}")
    mask = np.zeros(size, bool)
    mask[y1:y2 + 1, x1:x2 + 1] = inside.reshape(height, width)
    return mask


# --- CVAT -> neutral ------------------------------------------------------------------------------------------


def read_annotations(annotations: Mapping[str, Any], labels: Sequence[Mapping[str, Any]], spec: ModelSpec, *,
                     rename: Mapping[str, str] | None = None, attributes: Mapping[str, Sequence[str]] | None = None,
                     size: tuple[int, int] | None = None, frames: bool = True) -> list[Prediction]:
    """Predictions of CVAT's annotation JSON (`tags` and `shapes`, with the ids of `labels`: the task's labels
    as CVAT's API lists them, or the function's own). Labels that no class is named after (after `rename`)
    are skipped: a task may hold more labels than the model. Polygons of one label sharing a group on a frame
    are one prediction. `size` (height, width) decodes masks; `score` is the confidence (1.0 for tags); with
    `frames`, each annotation's frame is its prediction's; checkbox attributes `attributes` declares for a class
    come back as the prediction's attributes when "true"."""
    rename, attributes = rename or {}, attributes or {}
    classes = {rename.get(cls.name, cls.name): cls for cls in spec.classes}
    by_id = {label["id"]: label for label in labels if label["name"] in classes}
    predictions: list[Prediction] = []
    grouped: dict[tuple[int, int, int], list[tuple[np.ndarray, Prediction]]] = {}
    for kind, items in (("tag", annotations.get("tags", [])), ("shape", annotations.get("shapes", []))):
        for item in items:
            label = by_id.get(item["label_id"])
            if label is None:
                continue
            cls = classes[label["name"]]
            values = {attribute["name"]: value["value"] for value in item.get("attributes", [])
                      for attribute in label["attributes"] if attribute["id"] == value["spec_id"]}
            carried = tuple(name for name in attributes.get(cls.name, ()) if values.get(name) == "true")
            frame = item["frame"] if frames else None
            if kind == "tag":
                predictions.append(Prediction(cls.name, _read_tag(cls, label["name"], values), 1.0, carried,
                                              frame=frame))
                continue
            for shape in _read_shapes(cls, item, label, size):
                prediction = Prediction(cls.name, shape, float(item.get("score", 1.0)), carried, frame=frame)
                if item["type"] == "polygon" and item.get("group"):
                    key = (item["label_id"], item["frame"], item["group"])
                    if key not in grouped:
                        predictions.append(prediction)  # the group's place; its parts are joined below
                    grouped.setdefault(key, []).append((shape.parts[0][0], prediction))
                else:
                    predictions.append(prediction)
    joined = {id(parts[0][1]): Polygon(tuple((ring,) for ring, _ in parts)) for parts in grouped.values()}
    return [Prediction(p.label, joined[id(p)], p.confidence, p.attributes, frame=p.frame) if id(p) in joined else p
            for p in predictions]


def _read_tag(cls: ClassSpec, name: str, values: Mapping[str, str]) -> Tag | Classification:
    if cls.kind == "tag":
        return Tag()
    if cls.kind == "checklist":
        return Classification(tuple(option for option in cls.options if values.get(option) == "true"))
    if cls.kind in ("radio", "text"):
        return Classification(values.get(name, ""))
    raise ValueError(f"class {cls.name!r} ({cls.kind}) is no tag in CVAT")


def _read_shapes(cls: ClassSpec, shape: Mapping[str, Any], label: Mapping[str, Any],
                 size: tuple[int, int] | None) -> list[Any]:
    kind, points, rotation = shape["type"], shape.get("points", []), float(shape.get("rotation", 0.0))
    xy = [(float(x), float(y)) for x, y in zip(points[0::2], points[1::2])]
    if kind == "rectangle" and cls.kind == "rotated_box":
        (x1, y1), (x2, y2) = xy
        return [RotatedBox((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, rotation)]
    if kind == "rectangle" and rotation == 0:
        (x1, y1), (x2, y2) = xy
        return [Box(x1, y1, x2 - x1, y2 - y1)]
    if kind == "ellipse":
        (cx, cy), (x2, y2) = xy
        return [Ellipse(cx, cy, x2 - cx, cy - y2, rotation)]
    if kind == "polygon":
        return [Polygon.from_ring(xy)]
    if kind == "mask":
        if size is None:
            raise ValueError(f"class {cls.name!r}: reading a CVAT mask needs the image's size")
        return [Mask(decode_mask(points, size))]
    if kind == "points":
        return [Point(x, y) for x, y in xy]
    if kind == "polyline":
        return [Line(xy)]
    if kind == "cuboid":
        (fx, fy), (_, fy2), (fx2, _), _, (bx2, by), _, (bx, _), (_, by2) = xy
        return [Cuboid(Box(fx, fy, fx2 - fx, fy2 - fy), Box(bx, by, bx2 - bx, by2 - by))]
    if kind == "skeleton":
        nodes = {sub["id"]: sub["name"] for sub in label["sublabels"]}
        return [Skeleton(tuple(Node(nodes[e["label_id"]], float(e["points"][0]), float(e["points"][1]),
                                    bool(e.get("occluded"))) for e in shape["elements"] if not e.get("outside")))]
    raise ValueError(f"class {cls.name!r} ({cls.kind}) cannot hold a CVAT {kind!r}"
                     f"{f' rotated {rotation:g} degrees' if rotation else ''}")


# --- interaction (click or box to segment) --------------------------------------------------------------------


def prompts_from_cvat(pos_points: Sequence[Sequence[float]], neg_points: Sequence[Sequence[float]],
                      bounding_box: Sequence[Sequence[float]] | None, size: tuple[int, int]) -> Prompts:
    """CVAT's prompts (`InteractionPrompts`: (x, y) points, a box as two corners) as ours, on an image of
    `size` (height, width). Clicks must lie on the image and a box must have an area that overlaps it (a model
    clips it to the image); a number that is not finite, a malformed point, a click outside or an empty box is
    `InvalidInput`, which the agent reports as an invalid request."""
    height, width = size

    def point(xy: Sequence[float], what: str) -> tuple[float, float]:
        if len(xy) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in xy):
            raise InvalidInput(f"{what} {list(xy)!r} is not two finite numbers (x, y)")
        x, y = float(xy[0]), float(xy[1])
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(f"{what} ({x:g}, {y:g}) lies outside the {width}x{height} image")
        return x, y

    box = None
    if bounding_box is not None:
        corners = [list(corner) for corner in bounding_box]
        if len(corners) != 2 or not all(len(c) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                            for v in c) for c in corners):
            raise InvalidInput(f"the box {corners!r} is not two corners of finite numbers ((x1, y1), (x2, y2))")
        (x1, y1), (x2, y2) = corners
        if not (x2 > x1 and y2 > y1):
            raise InvalidInput(f"the box from ({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) is empty")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InvalidInput(f"the box from ({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) lies outside the "
                               f"{width}x{height} image")
        box = Box(float(x1), float(y1), float(x2 - x1), float(y2 - y1))
    return Prompts(box=box, positive=tuple(point(p, "the positive click") for p in pos_points),
                   negative=tuple(point(p, "the negative click") for p in neg_points))


def to_interaction(predictions: Iterable[Prediction], size: tuple[int, int]) -> dict[str, list[dict[str, Any]]]:
    """An interaction function's answer: each area (mask, polygon, box, rotated box, ellipse) as a `mask` result
    on an image of `size` (height, width), its confidence as the result's CONFIDENCE attribute (spec id 0);
    predictions without an area are left out."""
    shapes = []
    for prediction in predictions:
        if isinstance(prediction.shape, (Mask, Polygon, Box, RotatedBox, Ellipse)):
            array = rasterize(prediction.shape, *size).array
            if array.any():
                shapes.append({"type": "mask", "points": encode_mask(array),
                               "attributes": [{"spec_id": 0, "value": str(float(prediction.confidence))}]})
    return {"shapes": shapes}
