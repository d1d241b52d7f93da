"""Geometry of the neutral format: masks, polygons, RLE, boxes, crops and clipping.

Property-style: many masks (hand-made edge cases and seeded random ones) go mask -> polygon -> mask and must
come back exactly when no simplification is asked for. Sizes stay small so the whole file runs in seconds.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from pycocotools import mask as coco_mask
from skimage.measure import label

from bridge.core.geometry import (
    MIN_AREA,
    bounding_box,
    clip,
    crop,
    ellipse_points,
    mask_to_polygon,
    polygon_to_mask,
    rasterize,
    rotated_box_corners,
    to_polygon,
    to_shapely,
    translate,
)
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Node,
    Point,
    Polygon,
    RotatedBox,
    Skeleton,
    Tag,
    Vector,
)

# --- masks to try ---------------------------------------------------------------------------------------------


def disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def donut(h: int = 40, w: int = 40) -> np.ndarray:
    return disk(h, w, h / 2, w / 2, min(h, w) / 2.5) & ~disk(h, w, h / 2, w / 2, min(h, w) / 6)


def island_in_hole() -> np.ndarray:
    """A square frame with a square island inside its hole, and a pixel island inside the island's hole."""
    m = np.zeros((30, 30), bool)
    m[2:28, 2:28] = True
    m[6:24, 6:24] = False  # hole
    m[9:21, 9:21] = True  # island in the hole
    m[12:18, 12:18] = False  # hole in the island
    m[14, 14] = True  # one-pixel island in that hole
    return m


def several_blobs() -> np.ndarray:
    m = disk(50, 60, 12, 12, 8) | disk(50, 60, 35, 40, 10)
    m[40:45, 2:20] = True
    m[2:5, 50:58] = True
    return m


