"""Pure conversions between the neutral interface and CVAT's native functions (cvat-sdk 2.80).

- `function_labels(spec, rename, attributes)`: the `DetectionFunctionSpec` a function declares, and the ids
  its shapes carry. A label's id is its class's position in the model's spec; a skeleton node's sublabel id and
  an attribute's id are positions within their label. CVAT matches the function's labels with the task's by
  name (after `rename`) and replaces every id with the task's own, so these ids never reach CVAT.
- `to_cvat(predictions, labels, size=..., conf_threshold=..., conv_mask_to_poly=...)`: neutral predictions as
  the shapes (`LabeledShapeRequest`) and tags (`LabeledImageRequest`) a function's `detect` returns. Every
  number is a plain Python `float`: cvat-sdk's generated models refuse numpy floats (`ApiTypeError`).
- `read_annotations(annotations, task_labels, spec, ...)`: CVAT's annotation JSON (`{"tags": [...],
  "shapes": [...]}`, with the task's label and attribute ids) back to neutral predictions.
- `prompts_from_cvat(prompts)` and `to_interaction(predictions, size=...)`: for a model that takes prompts,
  served as a CVAT interaction function (click or box to segment): CVAT's prompts as ours, and the model's
  areas as the `mask` results CVAT's UI reads (it ignores interaction results of other types).

What each class kind becomes is `CONVERSIONS`. CVAT's forms, as its server reads and writes them:

- boxes and rotated boxes: `rectangle`, points `[x1, y1, x2, y2]` of the unrotated box and `rotation`
  (degrees in [0, 360), clockwise on screen about the centre: ours);
- ellipses: `ellipse`, points `[cx, cy, cx + rx, cy - ry]` and `rotation`;
- polygons: one `polygon` per part, its exterior ring (CVAT's polygons have no holes); masks: `mask`, points
  the SDK's `encode_mask` (row-major runs inside the mask's box, then the box `[x1, y1, x2, y2]` inclusive).
  When the request sets `conv_mask_to_poly`, mask classes leave as polygons traced along pixel edges;
- points: `points` `[x, y]`; lines: `polyline`; cuboids: `cuboid`, 8 corners in the order CVAT's canvas draws
  (front-left top, bottom, front-right top, bottom, back-right top, bottom, back-left top, bottom);
- skeletons: `skeleton` with one `points` element per node of the class, in its order; a node the prediction
  lacks is sent `outside` (CVAT wants every element), at the mean of the others;
- tags: `tag`. A radio class is a tag label with a `radio` attribute named like the label; a checklist class a
  tag label with one `checkbox` attribute per option; a free-text class a tag label with a `text` attribute
  named like the label;
- a prediction's `attributes`: `checkbox` attributes of the class, those `attributes` declares for it
  ("true" when the prediction carries it, else "false"); others are dropped;
- confidence: `score` on shapes; tags have none in CVAT's model.

Predictions come checked from the core (known classes, shapes that fit their kind, masks of the image's
size, answers among the options), so `to_cvat` only translates.

cvat-sdk is a test-only dependency of this project so far: it is imported inside the functions that build or
read its models, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from bridge import (
    Box,
    Classification,
    ClassSpec,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    ModelSpec,
    Node,
    Point,
    Polygon,
    Prediction,
    Prompts,
    RotatedBox,
    Skeleton,
    Tag,
)
from bridge.core.geometry import mask_to_polygon, polygon_to_mask, rasterize

if TYPE_CHECKING:
    from cvat_sdk.auto_annotation import (
        DetectionAnnotation,
        DetectionFunctionSpec,
        InteractionPrompts,
        InteractionResultShape,
    )


class Form(NamedTuple):
    """What one class kind (or aspect of a prediction) becomes in CVAT."""

    form: str
    fidelity: Literal["exact", "lossy", "dropped"] = "exact"
    why: str = ""


CONVERSIONS: dict[str, Form] = {
    "box": Form("rectangle"),
    "rotated_box": Form("rectangle"),
    "polygon": Form("polygon", "lossy", "CVAT polygons are one ring: each part leaves as a polygon of its own, "
                                        "holes filled"),
    "mask": Form("mask"),
    "point": Form("points"),
    "line": Form("polyline"),
    "ellipse": Form("ellipse"),
    "skeleton": Form("skeleton"),
    "cuboid": Form("cuboid"),
    "vector": Form("", "dropped", "CVAT has no vector shape"),
    "tag": Form("tag"),
    "radio": Form("tag"),
    "checklist": Form("tag"),
    "text": Form("tag"),
    "entity": Form("", "dropped", "CVAT's functions annotate images, not text"),
    "prediction.attributes": Form("attributes", "lossy", "only the attributes declared for the class leave, as "
                                                         "checkboxes"),
    "prediction.text": Form("", "dropped", "CVAT shapes and tags carry no free text"),
    "prediction.confidence": Form("score", "lossy", "tags carry no score in CVAT; shapes do"),
    "prediction.frame": Form("", "dropped", "a function sees one frame at a time; CVAT sets each shape's frame"),
}
"""Every class kind and aspect of a prediction: its CVAT form, and what is lost (`bridge formats` rows)."""

LABEL_TYPES = {"box": "rectangle", "rotated_box": "rectangle", "polygon": "polygon", "mask": "mask",
               "point": "points", "line": "polyline", "ellipse": "ellipse", "skeleton": "skeleton",
               "cuboid": "cuboid", "tag": "tag", "radio": "tag", "checklist": "tag", "text": "tag"}
"""The CVAT label type of each class kind CVAT has (the others are dropped)."""


@dataclass(frozen=True)
class FunctionLabel:
    """One class as a label of the function: its CVAT name and the ids its shapes carry."""

    cls: ClassSpec
    name: str
    id: int
    nodes: dict[str, int]
    """Skeleton node -> sublabel id."""
    attributes: dict[str, int]
    """Attribute name -> id: the answer's attributes (radio, checklist, text), then the declared ones."""
    declared: tuple[str, ...]
    """Prediction attributes declared for the class, each a checkbox attribute."""


