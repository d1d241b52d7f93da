"""Geometry conversions shared by every adapter: masks, polygons, RLE, boxes, crops.

Conventions are those of `bridge.predictions`: pixel (i, j) covers [j, j+1] x [i, i+1], and a pixel belongs
to a polygon when its centre lies inside it (pycocotools' rasterisation rule). With that rule
`polygon_to_mask(mask_to_polygon(m))` gives back `m` exactly when no simplification is asked for.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import shapely
from pycocotools import mask as coco_mask
from shapely.geometry import MultiPolygon
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.geometry import box as shapely_box

from bridge.predictions import (
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

    Exact by construction: the pixel edges between in and out pixels, merged into straight segments, are
    `polygonize`d by shapely into faces; the faces made of in-pixels are united (they tile the plane, so the
    cheap coverage union applies). Holes, islands in holes and parts touching at a corner all come out right.
    `tolerance` (pixels) then simplifies the outline, keeping its topology. An empty mask gives no parts.
    """
    inside = np.pad(np.asarray(mask, dtype=bool), 1)
    across = inside[1:, 1:-1] != inside[:-1, 1:-1]  # (h+1, w): a horizontal edge from (x, y) to (x+1, y)
    down = inside[1:-1, 1:] != inside[1:-1, :-1]  # (h, w+1): a vertical edge from (x, y) to (x, y+1)
    if not across.any():
        return Polygon(())
    # Segments may meet only at their ends: a straight run breaks where an edge of the other direction touches.
    y, x0, x1 = _runs(across, np.pad(down, ((1, 1), (0, 0))))
    x, y0, y1 = _runs(down.T, np.pad(across.T, ((1, 1), (0, 0))))
    starts = np.concatenate([np.stack([x0, y], 1), np.stack([x, y0], 1)]).astype(np.float64)
    ends = np.concatenate([np.stack([x1, y], 1), np.stack([x, y1], 1)]).astype(np.float64)
    faces = shapely.get_parts(shapely.polygonize(shapely.linestrings(np.stack([starts, ends], axis=1))))
    probe = np.floor(shapely.get_coordinates(shapely.point_on_surface(faces))).astype(np.intp)
    geometry = shapely.coverage_union_all(faces[inside[probe[:, 1] + 1, probe[:, 0] + 1]])
    if tolerance > 0:
        geometry = shapely.make_valid(geometry.simplify(tolerance, preserve_topology=True))
    return from_shapely(geometry)


def _runs(edges: np.ndarray, crossing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of each straight run of unit edges along the rows of `edges`.

    `edges[r, i]` is the edge from point i to point i+1 of row r. `crossing` holds the edges of the other
    direction (`crossing[r, i]`: from point i of row r to point i of row r+1), padded by one row on each side:
    point i of row r is touched by one when `crossing[r, i]` (the edge ending there) or `crossing[r + 1, i]`
    (the edge starting there) is set, and a run breaks at such points.
    """
    rows, cols = np.nonzero(edges)  # row-major: runs are consecutive
    touched = crossing[rows, cols] | crossing[rows + 1, cols]
    continues = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1] + 1) & ~touched[1:]
    first = np.flatnonzero(np.concatenate([[True], ~continues]))
    last = np.concatenate([first[1:] - 1, [len(rows) - 1]])
    return rows[first], cols[first], cols[last] + 1


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