def one_pixel(h: int, w: int, i: int, j: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[i, j] = True
    return m


def checkerboard(h: int = 7, w: int = 9) -> np.ndarray:
    """Every pixel touches its neighbours only at corners."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(bool)


def hole_touching_at_corner() -> np.ndarray:
    """A ring whose hole touches the outside at one corner point only (a valid but tricky topology)."""
    m = np.ones((6, 6), bool)
    m[1:3, 1:3] = False  # hole
    m[3:, 3:] = False  # a notch touching the hole's corner diagonally
    return m


def border_frame(h: int = 12, w: int = 17) -> np.ndarray:
    """Touches all four borders; its hole is the inside."""
    m = np.ones((h, w), bool)
    m[1:-1, 1:-1] = False
    return m


EDGE_CASES = {
    "donut": donut(),
    "island_in_hole": island_in_hole(),
    "several_blobs": several_blobs(),
    "one_pixel": one_pixel(5, 5, 2, 3),
    "one_pixel_corner": one_pixel(4, 6, 0, 0),
    "one_pixel_far_corner": one_pixel(4, 6, 3, 5),
    "one_by_one_full": np.ones((1, 1), bool),
    "one_by_one_empty": np.zeros((1, 1), bool),
    "diagonal_pair": np.eye(2, dtype=bool),
    "anti_diagonal": np.fliplr(np.eye(5, dtype=bool)),
    "checkerboard": checkerboard(),
    "hole_touching_at_corner": hole_touching_at_corner(),
    "border_frame": border_frame(),
    "touches_every_border": disk(21, 21, 10, 10, 10.5),
    "full": np.ones((9, 13), bool),
    "empty": np.zeros((9, 13), bool),
    "single_row": np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1]], bool),
    "single_column": np.array([[1], [0], [1], [1]], bool),
}


def random_masks(count: int, seed: int) -> list[np.ndarray]:
    """Noise at several densities and sizes, plus smoothed noise (blobs with holes)."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(count):
        h, w = rng.integers(1, 24, size=2)
        density = rng.uniform(0.05, 0.95)
        noise = rng.random((h, w)) < density
        masks.append(noise)
        # blobbier shapes: a noise field averaged over its 3x3 neighbourhood, then thresholded
        field = np.pad(rng.random((h, w)), 1, mode="edge")
        smooth = sum(field[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
        masks.append(smooth > rng.uniform(0.4, 0.6))
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


# --- mask -> polygon -> mask ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EDGE_CASES)
def test_mask_polygon_round_trip_is_exact(name):
    mask = EDGE_CASES[name]
    polygon = mask_to_polygon(mask)
    back = polygon_to_mask(polygon, *mask.shape)
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask, err_msg=name)
    # the polygon is valid and its area is exactly the pixel count (outlines run along pixel edges)
    geometry = to_shapely(polygon)
    assert geometry.is_valid
    assert geometry.area == pytest.approx(mask.sum())


def test_random_masks_round_trip_exactly():
    for index, mask in enumerate(random_masks(150, seed=1234)):
        back = polygon_to_mask(mask_to_polygon(mask), *mask.shape)
        assert np.array_equal(back, mask), f"random mask #{index} {mask.shape} did not come back"


def test_empty_mask_has_no_parts_and_full_mask_one_rectangle():
    assert mask_to_polygon(np.zeros((5, 7), bool)).parts == ()
    full = mask_to_polygon(np.ones((5, 7), bool))
    assert len(full.parts) == 1 and len(full.parts[0]) == 1
    assert bounding_box(full) == Box(0, 0, 7, 5)
    assert to_shapely(full).area == 35


def test_donut_keeps_its_hole_and_blobs_are_separate_parts():
    polygon = mask_to_polygon(donut())
    assert len(polygon.parts) == 1 and polygon.has_holes
    assert len(polygon.parts[0]) == 2  # exterior + one hole

    blobs = mask_to_polygon(several_blobs())
    assert len(blobs.parts) == 4 and not blobs.has_holes

    nested = mask_to_polygon(island_in_hole())
    assert len(nested.parts) == 3  # frame, island, one-pixel island
    assert sum(len(part) - 1 for part in nested.parts) == 2  # two holes


def test_diagonal_touching_pixels_stay_separate_parts():
    polygon = mask_to_polygon(np.eye(3, dtype=bool))
    assert len(polygon.parts) == 3
    assert sorted(to_shapely(Polygon((part,))).area for part in polygon.parts) == [1, 1, 1]


def test_pixel_edges_convention():
    """Pixel (row i, column j) covers [j, j+1] x [i, i+1]: a block of pixels is outlined on its edges."""
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:8] = True  # rows 2-4, columns 3-7
    polygon = mask_to_polygon(mask)
    assert bounding_box(polygon) == Box(3, 2, 5, 3)
    ring = polygon.parts[0][0]
    assert {tuple(p) for p in ring.tolist()} == {(3, 2), (8, 2), (8, 5), (3, 5)}
    # no vertex in the middle of a straight edge: a rectangle is 4 points, however many rows it spans
    assert len(ring) == 4
    assert len(mask_to_polygon(np.ones((300, 200), bool)).parts[0][0]) == 4


def test_rings_are_oriented_and_open():
    polygon = mask_to_polygon(donut())
    exterior, hole = polygon.parts[0]
    assert not np.array_equal(exterior[0], exterior[-1])  # open rings
    assert shapely.LinearRing(exterior).is_ccw != shapely.LinearRing(hole).is_ccw


def raw_geometry(polygon: Polygon) -> shapely.Geometry:
    """The rings exactly as given (no `make_valid`): what a platform receives."""
    return shapely.MultiPolygon([shapely.Polygon(part[0], part[1:]) for part in polygon.parts])


# bounded: a few hundred small masks, no deadline (CI machines are slow and shared)
small_masks = arrays(bool, array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20))