@dataclass(frozen=True)
class FunctionLabels:
    spec: DetectionFunctionSpec
    labels: dict[str, FunctionLabel]
    """By class name; classes of dropped kinds have none."""


def function_labels(spec: ModelSpec, rename: Mapping[str, str] | None = None,
                    attributes: Mapping[str, Sequence[str]] | None = None) -> FunctionLabels:
    """The function's labels for a model: one per class CVAT has a form for, named after `rename`; `attributes`
    declares, per class, the prediction attributes that leave (as checkbox attributes)."""
    import cvat_sdk.auto_annotation as cvataa

    rename, attributes = rename or {}, attributes or {}
    if unknown := sorted(set(attributes) - {cls.name for cls in spec.classes}):
        raise ValueError(f"attributes are declared for classes the model does not have: {unknown}")
    held: dict[str, FunctionLabel] = {}
    labels = []
    for index, cls in enumerate(spec.classes):
        if cls.kind not in LABEL_TYPES:
            continue
        name = rename.get(cls.name, cls.name)
        if same := [label.cls.name for label in held.values() if label.name == name]:
            raise ValueError(f"classes {[*same, cls.name]} are all named {name!r} in CVAT: a label name must "
                             "be unique")
        declared = tuple(attributes.get(cls.name, ()))
        specs = [*_answer_attributes(cls, name), *(("checkbox", attribute, []) for attribute in declared)]
        names = [attribute for _, attribute, _ in specs]
        if len(set(names)) < len(names):
            raise ValueError(f"class {cls.name!r}: attribute names repeat in {names}")
        held[cls.name] = FunctionLabel(cls, name, index, {node: i for i, node in enumerate(cls.nodes)},
                                       {attribute: i for i, attribute in enumerate(names)}, declared)
        attribute_specs = [cvataa.attribute_spec(attribute, i, input_type, values)
                           for i, (input_type, attribute, values) in enumerate(specs)]
        if cls.kind == "skeleton":
            keypoints = [cvataa.keypoint_spec(node, i) for i, node in enumerate(cls.nodes)]
            labels.append(cvataa.skeleton_label_spec(name, index, keypoints, attributes=attribute_specs))
        else:
            labels.append(cvataa.label_spec(name, index, type=LABEL_TYPES[cls.kind], attributes=attribute_specs))
    return FunctionLabels(cvataa.DetectionFunctionSpec(labels=labels), held)


