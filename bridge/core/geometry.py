"""Geometry conversions shared by every adapter: masks, polygons, RLE, boxes, crops.

Conventions are those of `bridge.core.predictions`: pixel (i, j) covers [j, j+1] x [i, i+1], and a pixel belongs
to a polygon when its centre lies inside it; a centre exactly on an edge is in on the shape's top and left
edges and out on its bottom and right ones (the top-left rule of GPU rasterisers), so a 1x1 box covers one
pixel wherever it sits and two shapes sharing an edge never both take a pixel. With that rule `polygon_to_mask(mask_to_polygon(m))`
gives back `m` exactly when no simplification is asked for.

Every conversion of a mask stays near its OpenCV or pycocotools equivalent on any mask (noise, thousands of
parts, 8000x6000), is bounded (`limits.max_vertices`), and lets other threads run: the work is vectorised
over the outline in calls of a few ms, or done by OpenCV and shapely calls that release the GIL.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import shapely
from shapely.geometry import MultiPolygon
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.geometry import box as shapely_box

from bridge.core.errors import ModelFailed
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

MIN_AREA = 4.0
"""Pixels: parts and holes of a simplified outline smaller than this are dropped (`geometry.min_area`)."""
MAX_VERTICES = 500_000
"""Vertices one prediction's outline may have (`limits.max_vertices`): past it a trace stops."""


class TooComplex(ModelFailed):
    """An outline with more vertices than allowed, refused before it is built: a model's fault (500)."""

    def __init__(self, vertices: int, bound: int) -> None:
        super().__init__(f"its outline has {vertices} vertices, more than {bound} (limits.max_vertices)")
        self.vertices, self.bound = vertices, bound


@dataclass(frozen=True)
class Outlines:
    """How masks become outlines, as the manifest says (`Manifest.outlines()`): the one setting every trace of
    the core and of the adapters takes."""

    tolerance: float = 0.0
    """Pixels a traced outline may move (`geometry.simplify_tolerance`; 0: exact pixel edges)."""
    min_area: float = MIN_AREA
    """Pixels: parts and holes of a simplified outline under it are dropped (`geometry.min_area`)."""
    max_vertices: int | None = MAX_VERTICES
    """Vertices one outline may have (`limits.max_vertices`): past it a trace stops (`TooComplex`)."""

    def trace(self, mask: np.ndarray) -> Polygon:
        """`mask_to_polygon` with these settings."""
        return mask_to_polygon(mask, self.tolerance, min_area=self.min_area, max_vertices=self.max_vertices)

    def polygon(self, shape: Shape) -> Polygon:
        """`to_polygon` with these settings."""
        return to_polygon(shape, self.tolerance, min_area=self.min_area, max_vertices=self.max_vertices)


EXACT = Outlines()
"""Outlines along the pixels' edges, nothing simplified."""


def mask_to_polygon(mask: np.ndarray, tolerance: float = 0.0, *, min_area: float = MIN_AREA,
                    max_vertices: int | None = MAX_VERTICES) -> Polygon:
    """Every connected part of a mask as a polygon part along the pixels' outer edges, holes kept.

    Parts are 4-connected (pixels touching only at a corner are separate parts, and a hole touching the
    outside or another hole at one corner stays a hole), so every ring is simple and the result is a valid
    polygon. Exact: `polygon_to_mask` gives the mask back. One `findContours` pass finds the boundary (the
    only work that grows with the image rather than the outline); the rest is vectorised over the outline
    (`_trace`). A `tolerance` (pixels) then simplifies ring by ring (`_simplify`) and drops parts and holes
    of fewer than `min_area` pixels. An outline of more than `max_vertices` vertices raises `TooComplex`
    before it is built. An empty mask gives no parts.
    """
    outline = _trace(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), max_vertices)
    if tolerance > 0:
        outline = _simplify(outline, tolerance, min_area)
    return outline.polygon()