@settings(max_examples=300, deadline=None)
@given(small_masks)
def test_any_mask_becomes_a_valid_polygon_that_gives_it_back(mask):
    polygon = mask_to_polygon(mask)
    np.testing.assert_array_equal(polygon_to_mask(polygon, *mask.shape), mask)
    if not mask.any():
        assert polygon.parts == ()
        return
    geometry = raw_geometry(polygon)
    assert geometry.is_valid, shapely.is_valid_reason(geometry)
    assert geometry.area == mask.sum()
    # one part per 4-connected group of pixels; exteriors anticlockwise (in x, y), holes clockwise
    assert len(polygon.parts) == label(mask, connectivity=1).max()
    for exterior, *holes in polygon.parts:
        assert shapely.LinearRing(exterior).is_ccw and not any(shapely.LinearRing(h).is_ccw for h in holes)
    # every vertex is a corner where the outline turns, on the pixel grid
    for ring in (ring for part in polygon.parts for ring in part):
        before, after = ring - np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0) - ring
        assert (np.count_nonzero(before, axis=1) == 1).all() and ((before * after).sum(axis=1) == 0).all()
        assert np.array_equal(ring, np.round(ring))


@settings(max_examples=100, deadline=None)
@given(small_masks, st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_a_mask_in_a_larger_image_gives_the_same_polygon_moved(mask, top, left, bottom, right):
    """The outline depends only on the pixels near it, wherever the mask sits in the image."""
    large = np.pad(mask, ((top, bottom), (left, right)))
    moved = translate(mask_to_polygon(mask), left, top)
    got = mask_to_polygon(large)
    assert len(got.parts) == len(moved.parts)
    assert raw_geometry(got).equals(raw_geometry(moved)) if mask.any() else got.parts == ()


def test_pixels_around_an_empty_pixel_touching_only_at_corners_are_four_parts():
    """The 8-connected view would make one part with a hole touching it at four points (not a valid polygon)."""
    diamond = np.zeros((3, 3), bool)
    diamond[[0, 1, 1, 2], [1, 0, 2, 1]] = True
    polygon = mask_to_polygon(diamond)
    assert len(polygon.parts) == 4 and not polygon.has_holes
    assert raw_geometry(polygon).is_valid
    for name in ("checkerboard", "hole_touching_at_corner", "anti_diagonal", "island_in_hole"):
        assert raw_geometry(mask_to_polygon(EDGE_CASES[name])).is_valid, name


def test_mask_to_polygon_takes_any_array_layout_and_dtype():
    mask = donut(30, 40)
    expected = mask_to_polygon(mask)
    for variant in (np.asfortranarray(mask), mask.astype(np.uint8) * 255, mask[:, ::-1][:, ::-1], mask.T.T):
        assert raw_geometry(mask_to_polygon(variant)).equals(raw_geometry(expected))


# --- simplification ---------------------------------------------------------------------------------------------


def test_simplification_keeps_holes_and_overlap():
    h = w = 120
    shapes = {
        "donut": donut(h, w),
        "blobs": disk(h, w, 30, 30, 20) | disk(h, w, 80, 85, 30),
        "holed_blob": disk(h, w, 60, 60, 50) & ~disk(h, w, 40, 50, 10) & ~disk(h, w, 80, 70, 12),
    }
    for name, mask in shapes.items():
        exact = mask_to_polygon(mask)
        for tolerance in (0.5, 1.0, 2.0):
            simple = mask_to_polygon(mask, tolerance)
            assert to_shapely(simple).is_valid, (name, tolerance)
            assert len(simple.parts) == len(exact.parts), (name, tolerance)
            assert [len(p) for p in simple.parts] == [len(p) for p in exact.parts], (name, tolerance)
            assert sum(len(r) for p in simple.parts for r in p) < sum(len(r) for p in exact.parts for r in p)
            assert iou(polygon_to_mask(simple, h, w), mask) > 0.95, (name, tolerance)


def kept(polygon: Polygon, min_area: float = MIN_AREA) -> Polygon:
    """The parts and holes whose rings enclose at least `min_area` pixels: what a simplified outline keeps."""
    def big(ring: np.ndarray) -> bool:
        return shapely.Polygon(ring).area >= min_area

    return Polygon(tuple((part[0], *filter(big, part[1:])) for part in polygon.parts if big(part[0])))


def test_simplification_of_random_blobs_stays_valid_and_close():
    """Within the tolerance of the exact outline, once parts and holes under `min_area` are dropped."""
    for mask in random_masks(30, seed=7):
        if mask.sum() < 20:
            continue
        simple, exact = mask_to_polygon(mask, 0.5), kept(mask_to_polygon(mask))
        assert raw_geometry(simple).is_valid
        assert len(simple.parts) == len(exact.parts)
        if exact.parts:
            assert shapely.hausdorff_distance(raw_geometry(simple).boundary, raw_geometry(exact).boundary) <= 0.5
            assert iou(polygon_to_mask(simple, *mask.shape), polygon_to_mask(exact, *mask.shape)) > 0.7


# --- polygon -> mask --------------------------------------------------------------------------------------------


def test_polygon_to_mask_with_holes_and_parts():
    square = [(2, 2), (18, 2), (18, 18), (2, 18)]
    hole = [(6, 6), (14, 6), (14, 14), (6, 14)]
    other = [(22, 1), (28, 1), (28, 5), (22, 5)]
    polygon = Polygon(((square, hole), (other,)))
    mask = polygon_to_mask(polygon, 20, 30)
    expected = np.zeros((20, 30), bool)
    expected[2:18, 2:18] = True
    expected[6:14, 6:14] = False
    expected[1:5, 22:28] = True
    np.testing.assert_array_equal(mask, expected)


def test_polygon_to_mask_uses_pixel_centres_and_clips_to_the_image():
    # a triangle: pixel (i, j) is in when its centre (j + .5, i + .5) is inside
    triangle = Polygon.from_ring([(0, 0), (10, 0), (0, 10)])
    mask = polygon_to_mask(triangle, 10, 10)
    ii, jj = np.mgrid[:10, :10]
    np.testing.assert_array_equal(mask, (ii + 0.5) + (jj + 0.5) < 10)
    # partly outside: only the inside part is drawn; wholly outside: nothing
    partly = polygon_to_mask(Polygon.from_ring([(-5, -5), (5, -5), (5, 5), (-5, 5)]), 10, 10)
    assert partly.sum() == 25 and partly[:5, :5].all()
    assert not polygon_to_mask(Polygon.from_ring([(20, 20), (30, 20), (30, 30)]), 10, 10).any()
    assert not polygon_to_mask(Polygon(()), 10, 10).any()


def test_polygon_to_mask_memory_follows_the_rings_not_rings_times_image():
    """Hundreds of small parts in a large image (a noisy mask): no (rings x image) intermediate array."""
    mask = np.zeros((1000, 1000), bool)
    mask[5:1000:40, 5:1000:40] = True  # 625 one-pixel parts spread over the image
    polygon = mask_to_polygon(mask)
    assert len(polygon.parts) == 625
    tracemalloc.start()
    try:
        back = polygon_to_mask(polygon, 1000, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(back, mask)
    assert peak < 20 * 2**20, f"rasterising took {peak / 2**20:.0f} MiB at peak"  # the mask itself is 1 MiB


def test_rasterize_shapes():
    assert rasterize(Box(1, 2, 3, 4), 10, 10).array.sum() == 12
    ellipse = rasterize(Ellipse(50, 50, 30, 10, 0), 100, 100).array
    assert abs(int(ellipse.sum()) - math.pi * 300) < 0.03 * math.pi * 300
    mask = Mask(np.eye(4, dtype=bool))
    assert rasterize(mask, 4, 4) is mask


# --- COCO RLE -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["donut", "island_in_hole", "several_blobs", "one_pixel_corner", "full", "empty",
                                  "checkerboard"])
