"""Coin segmenter: bright objects on a darker, unevenly lit background, one mask per object, holes kept.

Made for `skimage.data.coins()` (24 coins on a background whose brightness drifts across the image): a white
top-hat with a disc wider than any coin takes the uneven background away, Otsu's threshold splits coins
from background, and each connected component big enough is one coin. Dark details stamped in a coin stay
holes in its mask, as found. The confidence is a heuristic, the component's solidity (the area inside its
outline over its convex hull's): a coin is round and solid, a stray fragment is not.
"""

from __future__ import annotations

import cv2
import numpy as np

from bridge import ClassSpec, Context, Mask, ModelSpec, Prediction


class CoinSegmenter:
    spec = ModelSpec(classes=[ClassSpec(name="coin", kind="mask", description="One coin, its pixels exactly.")])

    def __init__(self, background_size: int = 61, min_area: int = 200) -> None:
        self.background_size = background_size
        self.min_area = min_area

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (5, 5), 0)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.background_size,) * 2)
        foreground = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, disc)
        _, binary = cv2.threshold(foreground, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        min_area = int(context.params.get("min_area", self.min_area))
        found = []
        for index in range(1, count):
            if stats[index, cv2.CC_STAT_AREA] < min_area:
                continue
            mask = labels == index
            found.append(Prediction("coin", Mask(mask), _solidity(mask)))
        return found


def _solidity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(outline))
    return float(cv2.contourArea(outline) / hull) if hull > 0 else 0.0
