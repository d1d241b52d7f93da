"""Shape classifier: tags an image "circle", "square" or "triangle"; a small numpy network that batches well.

It stands for the many models whose cost is a large weight matrix: a random-feature network (a fixed random
layer of `width` ReLU units over a 32x32 grey thumbnail, then a linear read-out), trained at start-up in
about a second on shapes it draws itself with OpenCV, so no weights are fetched. One image costs a
matrix-vector product that reads the whole weight matrix (16 MiB at the default width); a batch costs one
matrix-matrix product that reads it once for all its images, so `predict_batch` on 32 images takes a few
times one image's time, not 32 times. Serve it with `limits.batch_wait` (manifests/shapes.yaml) and requests
arriving together share that product.
"""

from __future__ import annotations

import cv2
import numpy as np

from bridge import ClassSpec, Context, ModelSpec, Prediction, Tag

SHAPES = ("circle", "square", "triangle")
SIDE = 32  # thumbnails are SIDE x SIDE grey


class ShapeClassifier:
    spec = ModelSpec(classes=[ClassSpec(name=name, kind="tag", description=f"The image shows a {name}.")
                              for name in SHAPES])

    def __init__(self, width: int = 4096, samples: int = 600, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = (rng.standard_normal((SIDE * SIDE, width)) / SIDE).astype(np.float32)
        self.bias = rng.uniform(-1, 1, width).astype(np.float32)
        images, labels = zip(*(draw(rng, i % len(SHAPES)) for i in range(samples)))
        features = self._features(np.stack([thumbnail(image) for image in images]))
        targets = np.eye(len(SHAPES), dtype=np.float32)[list(labels)]
        # ridge regression in its dual form: a samples x samples system instead of width x width
        gram = features @ features.T + 1.0 * np.eye(samples, dtype=np.float32)
        self.readout = features.T @ np.linalg.solve(gram, targets)

    def _features(self, thumbnails: np.ndarray) -> np.ndarray:
        return np.maximum(thumbnails @ self.weights + self.bias, 0)

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return self.predict_batch([image], [context])[0]

    def predict_batch(self, images: list[np.ndarray], contexts: list[Context]) -> list[list[Prediction]]:
        scores = self._features(np.stack([thumbnail(image) for image in images])) @ self.readout
        probabilities = np.exp(4 * scores)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return [[Prediction(SHAPES[k], Tag(), float(p[k]))] for k, p in zip(best, probabilities)]


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The shape's mask, cut to its bounding box and scaled to SIDE x SIDE (so place and size do not matter),
    in [-1, 1], flattened. The shape is what differs from the border's grey level."""
    gray = (image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)).astype(np.int16)
    border = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    difference = np.abs(gray - border)
    mask = (difference > max(difference.max() / 2, 1)).astype(np.uint8)
    rows, cols = np.nonzero(mask)
    if len(rows):
        mask = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    small = cv2.resize(mask * 255, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small / 127.5 - 1).ravel()


def draw(rng: np.random.Generator, kind: int, size: int = 64) -> tuple[np.ndarray, int]:
    """A filled shape of the given kind, of random size, place and grey levels; (RGB image, kind)."""
    background, ink = (int(v) for v in rng.choice(256, 2, replace=False))
    image = np.full((size, size, 3), background, np.uint8)
    radius = rng.uniform(0.2, 0.4) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    color = (ink,) * 3
    if SHAPES[kind] == "circle":
        cv2.circle(image, (int(cx), int(cy)), int(radius), color, -1)
    else:
        corners = 4 if SHAPES[kind] == "square" else 3
        angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        cv2.fillPoly(image, [points.round().astype(np.int32)], color)
    return image, kind