def test_rle_round_trip(name):
    array = EDGE_CASES[name]
    rle = Mask(array).rle
    assert rle["size"] == list(array.shape)
    assert isinstance(rle["counts"], str) and rle["counts"].isascii()
    # pycocotools reads our RLE back to the same array (as a platform would)
    np.testing.assert_array_equal(coco_mask.decode({**rle, "counts": rle["counts"].encode()}).astype(bool), array)
    np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), array)
    # and a Mask made from the RLE gives the array back, with the same size
    again = Mask.from_rle(rle)
    assert again.size == array.shape
    np.testing.assert_array_equal(again.array, array)
    assert again.rle == rle


def test_rle_of_random_masks_and_bytes_counts():
    for mask in random_masks(20, seed=99):
        encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # counts as bytes
        from_bytes = Mask.from_rle(encoded)
        np.testing.assert_array_equal(from_bytes.array, mask)
        assert isinstance(from_bytes.rle["counts"], str)
        assert from_bytes.rle["counts"] == encoded["counts"].decode()


@settings(max_examples=200, deadline=None)
@given(small_masks, st.integers(0, 6), st.integers(0, 6), st.booleans())
def test_rle_is_exactly_what_pycocotools_encodes(mask, top, bottom, full_height):
    """Any mask, anywhere in the image (blobs touching the top and bottom rows run on into the next column)."""
    if full_height:
        mask = mask | np.eye(*mask.shape, dtype=bool)[::-1]
    array = np.pad(mask, ((top, bottom), (0, 3)))
    expected = coco_mask.encode(np.asfortranarray(array, dtype=np.uint8))
    assert Mask(array).rle == {"size": list(array.shape), "counts": expected["counts"].decode()}


