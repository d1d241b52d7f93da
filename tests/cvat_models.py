"""Models for the CVAT tests, loaded from their manifests by the CVAT function (`adapters.cvat.function`), in
the test process and in cvat-cli's agent worker alike (so they import only the installed `bridge`).

`EveryKind` predicts one shape of every class kind, placed from the image's size; `Temperamental` finds a box
on most frames and misbehaves on frames of given widths: it raises, it is slow, or it answers a class it
does not have.
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
    Tag,
    Vector,
)
from bridge.core.geometry import translate

ATTRIBUTES = {"face": ["smiling", "glasses"], "body": ["standing"]}
"""Prediction attributes the test manifests declare (`platforms.cvat.attributes`): checkbox attributes."""


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


FAIL_WIDTH, SLOW_WIDTH, STRAY_WIDTH = 101, 103, 107
"""Frame widths on which `Temperamental` raises, sleeps past any test deadline, or answers a stray class."""


class Temperamental:
    """A box around the frame's bright pixels, unless the frame's width says to misbehave."""

    spec = ModelSpec(classes=[ClassSpec(name="face", kind="box"), ClassSpec(name="scene", kind="tag")])

    def __init__(self, sleep: float = 3.0) -> None:
        self.sleep = sleep

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        width = image.shape[1]
        if width == FAIL_WIDTH:
            raise RuntimeError("the model broke on this frame")
        if width == SLOW_WIDTH:
            time.sleep(self.sleep)
        if width == STRAY_WIDTH:
            return [Prediction("cat", Tag())]
        rows, columns = np.nonzero(image.max(axis=2) > 200)
        found = [Prediction("scene", Tag(), 0.5)]
        if rows.size:
            found.append(Prediction("face", Box(float(columns.min()), float(rows.min()),
                                                float(columns.max() + 1 - columns.min()),
                                                float(rows.max() + 1 - rows.min())), 0.8))
        return found
