"""The neutral format: what a model returns, whatever platform asked.

Coordinates are pixels in the full image, origin top-left, x to the right, y down. Pixel (row i, column j)
covers the square [j, j+1] x [i, i+1]: a polygon around a 10x10 block of pixels starting at (0, 0) runs from
(0, 0) to (10, 10). Angles are degrees, clockwise on screen (y points down). Point lists are float arrays of
shape (N, 2), never one Python object per point. Shapes are immutable values; a `Mask` converts lazily
between an array and COCO RLE and keeps whichever forms it has computed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from pycocotools import mask as coco_mask


def points(data: Any) -> np.ndarray:
    """An (N, 2) float array from anything array-like: [[x, y], ...] or a flat [x, y, x, y, ...]."""
    array = np.asarray(data, dtype=np.float64)
    if array.ndim == 1 and array.size % 2 == 0:
        array = array.reshape(-1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {array.shape}")
    return array


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box: top-left corner, width and height."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class RotatedBox:
    """A box of width and height about its centre, turned by `angle` degrees (clockwise on screen)."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float


@dataclass(frozen=True, slots=True, eq=False)
class Polygon:
    """One or more parts; each part is its exterior ring followed by zero or more holes.

    Rings are open (the last point is not a copy of the first), as (N, 2) float arrays.
    """

    parts: tuple[tuple[np.ndarray, ...], ...]

    def __post_init__(self) -> None:
        parts = tuple(tuple(points(ring) for ring in part) for part in self.parts)
        object.__setattr__(self, "parts", tuple(part for part in parts if part))

    @classmethod
    def from_ring(cls, exterior: Any, holes: Any = ()) -> Polygon:
        """A single-part polygon from its exterior and holes."""
        return cls(((exterior, *holes),))

    @property
    def has_holes(self) -> bool:
        return any(len(part) > 1 for part in self.parts)


@dataclass(frozen=True, slots=True, eq=False)
class Mask:
    """A binary mask of the image's size, held as a (H, W) bool array and/or COCO RLE, converted lazily."""

    _array: np.ndarray | None = None
    _rle: dict | None = None

    def __post_init__(self) -> None:
        if self._array is None and self._rle is None:
            raise ValueError("a Mask needs an array or an RLE")
        if self._array is not None:
            array = np.asarray(self._array)
            if array.ndim != 2:
                raise ValueError(f"a mask array must be 2-D (H, W), got shape {array.shape}")
            object.__setattr__(self, "_array", array.astype(bool, copy=False))

    @classmethod
    def from_rle(cls, rle: dict) -> Mask:
        """From COCO RLE: {"size": [h, w], "counts": str | bytes | list[int]}."""
        return cls(_rle=rle)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            rle = self._rle
            if isinstance(rle["counts"], list):  # uncompressed RLE
                rle = coco_mask.frPyObjects(rle, *rle["size"])
            object.__setattr__(self, "_array", coco_mask.decode(rle).astype(bool))
        return self._array

    @property
    def rle(self) -> dict:
        """Compressed COCO RLE with `counts` as an ASCII string, ready for JSON."""
        rle = self._rle
        if rle is None or not isinstance(rle["counts"], str):
            if rle is None:
                rle = {"size": self.array.shape, "counts": _rle_string(self.array)}
            elif isinstance(rle["counts"], list):
                rle = {"size": rle["size"], "counts": _compressed([np.asarray(rle["counts"])])}
            else:
                rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            rle = {"size": [int(n) for n in rle["size"]], "counts": rle["counts"]}
            object.__setattr__(self, "_rle", rle)
        return rle

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        if self._array is not None:
            return self._array.shape
        return tuple(self._rle["size"])


def _rle_string(array: np.ndarray) -> str:
    """COCO's compressed RLE counts of a bool mask, as `pycocotools.mask.encode` writes them."""
    return _compressed(_runs(array))


_CHUNK = 1 << 20
"""Pixels per step of finding a mask's runs: a huge mask never needs them all at once."""
_BATCH = 1 << 18
"""Runs per pycocotools call compressing them: a few ms each, holding the GIL (pycocotools does)."""


