"""Whole-image classifier: a "Blurry Image" tag when the variance of the Laplacian is low, as in V7's docs.

Sharp edges make the Laplacian vary; blur flattens it. The confidence grows as the variance falls below the
threshold: 1 - variance / threshold.
"""

from __future__ import annotations

import cv2
import numpy as np

from bridge import ClassSpec, Context, ModelSpec, Prediction, Tag


class BlurDetector:
    spec = ModelSpec(classes=[ClassSpec(name="Blurry Image", kind="tag")])

    def __init__(self, threshold: float = 100.0) -> None:
        self.threshold = threshold

    @staticmethod
    def sharpness(image: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        threshold = float(context.params.get("threshold", self.threshold))
        variance = self.sharpness(image)
        if variance >= threshold:
            return []
        return [Prediction("Blurry Image", Tag(), confidence=1 - variance / threshold)]