def _answer_attributes(cls: ClassSpec, name: str) -> list[tuple[str, str, list[str]]]:
    """(input type, attribute name, values) of the attributes that hold a classification's answer."""
    if cls.kind == "radio":
        return [("radio", name, list(cls.options))]
    if cls.kind == "checklist":
        return [("checkbox", option, []) for option in cls.options]
    if cls.kind == "text":
        return [("text", name, [])]
    return []


# --- neutral -> CVAT ------------------------------------------------------------------------------------------


def to_cvat(predictions: Iterable[Prediction], labels: FunctionLabels, *, size: tuple[int, int],
            conf_threshold: float | None = None, conv_mask_to_poly: bool = False,
            tolerance: float = 0.0) -> list[DetectionAnnotation]:
    """What `detect` returns for these predictions on an image of `size` (height, width): those at or above
    `conf_threshold`, masks as polygons when `conv_mask_to_poly` (traced outlines simplified by `tolerance`
    pixels), classes of kinds CVAT lacks left out."""
    annotations: list[DetectionAnnotation] = []
    for prediction in predictions:
        label = labels.labels.get(prediction.label)
        if label is None or (conf_threshold is not None and prediction.confidence < conf_threshold):
            continue
        annotations += _annotations(prediction, label, size, conv_mask_to_poly, tolerance)
    return annotations


def _annotations(prediction: Prediction, label: FunctionLabel, size: tuple[int, int], conv_mask_to_poly: bool,
                 tolerance: float) -> list[DetectionAnnotation]:
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.masks import encode_mask

    shape, lid = prediction.shape, label.id

    def extra() -> dict[str, Any]:  # fresh per annotation: the SDK's mapper rewrites attribute lists in place
        return {"score": float(prediction.confidence), "attributes": _declared(prediction, label)}

    if isinstance(shape, Box):
        return [cvataa.rectangle(lid, _floats([shape.x, shape.y, shape.x + shape.w, shape.y + shape.h]),
                                 **extra())]
    if isinstance(shape, RotatedBox):
        corners = [shape.cx - shape.w / 2, shape.cy - shape.h / 2, shape.cx + shape.w / 2, shape.cy + shape.h / 2]
        return [cvataa.rectangle(lid, _floats(corners), rotation=float(shape.angle % 360), **extra())]
    if isinstance(shape, Ellipse):
        return [cvataa.shape(lid, type="ellipse", rotation=float(shape.angle % 360),
                             points=_floats([shape.cx, shape.cy, shape.cx + shape.rx, shape.cy - shape.ry]),
                             **extra())]
    if isinstance(shape, Point):
        return [cvataa.shape(lid, type="points", points=_floats([shape.x, shape.y]), **extra())]
    if isinstance(shape, Line):
        return [cvataa.shape(lid, type="polyline", points=_floats(shape.points), **extra())]
    if isinstance(shape, Cuboid):
        return [cvataa.shape(lid, type="cuboid", points=_cuboid_points(shape), **extra())]
    if isinstance(shape, Skeleton):
        return [cvataa.skeleton(lid, _elements(shape, label), **extra())]
    if isinstance(shape, (Mask, Polygon)):
        if label.cls.kind == "mask" and not conv_mask_to_poly:
            array = shape.array if isinstance(shape, Mask) else polygon_to_mask(shape, *size)
            return [cvataa.mask(lid, _floats(encode_mask(array)), **extra())] if array.any() else []
        polygon = mask_to_polygon(shape.array, tolerance) if isinstance(shape, Mask) else shape
        return [cvataa.polygon(lid, _floats(part[0]), **extra()) for part in polygon.parts if len(part[0]) >= 3]
    if isinstance(shape, (Tag, Classification)):
        return [cvataa.tag(lid, attributes=_answer(shape, label) + _declared(prediction, label))]
    raise TypeError(f"class {label.cls.name!r}: {type(shape).__name__} has no CVAT form")