def _runs(array: np.ndarray, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """The runs of a bool mask down its columns, 0s first (`pycocotools.mask.encode`'s uncompressed counts), a
    slab of about `chunk` pixels of columns at a time.

    Work follows the mask's columns that have set pixels, not the image: one vectorised scan finds them, and
    only those are read again, turned column-major (what RLE runs along) by OpenCV's fast transpose.
    """
    import cv2  # here, not at import: importing OpenCV rewrites LD_LIBRARY_PATH and costs start-up time

    height, width = array.shape
    columns = np.flatnonzero(array.any(axis=0))
    last, value = 0, 0  # where the current run starts, and its value
    if columns.size:
        c0, c1 = int(columns[0]), int(columns[-1]) + 1
        step = max(chunk // height, 1)
        for left in range(c0, c1, step):
            slab = array[:, left:min(left + step, c1)].view(np.uint8)
            flat = (cv2.transpose(slab) if slab.strides[1] == 1 else np.ascontiguousarray(slab.T)).ravel()
            changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1 + left * height
            if flat[0] != value:
                changes = np.r_[left * height, changes]
            if len(changes):
                yield np.diff(changes, prepend=last)
                last = int(changes[-1])
            value = int(flat[-1])
        if value:
            yield np.array([c1 * height - last])
            last = c1 * height
    if last < height * width:
        yield np.array([height * width - last])


def _compressed(runs: Iterable[np.ndarray], batch_size: int = _BATCH) -> str:
    """COCO's compressed string of uncompressed counts, by pycocotools, about `batch_size` counts a call.

    A count is written relative to the one two before it (from the fourth on), so each batch is encoded
    after the three counts before it, whose characters (written as they stand) are then dropped.
    """
    def encode(counts: np.ndarray) -> str:
        return coco_mask.frPyObjects({"size": [1, 1], "counts": counts}, 1, 1)["counts"].decode("ascii")

    pieces, lead, batch = [], np.empty(0, dtype=np.uint32), []
    for counts in itertools.chain(runs, [None]):  # None: the end, to write what is left
        if counts is not None:
            batch.append(counts)
            if sum(map(len, batch)) < batch_size:
                continue
        if batch:
            counts = np.concatenate(batch).astype(np.uint32)
            for start in range(0, len(counts), batch_size):
                part = np.concatenate([lead, counts[start:start + batch_size]])
                pieces.append(encode(part)[len(encode(lead)) if len(lead) else 0:])
                lead = part[-3:]
            batch = []
    return "".join(pieces)


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True, slots=True, eq=False)
class Line:
    """An open path of points."""

    points: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", points(self.points))


@dataclass(frozen=True, slots=True)
class Ellipse:
    """Centre, radii along its own axes, and rotation in degrees."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0


@dataclass(frozen=True, slots=True)
class Node:
    """A skeleton node; `name` is one of the class's `nodes`."""

    name: str
    x: float
    y: float
    occluded: bool = False


@dataclass(frozen=True, slots=True)
class Skeleton:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Cuboid:
    """A pseudo-3D box drawn as its front and back faces."""

    front: Box
    back: Box


@dataclass(frozen=True, slots=True)
class Vector:
    """A direction: angle in degrees (clockwise from +x on screen) and length in pixels."""

    angle: float
    length: float


@dataclass(frozen=True, slots=True)
class Tag:
    """The whole item belongs to the class; no geometry."""


@dataclass(frozen=True, slots=True)
class Classification:
    """The answer to the question the class asks: one option (radio), several (checklist) or free text."""

    answer: str | tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.answer, str):
            object.__setattr__(self, "answer", tuple(self.answer))


@dataclass(frozen=True, slots=True)
class Span:
    """An entity span in a text: characters [start, end), so `text == source[start:end]` (Python slicing)."""

    start: int
    end: int
    text: str


Shape = Union[Box, RotatedBox, Polygon, Mask, Point, Line, Ellipse, Skeleton, Cuboid, Vector, Tag, Classification, Span]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One thing a model found: a class name, one shape, a confidence and optional extras."""

    label: str
    shape: Shape
    confidence: float = 1.0
    attributes: tuple[str, ...] = ()
    text: str | None = None
    frame: int | None = None
    id: str | None = None
