"""Conversions that stay bounded (issue 18): a vertex bound that stops a trace before it is built, simplification
that drops specks (`geometry.min_area`) and never leaves an invalid part, rasterising and RLE that match their
definitions exactly, and no step that holds the GIL for long.

The masks are the issue's worst cases: noise, a blob whose rim touches at corners ("jagged"), many small
parts, huge (8000x6000) ones. Nothing here asserts a wall-clock time: the GIL test compares how long a
ticking thread waits beside a conversion with how long it waits beside a job that releases the GIL, in the
same run.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from pycocotools import mask as coco_mask

from bridge.core.errors import ModelFailed
from bridge.core.geometry import (
    MAX_VERTICES,
    MIN_AREA,
    TooComplex,
    ellipse_points,
    mask_to_polygon,
    polygon_to_mask,
    rotated_box_corners,
)
from bridge.core.manifest import Geometry, Limits
from bridge.core.model import ClassSpec, Context, ModelSpec
from bridge.core.predictions import Box, Ellipse, Mask, Polygon, Prediction, RotatedBox, _compressed, _runs
from tests.test_geometry import kept, raw_geometry
from tests.test_service import image_job, run

# --- the issue's masks ------------------------------------------------------------------------------------------


def noise(height: int, width: int, density: float = 0.5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width)) < density


def disk(height: int, width: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def jagged(height: int = 1080, width: int = 1920) -> np.ndarray:
    """A disk whose rim is noise: thousands of pixels there touch only at a corner."""
    rim = disk(height, width, height / 2, width / 3, 200) & ~disk(height, width, height / 2, width / 3, 185)
    return (disk(height, width, height / 2, width / 3, 185)) | (rim & noise(height, width, seed=1))


def specks(height: int = 1500, width: int = 2000) -> np.ndarray:
    """Many small parts: sparse noise, grown a little so that some are larger than `MIN_AREA`."""
    seeds = noise(height, width, 0.02, seed=2)
    return seeds | np.roll(seeds, 1, axis=0) | np.roll(seeds, 1, axis=1)


def huge_blob() -> np.ndarray:
    """8000x6000, a large disk with two holes."""
    height, width = 6000, 8000
    return disk(height, width, 3000, 4000, 2500) & ~disk(height, width, 2500, 3500, 300) & ~disk(
        height, width, 3600, 4700, 400)


def vertices(polygon: Polygon) -> int:
    return sum(len(ring) for part in polygon.parts for ring in part)


# --- limits.max_vertices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [noise(60, 80), jagged(200, 300), noise(1200, 1000)], ids=["small", "jagged",
                                                                                           "large"])
def test_a_trace_past_max_vertices_stops_with_the_exact_count(mask):
    """One vertex over the bound is refused, saying how many there are; at the bound it traces. (A large mask
    is counted before it is traced, a small one while it is.)"""
    count = vertices(mask_to_polygon(mask, max_vertices=None))
    assert vertices(mask_to_polygon(mask, max_vertices=count)) == count
    with pytest.raises(TooComplex) as refused:
        mask_to_polygon(mask, max_vertices=count - 1)
    assert (refused.value.vertices, refused.value.bound) == (count, count - 1)
    assert f"more than {count - 1} (limits.max_vertices)" in str(refused.value)


def test_an_8000x6000_noise_mask_is_refused_before_any_outline_is_built():
    """Millions of vertices: the trace stops before OpenCV traces (which takes minutes on it) and before any
    vertex array exists; what it allocates meanwhile is a few bands of the image (tracemalloc sees numpy's and
    OpenCV's arrays)."""
    mask = noise(6000, 8000)
    tracemalloc.start()
    try:
        with pytest.raises(TooComplex) as refused:
            mask_to_polygon(mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.vertices > 30 * MAX_VERTICES and refused.value.bound == MAX_VERTICES
    assert peak < mask.nbytes  # its ~36 million vertices alone would take 580 MB


def test_the_defaults_are_the_manifests():
    assert Limits().max_vertices == MAX_VERTICES and Geometry().min_area == MIN_AREA


class Outlines:
    """Returns, for class `region` (a polygon class), a polygon of `vertices` vertices, or a noise mask of
    `noise` pixels a side to be traced; and one good box."""

    spec = ModelSpec(classes=[ClassSpec(name="region", kind="polygon"), ClassSpec(name="box", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        height, width = image.shape[:2]
        found = [Prediction("box", Box(1, 1, 3, 3), 0.9)]
        if "vertices" in context.params:
            ring = ellipse_points(Ellipse(width / 2, height / 2, width / 3, height / 3), context.params["vertices"])
            found.append(Prediction("region", Polygon.from_ring(ring)))
        if "noise" in context.params:
            found.append(Prediction("region", Mask(noise(height, width, seed=3))))
        if "specks" in context.params:
            mask = disk(height, width, height / 2, width / 2, min(height, width) / 4)
            mask[::7, ::7] = True  # one-pixel specks
            found.append(Prediction("region", Mask(mask)))
        return found


def test_an_absurd_outline_fails_the_request_naming_the_class(make_manifest):
    manifest = make_manifest(model={"factory": "tests.test_geometry_bounds:Outlines"}, limits={"max_vertices": 1000})
    image = np.zeros((60, 80, 3), np.uint8)
    _, (fine, many, traced) = run(manifest, image_job(image, params={"vertices": 1000}),
                                  image_job(image, params={"vertices": 1001}), image_job(image, params={"noise": 1}))
    assert [p.label for p in fine.predictions] == ["box", "region"]
    assert isinstance(many, ModelFailed) and many.message == (
        "the model returned a bad prediction: class 'region' has a polygon of 1001 vertices, more than 1000 "
        "(limits.max_vertices)")
    assert isinstance(traced, ModelFailed) and traced.message.startswith(
        "the model returned a bad prediction: class 'region' returned a mask for a polygon class: its outline has ")
    assert traced.message.endswith("vertices, more than 1000 (limits.max_vertices)")


@pytest.mark.parametrize("geometry, specks_kept", [
    ({"simplify_tolerance": 0.5}, False),  # min_area: 4 by default
    ({"simplify_tolerance": 0.5, "min_area": 0}, True),
    ({"simplify_tolerance": 0, "min_area": 100}, True),  # exact: nothing is dropped
])
def test_geometry_min_area_drops_specks_of_a_simplified_outline(make_manifest, geometry, specks_kept):
    manifest = make_manifest(model={"factory": "tests.test_geometry_bounds:Outlines"}, geometry=geometry)
    _, (result,) = run(manifest, image_job(np.zeros((70, 90, 3), np.uint8), params={"specks": 1}))
    (region,) = [p.shape for p in result.predictions if p.label == "region"]
    one_pixel = [part for part in region.parts if shapely.Polygon(part[0]).area == 1]
    assert bool(one_pixel) == specks_kept
    assert any(shapely.Polygon(part[0]).area > 100 for part in region.parts)  # the disk stays


# --- simplification ------------------------------------------------------------------------------------------


small_masks = arrays(bool, array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24))


@settings(max_examples=200, deadline=None)
@given(small_masks, st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([0.0, MIN_AREA, 10.0]))
def test_a_simplified_outline_is_valid_close_and_keeps_what_is_not_small(mask, tolerance, min_area):
    """Every part valid, every ring simple; the boundary within the tolerance of the exact one minus parts and
    holes under `min_area`, which alone are dropped; no part collapses to a sliver."""
    simple, exact = mask_to_polygon(mask, tolerance, min_area=min_area), kept(mask_to_polygon(mask), min_area)
    assert len(simple.parts) == len(exact.parts)
    assert [len(part) for part in simple.parts] == [len(part) for part in exact.parts]
    for part, whole in zip(simple.parts, exact.parts):
        polygon = shapely.Polygon(part[0], part[1:])
        assert polygon.is_valid, shapely.is_valid_reason(polygon)
        assert all(shapely.LinearRing(ring).is_simple for ring in part)
        assert polygon.area >= shapely.Polygon(whole[0], whole[1:]).area / 2 - 2 * tolerance * len(part)
    if exact.parts:
        moved = shapely.hausdorff_distance(raw_geometry(simple).boundary, raw_geometry(exact).boundary)
        assert moved <= tolerance + 1e-9


def test_simplifying_the_issues_masks_keeps_parts_valid_and_holes_kept():
    for mask in (noise(300, 300), jagged(400, 500), specks(300, 400)):
        simple, exact = mask_to_polygon(mask, 0.5), kept(mask_to_polygon(mask))
        assert len(simple.parts) == len(exact.parts) and simple.has_holes == exact.has_holes
        assert shapely.is_valid([shapely.Polygon(p[0], p[1:]) for p in simple.parts]).all()
        assert vertices(simple) < vertices(exact)


# --- rasterising: pixel centres, exactly ------------------------------------------------------------------------


@st.composite
def outlines(draw) -> Polygon:
    """Rotated boxes and ellipses, some holding a hole, anywhere (partly outside the 40x50 image too)."""
    def shape():
        cx, cy = draw(st.floats(-10, 60)), draw(st.floats(-10, 50))
        a, b, angle = draw(st.floats(1, 25)), draw(st.floats(1, 25)), draw(st.floats(0, 360))
        if draw(st.booleans()):
            return rotated_box_corners(RotatedBox(cx, cy, a, b, angle)), (cx, cy, min(a, b))
        return ellipse_points(Ellipse(cx, cy, a, b, angle), draw(st.integers(3, 40))), (cx, cy, min(a, b))

    parts = []
    for _ in range(draw(st.integers(1, 3))):
        ring, (cx, cy, size) = shape()
        hole = ellipse_points(Ellipse(cx, cy, size / 4, size / 5, 30), 12)
        parts.append((ring, hole) if draw(st.booleans()) else (ring,))
    return Polygon(tuple(parts))


@settings(max_examples=150, deadline=None)
@given(outlines())
def test_a_pixel_is_in_when_its_centre_is_inside_even_odd(polygon):
    """Centres within float noise of an edge are left out here: the edge rule is the next test's."""
    height, width = 40, 50
    rows, cols = np.mgrid[:height, :width]
    inside = np.zeros((height, width), bool)
    for ring in (ring for part in polygon.parts for ring in part):  # even-odd over all rings
        inside ^= shapely.contains_xy(shapely.Polygon(ring), cols + 0.5, rows + 0.5)
    edges = shapely.MultiLineString([np.r_[r, r[:1]] for p in polygon.parts for r in p])
    clear = shapely.distance(edges, shapely.points(cols + 0.5, rows + 0.5)) > 1e-6
    np.testing.assert_array_equal(polygon_to_mask(polygon, height, width)[clear], inside[clear])


def test_a_unit_box_covers_one_pixel_and_boxes_sharing_an_edge_share_no_pixel():
    """The top-left rule: a centre on a top or left edge is in, on a bottom or right one out."""
    for x, y in [(0.5, 0.5), (0.0, 0.0), (3.25, 2.5), (2.5, 3.0)]:
        box = Polygon(((np.array([[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]]),),))
        right = Polygon(((np.array([[x + 1, y], [x + 2, y], [x + 2, y + 1], [x + 1, y + 1]]),),))
        one, two = polygon_to_mask(box, 8, 8), polygon_to_mask(right, 8, 8)
        assert one.sum() == 1 and two.sum() == 1 and not (one & two).any(), (x, y)
    # centres on a diagonal bottom-right edge are out; its mirror across that edge takes them
    lower = Polygon(((np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]),),))
    upper = Polygon(((np.array([[2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]),),))
    assert polygon_to_mask(lower, 2, 2).tolist() == [[True, False], [False, False]]
    assert polygon_to_mask(upper, 2, 2).tolist() == [[False, True], [True, True]]


# --- RLE ---------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(small_masks, st.integers(1, 40), st.integers(1, 10))
def test_rle_written_a_slab_and_a_batch_at_a_time_is_pycocotools_own(mask, chunk, batch_size):
    expected = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode()
    assert _compressed(_runs(mask, chunk), batch_size) == expected


def test_rle_of_a_large_noise_mask_is_pycocotools_own():
    mask = noise(1500, 2000)  # 1.5 million runs: several slabs and batches
    assert Mask(mask).rle["counts"] == coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode()


# --- the GIL ------------------------------------------------------------------------------------------------


def longest_wait(work: Callable[[], object]) -> float:
    """The longest a thread of this process, sleeping 1 ms at a time, went without running while `work` ran."""
    stamps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    while len(stamps) < 3:
        time.sleep(0.001)
    start = time.perf_counter()
    work()
    end = time.perf_counter()
    done.set()
    ticker.join()
    return float(np.diff([start, *(s for s in stamps if start < s < end), end]).max())


def releasing(seconds: float) -> Callable[[], None]:
    """CPU work for about `seconds` that releases the GIL (hashlib does, over large buffers)."""
    data = bytes(1 << 22)

    def work() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            hashlib.sha256(data).digest()

    return work


def refused(mask: np.ndarray) -> Callable[[], None]:
    def work() -> None:
        with pytest.raises(TooComplex):
            mask_to_polygon(mask)

    return work


def steps() -> dict[str, Callable[[], object]]:
    """Every step on each of the issue's worst masks: exact trace, simplified trace, rasterising, RLE."""
    work: dict[str, Callable[[], object]] = {}
    for name, mask in {"noise 500x500": noise(500, 500), "jagged 1920x1080": jagged(),
                       "specks 2000x1500": specks(), "blob 8000x6000": huge_blob()}.items():
        exact = mask_to_polygon(mask)
        work |= {f"{name}: trace": lambda m=mask: mask_to_polygon(m),
                 f"{name}: trace, simplify": lambda m=mask: mask_to_polygon(m, 0.5),
                 f"{name}: rasterise": lambda p=exact, s=mask.shape: polygon_to_mask(p, *s),
                 f"{name}: RLE": lambda m=mask: Mask(m).rle}
    huge = noise(6000, 8000)
    work["noise 8000x6000: trace (refused)"] = refused(huge)
    work["noise 8000x6000: RLE"] = lambda: Mask(huge).rle
    return work


def test_no_conversion_step_keeps_other_threads_waiting():
    """A thread of the process never waits more than ~50 ms (10 switch intervals: a pure-Python loop lets
    others in every interval; a long C call that keeps the GIL does not) while any step runs, unless the
    machine itself is that slow: then the bound is three times what the thread waits beside GIL-free work of
    the same length, measured just before. Three tries a step, as a loaded machine may stall one.

    The objects the test session holds are frozen first (`gc.freeze`, as a server does once started): a step
    that builds tens of thousands of parts may set off a full garbage collection, which takes the GIL for as
    long as the heap is large; the test session's heap (hypothesis, every module imported) is not a server's.
    """
    bound = 10 * sys.getswitchinterval()
    slow = {}
    gc.freeze()
    try:
        for name, work in steps().items():
            for _ in range(3):
                baseline = longest_wait(releasing(0.2))
                waited = longest_wait(work)
                if waited <= max(bound, 3 * baseline):
                    break
            else:
                slow[name] = (round(waited * 1000), round(baseline * 1000))
    finally:
        gc.unfreeze()
    assert not slow, f"longest waits (ms) beside each step, and beside GIL-free work: {slow}"
