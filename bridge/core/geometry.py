"""Geometry conversions shared by every adapter: masks, polygons, RLE, boxes, crops.

Conventions are those of `bridge.core.predictions`: pixel (i, j) covers [j, j+1] x [i, i+1], and a pixel belongs
to a polygon when its centre lies inside it (pycocotools' rasterisation rule). With that rule
`polygon_to_mask(mask_to_polygon(m))` gives back `m` exactly when no simplification is asked for.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import shapely
from pycocotools import mask as coco_mask
from shapely.geometry import MultiPolygon
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.geometry import box as shapely_box

from bridge.core.predictions import (
    Box,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Point,
    Polygon,
    RotatedBox,
    Shape,
    Skeleton,
)

ELLIPSE_POINTS = 64
"""How many vertices approximate an ellipse when a platform has no ellipse."""


# --- shapely <-> neutral ------------------------------------------------------------------------------------


def to_shapely(polygon: Polygon) -> shapely.Geometry:
    """A valid shapely (Multi)Polygon; self-intersections are repaired by `make_valid`."""
    parts = [ShapelyPolygon(part[0], part[1:]) for part in polygon.parts if len(part[0]) >= 3]
    return shapely.make_valid(MultiPolygon(parts)) if parts else ShapelyPolygon()


def from_shapely(geometry: shapely.Geometry) -> Polygon:
    """The polygonal parts of any shapely geometry, rings oriented (lines and points carry no area)."""
    return Polygon(
        tuple(
            (np.asarray(p.exterior.coords)[:-1], *(np.asarray(ring.coords)[:-1] for ring in p.interiors))
            for p in map(shapely.orient_polygons, _polygons(geometry))
        )
    )


def _polygons(geometry: shapely.Geometry):
    for g in shapely.get_parts(geometry):
        if isinstance(g, ShapelyPolygon):
            if not g.is_empty:
                yield g
        elif g.geom_type in ("MultiPolygon", "GeometryCollection"):
            yield from _polygons(g)


def from_rings(rings: list[np.ndarray]) -> Polygon:
    """Parts and holes from a flat list of rings filled even-odd (V7's `path` plus `additional_paths`): a
    ring inside an odd number of others is a hole, whatever order or orientation the rings come in."""
    faces = [shapely.make_valid(ShapelyPolygon(ring)) for ring in rings if len(ring) >= 3]
    return from_shapely(functools.reduce(shapely.symmetric_difference, faces)) if faces else Polygon(())


# --- masks <-> polygons <-> RLE -------------------------------------------------------------------------------


def mask_to_polygon(mask: np.ndarray, tolerance: float = 0.0) -> Polygon:
    """Every connected part of a mask as a polygon part along the pixels' outer edges, holes kept.

    Parts are 4-connected (pixels touching only at a corner are separate parts, and a hole touching the
    outside or another hole at one corner stays a hole), so every ring is simple and the result is a valid
    polygon. Exact: `polygon_to_mask` gives the mask back. OpenCV's `findContours` traces the boundary
    pixels (its one pass over the image is the only work that grows with the image, not the outline), and
    each traced pixel's sides that face out become the outline (`_rings`). `tolerance` (pixels) then
    simplifies the outline, keeping its topology. An empty mask gives no parts.
    """
    import cv2  # here, not at import: importing OpenCV rewrites LD_LIBRARY_PATH and costs start-up time

    inside = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    contours, hierarchy = cv2.findContours(inside, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return Polygon(())
    chains = _Chains.of(contours)
    if len(_pinches(chains, inside)):
        polygon = _four_connected(inside, chains)
    else:
        # no pixels touch only diagonally: OpenCV's 8-connected parts are the 4-connected ones. Its outer
        # borders run counter-clockwise on screen; reversed, exteriors get a positive (shapely CCW) area.
        rings = _rings(chains)
        parent = hierarchy[0, :, 3]
        parts = {k: [rings[k][::-1]] for k in np.flatnonzero(parent < 0)}
        for k in np.flatnonzero(parent >= 0):
            parts[parent[k]].append(rings[k][::-1])
        polygon = Polygon(tuple(tuple(part) for part in parts.values()))
    if tolerance > 0:
        polygon = from_shapely(shapely.make_valid(to_shapely(polygon).simplify(tolerance, preserve_topology=True)))
    return polygon


def _four_connected(inside: np.ndarray, traced: _Chains) -> Polygon:
    """The polygon of a mask in which pixels touch diagonally, from the outline of its background.

    OpenCV joins diagonal neighbours into one part. Traced instead, the background (padded by one pixel
    so that it surrounds everything) is 8-connected and the mask's parts are its 4-connected holes: the
    holes' borders are the parts' exteriors, and the background islands inside a part are its holes. A
    border that passes one corner twice is split there into simple rings (`_split`); each ring's signed area
    then tells an exterior (positive) from a hole.
    """
    import cv2

    x0, y0, x1, y1 = int(traced.x.min()), int(traced.y.min()), int(traced.x.max()), int(traced.y.max())
    background = cv2.compare(inside[y0:y1 + 1, x0:x1 + 1], 0, cv2.CMP_EQ)
    background = cv2.copyMakeBorder(background, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    contours, hierarchy = cv2.findContours(background, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    parent = hierarchy[0, :, 3]
    depth = np.zeros(len(parent), dtype=np.intp)  # 0: the frame's outside, odd: a part's border, even: a hole's
    up = parent.copy()
    while (up >= 0).any():
        depth += up >= 0
        up = np.where(up >= 0, parent[up], -1)
    inner = np.flatnonzero(depth)  # all but the frame's outer border
    chains = _Chains.of([contours[k] for k in inner])
    rings = _rings(chains, (x0 - 1, y0 - 1))
    twice = _passed_twice(chains, _pinches(chains, background), background.shape)
    parts: dict[int, tuple[list, list]] = {}
    for k, ring, level, above, pinched in zip(inner.tolist(), rings, depth[inner].tolist(), parent[inner].tolist(),
                                             twice.tolist()):
        exteriors, holes = parts.setdefault(k if level % 2 else above, ([], []))
        if not pinched:
            (exteriors if level % 2 else holes).append(ring)
            continue
        for loop in _split(ring.tolist()):
            (exteriors if _signed_area(loop) > 0 else holes).append(loop)
    return Polygon(tuple((*exteriors, *holes) for exteriors, holes in parts.values()))


def _split(ring: list[list[int]]) -> list[list[tuple[int, int]]]:
    """The simple rings of a ring that passes some vertices twice (only corners where pixels touch diagonally)."""
    loops, path, seen = [], [], {}
    for vertex in map(tuple, ring):
        if vertex in seen:
            start = seen[vertex]
            loops.append(path[start:])
            for dropped in path[start + 1:]:
                del seen[dropped]
            del path[start + 1:]
        else:
            seen[vertex] = len(path)
            path.append(vertex)
    loops.append(path)
    return loops


def _signed_area(ring: list[tuple[int, int]]) -> float:
    """Positive when the ring runs anticlockwise in x, y (clockwise on screen)."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1])) / 2


# The 8 neighbours of a pixel, clockwise on screen (y down): E, SE, S, SW, W, NW, N, NE.
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1])
_DY = np.array([0, 1, 1, 1, 0, -1, -1, -1])
_DIRECTION = np.zeros(9, dtype=np.intp)  # (dy + 1) * 3 + dx + 1 -> direction (no step, of a 1-pixel contour: 0)
_DIRECTION[(_DY + 1) * 3 + _DX + 1] = np.arange(8)
# A side (E, S, W or N: direction 0, 2, 4, 6) walked with the pixel on the left starts at this corner of it.
_START_X = np.array([1, 0, 0, 0, 0, 0, 1, 0])
_START_Y = np.array([1, 0, 1, 0, 0, 0, 0, 0])
_LONE = 64  # the key of a contour of one pixel


