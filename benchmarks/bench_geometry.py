"""How fast are the bridge's mask conversions, against OpenCV's and pycocotools' nearest equivalents?

    python benchmarks/bench_geometry.py [--rounds 40] [--only NAME ...] [--json results.json]

Every comparison runs in the same process, interleaved round by round (each round calls every contender
once, in turn), and reports medians and the ratio of ours to its peer: a busy machine slows all contenders
alike, and the ratios are what to compare between machines. Nothing is asserted (the goal, issue 18: every
step at most 2x its peer).

Masks: the smooth blobs (1920x1080 with a small and a large disk, 30 disks in 1000x1000, coins > Otsu) and
the worst cases: a blob whose rim touches at corners ("jagged"), uniform noise (500x500, as in the issue),
many small parts ("specks", 2000x1500), and 8000x6000 ones (a large disk with two holes, and noise). Steps
and their peers, on the same mask:

- trace: `mask_to_polygon(mask)` (exact pixel edges, 4-connected parts, holes) against
  `cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_SIMPLE)` (pixel centres, 8-connected: not exact);
- simplify: `mask_to_polygon(mask, 0.5)` (the default tolerance; parts and holes under `geometry.min_area`
  dropped) against the same findContours followed by `cv2.approxPolyDP(contour, 0.5, True)` on each contour;
- rasterise: `polygon_to_mask` of the exact polygon against `cv2.fillPoly` of the same rings (OpenCV fills
  the pixels an outline touches, so its pixels are not ours: the peer for time only);
- RLE: `Mask(mask).rle` against `pycocotools.mask.encode(np.asfortranarray(mask, dtype=np.uint8))` (as one
  calls it on a model's mask; "strict": encode alone, of a mask already in its Fortran layout);
- crop/clip: a mask predicted on a crop placed back into the full image (`geometry.translate` and `clip`,
  what the core does with V7's auto-annotate box) against numpy pasting it into a zero image.

The 8000x6000 noise mask has ~36 million outline vertices: its trace is refused (`TooComplex`, over
`limits.max_vertices`) before OpenCV would spend minutes on it, so that row reports the refusal alone.

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
from adapters.labelbox.convert import to_answer as labelbox_answer  # noqa: E402
from adapters.labelbox.section import LabelboxSection  # noqa: E402
from adapters.v7.convert import to_results  # noqa: E402
from adapters.v7.section import V7Section  # noqa: E402
from bridge.core.geometry import (  # noqa: E402
    TooComplex,
    clip,
    mask_to_polygon,
    polygon_to_mask,
    translate,
)
from bridge.core.model import ClassSpec, ModelSpec  # noqa: E402
from bridge.core.predictions import Mask, Polygon, Prediction  # noqa: E402

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


def masks() -> dict[str, tuple[np.ndarray, int]]:
    """Each mask, and how many times fewer rounds it gets than the lightest (so that every row takes seconds)."""
    from skimage import data
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    thirty = [(rng.uniform(60, 940), rng.uniform(60, 940), rng.uniform(15, 50)) for _ in range(30)]
    large = disks(HEIGHT, WIDTH, [(540, 960, 450)]) & ~disks(HEIGHT, WIDTH, [(450, 850, 60), (650, 1100, 90)])
    coins = data.coins()
    seeds = rng.random((1500, 2000)) < 0.02
    huge = disks(6000, 8000, [(3000, 4000, 2500)]) & ~disks(6000, 8000, [(2500, 3500, 300), (3600, 4700, 400)])
    return {
        "small blob 1920x1080": (disks(HEIGHT, WIDTH, [(300, 400, 30)]), 1),
        "large blob, 2 holes 1920x1080": (large, 1),
        "30 disks 1000x1000": (disks(1000, 1000, thirty), 1),
        "coins > otsu 303x384": (coins > threshold_otsu(coins), 1),
        "jagged blob 1920x1080": (jagged(HEIGHT, WIDTH, 1), 2),
        "noise 500x500": (rng.random((500, 500)) < 0.5, 20),
        "specks 2000x1500": (seeds | np.roll(seeds, 1, axis=0) | np.roll(seeds, 1, axis=1), 20),
        "blob, 2 holes 8000x6000": (huge, 20),
        "noise 8000x6000": (rng.random((6000, 8000)) < 0.5, 100),
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


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int,
                best: dict[str, float] | None = None) -> dict[str, float]:
    """Median seconds per call of each contender, calling each once per round, in turn (and into `best`, the
    fastest call of each: what a busy machine disturbs least)."""
    for call in contenders.values():
        call()  # warm up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    if best is not None:
        best |= {name: min(values) for name, values in times.items()}
    return {name: statistics.median(values) for name, values in times.items()}


def refused(mask: np.ndarray) -> Callable[[], None]:
    def trace() -> None:
        try:
            mask_to_polygon(mask)
        except TooComplex:
            return
        raise AssertionError("the trace was not refused")

    return trace


def paste(part: np.ndarray, top: int, left: int, shape: tuple[int, int]) -> np.ndarray:
    whole = np.zeros(shape, bool)
    whole[top:top + part.shape[0], left:left + part.shape[1]] = part
    return whole


def rings_of(polygon: Polygon) -> list[np.ndarray]:
    return [ring.astype(np.int32).reshape(-1, 1, 2) for part in polygon.parts for ring in part]


def contenders(mask: np.ndarray) -> tuple[dict[str, Callable[[], object]], dict]:
    """Every step and its peer on one mask (`ours: step`, `peer: step`), and what the exact results say."""
    view, fortran = mask.view(np.uint8), np.asfortranarray(mask.view(np.uint8))
    height, width = mask.shape
    top, left = height // 4, width // 4
    part = mask[top:, left:]
    calls: dict[str, Callable[[], object]] = {
        "peer: crop/clip": lambda: paste(part, top, left, mask.shape),
        "ours: crop/clip": lambda: clip(translate(Mask(part), left, top, mask.shape), width, height),
        "peer: RLE": lambda: coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8)),
        "strict: RLE": lambda: coco_mask.encode(fortran),
        "ours: RLE": lambda: Mask(mask).rle,
    }
    facts = {"same RLE": Mask(mask).rle["counts"] == coco_mask.encode(fortran)["counts"].decode()}
    try:
        polygon = mask_to_polygon(mask)
    except TooComplex as too_many:
        calls["ours: trace (refused)"] = refused(mask)
        facts["vertices"] = too_many.vertices
        return calls, facts
    rings = rings_of(polygon)
    calls |= {
        "peer: trace": lambda: cv2.findContours(view, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE),
        "ours: trace": lambda: mask_to_polygon(mask),
        "peer: simplify": lambda: [cv2.approxPolyDP(contour, 0.5, True) for contour in
                                   cv2.findContours(view, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0]],
        "ours: simplify": lambda: mask_to_polygon(mask, 0.5),
        "peer: rasterise": lambda: cv2.fillPoly(np.zeros(mask.shape, np.uint8), rings, 1),
        "ours: rasterise": lambda: polygon_to_mask(polygon, height, width),
    }
    facts |= {"exact": bool(np.array_equal(polygon_to_mask(polygon, height, width), mask)),
              "vertices": sum(len(ring) for ring in rings)}
    return calls, facts


STEPS = ("trace", "simplify", "rasterise", "RLE", "crop/clip")


def per_mask(rounds: int, only: list[str]) -> list[dict]:
    rows = []
    for name, (mask, lighter) in masks().items():
        if only and not any(word in name for word in only):
            continue
        calls, facts = contenders(mask)
        best: dict[str, float] = {}
        ms = {key: value * 1000 for key, value in interleaved(calls, max(rounds // lighter, 3), best).items()}
        ratios = {step: ms[f"ours: {step}"] / ms[f"peer: {step}"] for step in STEPS if f"peer: {step}" in ms}
        best_ratios = {step: best[f"ours: {step}"] / best[f"peer: {step}"] for step in ratios}
        rows.append({"mask": name, "ms": ms, "ratios": ratios, "best ratios": best_ratios, **facts})
        print(row_line(rows[-1]), flush=True)
    return rows


def row_line(row: dict) -> str:
    ms, ratios = row["ms"], row["ratios"]
    cells = [f"{row['mask']:<30}"]
    for step in STEPS:
        if step in ratios:
            cells.append(f"{ms[f'peer: {step}']:>8.2f} ms {ratios[step]:>5.2f}x ({row['best ratios'][step]:.2f})")
        elif step == "trace":
            cells.append(f"{'refused in':>11} {ms['ours: trace (refused)']:>6.1f} ms")
        else:
            cells.append(f"{'-':>25}")
    cells.append(f"{ms['strict: RLE']:>8.2f} ms {ms['ours: RLE'] / ms['strict: RLE']:>5.2f}x")
    exact = "n/a" if "exact" not in row else "yes" if row["exact"] and row["same RLE"] else "NO"
    return "  ".join(cells) + f"  {row['vertices']:>9}  {exact}"


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
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds for the lightest masks (fewer "
                                                               "for heavy ones; the 50 masks get a tenth)")
    parser.add_argument("--only", nargs="*", default=[], help="masks whose name holds one of these words")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    print(f"{'mask':<30}  " + "  ".join(f"{step + ': peer, ours x (best)':>25}" for step in STEPS)
          + f"  {'strict encode':>17}  {'vertices':>9}  exact")
    rows = per_mask(args.rounds, args.only)
    print("(peers: findContours; findContours + approxPolyDP; fillPoly; encode as called; numpy paste. x: ratio of "
          "medians; (best): of the fastest calls. strict encode: of a Fortran mask, against our RLE)\n")
    answers = None
    if not args.only:
        answers = platforms(max(args.rounds // 4, 5))
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
