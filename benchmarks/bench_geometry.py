"""How fast are the bridge's mask conversions, against OpenCV's contour tracing and pycocotools' RLE encoder?

    python benchmarks/bench_geometry.py [--rounds 200] [--json results.json]

Every comparison runs in the same process, interleaved round by round (each round calls every contender
once, in turn), and reports medians: a busy machine slows all contenders alike, and the ratios are what
to compare between machines. Nothing is asserted.

Per mask (1920x1080 masks with a small and a large blob, a jagged blob whose pixels touch diagonally, and
the older 1000x1000 disks and coins), the floors are:

- `cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_SIMPLE)` on the mask's uint8 view: outer contours and holes,
  the usual "mask to polygons" of computer-vision code (it traces pixel centres: not exact, not 4-connected);
- `pycocotools.mask.encode` of the mask already in the Fortran uint8 layout it needs (the strict floor) and
  as one calls it on a model's bool mask (`np.asfortranarray(mask, dtype=np.uint8)` first).

Against them: `mask_to_polygon(mask)` (exact pixel edges, 4-connected parts, holes; tolerance 0) and with the
manifest's default tolerance 0.5, `polygon_to_mask` of the exact polygon, and `Mask(mask).rle`.

Then the platform answers: 50 instance masks in one 1920x1080 image turned into V7 polygons
(`adapters.v7.to_results`), Labelbox RLE (`adapters.labelbox.to_answer`) and Ango segmentation
(`adapters.ango.to_answer`), each from fresh `Mask` objects (no cached RLE), against the floors added up:
findContours for V7 and for Ango, pycocotools.mask.encode (strict) for Labelbox.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.ango.convert import to_answer as ango_answer  # noqa: E402
from adapters.ango.section import AngoSection  # noqa: E402
from adapters.labelbox import LabelboxSection  # noqa: E402
from adapters.labelbox import to_answer as labelbox_answer  # noqa: E402
from adapters.v7 import V7Section, to_results  # noqa: E402
from bridge.core.geometry import mask_to_polygon, polygon_to_mask  # noqa: E402
from bridge.core.model import ClassSpec, ModelSpec  # noqa: E402
from bridge.core.predictions import Mask, Prediction  # noqa: E402

HEIGHT, WIDTH = 1080, 1920


def disks(height: int, width: int, centres_radii: list[tuple[float, float, float]]) -> np.ndarray:
    yy, xx = np.ogrid[:height, :width]
    mask = np.zeros((height, width), bool)
    for cy, cx, r in centres_radii:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return mask


def jagged(height: int, width: int, seed: int) -> np.ndarray:
    """A blob with a ragged edge (thresholded noise inside a disk's rim): many pixels touch only diagonally."""
    rng = np.random.default_rng(seed)
    disk = disks(height, width, [(height / 2, width / 3, 200)])
    rim = disk & ~disks(height, width, [(height / 2, width / 3, 185)])
    return (disk & ~rim) | (rim & (rng.random((height, width)) < 0.5))


def masks() -> dict[str, np.ndarray]:
    from skimage import data
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    thirty = [(rng.uniform(60, 940), rng.uniform(60, 940), rng.uniform(15, 50)) for _ in range(30)]
    large = disks(HEIGHT, WIDTH, [(540, 960, 450)]) & ~disks(HEIGHT, WIDTH, [(450, 850, 60), (650, 1100, 90)])
    coins = data.coins()
    return {
        "small blob 1920x1080": disks(HEIGHT, WIDTH, [(300, 400, 30)]),
        "large blob, 2 holes 1920x1080": large,
        "jagged blob 1920x1080": jagged(HEIGHT, WIDTH, 1),
        "30 disks 1000x1000": disks(1000, 1000, thirty),
        "coins > otsu 303x384": coins > threshold_otsu(coins),
    }


def instances(count: int, seed: int) -> list[np.ndarray]:
    """Instance masks of one image: disks of many sizes, every fourth with a hole."""
    rng = np.random.default_rng(seed)
    found = []
    for index in range(count):
        r = float(rng.uniform(15, 160))
        cy, cx = rng.uniform(r, HEIGHT - r), rng.uniform(r, WIDTH - r)
        mask = disks(HEIGHT, WIDTH, [(cy, cx, r)])
        if index % 4 == 0:
            mask &= ~disks(HEIGHT, WIDTH, [(cy, cx, r / 3)])
        found.append(mask)
    return found


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each contender, calling each once per round, in turn."""
    for call in contenders.values():
        call()  # warm up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def per_mask(rounds: int) -> list[dict]:
    rows = []
    for name, mask in masks().items():
        view = mask.view(np.uint8)
        fortran = np.asfortranarray(view)
        polygon = mask_to_polygon(mask)
        medians = interleaved({
            "findContours": lambda: cv2.findContours(view, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE),
            "mask_to_polygon": lambda: mask_to_polygon(mask),
            "mask_to_polygon tol 0.5": lambda: mask_to_polygon(mask, 0.5),
            "polygon_to_mask": lambda: polygon_to_mask(polygon, *mask.shape),
            "encode": lambda: coco_mask.encode(fortran),
            "encode as called": lambda: coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8)),
            "Mask.rle": lambda: Mask(mask).rle,
        }, rounds)
        rows.append({
            "mask": name,
            "exact": bool(np.array_equal(polygon_to_mask(polygon, *mask.shape), mask)),
            "same RLE": Mask(mask).rle["counts"] == coco_mask.encode(fortran)["counts"].decode(),
            "vertices": sum(len(ring) for part in polygon.parts for ring in part),
            "ms": {key: value * 1000 for key, value in medians.items()},
        })
    return rows


def platforms(rounds: int, count: int = 50) -> dict:
    arrays = instances(count, seed=2)
    views = [mask.view(np.uint8) for mask in arrays]
    fortrans = [np.asfortranarray(view) for view in views]
    spec = ModelSpec(classes=[ClassSpec(name="instance", kind="mask")])
    v7, labelbox, ango = V7Section(), LabelboxSection(), AngoSection()

    def fresh() -> list[Prediction]:
        return [Prediction("instance", Mask(mask), 0.9) for mask in arrays]

    contenders = {
        "findContours x50": lambda: [cv2.findContours(v, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE) for v in views],
        "encode x50": lambda: [coco_mask.encode(f) for f in fortrans],
        "V7 to_results": lambda: to_results(fresh(), spec, v7, 0.0),
        "Labelbox to_answer": lambda: labelbox_answer(fresh(), spec, labelbox, size=(HEIGHT, WIDTH)),
        "Ango to_answer": lambda: ango_answer(fresh(), spec, ango, None, 0.0),
        "V7 to_results tol 0.5": lambda: to_results(fresh(), spec, v7, 0.5),
        "Ango to_answer tol 0.5": lambda: ango_answer(fresh(), spec, ango, None, 0.5),
    }
    ms = {key: value * 1000 for key, value in interleaved(contenders, rounds).items()}
    floor = 2 * ms["findContours x50"] + ms["encode x50"]
    ours = ms["V7 to_results"] + ms["Labelbox to_answer"] + ms["Ango to_answer"]
    return {"masks": count, "ms": ms, "floors added up": floor, "three answers": ours, "ratio": ours / floor,
            "three answers tol 0.5": ms["V7 to_results tol 0.5"] + ms["Labelbox to_answer"]
            + ms["Ango to_answer tol 0.5"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="interleaved rounds per mask (20 for the 50 masks)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    rows = per_mask(args.rounds)
    print(f"{'mask':<30} {'findContours':>12} {'mask_to_polygon':>17} {'tol 0.5':>14} {'polygon_to_mask':>16} "
          f"{'encode':>8} {'as called':>15} {'Mask.rle':>15}  exact")
    for row in rows:
        ms = row["ms"]
        fc, enc = ms["findContours"], ms["encode"]
        print(f"{row['mask']:<30} {fc:>9.3f} ms {ms['mask_to_polygon']:>8.3f} {ms['mask_to_polygon'] / fc:>6.2f}x "
              f"{ms['mask_to_polygon tol 0.5'] / fc:>13.1f}x {ms['polygon_to_mask'] / fc:>15.1f}x {enc:>8.3f} "
              f"{ms['encode as called'] / enc:>14.2f}x {ms['Mask.rle'] / enc:>14.2f}x  "
              f"{'yes' if row['exact'] and row['same RLE'] else 'NO'}")
    print("(mask_to_polygon, tol 0.5 and polygon_to_mask: x findContours; as called and Mask.rle: x encode)\n")

    answers = platforms(max(args.rounds // 10, 5))
    ms = answers["ms"]
    print(f"{answers['masks']} instance masks, 1920x1080, to all three platforms' answers (tolerance 0):")
    for key, value in ms.items():
        print(f"  {key:<24} {value:>8.2f} ms")
    print(f"  floors added up (2 x findContours + encode): {answers['floors added up']:.2f} ms; "
          f"the three answers: {answers['three answers']:.2f} ms = {answers['ratio']:.2f}x "
          f"(with tolerance 0.5: {answers['three answers tol 0.5'] / answers['floors added up']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"per_mask": rows, "platforms": answers}, indent=2))


if __name__ == "__main__":
    main()