class _Outline(NamedTuple):
    """Rings laid end to end, each part's exterior followed by its holes; every ring runs with the mask on its
    left on screen (exteriors anticlockwise on screen, y down)."""

    xy: np.ndarray  # (V, 2) vertices (pixel corners: integers)
    ends: np.ndarray  # (R,) where each ring ends in `xy` (exclusive)
    exterior: np.ndarray  # (R,) bool: a part's exterior, else a hole of the part before

    def polygon(self) -> Polygon:
        """As a `Polygon`, every ring reversed (exteriors get a positive, shapely CCW, area)."""
        total = len(self.xy)
        coords = self.xy[::-1].astype(np.float64)  # ring k reversed is coords[total - ends[k]:total - starts[k]]
        stops = (total - self.ends).tolist()
        rings = [coords[start:stop] for start, stop in zip(stops, [total, *stops[:-1]])]
        bounds = [*np.flatnonzero(self.exterior).tolist(), len(rings)]
        return _polygon(tuple(tuple(rings[start:stop]) for start, stop in zip(bounds, bounds[1:])))


_EMPTY = _Outline(np.empty((0, 2), np.intp), np.empty(0, np.intp), np.empty(0, bool))


def _polygon(parts: tuple[tuple[np.ndarray, ...], ...]) -> Polygon:
    """A `Polygon` of rings already in its form ((N, 2) float arrays, open, parts not empty), without its
    per-ring conversion: at 1-2 us a ring, that costs as much as tracing a noisy mask."""
    polygon = object.__new__(Polygon)
    object.__setattr__(polygon, "parts", parts)
    return polygon