def _floats(values: Any) -> list[float]:
    """Plain Python floats, flattened: what the SDK's `points` accepts (numpy floats are refused)."""
    return [float(value) for value in np.asarray(values, dtype=np.float64).ravel()]


def _cuboid_points(cuboid: Cuboid) -> list[float]:
    front, back = cuboid.front, cuboid.back
    return _floats([front.x, front.y, front.x, front.y + front.h,
                    front.x + front.w, front.y, front.x + front.w, front.y + front.h,
                    back.x + back.w, back.y, back.x + back.w, back.y + back.h,
                    back.x, back.y, back.x, back.y + back.h])


def _elements(skeleton: Skeleton, label: FunctionLabel) -> list[Any]:
    import cvat_sdk.auto_annotation as cvataa

    found = {node.name: node for node in skeleton.nodes}
    centre = np.mean([[n.x, n.y] for n in skeleton.nodes], axis=0) if skeleton.nodes else np.zeros(2)
    elements = []
    for name, sublabel in label.nodes.items():
        node = found.get(name)
        if node is None:
            elements.append(cvataa.keypoint(sublabel, _floats(centre), outside=True))
        else:
            elements.append(cvataa.keypoint(sublabel, _floats([node.x, node.y]), occluded=bool(node.occluded)))
    return elements


def _answer(shape: Tag | Classification, label: FunctionLabel) -> list[Any]:
    from cvat_sdk import models

    kind = label.cls.kind
    if kind in ("radio", "text"):
        return [models.AttributeValRequest(spec_id=label.attributes[label.name], value=str(shape.answer))]
    if kind == "checklist":
        return [models.AttributeValRequest(spec_id=label.attributes[option],
                                           value="true" if option in shape.answer else "false")
                for option in label.cls.options]
    return []


def _declared(prediction: Prediction, label: FunctionLabel) -> list[Any]:
    from cvat_sdk import models

    return [models.AttributeValRequest(spec_id=label.attributes[name],
                                       value="true" if name in prediction.attributes else "false")
            for name in label.declared]


# --- CVAT -> neutral ------------------------------------------------------------------------------------------


def read_annotations(annotations: Mapping[str, Any], task_labels: Sequence[Mapping[str, Any]], spec: ModelSpec,
                     *, rename: Mapping[str, str] | None = None, attributes: Mapping[str, Sequence[str]] | None = None,
                     size: tuple[int, int] | None = None) -> list[Prediction]:
    """Neutral predictions from CVAT's annotation JSON (`tags` and `shapes`, ids of `task_labels`, the task's
    labels as CVAT's API lists them). Shapes of labels that no class is named after (after `rename`) are
    skipped: a task may hold more labels than the model. `size` (height, width) decodes masks; `frame` and
    `score` become the prediction's frame and confidence (1.0 for tags); checkbox attributes `attributes`
    declares for a class come back as the prediction's attributes when "true"."""
    rename, attributes = rename or {}, attributes or {}
    classes = {rename.get(cls.name, cls.name): cls for cls in spec.classes}
    by_id = {label["id"]: label for label in task_labels if label["name"] in classes}
    predictions = []
    for kind, items in (("tag", annotations.get("tags", [])), ("shape", annotations.get("shapes", []))):
        for item in items:
            task_label = by_id.get(item["label_id"])
            if task_label is None:
                continue
            cls = classes[task_label["name"]]
            values = {attr["name"]: value["value"] for value in item.get("attributes", [])
                      for attr in task_label["attributes"] if attr["id"] == value["spec_id"]}
            carried = tuple(name for name in attributes.get(cls.name, ()) if values.get(name) == "true")
            found = (_read_tag(cls, task_label["name"], values) if kind == "tag"
                     else _read_shape(cls, item, task_label, size))
            predictions += [Prediction(cls.name, shape, float(item.get("score", 1.0)), carried, frame=item["frame"])
                            for shape in found]
    return predictions


