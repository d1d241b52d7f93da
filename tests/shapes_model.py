"""A model that returns one prediction of every neutral shape, for contract tests of every adapter.

Geometry is placed relative to the image so that it stays inside any image of 64x64 pixels or more. A
params key `fail` makes it raise, `sleep` makes it slow, `only` keeps the listed class names.
"""

from __future__ import annotations

import time

import numpy as np

from bridge import (
    Box,
    Classification,
    ClassSpec,
    Context,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    ModelSpec,
    Node,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)

CLASSES = [
    ClassSpec(name="box", kind="box"),
    ClassSpec(name="rotated", kind="rotated_box"),
    ClassSpec(name="donut", kind="polygon"),
    ClassSpec(name="blob", kind="mask"),
    ClassSpec(name="point", kind="point"),
    ClassSpec(name="line", kind="line"),
    ClassSpec(name="ellipse", kind="ellipse"),
    ClassSpec(name="person", kind="skeleton", nodes=("head", "hip")),
    ClassSpec(name="cuboid", kind="cuboid"),
    ClassSpec(name="vector", kind="vector"),
    ClassSpec(name="sharp", kind="tag"),
    ClassSpec(name="weather", kind="radio", options=("sunny", "rainy")),
    ClassSpec(name="objects", kind="checklist", options=("car", "tree", "sky")),
    ClassSpec(name="caption", kind="text"),
    ClassSpec(name="name", kind="entity"),
]


def donut_mask(height: int, width: int) -> np.ndarray:
    """A ring around the image's centre plus a separate square: holes and several parts at once."""
    yy, xx = np.mgrid[:height, :width]
    radius = np.hypot(yy - height / 2, xx - width / 2)
    mask = (radius < min(height, width) / 4) & (radius > min(height, width) / 10)
    mask[2:8, 2:8] = True
    return mask


class AllShapes:
    spec = ModelSpec(classes=CLASSES)

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        if context.params.get("fail"):
            raise RuntimeError("boom: the model failed on purpose")
        if context.params.get("sleep"):
            time.sleep(float(context.params["sleep"]))
        h, w = image.shape[:2]
        found = [
            Prediction("box", Box(4, 6, w / 4, h / 4), 0.9, attributes=("occluded",), text="a box"),
            Prediction("rotated", RotatedBox(w / 2, h / 2, w / 4, h / 8, 30), 0.8),
            Prediction("donut", Polygon.from_ring(
                [(w * 0.2, h * 0.2), (w * 0.8, h * 0.2), (w * 0.8, h * 0.8), (w * 0.2, h * 0.8)],
                holes=[[(w * 0.4, h * 0.4), (w * 0.6, h * 0.4), (w * 0.6, h * 0.6), (w * 0.4, h * 0.6)]]), 0.7),
            Prediction("blob", Mask(donut_mask(h, w)), 0.6),
            Prediction("point", Point(w / 3, h / 3), 0.5),
            Prediction("line", Line([(1, 1), (w / 2, h / 3), (w - 2, h - 2)]), 0.5),
            Prediction("ellipse", Ellipse(w / 2, h / 2, w / 5, h / 7, -30), 0.5),
            Prediction("person", Skeleton((Node("head", w / 2, h / 5), Node("hip", w / 2, h / 2, True))), 0.5),
            Prediction("cuboid", Cuboid(Box(5, 5, 20, 20), Box(10, 8, 20, 20)), 0.5),
            Prediction("vector", Vector(-90, 12), 0.5),
            Prediction("sharp", Tag(), 1.5),  # out of range on purpose: platforms get it clamped
            Prediction("weather", Classification("sunny"), 0.9),
            Prediction("objects", Classification(("car", "sky")), 0.8),
            Prediction("caption", Classification("an astronaut"), 0.7),
        ]
        only = context.params.get("only")
        return [p for p in found if only is None or p.label in only]


class TextShapes:
    """A text model: entity spans and classifications of the text it reads."""

    spec = ModelSpec(input="text", classes=[
        ClassSpec(name="name", kind="entity"),
        ClassSpec(name="weather", kind="radio", options=("sunny", "rainy")),
    ])

    def predict(self, text: str, context: Context) -> list[Prediction]:
        found = [Prediction("weather", Classification("sunny" if "sun" in text else "rainy"))]
        start = text.find("Tom")
        if start >= 0:
            found.append(Prediction("name", Span(start, start + 3, "Tom"), 0.9))
        return found