def test_mask_from_uncompressed_rle():
    # column-major runs, starting with zeros: a 3x4 mask with column 1 set and pixel (2, 3)
    expected = np.zeros((3, 4), bool)
    expected[:, 1] = True
    expected[2, 3] = True
    counts = [3, 3, 5, 1]
    mask = Mask.from_rle({"size": [3, 4], "counts": counts})
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.size == (3, 4)
    rle = mask.rle
    assert isinstance(rle["counts"], str)
    np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), expected)


def test_mask_rejects_bad_input():
    with pytest.raises(ValueError):
        Mask()
    with pytest.raises(ValueError):
        Mask(np.zeros((2, 2, 3)))


# --- boxes of shapes ------------------------------------------------------------------------------------------


def test_bounding_box_of_every_shape_kind():
    assert bounding_box(Box(1, 2, 3, 4)) == Box(1, 2, 3, 4)
    mask = np.zeros((20, 20), bool)
    mask[3:7, 5:15] = True
    assert bounding_box(Mask(mask)) == Box(5, 3, 10, 4)
    assert bounding_box(Mask.from_rle(Mask(mask).rle)) == Box(5, 3, 10, 4)
    assert bounding_box(Mask(np.zeros((4, 4), bool))) == Box(0, 0, 0, 0)
    two_parts = Polygon((([(1, 1), (4, 1), (4, 4)],), ([(10, 8), (12, 8), (12, 20)],)))
    assert bounding_box(two_parts) == Box(1, 1, 11, 19)
    assert bounding_box(Polygon(())) == Box(0, 0, 0, 0)
    assert bounding_box(Point(3, 4)) == Box(3, 4, 0, 0)
    assert bounding_box(Line([(1, 9), (5, 2), (7, 4)])) == Box(1, 2, 6, 7)
    skeleton = Skeleton((Node("a", 2, 3), Node("b", 8, 1, True)))
    assert bounding_box(skeleton) == Box(2, 1, 6, 2)
    cuboid = Cuboid(Box(5, 5, 10, 10), Box(8, 2, 10, 10))
    assert bounding_box(cuboid) == Box(5, 2, 13, 13)
    # rotated by 90 degrees a 20x10 box becomes 10 wide, 20 high
    rotated = bounding_box(RotatedBox(50, 40, 20, 10, 90))
    assert (rotated.x, rotated.y, rotated.w, rotated.h) == pytest.approx((45, 30, 10, 20))
    # a 45-degree square of side s has a box of side s * sqrt(2)
    diamond = bounding_box(RotatedBox(0, 0, 10, 10, 45))
    assert (diamond.w, diamond.h) == pytest.approx((10 * math.sqrt(2),) * 2)
    # an ellipse's box: exact extents for an unrotated one, the analytic one for a rotated one
    assert bounding_box(Ellipse(10, 20, 5, 3)) == pytest.approx(Box(5, 17, 10, 6))
    e = bounding_box(Ellipse(0, 0, 10, 4, 30))
    t = math.radians(30)
    half_w = math.hypot(10 * math.cos(t), 4 * math.sin(t))
    half_h = math.hypot(10 * math.sin(t), 4 * math.cos(t))
    assert (e.w, e.h) == pytest.approx((2 * half_w, 2 * half_h), rel=1e-3)
    for shapeless in (Tag(), Vector(30, 4), Classification("yes")):
        with pytest.raises(TypeError):
            bounding_box(shapeless)


