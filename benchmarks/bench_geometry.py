"""How fast are the bridge's mask conversions, against OpenCV's contour tracing on the same masks?

    python benchmarks/bench_geometry.py [--seconds 0.3]

For each realistic mask it times, in the same run:

- baseline: `cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_SIMPLE)` (outer contours and holes, the usual
  "mask to polygons" of computer-vision code; it traces pixel centres, so its polygons are not exact);
- `mask_to_polygon(mask)` (exact pixel edges, holes and parts, tolerance 0) and with the manifest's default
  tolerance 0.5;
- `polygon_to_mask(polygon)` of the exact polygon (back to the same mask);
- `Mask(mask).rle` (COCO RLE with pycocotools, as Labelbox receives masks).

and prints the median time of each and its ratio to the baseline. Ratios, not milliseconds, are what to
compare between machines. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.geometry import mask_to_polygon, polygon_to_mask  # noqa: E402
from bridge.predictions import Mask  # noqa: E402


def disks(height: int, width: int, centres_radii: list[tuple[float, float, float]]) -> np.ndarray:
    yy, xx = np.ogrid[:height, :width]
    mask = np.zeros((height, width), bool)
    for cy, cx, r in centres_radii:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return mask


def masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    thirty = [(rng.uniform(60, 940), rng.uniform(60, 940), rng.uniform(15, 50)) for _ in range(30)]
    found = {
        "30 disks 1000x1000": disks(1000, 1000, thirty),
        "1 disk 2000x2000": disks(2000, 2000, [(1000, 1000, 900)]),
    }
    from skimage import data
    from skimage.filters import threshold_otsu

    coins = data.coins()
    found["coins > otsu 303x384"] = coins > threshold_otsu(coins)
    return found


def timed(call: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over about `seconds` of repeats (at least 5)."""
    call()  # warm up
    times: list[float] = []
    budget = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < budget and len(times) < 1000):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    args = parser.parse_args()

    rows = []
    for name, mask in masks().items():
        as_uint8 = mask.astype(np.uint8)
        polygon = mask_to_polygon(mask)
        assert np.array_equal(polygon_to_mask(polygon, *mask.shape), mask)  # the exact round trip holds
        vertices = sum(len(ring) for part in polygon.parts for ring in part)
        contours, _ = cv2.findContours(as_uint8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        cv_vertices = sum(len(c) for c in contours)
        baseline = timed(lambda: cv2.findContours(as_uint8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE),
                         args.seconds)
        rows.append((name, f"cv2.findContours (baseline, {cv_vertices} pts)", baseline, baseline))
        for label, call in [
            (f"mask_to_polygon tol 0 ({vertices} pts)", lambda: mask_to_polygon(mask)),
            ("mask_to_polygon tol 0.5", lambda: mask_to_polygon(mask, 0.5)),
            ("polygon_to_mask", lambda: polygon_to_mask(polygon, *mask.shape)),
            ("Mask.rle (pycocotools)", lambda: Mask(mask).rle),
        ]:
            rows.append((name, label, timed(call, args.seconds), baseline))

    print(f"{'mask':<22} {'operation':<44} {'median ms':>10} {'x baseline':>11}")
    print("-" * 90)
    last = None
    for name, label, seconds, baseline in rows:
        print(f"{name if name != last else '':<22} {label:<44} {seconds * 1000:>10.2f} {seconds / baseline:>10.1f}x")
        last = name


if __name__ == "__main__":
    main()