def _side_table() -> tuple[np.ndarray, np.ndarray]:
    """For each (direction in, direction out) of a traced pixel: how many of its sides face out, and which.

    Keyed by `into * 8 + out` (`_LONE`: a contour of one pixel). OpenCV follows a border keeping the outside
    on its right: at each pixel it looks for the next one by turning from the pixel it came from,
    anticlockwise on screen, and every neighbour passed on the way is outside. The sides facing those
    neighbours, in that order, are the outline's stretch along this pixel.
    """
    counts, sides = np.zeros(_LONE + 1, dtype=np.intp), np.zeros((_LONE + 1, 4), dtype=np.intp)
    for key in range(_LONE + 1):
        into, out = divmod(key, 8)
        back, turned = ((into + 4) % 8, (into + 3 - out) % 8 + 1) if key < _LONE else (0, 9)
        facing = [(back - t) % 8 for t in range(1, turned) if (back - t) % 2 == 0]
        counts[key], sides[key, :len(facing)] = len(facing), facing
    return counts, sides.ravel()


_SIDE_COUNT, _SIDES = _side_table()


class _Chains(NamedTuple):
    """OpenCV's contours (CHAIN_APPROX_NONE) as flat 1-D arrays, one entry per traced pixel.

    (1-D throughout: numpy gathers rows of an (N, 2) array tens of times slower than elements.)
    """

    x: np.ndarray
    y: np.ndarray
    ends: np.ndarray  # where each contour ends (exclusive)
    following: np.ndarray  # the next pixel around its own contour
    dx: np.ndarray  # the step to it
    dy: np.ndarray
    key: np.ndarray  # direction in * 8 + direction out, or _LONE

    @classmethod
    def of(cls, contours: Sequence[np.ndarray]) -> _Chains:
        lengths = np.fromiter(map(len, contours), dtype=np.intp, count=len(contours))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        pixels = np.concatenate(contours).reshape(-1, 2)
        x, y = pixels[:, 0].astype(np.intp), pixels[:, 1].astype(np.intp)
        following = np.arange(1, len(x) + 1)
        following[ends - 1] = starts
        dx, dy = x.take(following) - x, y.take(following) - y
        out = _DIRECTION.take(dy * 3 + dx + 4)
        key = _shifted(out, starts, ends) * 8 + out
        key[starts[lengths == 1]] = _LONE
        return cls(x, y, ends, following, dx, dy, key)