# --- rotated boxes and ellipses: degrees, clockwise on screen ---------------------------------------------------


def test_rotated_box_corners_turn_clockwise_on_screen():
    unrotated = rotated_box_corners(RotatedBox(10, 20, 4, 2, 0))
    np.testing.assert_allclose(unrotated, [[8, 19], [12, 19], [12, 21], [8, 21]])  # TL, TR, BR, BL
    # 90 degrees clockwise on screen (y down): the top-left corner goes to the top-right
    turned = rotated_box_corners(RotatedBox(10, 20, 4, 2, 90))
    np.testing.assert_allclose(turned, [[11, 18], [11, 22], [9, 22], [9, 18]], atol=1e-9)
    # the right-hand edge's midpoint, (cx + w/2, cy), moves down (positive y) for a small positive angle
    small = rotated_box_corners(RotatedBox(0, 0, 10, 2, 10))
    right_mid = (small[1] + small[2]) / 2
    assert right_mid[1] > 0 and right_mid[0] == pytest.approx(5 * math.cos(math.radians(10)))
    # the corners stay a w x h rectangle
    corners = rotated_box_corners(RotatedBox(3, 4, 8, 5, 33))
    sides = np.linalg.norm(np.diff(np.vstack([corners, corners[:1]]), axis=0), axis=1)
    np.testing.assert_allclose(sides, [8, 5, 8, 5])
    assert shapely.Polygon(corners).area == pytest.approx(40)


def test_ellipse_points_turn_clockwise_on_screen():
    pts = ellipse_points(Ellipse(100, 50, 20, 5, 0), 8)
    np.testing.assert_allclose(pts[0], [120, 50])  # along +x at angle 0
    np.testing.assert_allclose(pts[2], [100, 55], atol=1e-9)  # then +y: down on screen
    turned = ellipse_points(Ellipse(100, 50, 20, 5, 90), 8)
    np.testing.assert_allclose(turned[0], [100, 70], atol=1e-9)  # the long axis now points down
    # every point lies on the ellipse
    e = Ellipse(7, -3, 9, 4, 25)
    pts = ellipse_points(e, 64) - (e.cx, e.cy)
    t = math.radians(-e.angle)
    local = pts @ np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]).T
    np.testing.assert_allclose((local[:, 0] / 9) ** 2 + (local[:, 1] / 4) ** 2, 1)


def test_to_polygon_of_area_shapes():
    assert to_shapely(to_polygon(Box(1, 1, 4, 3))).area == pytest.approx(12)
    assert to_shapely(to_polygon(RotatedBox(0, 0, 4, 3, 17))).area == pytest.approx(12)
    area = to_shapely(to_polygon(Ellipse(0, 0, 10, 5, 40))).area
    assert area == pytest.approx(math.pi * 50, rel=0.01)
    with pytest.raises(TypeError):
        to_polygon(Point(1, 2))


