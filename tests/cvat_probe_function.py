"""A tiny CVAT native function of the tests' own, written against cvat-sdk alone (no bridge code).

cvat-cli loads this file (`--function-file`) and, since it has a `create`, calls `create(**parameters)` with
the `-p NAME=TYPE:VALUE` parameters. Per frame it answers a `rectangle` around the frame's bright pixels
(above `brightness`) with score `score`, unless the score is under the request's threshold, and a `scene`
tag. Two frames fail on purpose: `crash.png` raises, `wrong.png` answers a polygon for the rectangle label.
"""

from __future__ import annotations

import cvat_sdk.auto_annotation as cvataa
import PIL.Image


def bright_box(image: PIL.Image.Image, brightness: int) -> list[float] | None:
    """[x1, y1, x2, y2] around the pixels brighter than `brightness`; None when there are none."""
    box = image.convert("L").point(lambda value: 255 if value > brightness else 0).getbbox()
    return [float(v) for v in box] if box else None


class Probe:
    def __init__(self, label: str, score: float, brightness: int) -> None:
        self.spec = cvataa.DetectionFunctionSpec(labels=[cvataa.label_spec(label, 0, type="rectangle"),
                                                         cvataa.label_spec("scene", 1, type="tag")])
        self._score, self._brightness = score, brightness

    def detect(self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image) -> list:
        if context.frame_name == "crash.png":
            raise RuntimeError("the model broke on this frame")
        if context.frame_name == "wrong.png":
            return [cvataa.polygon(0, [0.0, 0.0, 10.0, 0.0, 10.0, 10.0])]
        found = [cvataa.tag(1)]
        box = bright_box(image, self._brightness)
        if box and (context.conf_threshold is None or self._score >= context.conf_threshold):
            found.append(cvataa.rectangle(0, box, score=self._score))
        return found


def create(label: str = "face", score: float = 0.5, brightness: int = 200) -> Probe:
    return Probe(label, score, brightness)
