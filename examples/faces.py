"""Face detector: OpenCV's Haar cascades (shipped by opencv-python-headless 4.x), faces as boxes, eyes as points.

The confidence is a heuristic, since Haar cascades give no probability: the number of overlapping raw
detections that were merged into a face, n, as n / (n + min_neighbors). A `CascadeClassifier` must not be
shared between threads (concurrent `detectMultiScale` calls fail OpenCV assertions), so each of the bridge's
worker threads (`limits.concurrency`) loads its own on first use.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from bridge import Box, ClassSpec, Context, ModelSpec, Point, Prediction


class FaceDetector:
    spec = ModelSpec(classes=[
        ClassSpec(name="face", kind="box", description="A frontal human face."),
        ClassSpec(name="eye", kind="point", description="The centre of an eye inside a detected face."),
    ])

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30,
                 eyes: bool = True) -> None:
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.with_eyes = eyes
        self._local = threading.local()
        self._cascades()  # fail at start-up, not at the first request, if OpenCV lacks the cascades

    def _cascades(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
        """This thread's face and eye cascades."""
        if not hasattr(self._local, "faces"):
            self._local.faces = _cascade("haarcascade_frontalface_default.xml")
            self._local.eyes = _cascade("haarcascade_eye.xml")
        return self._local.faces, self._local.eyes

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        faces, eyes = self._cascades()
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        min_neighbors = int(context.params.get("min_neighbors", self.min_neighbors))
        boxes, counts = faces.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=min_neighbors, minSize=(self.min_size,) * 2
        )
        # the request's threshold, or the manifest's for faces (the core drops those anyway: no eyes to look for)
        threshold = max(float(context.params.get("threshold", 0.0)), context.min_confidence.get("face", 0.0))
        found = []
        # in the order of their place: OpenCV's threads may find them in either order
        for (x, y, w, h), n in sorted(zip(map(tuple, boxes), counts)):
            confidence = float(n) / (float(n) + min_neighbors)
            if confidence < threshold:
                continue
            found.append(Prediction("face", Box(float(x), float(y), float(w), float(h)), confidence))
            if self.with_eyes:
                found += _eyes(eyes, gray[y:y + h // 2 + h // 8, x:x + w], x, y, confidence)
        return found


def _eyes(cascade: cv2.CascadeClassifier, upper_face: np.ndarray, x: int, y: int,
          confidence: float) -> list[Prediction]:
    """The two largest eyes found in the upper part of a face, as points in the image's coordinates, left to
    right where sizes tie (whatever order OpenCV's threads found them in)."""
    size = max(upper_face.shape[1] // 8, 8)
    eyes = cascade.detectMultiScale(upper_face, scaleFactor=1.1, minNeighbors=5, minSize=(size, size))
    best = sorted(map(tuple, eyes), key=lambda e: (-e[2] * e[3], e[0], e[1]))[:2]
    return [Prediction("eye", Point(x + ex + ew / 2, y + ey + eh / 2), confidence) for ex, ey, ew, eh in best]


def _cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} did not load; opencv-python-headless 4.x ships it, 5.x does not")
    return cascade