# --- crop and back ----------------------------------------------------------------------------------------------


def test_crop_snaps_outward_and_clips():
    image = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3)
    part, cut = crop(image, Box(10.4, 20.7, 30.2, 9.1))
    assert cut == Box(10, 20, 31, 10)  # floor the start, ceil the end
    np.testing.assert_array_equal(part, image[20:30, 10:41])
    edge, cut = crop(image, Box(-10, 90, 30, 50))
    assert cut == Box(0, 90, 20, 10) and edge.shape == (10, 20, 3)
    outside, cut = crop(image, Box(200, 200, 10, 10))
    assert outside.size == 0 and cut.w == 0


def test_a_shape_found_in_a_crop_lands_at_its_full_image_place():
    h, w = 120, 160
    full = np.zeros((h, w), bool)
    full[50:70, 90:115] = True  # the object, in full-image pixels
    part, cut = crop(full[:, :, None], Box(80.5, 35.2, 50, 50))
    seen = part[:, :, 0]
    # a "model" on the crop finds the object as a mask, a polygon, a box and a point
    found = [
        Mask(seen),
        mask_to_polygon(seen),
        bounding_box(Mask(seen)),
        Point(*np.argwhere(seen)[0][::-1]),
        Line(np.argwhere(seen)[[0, -1]][:, ::-1]),
        Ellipse(5, 5, 2, 1, 30),
        RotatedBox(5, 5, 2, 1, 30),
        Skeleton((Node("a", 1, 2),)),
        Cuboid(Box(1, 1, 2, 2), Box(2, 2, 2, 2)),
    ]
    moved = [translate(shape, cut.x, cut.y, canvas=(h, w)) for shape in found]
    np.testing.assert_array_equal(moved[0].array, full)  # pasted into the canvas
    assert moved[0].size == (h, w)
    np.testing.assert_array_equal(polygon_to_mask(moved[1], h, w), full)
    assert moved[2] == Box(90, 50, 25, 20)
    assert moved[3] == Point(90, 50)
    np.testing.assert_allclose(moved[4].points, [[90, 50], [114, 69]])
    assert (moved[5].cx, moved[5].cy, moved[5].angle) == (85, 40, 30)
    assert (moved[6].cx, moved[6].cy, moved[6].angle) == (85, 40, 30)
    assert moved[7].nodes[0] == Node("a", 81, 37)
    assert moved[8] == Cuboid(Box(81, 36, 2, 2), Box(82, 37, 2, 2))
    # shapes without geometry are left alone
    for shapeless in (Tag(), Vector(10, 3), Classification("x")):
        assert translate(shapeless, 5, 5) == shapeless


def test_mask_paste_is_cut_at_the_canvas_edges():
    mask = Mask(np.ones((10, 10), bool))
    moved = translate(mask, 15, -3, canvas=(20, 20))
    expected = np.zeros((20, 20), bool)
    expected[0:7, 15:20] = True
    np.testing.assert_array_equal(moved.array, expected)
    assert not translate(mask, 50, 50, canvas=(20, 20)).array.any()
    with pytest.raises(ValueError, match="canvas"):
        translate(mask, 1, 1)


def test_crop_then_translate_round_trip_for_random_masks():
    rng = np.random.default_rng(5)
    for _ in range(25):
        h, w = rng.integers(5, 30, size=2)
        full = rng.random((h, w)) < 0.4
        x, y = rng.uniform(-5, w), rng.uniform(-5, h)
        region = Box(x, y, rng.uniform(1, w), rng.uniform(1, h))
        part, cut = crop(full, region)
        if cut.w == 0 or cut.h == 0:
            continue
        expected = np.zeros_like(full)
        expected[cut.y:cut.y + cut.h, cut.x:cut.x + cut.w] = full[cut.y:cut.y + cut.h, cut.x:cut.x + cut.w]
        np.testing.assert_array_equal(translate(Mask(part), cut.x, cut.y, canvas=(h, w)).array, expected)
        polygon = translate(mask_to_polygon(part), cut.x, cut.y)
        np.testing.assert_array_equal(polygon_to_mask(polygon, h, w), expected)