def _shifted(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each value's predecessor around its own cycle (cycles laid end to end: [starts[k], ends[k]))."""
    before = np.empty_like(values)
    before[1:] = values[:-1]
    before[starts] = values.take(ends - 1)
    return before


def _pinches(chains: _Chains, image: np.ndarray) -> np.ndarray:
    """The diagonal steps between two pixels whose common neighbours are both outside (0 in `image`).

    There OpenCV's 8-connected tracing joins what 4-connected parts keep apart.
    """
    diagonal = np.flatnonzero(chains.dx & chains.dy)
    width, flat = image.shape[1], image.ravel()
    at = chains.y.take(diagonal) * width + chains.x.take(diagonal)
    beside = (flat.take(at + chains.dx.take(diagonal)) == 0) & (flat.take(at + chains.dy.take(diagonal) * width) == 0)
    return diagonal[beside]


def _passed_twice(chains: _Chains, pinches: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per contour: does it pass the corner of a pinched step twice (so its ring is not simple)?"""
    contour = np.searchsorted(chains.ends, pinches, side="right")
    after = chains.following.take(pinches)
    corners = (shape[0] + 1) * (shape[1] + 1)
    corner = contour * corners + np.maximum(chains.y.take(pinches), chains.y.take(after)) * (shape[1] + 1) \
        + np.maximum(chains.x.take(pinches), chains.x.take(after))
    seen, passes = np.unique(corner, return_counts=True)
    twice = np.zeros(len(chains.ends), dtype=bool)
    twice[seen[passes > 1] // corners] = True
    return twice


def _rings(chains: _Chains, origin: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """The pixel-edge ring around each contour, in one vectorised pass.

    Rings run with the traced pixels on their left, keep only the corners where they turn, and are moved by
    `origin`.
    """
    key = chains.key
    count = _SIDE_COUNT.take(key)
    total = np.cumsum(count)
    pixel = np.repeat(np.arange(len(key)), count)
    side = _SIDES.take((key * 4 - total + count).take(pixel) + np.arange(len(pixel)))
    ring_ends = total.take(chains.ends - 1)
    ring_starts = np.empty_like(ring_ends)
    ring_starts[0], ring_starts[1:] = 0, ring_ends[:-1]
    turns = np.flatnonzero(side != _shifted(side, ring_starts, ring_ends))
    kept, turn_side = pixel.take(turns), side.take(turns)
    corners = np.empty((len(turns), 2))  # float, as Polygon keeps points
    corners[:, 0] = chains.x.take(kept) + _START_X.take(turn_side) + origin[0]
    corners[:, 1] = chains.y.take(kept) + _START_Y.take(turn_side) + origin[1]
    return np.split(corners, np.searchsorted(turns, ring_ends[:-1]))


def polygon_to_mask(polygon: Polygon, height: int, width: int) -> np.ndarray:
    """Rasterise: a pixel is in when its centre is inside (even-odd over all rings, so holes stay open)."""
    mask = np.zeros((height, width), dtype=bool)
    if height == 0 or width == 0:
        return mask
    for ring in (ring for part in polygon.parts for ring in part if len(ring) >= 3):
        # each ring in its own window: memory and time follow the rings' sizes, not rings x image size
        x0 = int(np.clip(np.floor(ring[:, 0].min()), 0, width))
        y0 = int(np.clip(np.floor(ring[:, 1].min()), 0, height))
        x1 = int(np.clip(np.ceil(ring[:, 0].max()), 0, width))
        y1 = int(np.clip(np.ceil(ring[:, 1].max()), 0, height))
        if x1 > x0 and y1 > y0:
            window = [(ring - (x0, y0)).ravel().tolist()]
            mask[y0:y1, x0:x1] ^= coco_mask.decode(coco_mask.frPyObjects(window, y1 - y0, x1 - x0))[:, :, 0] > 0
    return mask


def rasterize(shape: Shape, height: int, width: int) -> Mask:
    """Any area-bearing shape as a mask of the image's size."""
    if isinstance(shape, Mask):
        return shape
    return Mask(polygon_to_mask(to_polygon(shape), height, width))


# --- shapes fitted to outlines (readers of platforms that have no such shape) --------------------------------


def fit_ellipse(outline: np.ndarray) -> Ellipse:
    """The ellipse fitted to an outline's points (least squares, OpenCV); its angle in our degrees."""
    import cv2  # on demand: importing OpenCV edits LD_LIBRARY_PATH, and importing the core must not

    (cx, cy), (width, height), angle = cv2.fitEllipse(np.asarray(outline, dtype=np.float32).reshape(-1, 1, 2))
    return Ellipse(float(cx), float(cy), float(width) / 2, float(height) / 2, float(angle))


def fit_rotated_box(outline: np.ndarray) -> RotatedBox:
    """The smallest rotated box around an outline's points (OpenCV's `minAreaRect`)."""
    import cv2

    (cx, cy), (width, height), angle = cv2.minAreaRect(np.asarray(outline, dtype=np.float32).reshape(-1, 1, 2))
    return RotatedBox(float(cx), float(cy), float(width), float(height), float(angle))


# --- shapes as polygons and boxes -----------------------------------------------------------------------------


def rotated_box_corners(box: RotatedBox) -> np.ndarray:
    """The four corners, clockwise on screen, starting top-left of the unrotated box."""
    half = np.array([[-box.w, -box.h], [box.w, -box.h], [box.w, box.h], [-box.w, box.h]]) / 2
    return half @ _rotation(box.angle).T + (box.cx, box.cy)


def ellipse_points(ellipse: Ellipse, count: int = ELLIPSE_POINTS) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    unit = np.stack([ellipse.rx * np.cos(t), ellipse.ry * np.sin(t)], axis=1)
    return unit @ _rotation(ellipse.angle).T + (ellipse.cx, ellipse.cy)


def _rotation(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s], [s, c]])


