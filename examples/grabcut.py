"""Auto-annotate segmenter: OpenCV GrabCut inside the box the user drew (V7's `params.bbox`).

GrabCut needs to see background around the box, so this model takes prompts (`prompts=True`): it gets the
whole image and the box in `context.prompts`, and works on the box plus a margin. The object comes back as one mask; holes where the
background shows through (a ring, a handle) stay holes in the polygon V7 receives.
"""

from __future__ import annotations

import cv2
import numpy as np

from bridge import ClassSpec, Context, InvalidInput, Mask, ModelSpec, Prediction


class GrabCutSegmenter:
    spec = ModelSpec(classes=[ClassSpec(name="object", kind="polygon")], prompts=True)

    def __init__(self, margin: float = 0.2, min_area: int = 16) -> None:
        self.margin = margin
        self.min_area = min_area

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        r = context.prompts.box
        if r is None:
            raise InvalidInput("this segmenter needs a box: draw one with V7's auto-annotate tool")
        height, width = image.shape[:2]
        x0, y0 = max(int(r.x), 0), max(int(r.y), 0)
        x1, y1 = min(int(np.ceil(r.x + r.w)), width), min(int(np.ceil(r.y + r.h)), height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise InvalidInput(f"the region {x0},{y0} to {x1},{y1} is too small to segment")
        # Work on the box plus a margin of background: faster than the whole image, same result.
        mx, my = int((x1 - x0) * self.margin) + 1, int((y1 - y0) * self.margin) + 1
        wx0, wy0 = max(x0 - mx, 0), max(y0 - my, 0)
        wx1, wy1 = min(x1 + mx, width), min(y1 + my, height)
        window = np.ascontiguousarray(image[wy0:wy1, wx0:wx1, ::-1])  # OpenCV wants BGR
        labels = np.zeros(window.shape[:2], np.uint8)
        rect = (x0 - wx0, y0 - wy0, x1 - x0, y1 - y0)
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        iterations = int(context.params["iterations"])  # the manifest's `params` schema holds its default
        cv2.grabCut(window, labels, rect, background, foreground, iterations, cv2.GC_INIT_WITH_RECT)
        found = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
        if found.sum() < self.min_area:
            return []
        mask = np.zeros((height, width), bool)
        mask[wy0:wy1, wx0:wx1] = found
        return [Prediction("object", Mask(mask))]  # GrabCut gives no probability