# --- clip to the image ------------------------------------------------------------------------------------------


def test_clip_boxes():
    assert clip(Box(-5, -5, 10, 10), 100, 50) == Box(0, 0, 5, 5)
    assert clip(Box(90, 40, 20, 20), 100, 50) == Box(90, 40, 10, 10)
    assert clip(Box(10, 10, 5, 5), 100, 50) == Box(10, 10, 5, 5)
    assert clip(Box(100, 10, 5, 5), 100, 50) is None
    assert clip(Box(-10, 10, 5, 5), 100, 50) is None
    assert clip(Box(10, 60, 5, 5), 100, 50) is None
    cuboid = clip(Cuboid(Box(-5, 0, 10, 10), Box(0, 0, 10, 10)), 100, 50)
    assert cuboid == Cuboid(Box(0, 0, 5, 10), Box(0, 0, 10, 10))
    assert clip(Cuboid(Box(-50, 0, 10, 10), Box(0, 0, 10, 10)), 100, 50) is None


def test_clip_polygons():
    sticking_out = Polygon.from_ring([(-10, 10), (30, 10), (30, 30), (-10, 30)],
                                     holes=[[(-5, 15), (5, 15), (5, 25), (-5, 25)]])
    inside = clip(sticking_out, 20, 40)
    assert to_shapely(inside).area == pytest.approx(20 * 20 - 5 * 10)
    assert bounding_box(inside) == Box(0, 10, 20, 20)
    assert clip(Polygon.from_ring([(50, 50), (60, 50), (60, 60)]), 20, 40) is None
    # a polygon cut in two by the border comes back as two parts
    u_shape = Polygon.from_ring([(0, 0), (30, 0), (30, 10), (20, 10), (20, 5), (10, 5), (10, 10), (0, 10)])
    assert len(clip(u_shape, 30, 7).parts) == 1
    c_shape = Polygon.from_ring([(5, 0), (15, 0), (15, 2), (7, 2), (7, 8), (15, 8), (15, 10), (5, 10)])
    assert len(clip(c_shape, 10, 10).parts) == 1
    assert len(clip(translate(c_shape, -8, 0), 10, 10).parts) == 2  # only the arms stay


def test_clip_lines_points_and_the_rest():
    line = clip(Line([(-10, 5), (10, 5), (10, 50)]), 20, 20)
    np.testing.assert_allclose(line.points, [[0, 5], [10, 5], [10, 20]])
    # a line leaving and re-entering keeps its longest piece inside
    zigzag = clip(Line([(1, 1), (1, -5), (5, -5), (5, 15)]), 20, 20)
    np.testing.assert_allclose(zigzag.points, [[5, 0], [5, 15]])
    assert clip(Line([(30, 30), (40, 40)]), 20, 20) is None
    assert clip(Point(5, 5), 20, 20) == Point(5, 5)
    assert clip(Point(20, 20), 20, 20) == Point(20, 20)  # on the border: kept
    assert clip(Point(-1, 5), 20, 20) is None
    assert clip(Point(5, 21), 20, 20) is None
    assert clip(Ellipse(10, 10, 50, 50), 20, 20) == Ellipse(10, 10, 50, 50)  # kept whole
    assert clip(Ellipse(30, 10, 5, 5), 20, 20) is None
    assert clip(RotatedBox(-1, 10, 5, 5, 10), 20, 20) is None
    skeleton = clip(Skeleton((Node("a", -5, 5), Node("b", 30, 25, True))), 20, 20)
    assert skeleton.nodes == (Node("a", 0, 5), Node("b", 20, 20, True))
    assert clip(Mask(np.zeros((4, 4), bool)), 4, 4) is None
    assert clip(Tag(), 4, 4) == Tag()