def to_polygon(shape: Shape, tolerance: float = 0.0) -> Polygon:
    """Box, rotated box, ellipse or mask as a polygon; a polygon as itself."""
    if isinstance(shape, Polygon):
        return shape
    if isinstance(shape, Mask):
        return mask_to_polygon(shape.array, tolerance)
    if isinstance(shape, Box):
        return Polygon.from_ring([(shape.x, shape.y), (shape.x + shape.w, shape.y),
                                  (shape.x + shape.w, shape.y + shape.h), (shape.x, shape.y + shape.h)])
    if isinstance(shape, RotatedBox):
        return Polygon.from_ring(rotated_box_corners(shape))
    if isinstance(shape, Ellipse):
        return Polygon.from_ring(ellipse_points(shape))
    raise TypeError(f"{type(shape).__name__} has no area to turn into a polygon")


def bounding_box(shape: Shape) -> Box:
    """The smallest axis-aligned box around any geometric shape."""
    if isinstance(shape, Box):
        return shape
    if isinstance(shape, Mask):
        rows, cols = np.nonzero(shape.array)
        if rows.size == 0:
            return Box(0, 0, 0, 0)
        return Box(float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                   float(rows.max() - rows.min() + 1))
    if isinstance(shape, Cuboid):
        return _box_of(np.array([[b.x, b.y] for b in (shape.front, shape.back)]
                                + [[b.x + b.w, b.y + b.h] for b in (shape.front, shape.back)]))
    return _box_of(_vertices(shape))


