"""Neutral predictions as Label Studio result regions, and regions back as neutral predictions.

A region is one entry of a prediction's (or annotation's) `result`: `{"id", "from_name", "to_name", "type",
"value", "score"}`, plus `original_width`, `original_height` and `image_rotation` on images. `from_name` is
the control tag, `to_name` its (first) object tag, `type` the control tag lower-cased. Image coordinates are
percent of the image (x of its width, y of its height), the forms Label Studio 1.23.2's editor writes
(`serialize()` in `libs/editor/src/regions/*`):

- `rectanglelabels` `{x, y, width, height, rotation}`: (x, y) is the top-left corner before rotation and the
  box turns about it, clockwise on screen, degrees in [0, 360) (`RectRegion`, `utils/bboxCoords.js`); ours
  turn about their centre;
- `polygonlabels` `{points: [[x, y], ...], closed}`: one ring, no holes. Each part of a polygon becomes a
  region of its own; holes are kept by bridging each to the ring above it with a two-way slit (a keyhole),
  which fills exactly the polygon's area as the editor draws it, and reads back as the same holes;
- `keypointlabels` `{x, y, width}`: `width` is the drawn point's size (the control's `strokeWidth` pixels);
- `ellipselabels` `{x, y, radiusX, radiusY, rotation}`: centre and radii, turned about the centre;
- `brushlabels` `{format: "rle", rle}`: the mask in Label Studio's own RLE (`brush`);
- `choices` `{choices}`, `taxonomy` `{taxonomy: [path, ...]}`, `textarea` `{text: [...]}`;
- `labels` `{start, end, text}` on texts: offsets count code points (the editor converts its UTF-16
  offsets with `[...text]`, `utils/selection-tools.js`), as Python's `str` indexing does.

A labelled control's value also holds its label list, e.g. `rectanglelabels: ["Face"]`, each label named by
its alias when it has one. The unlabelled tools (`rectangle`, `polygon`, `keypoint`, `ellipse`, `brush`)
have the same values without the list.

Not carried here (the adapter's choice): a prediction's `attributes` and `text` (per-region `Choices` or
`TextArea` results sharing the region's `id`), its `frame`, lines, cuboids and vectors. Regions are written
with `image_rotation: 0` and read as if it were 0. `to_prompts` reads an interactive call's context as
prompts; `task_score` makes the task-level `score` that "Uncertainty sampling" orders by.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import shapely

from adapters.labelstudio.brush import decode_mask, encode_mask
from adapters.labelstudio.config import ControlTag, Label, LabelConfig
from bridge import (
    Box,
    Classification,
    Ellipse,
    Mask,
    Point,
    Polygon,
    Prediction,
    Prompts,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
)
from bridge.core.geometry import bounding_box, from_shapely, rasterize, to_polygon

Region = dict[str, Any]

AREA_SHAPES = (Polygon, Mask, Box, RotatedBox, Ellipse)
"""Shapes a polygon or brush control can take (traced or rasterised)."""
DEFAULT_POINT_SIZE = 2.0
"""Pixels a key point is drawn at when the control sets no `strokeWidth` (Label Studio's default)."""


def to_regions(prediction: Prediction, control: ControlTag, size: tuple[int, int] | None = None,
               label: str | None = None, tolerance: float = 0.0) -> list[Region]:
    """The regions of one prediction for a control tag.

    `size` is the image's (height, width) (image controls only); `label` the control's label the prediction
    answers with (by value or alias; the prediction's own label when None). A polygon of several parts, or a
    skeleton, gives several regions; `tolerance` simplifies traced mask outlines (pixels).
    Raises ValueError when the shape has no form on this control, or the label is not the control's.
    """
    kind = control.result_type.removesuffix("labels") or "labels"  # the tool: rectangle, polygon...; text labels
    shape = prediction.shape
    if kind in ("choices", "taxonomy", "textarea"):
        return [_region(prediction, control, None, _classification(kind, shape, control, label or prediction.label))]
    if kind == "labels":
        if not isinstance(shape, Span):
            raise ValueError(f"{control.type} {control.name!r} takes entity spans, not {type(shape).__name__}")
        value = {"start": shape.start, "end": shape.end, "text": shape.text}
        return [_region(prediction, control, None, _labelled(value, control, label or prediction.label))]
    if size is None:
        raise ValueError(f"{control.type} {control.name!r} labels an image: the image's size is needed")
    height, width = size
    values = _geometry(kind, shape, control, height, width, tolerance)
    named = label or prediction.label
    identity = prediction.id or uuid.uuid4().hex[:10]
    return [_region(prediction, control, size, _labelled(value, control, named), k if len(values) > 1 else None,
                    identity) for k, value in enumerate(values)]


def _geometry(kind: str, shape: Any, control: ControlTag, height: int, width: int,
              tolerance: float) -> list[dict[str, Any]]:
    sx, sy = 100.0 / width, 100.0 / height
    if kind == "rectangle" and isinstance(shape, (Box, RotatedBox)):
        box = shape if isinstance(shape, RotatedBox) else RotatedBox(shape.x + shape.w / 2, shape.y + shape.h / 2,
                                                                   shape.w, shape.h, 0.0)
        c, s = math.cos(math.radians(box.angle)), math.sin(math.radians(box.angle))
        x = box.cx - (c * box.w - s * box.h) / 2  # the top-left corner, turned about the centre
        y = box.cy - (s * box.w + c * box.h) / 2
        return [{"x": x * sx, "y": y * sy, "width": box.w * sx, "height": box.h * sy, "rotation": box.angle % 360}]
    if kind == "polygon" and isinstance(shape, AREA_SHAPES):
        parts = to_polygon(shape, tolerance).parts
        return [{"points": (_bridged(part) * (sx, sy)).tolist(), "closed": True} for part in parts]
    if kind == "keypoint" and isinstance(shape, (Point, Skeleton)):
        points = [(shape.x, shape.y)] if isinstance(shape, Point) else [(n.x, n.y) for n in shape.nodes]
        size = float(control.attributes.get("strokeWidth", DEFAULT_POINT_SIZE)) * sx
        return [{"x": x * sx, "y": y * sy, "width": size} for x, y in points]
    if kind == "ellipse" and isinstance(shape, Ellipse):
        return [{"x": shape.cx * sx, "y": shape.cy * sy, "radiusX": shape.rx * sx, "radiusY": shape.ry * sy,
                 "rotation": shape.angle % 360}]
    if kind == "brush" and isinstance(shape, AREA_SHAPES):
        mask = rasterize(shape, height, width)
        if mask.size != (height, width):
            raise ValueError(f"a {mask.size[1]}x{mask.size[0]} mask on a {width}x{height} image")
        return [{"format": "rle", "rle": encode_mask(mask.array)}]
    raise ValueError(f"{control.type} {control.name!r} has no form for a {type(shape).__name__}")


def _classification(kind: str, shape: Any, control: ControlTag, label: str) -> dict[str, Any]:
    if kind == "textarea":
        if not (isinstance(shape, Classification) and isinstance(shape.answer, str)):
            raise ValueError(f"TextArea {control.name!r} takes a free-text answer, not {type(shape).__name__}")
        return {"text": [shape.answer]}
    if isinstance(shape, Tag):
        answers: tuple[str, ...] = (label,)
    elif isinstance(shape, Classification):
        answers = (shape.answer,) if isinstance(shape.answer, str) else shape.answer
    else:
        raise ValueError(f"{control.type} {control.name!r} takes a classification or a tag, not "
                         f"{type(shape).__name__}")
    if kind == "taxonomy":
        return {"taxonomy": [list(_label(control, answer).path) for answer in answers]}
    return {"choices": [_label(control, answer).result_value for answer in answers]}


def _labelled(value: dict[str, Any], control: ControlTag, label: str) -> dict[str, Any]:
    if control.result_type.endswith("labels"):
        value[control.result_type] = [_label(control, label).result_value]
    return value


def _label(control: ControlTag, name: str) -> Label:
    found = control.label(name)
    if found is not None:
        return found
    if control.dynamic:  # its labels come with each task: nothing to check them against here
        return Label(name, None, (name,))
    raise ValueError(f"{control.type} {control.name!r} has no label {name!r}; its labels are "
                     f"{[label.value for label in control.labels]}")


def _value(control: ControlTag, name: str) -> str:
    """The label value a result's label (value or alias) stands for."""
    found = control.label(name)
    return found.value if found is not None else name


def _region(prediction: Prediction, control: ControlTag, size: tuple[int, int] | None, value: dict[str, Any],
            part: int | None = None, identity: str | None = None) -> Region:
    """One region; a prediction's several regions (a polygon's parts, a skeleton's nodes) share `identity`, and
    are told apart by `-<part>` after it."""
    identity = identity or prediction.id or uuid.uuid4().hex[:10]
    region: Region = {"id": identity if part is None else f"{identity}-{part}", "from_name": control.name,
                      "to_name": control.to_name[0], "type": control.result_type, "value": value,
                      "score": float(prediction.confidence)}
    if size is not None:
        region.update(original_width=size[1], original_height=size[0], image_rotation=0)
    return region


def _bridged(part: tuple[np.ndarray, ...]) -> np.ndarray:
    """One ring for an exterior and its holes: each hole hangs from the ring straight above it by a slit.

    From each hole's topmost vertex a ray goes up to the nearest edge of another ring (the exterior or a hole
    between); the slit there goes up and back down, so the ring walks around the hole the other way round and
    the hole stays empty under any fill rule. Slits are vertical and stop at the first edge, so they cross
    nothing; a hole hanging from another hole reaches the exterior through it.
    """
    exterior, holes = part[0], part[1:]
    if not holes:
        return exterior
    rings = [_oriented(exterior, 1.0), *(_oriented(hole, -1.0) for hole in holes)]
    tops = [int(np.lexsort((ring[:, 0], ring[:, 1]))[0]) for ring in rings]  # topmost vertex, leftmost of ties
    hanging: dict[int, dict[int, list[tuple[float, int, np.ndarray]]]] = {}  # ring -> edge -> (along, hole, point)
    for k, (ring, edge, along, point) in _above(rings, tops).items():
        hanging.setdefault(ring, {}).setdefault(edge, []).append((along, k, point))
    for edges in hanging.values():
        for attached in edges.values():
            attached.sort(key=lambda item: item[0])
    # walk the exterior; at each vertex, go down every slit hanging from the edge that starts there (in order
    # along the edge), round that hole from its top (and its own hanging holes), and back up
    out: list[np.ndarray] = []
    stack = [(0, 0, None)]  # (ring, its first vertex, the point it hangs from)
    steps, pending = [0], [[]]
    while stack:
        k, first, hung_from = stack[-1]
        if pending[-1]:
            _, hole, point = pending[-1].pop(0)
            out.append(point)
            stack.append((hole, tops[hole], point))
            steps.append(0)
            pending.append([])
        elif steps[-1] == len(rings[k]):
            stack.pop(), steps.pop(), pending.pop()
            if hung_from is not None:
                out += [rings[k][first], hung_from]
        else:
            i = (first + steps[-1]) % len(rings[k])
            out.append(rings[k][i])
            steps[-1] += 1
            pending[-1] = list(hanging.get(k, {}).get(i, ()))
    return np.array(out)


def _oriented(ring: np.ndarray, sign: float) -> np.ndarray:
    area = float(np.dot(ring[:, 0], np.roll(ring[:, 1], -1)) - np.dot(np.roll(ring[:, 0], -1), ring[:, 1]))
    return ring if area * sign >= 0 else ring[::-1]


def _above(rings: list[np.ndarray], tops: list[int]) -> dict[int, tuple[int, int, float, np.ndarray]]:
    """Per hole, where a ray straight up from its top vertex first meets another ring: (ring, edge, position
    along the edge, point).

    A ring through the vertex itself (holes touching another ring at a corner, as traced masks have) is met
    at once: that slit has no length and never leaves the polygon. The others are found for all holes at once
    by querying a tree of all edges with the rays.
    """
    starts = np.concatenate(rings)
    ends = np.concatenate([np.roll(ring, -1, axis=0) for ring in rings])
    sizes = np.array([len(ring) for ring in rings])
    owner = np.repeat(np.arange(len(rings)), sizes)
    local = np.arange(len(starts)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    found: dict[int, tuple[int, int, float, np.ndarray]] = {}
    top_of = {complex(*rings[k][tops[k]]): k for k in range(1, len(rings))}
    keys = starts[:, 0] + 1j * starts[:, 1]
    for i in np.flatnonzero(np.isin(keys, np.array(list(top_of)))):
        k = top_of[complex(keys[i])]
        if owner[i] != k and k not in found:
            found[k] = (int(owner[i]), int(local[i]), 0.0, starts[i])
    holes = np.array([k for k in range(1, len(rings)) if k not in found], dtype=np.intp)
    if holes.size == 0:
        return found
    tips = np.array([rings[k][tops[k]] for k in holes])
    sky = float(starts[:, 1].min()) - 1.0
    rays = shapely.linestrings(np.stack([tips, np.column_stack([tips[:, 0], np.full(len(tips), sky)])], axis=1))
    ray, edge = shapely.STRtree(shapely.linestrings(np.stack([starts, ends], axis=1))).query(rays, "intersects")
    x, y = tips[ray, 0], tips[ray, 1]
    a, b = starts[edge], ends[edge]
    # half-open in x, so a ray through a vertex meets one of its two edges; vertical edges are never met
    keep = (np.minimum(a[:, 0], b[:, 0]) <= x) & (x < np.maximum(a[:, 0], b[:, 0])) & (owner[edge] != holes[ray])
    ray, edge, x, y, a, b = ray[keep], edge[keep], x[keep], y[keep], a[keep], b[keep]
    t = (x - a[:, 0]) / (b[:, 0] - a[:, 0])
    ys = a[:, 1] + t * (b[:, 1] - a[:, 1])
    keep = ys <= y
    ray, edge, t, ys = ray[keep], edge[keep], t[keep], ys[keep]
    order = np.lexsort((ys, ray))  # per ray, the lowest edge above the tip (largest y) comes last
    last = order[np.flatnonzero(np.append(ray[order][1:] != ray[order][:-1], True))]
    for r, e, along, hit in zip(ray[last], edge[last], t[last], ys[last]):
        found[int(holes[r])] = (int(owner[e]), int(local[e]), float(along), np.array([tips[r, 0], hit]))
    if len(found) < len(rings) - 1:
        raise ValueError("a hole with no ring above it: the polygon's holes are not inside its exterior")
    return found


# --- regions back to neutral predictions ----------------------------------------------------------------------


def from_regions(results: Iterable[Region], config: LabelConfig) -> list[Prediction]:
    """The neutral predictions of a result list, one per region.

    Labelled regions are labelled with the control's label `value` (a result's alias is mapped back);
    choices, taxonomies, text areas and unlabelled tools with the control's name. Choices answer one option,
    or a tuple for `choice="multiple"`; a taxonomy answers a tuple of the chosen nodes (their last path step);
    a text area its texts joined by newlines. Raises ValueError on a region it cannot read.
    """
    return [_prediction(region, config.control(region["from_name"])) for region in results]


def _prediction(region: Region, control: ControlTag) -> Prediction:
    kind = region["type"].lower()
    value = region["value"]
    label = control.name
    if kind.endswith("labels") and value.get(kind):
        label = _value(control, value[kind][0])
    shape = _shape(kind.removesuffix("labels") or "labels", value, control, region)
    return Prediction(label, shape, float(region.get("score", 1.0)), id=region.get("id"))


def _shape(kind: str, value: dict[str, Any], control: ControlTag, region: Region) -> Any:
    if kind == "labels":
        return Span(int(value["start"]), int(value["end"]), value.get("text", ""))
    if kind == "choices":
        answers = tuple(_value(control, answer) for answer in value["choices"])
        return Classification(answers if control.multiple else answers[0])
    if kind == "taxonomy":
        return Classification(tuple(_value(control, path[-1]) for path in value["taxonomy"]))
    if kind == "textarea":
        return Classification("\n".join(value["text"]))
    width, height = int(region["original_width"]), int(region["original_height"])
    sx, sy = width / 100.0, height / 100.0
    if kind == "rectangle":
        return _rectangle(value, width, height)
    if kind == "polygon":
        return _filled(np.asarray(value["points"], dtype=np.float64).reshape(-1, 2) * (sx, sy))
    if kind == "keypoint":
        return Point(value["x"] * sx, value["y"] * sy)
    if kind == "ellipse":
        return Ellipse(value["x"] * sx, value["y"] * sy, value["radiusX"] * sx, value["radiusY"] * sy,
                       float(value.get("rotation", 0.0)) % 360)
    if kind == "brush":
        if value.get("format", "rle") != "rle":
            raise ValueError(f"brush region {region.get('id')!r}: format {value.get('format')!r} is not rle")
        return Mask(decode_mask(value["rle"], height, width))
    raise ValueError(f"{control.type} region {region.get('id')!r}: {region['type']!r} has no neutral form")


def _filled(ring: np.ndarray) -> Polygon:
    """The area a ring fills as the editor draws it (canvas' non-zero rule), as parts and holes.

    The ring's line work is cut where it meets itself and rebuilt into faces; a face is in when the ring
    winds round it. A keyhole ring (`_bridged`) gives back its holes, even where holes touch each other at
    a corner, which shapely's `make_valid` may read otherwise."""
    if len(ring) < 3:
        return Polygon(())
    if shapely.is_valid(shapely.polygons(ring)):  # a simple ring, as users draw them: it is its own area
        return Polygon.from_ring(ring)
    noded = shapely.unary_union(shapely.linestrings(np.vstack([ring, ring[:1]])))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    if len(faces) == 0:
        return Polygon(())
    inside = faces[_windings(ring, shapely.get_coordinates(shapely.point_on_surface(faces))) != 0]
    return from_shapely(shapely.union_all(inside)) if len(inside) else Polygon(())


def _windings(ring: np.ndarray, points: np.ndarray) -> np.ndarray:
    """How many times the ring winds round each point (signed): the edges a ray to the right of the point
    crosses upwards, minus those it crosses downwards (only edges the ray meets are looked at)."""
    a, b = ring, np.roll(ring, -1, axis=0)
    far = float(ring[:, 0].max()) + 1.0
    rays = shapely.linestrings(np.stack([points, np.column_stack([np.full(len(points), far), points[:, 1]])], axis=1))
    ray, edge = shapely.STRtree(shapely.linestrings(np.stack([a, b], axis=1))).query(rays, "intersects")
    x, y = points[ray, 0], points[ray, 1]
    a, b = a[edge], b[edge]
    side = (b[:, 0] - a[:, 0]) * (y - a[:, 1]) - (x - a[:, 0]) * (b[:, 1] - a[:, 1])
    up = (a[:, 1] <= y) & (b[:, 1] > y) & (side > 0)
    down = (a[:, 1] > y) & (b[:, 1] <= y) & (side < 0)
    return np.bincount(ray, weights=up.astype(np.int64) - down, minlength=len(points)).astype(np.int64)


def _rectangle(value: dict[str, Any], width: int, height: int) -> Box | RotatedBox:
    """A box, or a box turned about its centre, from Label Studio's turned-about-the-corner rectangle."""
    x, y = value["x"] * width / 100.0, value["y"] * height / 100.0
    w, h = value["width"] * width / 100.0, value["height"] * height / 100.0
    angle = float(value.get("rotation", 0.0)) % 360
    if angle == 0:
        return Box(x, y, w, h)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return RotatedBox(x + (c * w - s * h) / 2, y + (s * w + c * h) / 2, w, h, angle)


# --- prompts and scores ---------------------------------------------------------------------------------------


def to_prompts(results: Iterable[Region]) -> Prompts:
    """What a user drew for an interactive call (`params.context.result`), as prompts in image pixels.

    A rectangle is the box (the bounding box of a turned one; the last drawn counts); key points are clicks,
    negative when the editor marks them `is_positive: false` (smart key points with Alt held). Brush strokes
    and other regions are no prompt form of ours and are left out.
    """
    box, positive, negative = None, [], []
    for region in results:
        kind = region.get("type", "").lower().removesuffix("labels")
        if kind not in ("rectangle", "keypoint"):
            continue
        width, height = int(region["original_width"]), int(region["original_height"])
        value = region["value"]
        if kind == "rectangle":
            box = bounding_box(_rectangle(value, width, height))
        else:
            click = (value["x"] * width / 100.0, value["y"] * height / 100.0)
            (positive if region.get("is_positive", True) else negative).append(click)
    return Prompts(box, tuple(positive), tuple(negative))


def task_score(predictions: Iterable[Prediction], combine: Callable[[list[float]], float] = min) -> float | None:
    """A task's `score`, what "Uncertainty sampling" serves in ascending order: by default the lowest
    confidence, so a task with one doubtful finding comes first. None (stored as null) when there is no
    prediction: Label Studio's SQLite database sorts null first (PostgreSQL sorts it last)."""
    confidences = [float(p.confidence) for p in predictions]
    return float(combine(confidences)) if confidences else None