def _lengths(ends: np.ndarray) -> np.ndarray:
    return np.diff(ends, prepend=0)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ... length - 1 for each length, laid end to end."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _trace(inside: np.ndarray, max_vertices: int | None) -> _Outline:
    """The exact outline of a 0/1 uint8 mask (see `mask_to_polygon`).

    OpenCV traces 8-connected parts and 4-connected holes, and lists each part's outer border then its holes:
    where no two mask pixels touch only at a corner (a pinch), those are the 4-connected parts and holes. A
    mask with pinches is traced from its background instead (`_trace_background`); a sample of rows
    (`_sample`) says which to trace first, so that a textured mask is traced once.
    """
    import cv2  # here, not at import: importing OpenCV rewrites LD_LIBRARY_PATH and costs start-up time

    sides, pinched = _sample(inside)
    if max_vertices is not None and 2 * sides > max_vertices / 2 and (count := _vertex_count(inside)) > max_vertices:
        raise TooComplex(count, max_vertices)  # before tracing: OpenCV takes minutes on millions of specks
    if not pinched:
        contours, hierarchy = cv2.findContours(inside, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        if not contours:
            return _EMPTY
        chains = _Chains.of(contours)
        edges = _Edges.of(chains, max_vertices)
        if not len(_pinches(chains, inside)):
            return _Outline(edges.corners(chains), edges.ring_ends(chains), hierarchy[0, :, 3] < 0)
    return _trace_background(inside, max_vertices)


def _sample(inside: np.ndarray, rows: int = 16) -> tuple[float, bool]:
    """From `rows` pairs of adjacent rows: about how many vertical pixel sides the mask has (a vertex ends
    one, so vertices <= 2 x sides), and whether two pixels there touch only at a corner."""
    height, width = inside.shape
    if height < 2:
        return float(np.count_nonzero(np.diff(inside, axis=1)) + np.count_nonzero(inside[:, [0, -1]])), False
    step = max((height - 1) // rows, 1)
    top, bottom = inside[:-1:step], inside[1::step]
    turns = top[:, 1:] ^ top[:, :-1]
    sides = np.count_nonzero(turns) + np.count_nonzero(top[:, [0, -1]])
    pinched = bool(np.any(turns & (top[:, :-1] ^ bottom[:, 1:] ^ 1) & (top[:, 1:] ^ bottom[:, :-1] ^ 1)))
    return sides * height / len(top), pinched


def _trace_background(inside: np.ndarray, max_vertices: int | None) -> _Outline:
    """The outline of a mask with pinches, traced along its background.

    OpenCV takes the background (padded, so that it surrounds the mask) as 8-connected, so its borders are
    those of the mask's 4-connected parts. A border that passes one corner twice (a hole touching the
    outside or another hole there) is cut into simple rings (`_relink`). Each ring's turn tells a part's
    exterior from a hole, and `_parts` gives each hole its part. `RETR_LIST`: OpenCV's own hierarchy costs
    it more than tracing when one piece of background holds thousands of specks.
    """
    import cv2

    height, width = inside.shape
    background = np.full((height + 2, width + 2), 255, dtype=np.uint8)
    cv2.compare(inside, 0, cv2.CMP_EQ, dst=background[1:-1, 1:-1])
    contours, _ = cv2.findContours(background, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    chains = _Chains.of(contours)
    edges = _Edges.of(chains, None if max_vertices is None else max_vertices + 4)  # the padding's 4 corners
    xy, ends = edges.corners(chains), edges.ring_ends(chains)
    pinches = _pinches(chains, background)
    if len(pinches):
        passes = edges.vertex_after(pinches, chains)
        by_corner = np.argsort(xy[passes, 1] * (width + 3) + xy[passes, 0], kind="stable")
        ring = np.searchsorted(ends, passes.take(by_corner), side="right")
        twice = ring[0::2] == ring[1::2]  # both passes of a corner on one border
        if twice.any():
            index, ends = _relink(xy, ends, passes.take(np.concatenate([by_corner[0::2][twice],
                                                                          by_corner[1::2][twice]])), width + 3)
            xy = xy.take(index, axis=0)
    starts = ends - _lengths(ends)
    # with the background on its left, a border runs clockwise on screen around a part: a positive area in
    # x, y; around a hole, anticlockwise. The padding's own border (the only one reaching x = 0) is dropped.
    low, high = np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)
    kept = np.flatnonzero(low[:, 0] > 0)
    starts, ends = starts.take(kept), ends.take(kept)
    exterior = _twice_areas(xy, starts, ends) > 0
    part = _parts(xy, starts, ends, exterior, inside, low.take(kept, axis=0).min(axis=0),
                  high.take(kept, axis=0).max(axis=0))
    order = np.lexsort((~exterior, part))
    lengths = (ends - starts).take(order)
    index = np.repeat(ends.take(order) - 1, lengths) - _offsets(lengths)  # reversed: the mask on the left
    return _Outline(xy.take(index, axis=0) - 1, np.cumsum(lengths), exterior.take(order))


def _twice_areas(xy: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Twice the signed area (in x, y) of each ring [start, end) of `xy`: positive when it runs anticlockwise
    in x, y (clockwise on screen)."""
    lengths = ends - starts
    index = np.repeat(starts, lengths) + _offsets(lengths)
    following = index + 1
    following[np.cumsum(lengths) - 1] = starts
    x, y = xy[:, 0], xy[:, 1]
    return np.add.reduceat(x.take(index) * y.take(following) - x.take(following) * y.take(index),
                           np.cumsum(lengths) - lengths)


def _parts(xy: np.ndarray, starts: np.ndarray, ends: np.ndarray, exterior: np.ndarray, inside: np.ndarray,
           low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Each ring's part (the rank of its exterior) for rings of `_trace_background` (padded coordinates,
    the mask on their right, all within the corners `low` to `high`).

    The mask pixel just beside a hole belongs to the hole's part. Where the mask is dense in specks, OpenCV's
    4-connected labels (a few ns a pixel) name that part; where a few large parts have holes, a sweep does:
    the first pixel side met going left from a hole's leftmost side, along its row, is a side of the same
    part (its exterior, or another of its holes reaching further left, followed in turn).
    """
    import cv2

    rank = np.cumsum(exterior) - 1
    holes = np.flatnonzero(~exterior)
    if not len(holes):
        return rank
    if rank[-1] == 0:  # one part: every hole is its own
        return np.zeros_like(rank)
    lengths = ends - starts
    (x0, y0), (x1, y1) = low.tolist(), high.tolist()
    if (x1 - x0) * (y1 - y0) < 16 * int(lengths.sum()):  # dense: label the box of the outline
        first, second = xy.take(starts, axis=0), xy.take(starts + 1, axis=0)
        sx, sy = (second - first).T.clip(-1, 1)
        cols, rows = first[:, 0] + (sx - sy - 1) // 2 - 1, first[:, 1] + (sx + sy - 1) // 2 - 1  # on its right
        window = inside[y0 - 1:y1 - 1, x0 - 1:x1 - 1]
        label = cv2.connectedComponents(window, connectivity=4, ltype=cv2.CV_32S)[1][rows - y0 + 1, cols - x0 + 1]
        by_label = np.zeros(int(label.max()) + 1, dtype=np.intp)
        by_label[label[exterior]] = rank[exterior]
        return np.where(exterior, rank, by_label.take(label))
    vertex = np.repeat(starts, lengths) + _offsets(lengths)
    following = vertex + 1
    following[np.cumsum(lengths) - 1] = starts
    x, y, y_next = xy[vertex, 0], xy[vertex, 1], xy[following, 1]
    vertical = np.flatnonzero(y != y_next)
    top, rows = np.minimum(y, y_next).take(vertical), np.abs(y_next - y).take(vertical)
    columns = int(x1) + 1
    side_key = (np.repeat(top, rows) + _offsets(rows)) * columns + np.repeat(x.take(vertical), rows)
    side_ring = np.repeat(np.repeat(np.arange(len(starts)), lengths).take(vertical), rows)
    by_key = np.argsort(side_key, kind="stable")
    side_key, side_ring = side_key.take(by_key), side_ring.take(by_key)
    leftmost = np.where(exterior, -1, np.minimum.reduceat(x, np.cumsum(lengths) - lengths))
    at_left = np.flatnonzero(side_key % columns == leftmost.take(side_ring))
    hole, first = np.unique(side_ring.take(at_left), return_index=True)
    link = np.arange(len(starts))
    link[hole] = side_ring.take(np.searchsorted(side_key, side_key.take(at_left.take(first))) - 1)
    while not exterior.take(link.take(holes)).all():
        link = link.take(link)
    return rank.take(link)


def _relink(xy: np.ndarray, ends: np.ndarray, passes: np.ndarray,
            corner_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Rings cut at corners they pass twice: the new order of the vertices, and where each new ring ends.

    `passes` holds the vertex of each pass through such a corner (two per corner, on one ring). A border
    touches itself there without crossing, so along a ring the pairs of passes nest like parentheses: the
    vertices after a pair's first pass up to its second, less the pairs nested inside, make one new ring, and
    what no pair encloses makes the ring's last one. Cut after every pass, the rings become segments; each
    goes to the innermost pair enclosing it (found by depth, one sort), and sorting them by that ring and by
    position lays every new ring out in order.
    """
    passes = np.sort(passes)
    count = len(passes)
    lengths = _lengths(ends)
    starts = ends - lengths
    ring = np.searchsorted(ends, passes, side="right")
    by_corner = np.lexsort((passes, xy[passes, 1] * corner_columns + xy[passes, 0]))
    opening = np.zeros(count, dtype=bool)
    opening[by_corner[0::2]] = True  # the first of a corner's two passes along its ring
    closes = np.empty(count, dtype=np.intp)  # the pair (its opening pass) each pass belongs to
    closes[by_corner[0::2]] = closes[by_corner[1::2]] = by_corner[0::2]
    run_start = np.r_[True, ring[1:] != ring[:-1]]
    depth = np.cumsum(np.where(opening, 1, -1))  # pairs open after each pass, ring by ring
    depth -= np.repeat((depth - np.where(opening, 1, -1))[run_start], np.diff(np.r_[np.flatnonzero(run_start),
                                                                                     count]))
    # the pair enclosing each pair: the last pass before its opening that opened a pair one level out
    # (within its ring: a pair at depth 2 or more has its enclosing pair after any pass of an earlier ring)
    opens = np.flatnonzero(opening)
    level = depth.take(opens) * count + opens
    by_level = np.argsort(level, kind="stable")
    found = by_level.take(np.searchsorted(level.take(by_level), level - count) - 1)
    parent = np.full(count, -1, dtype=np.intp)
    parent[opens] = np.where(depth.take(opens) > 1, opens.take(found), -1)
    # the segment after each pass runs to the next pass around its ring, inside this pair (or none: -1)
    inside = np.where(opening, np.arange(count), parent.take(closes))
    loop = np.where(inside >= 0, inside, count + ring)  # a new ring: a pair, or what is left of a traced ring
    following = np.arange(1, count + 1)
    following[np.r_[run_start[1:], True]] = np.flatnonzero(run_start)
    order = np.lexsort((passes, loop))
    size = lengths.take(ring)
    segment_length = ((passes.take(following) - passes - 1) % size + 1).take(order)
    segment_ring = ring.take(order)
    whole = np.flatnonzero(np.bincount(ring, minlength=len(ends)) == 0)
    piece_ring = np.concatenate([whole, segment_ring])
    piece_length = np.concatenate([lengths.take(whole), segment_length])
    offset = np.concatenate([np.zeros(len(whole), np.intp), ((passes + 1 - starts.take(ring)) % size).take(order)])
    index = np.repeat(starts.take(piece_ring), piece_length) + (np.repeat(offset, piece_length) + _offsets(
        piece_length)) % np.repeat(lengths.take(piece_ring), piece_length)
    loop_first = np.flatnonzero(np.r_[True, np.diff(loop.take(order)) != 0])
    new_lengths = np.concatenate([lengths.take(whole), np.add.reduceat(segment_length, loop_first)])
    return index, np.cumsum(new_lengths)


def _vertex_count(inside: np.ndarray, band: int = 512) -> int:
    """How many vertices the exact outline has, from the 2x2 pixels around each pixel corner: one where the
    outline turns (an odd count of mask pixels), two where two pixels touch only at that corner. OpenCV's
    elementwise calls, a band of rows at a time, release the GIL."""
    import cv2

    height, width = inside.shape
    count = 0
    for top in range(0, height + 1, band):
        bottom = min(top + band, height + 1)  # corner rows [top, bottom) see pixel rows [top - 1, bottom)
        window = np.zeros((bottom - top + 1, width + 2), dtype=np.uint8)
        window[max(1 - top, 0):bottom - top + (bottom <= height), 1:-1] = inside[max(top - 1, 0):bottom]
        a, b, c, d = window[:-1, :-1], window[:-1, 1:], window[1:, :-1], window[1:, 1:]
        ab, cd = cv2.bitwise_xor(a, b), cv2.bitwise_xor(c, d)
        count += cv2.countNonZero(cv2.bitwise_xor(ab, cd))
        crossed = cv2.bitwise_or(cv2.bitwise_xor(a, d), cv2.bitwise_xor(b, c))
        count += 2 * cv2.countNonZero(cv2.subtract(ab, crossed))
    return count


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


class _Edges(NamedTuple):
    """The outline's pixel sides along the traced pixels, in order, and the sides where it turns.

    Rings run with the traced pixels on their left and keep only the corners where they turn.
    """

    count: np.ndarray  # sides of each traced pixel that face out
    total: np.ndarray  # their running total
    side: np.ndarray  # the direction each side faces
    pixel: np.ndarray  # the traced pixel of each side
    turns: np.ndarray  # the sides that turn from the one before: each starts at a vertex

    @classmethod
    def of(cls, chains: _Chains, max_vertices: int | None) -> _Edges:
        """`TooComplex` past `max_vertices`, before any vertex is built."""
        key = chains.key
        count = _SIDE_COUNT.take(key)
        total = np.cumsum(count)
        pixel = np.repeat(np.arange(len(key)), count)
        side = _SIDES.take((key * 4 - total + count).take(pixel) + np.arange(len(pixel)))
        ring_ends = total.take(chains.ends - 1)
        turns = np.flatnonzero(side != _shifted(side, ring_ends - _lengths(ring_ends), ring_ends))
        if max_vertices is not None and len(turns) > max_vertices:
            raise TooComplex(len(turns), max_vertices)
        return cls(count, total, side, pixel, turns)

    def corners(self, chains: _Chains) -> np.ndarray:
        kept, turn_side = self.pixel.take(self.turns), self.side.take(self.turns)
        xy = np.empty((len(self.turns), 2), dtype=np.intp)
        xy[:, 0] = chains.x.take(kept) + _START_X.take(turn_side)
        xy[:, 1] = chains.y.take(kept) + _START_Y.take(turn_side)
        return xy

    def ring_ends(self, chains: _Chains) -> np.ndarray:
        """Where each contour's ring ends among the vertices."""
        return np.searchsorted(self.turns, self.total.take(chains.ends - 1))

    def vertex_after(self, steps: np.ndarray, chains: _Chains) -> np.ndarray:
        """The vertex at the corner each diagonal step passes: where the first side of the pixel after it
        starts (the outline turns there, so it is a vertex)."""
        after = chains.following.take(steps)
        return np.searchsorted(self.turns, self.total.take(after) - self.count.take(after))


def _simplify(outline: _Outline, tolerance: float, min_area: float) -> _Outline:
    """Each ring simplified on its own by OpenCV (Douglas-Peucker: every vertex stays within `tolerance` of
    the result), after dropping parts and holes of fewer than `min_area` pixels.

    A ring that would collapse (under 3 vertices, or under half its area: a sliver) keeps its exact
    outline, and so does every ring of a part that would no longer be valid (a hole crossing its exterior,
    a ring crossing itself), checked per part by shapely, vectorised. Parts are simplified apart from each
    other: two parts one pixel apart may touch at tolerance 0.5, and overlap above it.
    """
    import cv2

    lengths = _lengths(outline.ends)
    starts = outline.ends - lengths
    following = np.arange(1, len(outline.xy) + 1)
    following[outline.ends - 1] = starts
    x, y = outline.xy[:, 0], outline.xy[:, 1]
    area = np.abs(np.add.reduceat(x * y.take(following) - x.take(following) * y, starts)) / 2
    part = np.cumsum(outline.exterior) - 1
    keep = np.flatnonzero((area >= min_area) & (area >= min_area)[outline.exterior].take(part))
    if not len(keep):
        return _EMPTY
    xy = outline.xy.astype(np.int32)
    exact = [xy[start:end] for start, end in zip(starts.take(keep).tolist(), outline.ends.take(keep).tolist())]
    simple = []
    for ring, size in zip(exact, area.take(keep).tolist()):
        fewer = cv2.approxPolyDP(ring, tolerance, True).reshape(-1, 2)
        simple.append(fewer if len(fewer) >= 3 and abs(cv2.contourArea(fewer)) >= size / 2 else ring)
    sizes = np.fromiter(map(len, simple), dtype=np.intp, count=len(simple))
    rings = shapely.linearrings(np.concatenate(simple), indices=np.repeat(np.arange(len(simple)), sizes))
    exterior = outline.exterior.take(keep)
    part = np.cumsum(exterior) - 1  # a kept hole's exterior is kept: parts stay together
    valid = shapely.is_valid(shapely.polygons(rings, indices=part)).take(part).tolist()
    chosen = [fewer if ok else ring for fewer, ring, ok in zip(simple, exact, valid)]
    ends = np.cumsum(np.fromiter(map(len, chosen), dtype=np.intp, count=len(chosen)))
    return _Outline(np.concatenate(chosen).astype(np.intp), ends, exterior)


def polygon_to_mask(polygon: Polygon, height: int, width: int) -> np.ndarray:
    """Rasterise: a pixel is in when its centre is inside (even-odd over all rings, so holes stay open; a
    centre on an edge by the top-left rule).

    Every edge's crossings with the rows' centre lines, found for all edges at once, pair up along each row
    into runs of pixels, which `np.repeat` writes (at memset speed) a band of rows at a time: work follows
    the outline and the rows it spans, and no single call holds the GIL for long.
    """
    rings = [ring for part in polygon.parts for ring in part if len(ring) >= 3]
    if not rings or not height or not width:
        return np.zeros((height, width), dtype=bool)
    sizes = np.fromiter(map(len, rings), dtype=np.intp, count=len(rings))
    xy = np.concatenate(rings)
    following = np.arange(1, len(xy) + 1)
    following[np.cumsum(sizes) - 1] = np.cumsum(sizes) - sizes
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = x0.take(following), y0.take(following)
    # rows whose centre line y = row + 0.5 an edge crosses, counting its top end and not its bottom one; along
    # a row, pixels whose centre x + 0.5 is in [left crossing, right crossing): the top-left rule
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, height).astype(np.intp)
    rows = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, height).astype(np.intp) - first
    edge = np.flatnonzero(rows > 0)
    rows = rows.take(edge)
    slope = (x1.take(edge) - x0.take(edge)) / (y1.take(edge) - y0.take(edge))
    row = np.repeat(first.take(edge), rows) + _offsets(rows)
    x = np.repeat(x0.take(edge) - y0.take(edge) * slope, rows) + (row + 0.5) * np.repeat(slope, rows)
    by_row = np.argsort(row * (width + 3.0) + np.clip(x, -1, width + 1), kind="stable")
    row, x = row.take(by_row[0::2]), x.take(by_row)  # crossings pair up along each row: even-odd
    start = np.clip(np.ceil(x[0::2] - 0.5), 0, width).astype(np.intp) + row * width
    end = np.clip(np.ceil(x[1::2] - 0.5), 0, width).astype(np.intp) + row * width
    runs = np.flatnonzero(end > start)
    return _fill(start.take(runs), end.take(runs), height, width)


_BAND = 1 << 22
"""Pixels written per call when filling a mask: a few ms, so that other threads get the GIL in between."""


def _fill(start: np.ndarray, end: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (height, width) bool mask set on the runs [start, end) of its flat (row-major) index, increasing.

    The mask starts as fresh zeros (pages the system zeroes on first touch), and only the stretch from each
    band's first run to its last is written."""
    flat = np.zeros(height * width, dtype=np.uint8)
    rows = max(_BAND // width, 1)
    for top in range(0, height, rows):
        first, last = np.searchsorted(start, [top * width, min(top + rows, height) * width])
        if last > first:
            bounds = np.empty(2 * (last - first), dtype=np.intp)
            bounds[0::2], bounds[1::2] = start[first:last], end[first:last]
            flat[bounds[0]:bounds[-1]] = np.repeat((np.arange(len(bounds) - 1) & 1 ^ 1).astype(np.uint8),
                                                   np.diff(bounds))
    return flat.view(bool).reshape(height, width)


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


def to_polygon(shape: Shape, tolerance: float = 0.0, *, min_area: float = MIN_AREA,
               max_vertices: int | None = MAX_VERTICES) -> Polygon:
    """Box, rotated box, ellipse or mask (`mask_to_polygon`) as a polygon; a polygon as itself."""
    if isinstance(shape, Polygon):
        return shape
    if isinstance(shape, Mask):
        return mask_to_polygon(shape.array, tolerance, min_area=min_area, max_vertices=max_vertices)
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