def _box_of(xy: np.ndarray) -> Box:
    if len(xy) == 0:
        return Box(0, 0, 0, 0)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Box(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def _vertices(shape: Shape) -> np.ndarray:
    if isinstance(shape, Polygon):
        return np.concatenate([part[0] for part in shape.parts]) if shape.parts else np.empty((0, 2))
    if isinstance(shape, Line):
        return shape.points
    if isinstance(shape, Point):
        return np.array([[shape.x, shape.y]])
    if isinstance(shape, Skeleton):
        return np.array([[n.x, n.y] for n in shape.nodes]).reshape(-1, 2)
    if isinstance(shape, RotatedBox):
        return rotated_box_corners(shape)
    if isinstance(shape, Ellipse):
        return ellipse_points(shape, 360)
    raise TypeError(f"{type(shape).__name__} has no geometry")


# --- moving shapes between a crop and the full image ----------------------------------------------------------


def crop(image: np.ndarray, region: Box) -> tuple[np.ndarray, Box]:
    """The part of `image` inside `region`, snapped outward to whole pixels and clipped to the image.

    Returns the crop and the whole-pixel box it was cut at (what `translate` needs to move results back).
    """
    height, width = image.shape[:2]
    x0 = int(np.clip(math.floor(region.x), 0, width))
    y0 = int(np.clip(math.floor(region.y), 0, height))
    x1 = int(np.clip(math.ceil(region.x + region.w), 0, width))
    y1 = int(np.clip(math.ceil(region.y + region.h), 0, height))
    return image[y0:y1, x0:x1], Box(x0, y0, x1 - x0, y1 - y0)


def translate(shape: Shape, dx: float, dy: float, canvas: tuple[int, int] | None = None) -> Shape:
    """Move a shape by (dx, dy). A mask is pasted at (dx, dy) into a canvas of (height, width)."""
    if isinstance(shape, Box):
        return replace(shape, x=shape.x + dx, y=shape.y + dy)
    if isinstance(shape, (RotatedBox, Ellipse)):
        return replace(shape, cx=shape.cx + dx, cy=shape.cy + dy)
    if isinstance(shape, Point):
        return Point(shape.x + dx, shape.y + dy)
    if isinstance(shape, Polygon):
        return Polygon(tuple(tuple(ring + (dx, dy) for ring in part) for part in shape.parts))
    if isinstance(shape, Line):
        return Line(shape.points + (dx, dy))
    if isinstance(shape, Skeleton):
        return Skeleton(tuple(replace(n, x=n.x + dx, y=n.y + dy) for n in shape.nodes))
    if isinstance(shape, Cuboid):
        return Cuboid(translate(shape.front, dx, dy), translate(shape.back, dx, dy))
    if isinstance(shape, Mask):
        if canvas is None:
            raise ValueError("moving a mask needs the canvas size")
        return Mask(_paste(shape.array, int(round(dx)), int(round(dy)), canvas))
    return shape  # tags, classifications, spans, vectors: nothing to move


def _paste(array: np.ndarray, dx: int, dy: int, canvas: tuple[int, int]) -> np.ndarray:
    out = np.zeros(canvas, dtype=bool)
    h, w = array.shape
    y0, x0 = max(dy, 0), max(dx, 0)
    y1, x1 = min(dy + h, canvas[0]), min(dx + w, canvas[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = array[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return out


def clip(shape: Shape, width: int, height: int) -> Shape | None:
    """Keep the part of a shape inside the image; None when nothing of it is left.

    Ellipses and rotated boxes are kept whole when their centre is inside (platforms draw them whole), points
    when inside; skeleton nodes are clamped to the border; of a line cut in pieces the longest piece is kept.
    """
    if isinstance(shape, Box):
        x0, y0 = max(shape.x, 0), max(shape.y, 0)
        x1, y1 = min(shape.x + shape.w, width), min(shape.y + shape.h, height)
        return Box(x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None
    if isinstance(shape, (RotatedBox, Ellipse)):
        return shape if 0 <= shape.cx <= width and 0 <= shape.cy <= height else None
    if isinstance(shape, Point):
        return shape if 0 <= shape.x <= width and 0 <= shape.y <= height else None
    if isinstance(shape, Polygon):
        inside = from_shapely(to_shapely(shape).intersection(shapely_box(0, 0, width, height)))
        return inside if inside.parts else None
    if isinstance(shape, Line):
        inside = shapely.linestrings(shape.points).intersection(shapely_box(0, 0, width, height))
        lines = [g for g in shapely.get_parts(inside) if g.geom_type == "LineString" and not g.is_empty]
        return Line(np.asarray(max(lines, key=lambda g: g.length).coords)) if lines else None
    if isinstance(shape, Skeleton):
        nodes = tuple(replace(n, x=min(max(n.x, 0), width), y=min(max(n.y, 0), height)) for n in shape.nodes)
        return Skeleton(nodes)
    if isinstance(shape, Cuboid):
        front, back = clip(shape.front, width, height), clip(shape.back, width, height)
        return Cuboid(front, back) if front and back else None
    if isinstance(shape, Mask):
        return shape if shape.array.any() else None
    return shape
