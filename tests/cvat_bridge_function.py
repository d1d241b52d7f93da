"""A CVAT native function made of a bridge model through `adapters.cvat.convert`, for the tests.

`EveryKind` predicts one shape of every class kind, placed from the image's size; `BridgeFunction` serves any
bridge model as a cvat-sdk detection function. cvat-cli loads this file by path (`--function-file`) in a
spawned worker and calls `create(**parameters)` with the `-p NAME=TYPE:VALUE` parameters, so it imports only
the installed `bridge` and `adapters`, not `tests`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image

from adapters.cvat.convert import function_labels, to_cvat
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
    Tag,
    Vector,
)
from bridge.core.geometry import translate

ATTRIBUTES = {"face": ("smiling", "glasses"), "body": ("standing",)}
"""Prediction attributes declared per class: they leave as checkbox attributes."""


class EveryKind:
    """One prediction per class kind (two faces, one faint), moved right and down by `shift` pixels."""

    spec = ModelSpec(classes=[
        ClassSpec(name="face", kind="box"),
        ClassSpec(name="tilted", kind="rotated_box"),
        ClassSpec(name="region", kind="polygon"),
        ClassSpec(name="coin", kind="mask"),
        ClassSpec(name="nose", kind="point"),
        ClassSpec(name="horizon", kind="line"),
        ClassSpec(name="eye", kind="ellipse"),
        ClassSpec(name="body", kind="skeleton", nodes=("head", "left_hand", "right_hand")),
        ClassSpec(name="crate", kind="cuboid"),
        ClassSpec(name="motion", kind="vector"),
        ClassSpec(name="outdoor", kind="tag"),
        ClassSpec(name="weather", kind="radio", options=("sunny", "rainy")),
        ClassSpec(name="contents", kind="checklist", options=("person", "dog", "cat")),
        ClassSpec(name="caption", kind="text"),
        ClassSpec(name="phrase", kind="entity"),
    ])

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        height, width = image.shape[:2]
        yy, xx = np.mgrid[:height, :width]
        distance = np.hypot(xx - 40.5, yy - 100.5)
        found = [
            Prediction("face", Box(10, 20, 30, 40), 0.9, attributes=("smiling",)),
            Prediction("face", Box(200, 200, 20, 20), 0.2),
            Prediction("tilted", RotatedBox(60, 50, 30, 10, 30.0), 0.8),
            Prediction("region", Polygon(((((100, 100), (140, 100), (140, 140), (100, 140)),
                                           ((110, 110), (110, 120), (120, 120), (120, 110))),
                                          (((150, 100), (170, 100), (160, 120)),))), 0.7),
            Prediction("coin", Mask((distance <= 12) & (distance > 5)), 0.6),
            Prediction("nose", Point(25.5, 30.25), 0.95),
            Prediction("horizon", Line([[0, 60], [50, 55], [100, 62.5]]), 0.5),
            Prediction("eye", Ellipse(70, 90, 8, 4, 15.0), 0.85),
            Prediction("body", Skeleton((Node("head", 50, 20, occluded=True), Node("left_hand", 40, 60))), 0.75,
                       attributes=("standing",)),
            Prediction("crate", Cuboid(Box(120, 20, 30, 30), Box(130, 10, 30, 30)), 0.65),
            Prediction("motion", Vector(45, 10), 0.6),
            Prediction("outdoor", Tag(), 0.55),
            Prediction("weather", Classification("rainy"), 0.5),
            Prediction("contents", Classification(("person", "dog")), 0.45),
            Prediction("caption", Classification("a test"), 0.4),
        ]
        return [Prediction(p.label, translate(p.shape, self.shift, self.shift, (height, width)), p.confidence,
                           p.attributes) for p in found]


class BridgeFunction:
    """A cvat-sdk detection function that runs a bridge model on each frame."""

    def __init__(self, model: EveryKind, rename: Mapping[str, str] | None = None,
                 attributes: Mapping[str, Sequence[str]] | None = None) -> None:
        self._model = model
        self._labels = function_labels(model.spec, rename, attributes)
        self.spec = self._labels.spec

    def detect(self, context, image: PIL.Image.Image) -> list:
        array = np.asarray(image.convert("RGB"))
        return to_cvat(self._model.predict(array, Context(platform="cvat")), self._labels, size=array.shape[:2],
                       conf_threshold=context.conf_threshold, conv_mask_to_poly=context.conv_mask_to_poly)


def create(shift: float = 0.0, face: str = "face") -> BridgeFunction:
    """`-p shift=float:N` moves every shape; `-p face=str:NAME` renames the face class for CVAT."""
    return BridgeFunction(EveryKind(shift), {"face": face}, ATTRIBUTES)