def _read_tag(cls: ClassSpec, name: str, values: Mapping[str, str]) -> list[Tag | Classification]:
    if cls.kind == "tag":
        return [Tag()]
    if cls.kind == "checklist":
        return [Classification(tuple(option for option in cls.options if values.get(option) == "true"))]
    if cls.kind in ("radio", "text"):
        return [Classification(values.get(name, ""))]
    raise ValueError(f"class {cls.name!r} ({cls.kind}) is no tag in CVAT")


def _read_shape(cls: ClassSpec, shape: Mapping[str, Any], task_label: Mapping[str, Any],
                size: tuple[int, int] | None) -> list[Any]:
    from cvat_sdk.masks import decode_mask

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
        return [Mask(decode_mask(points, image_width=size[1], image_height=size[0]))]
    if kind == "points":
        return [Point(x, y) for x, y in xy]
    if kind == "polyline":
        return [Line(xy)]
    if kind == "cuboid":
        (fx, fy), (_, fy2), (fx2, _), _, (bx2, by), _, (bx, _), (_, by2) = xy
        return [Cuboid(Box(fx, fy, fx2 - fx, fy2 - fy), Box(bx, by, bx2 - bx, by2 - by))]
    if kind == "skeleton":
        nodes = {sub["id"]: sub["name"] for sub in task_label["sublabels"]}
        return [Skeleton(tuple(Node(nodes[e["label_id"]], float(e["points"][0]), float(e["points"][1]),
                                    bool(e.get("occluded"))) for e in shape["elements"] if not e.get("outside")))]
    raise ValueError(f"class {cls.name!r} ({cls.kind}) cannot hold a CVAT {kind!r}"
                     f"{f' rotated {rotation:g} degrees' if rotation else ''}")


# --- interaction (click or box to segment) --------------------------------------------------------------------


def prompts_from_cvat(prompts: InteractionPrompts) -> Prompts:
    """CVAT's prompts as ours: its box is two corners ((x1, y1), (x2, y2)), its points (x, y) tuples."""
    box = prompts.bounding_box
    return Prompts(box=None if box is None else Box(float(box[0][0]), float(box[0][1]),
                                                    float(box[1][0] - box[0][0]), float(box[1][1] - box[0][1])),
                   positive=tuple((float(x), float(y)) for x, y in prompts.pos_points),
                   negative=tuple((float(x), float(y)) for x, y in prompts.neg_points))


def to_interaction(predictions: Iterable[Prediction], *, size: tuple[int, int]) -> list[InteractionResultShape]:
    """Each area (mask, polygon, box, rotated box, ellipse) as a `mask` result on an image of `size` (height,
    width), its confidence as the result's CONFIDENCE attribute; predictions without an area are left out."""
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk import models
    from cvat_sdk.masks import encode_mask

    results = []
    for prediction in predictions:
        if not isinstance(prediction.shape, (Mask, Polygon, Box, RotatedBox, Ellipse)):
            continue
        array = rasterize(prediction.shape, *size).array
        if array.any():
            confidence = models.AttributeValRequest(spec_id=int(cvataa.InteractionResultAttributes.CONFIDENCE),
                                                    value=str(float(prediction.confidence)))
            results.append(cvataa.InteractionResultShape(type="mask", points=_floats(encode_mask(array)),
                                                         attributes=[confidence]))
    return results
