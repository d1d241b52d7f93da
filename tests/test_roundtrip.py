"""Neutral -> platform -> neutral, for every adapter and every class kind: the proof that each conversion
table is true.

A prediction drawn by hypothesis is finished by the core as served (`bridge.core.outputs.finish`: placed, clipped,
typed; `geometry.simplify_tolerance: 0`), written by the adapter (`write_answer`), sent through JSON, and read
back (`read_answer`). Then, per the adapter's table row for the class kind and for each aspect:

- exact: the same prediction, up to float round-off (1e-6) and angles modulo 360 degrees; traced outlines
  (polygons, masks) cover the same pixels;
- lossy: within what the row declares, as `WITHIN` spells out per (platform, row);
- dropped: nothing of it comes back.

Area shapes are drawn inside the image (what the core clips is the core's business, tested elsewhere), so a
fitted shape is compared with what was sent, not with a clipped remnant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adapters.ango.convert import to_answer as ango_answer
from adapters.ango.read import read_answer as read_ango
from bridge.core.geometry import rasterize, to_polygon, to_shapely
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.core.outputs import Finish, finish
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
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)
from bridge.core.service import Result
from bridge.platforms.registry import discover
from tests.shapes_model import CLASSES

HEIGHT, WIDTH = 64, 96
TEXT = "Tom 😀 met Ann\u0301e in Paris 👍🏽 on a sunny day."
"""Emoji (two UTF-16 code units each, one with a skin-tone modifier) and a combining mark: offsets that
Labelbox and Ango count in UTF-16 read back to the same code points."""
SPEC = ModelSpec(classes=CLASSES)
KIND = {cls.kind: cls for cls in CLASSES}
MANIFEST = Manifest.model_validate({"name": "roundtrip", "model": {"factory": "tests.shapes_model:AllShapes"},
                                    "geometry": {"simplify_tolerance": 0}})
ADAPTERS = discover()
EXAMPLES = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# --- strategies: one prediction of a class kind ----------------------------------------------------------------

coordinate = st.floats(0, 1, allow_nan=False).map(lambda f: round(f, 3))
x_of, y_of = coordinate.map(lambda f: f * WIDTH), coordinate.map(lambda f: f * HEIGHT)
angle = st.floats(-180, 180, allow_nan=False).map(lambda f: round(f, 3))


@st.composite
def boxes(draw: Any, least: float = 1.0) -> Box:
    x, y = draw(st.floats(0, WIDTH - 8)), draw(st.floats(0, HEIGHT - 8))
    return Box(x, y, draw(st.floats(least, WIDTH - x)), draw(st.floats(least, HEIGHT - y)))


@st.composite
def masks(draw: Any) -> Mask:
    """Rectangles and a disc filled even-odd: parts, holes, islands in holes, parts touching at corners, curves."""
    array = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for _ in range(draw(st.integers(1, 4))):
        x0, y0 = draw(st.integers(0, WIDTH - 2)), draw(st.integers(0, HEIGHT - 2))
        array[y0:draw(st.integers(y0 + 1, HEIGHT)), x0:draw(st.integers(x0 + 1, WIDTH))] ^= True
    if draw(st.booleans()):
        yy, xx = np.mgrid[:HEIGHT, :WIDTH]
        centre = draw(st.integers(0, WIDTH)), draw(st.integers(0, HEIGHT))
        array ^= np.hypot(xx - centre[0], yy - centre[1]) < draw(st.integers(2, 20))
    return Mask(array)


@st.composite
def fitted(draw: Any, kind: type) -> Any:
    """A rotated box or an ellipse big enough to be fitted back from its pixels, wholly inside the image."""
    a, b = draw(st.floats(6, 14)), draw(st.floats(6, 14))
    reach = math.hypot(a, b) if kind is RotatedBox else max(a, b)
    cx, cy = draw(st.floats(reach, WIDTH - reach)), draw(st.floats(reach, HEIGHT - reach))
    return kind(cx, cy, 2 * a, 2 * b, draw(angle)) if kind is RotatedBox else kind(cx, cy, a, b, draw(angle))


@st.composite
def spans(draw: Any) -> Span:
    start = draw(st.integers(0, len(TEXT)))
    end = draw(st.integers(start, len(TEXT)))
    return Span(start, end, TEXT[start:end])


SHAPES: dict[str, st.SearchStrategy] = {
    "box": boxes(),
    "rotated_box": fitted(RotatedBox),
    "polygon": st.one_of(masks(), boxes(least=4).map(lambda outer: Polygon.from_ring(
        _corners(outer), [_corners(Box(outer.x + outer.w / 4, outer.y + outer.h / 4, outer.w / 2, outer.h / 2))]))),
    "mask": st.one_of(masks(), boxes(least=2).map(lambda b: Polygon.from_ring(_corners(b)))),
    "point": st.builds(Point, x_of, y_of),
    "line": st.lists(st.tuples(x_of, y_of), min_size=2, max_size=5, unique=True).map(Line),
    "ellipse": fitted(Ellipse),
    "skeleton": st.builds(lambda a, b: Skeleton((Node("head", *a), Node("hip", *b))),
                          st.tuples(x_of, y_of, st.booleans()), st.tuples(x_of, y_of, st.booleans())),
    "cuboid": st.builds(Cuboid, boxes(), boxes()),
    "vector": st.builds(Vector, angle, st.floats(0, 50)),
    "tag": st.just(Tag()),
    "radio": st.sampled_from(KIND["radio"].options).map(Classification),
    "checklist": st.lists(st.sampled_from(KIND["checklist"].options), min_size=1, unique=True).map(Classification),
    "text": st.text(min_size=1, max_size=20).map(Classification),
    "entity": spans(),
}


def _corners(box: Box) -> list[tuple[float, float]]:
    return [(box.x, box.y), (box.x + box.w, box.y), (box.x + box.w, box.y + box.h), (box.x, box.y + box.h)]


@st.composite
def predictions(draw: Any, kind: str) -> Prediction:
    return Prediction(KIND[kind].name, draw(SHAPES[kind]), draw(st.floats(0, 1)),
                      attributes=tuple(draw(st.lists(st.sampled_from(["occluded", "truncated", "blurry"]),
                                                     max_size=2, unique=True))),
                      text=draw(st.none() | st.text(max_size=10)), frame=draw(st.none() | st.integers(0, 99)))


# --- comparisons -------------------------------------------------------------------------------------------------


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-6)


def same_angle(a: float, b: float, period: float = 360.0) -> bool:
    turn = (a - b) % period
    return min(turn, period - turn) < 1e-6


def pixels(shape: Any) -> np.ndarray:
    return rasterize(shape, HEIGHT, WIDTH).array


def iou(a: Any, b: Any) -> float:
    a, b = pixels(a), pixels(b)
    return (a & b).sum() / max((a | b).sum(), 1)


def exact(sent: Any, got: Any) -> bool:
    """The same shape up to float round-off and whole turns; outlines and masks by their pixels."""
    if isinstance(sent, (Polygon, Mask)):
        return isinstance(got, type(sent)) and np.array_equal(pixels(sent), pixels(got))
    if type(sent) is not type(got):
        return False
    if isinstance(sent, (RotatedBox, Ellipse)):
        return all(close(getattr(sent, f), getattr(got, f)) for f in ("cx", "cy", "w" if isinstance(sent, RotatedBox)
                   else "rx", "h" if isinstance(sent, RotatedBox) else "ry")) and same_angle(sent.angle, got.angle)
    if isinstance(sent, Vector):
        return same_angle(sent.angle, got.angle) and close(sent.length, got.length)
    if isinstance(sent, Line):
        return sent.points.shape == got.points.shape and np.allclose(sent.points, got.points, atol=1e-6)
    if isinstance(sent, Skeleton):
        return [(n.name, n.occluded) for n in sent.nodes] == [(n.name, n.occluded) for n in got.nodes] and all(
            close(a.x, b.x) and close(a.y, b.y) for a, b in zip(sent.nodes, got.nodes))
    if isinstance(sent, Cuboid):
        return exact(sent.front, got.front) and exact(sent.back, got.back)
    if isinstance(sent, Box):
        return all(close(getattr(sent, f), getattr(got, f)) for f in "xywh")
    if isinstance(sent, Point):
        return close(sent.x, got.x) and close(sent.y, got.y)
    return sent == got  # tags, classifications, spans


Within = Callable[[Prediction, Prediction], bool]
WITHIN: dict[tuple[str, str], Within] = {
    # V7 has no rotated box: the 4-corner polygon gives the box back, up to float round-off
    ("v7", "rotated_box"): lambda s, g: exact(s.shape, g.shape),
    # V7: a free-text class's answer takes the `text` sub-annotation; other classes keep their text
    ("v7", "prediction.text"): lambda s, g: g.text == (None if SPEC.get(s.label).kind == "text" else s.text),
    # V7's schema has no frame: the bridge's own `frame` key comes back to the bridge's reader
    ("v7", "prediction.frame"): lambda s, g: g.frame == s.frame,
    # Foundry rasterises areas: a polygon comes back as the outline of the same pixels
    ("labelbox", "polygon"): lambda s, g: np.array_equal(pixels(s.shape), pixels(g.shape)),
    # ... a rotated box or an ellipse as the shape fitted to its pixels: 85% of them shared (IoU)
    ("labelbox", "rotated_box"): lambda s, g: iou(s.shape, g.shape) >= 0.85,
    ("labelbox", "ellipse"): lambda s, g: iou(s.shape, g.shape) >= 0.85,
    # only boxes carry scores
    ("labelbox", "prediction.confidence"): lambda s, g: close(g.confidence, s.confidence if isinstance(
        s.shape, Box) else 1.0),
    # Ango: an ellipse leaves as its 64-gon; the fitted ellipse shares 97% of its pixels
    ("ango", "ellipse"): lambda s, g: iou(s.shape, g.shape) >= 0.97,
    # one point per node: positions in node order, `occluded` lost
    ("ango", "skeleton"): lambda s, g: exact(Skeleton(tuple(Node(n.name, n.x, n.y) for n in s.shape.nodes)), g.shape),
    # the front face only: read back as a cuboid whose back is its front
    ("ango", "cuboid"): lambda s, g: exact(Cuboid(s.shape.front, s.shape.front), g.shape),
    # without a class mapping (write_answer's form) no attribute leaves; with one, see the test below
    ("ango", "prediction.attributes"): lambda s, g: g.attributes == (),
    # CVAT: a polygon's parts come back (grouped), each without its holes
    ("cvat", "polygon"): lambda s, g: exact(Polygon(tuple((part[0],) for part in s.shape.parts)), g.shape),
    # one checkbox per option: the options chosen, in the class's order
    ("cvat", "checklist"): lambda s, g: g.shape.answer == tuple(o for o in KIND["checklist"].options
                                                                if o in s.shape.answer),
    # only attributes platforms.cvat.attributes declares leave (the section here declares none)
    ("cvat", "prediction.attributes"): lambda s, g: g.attributes == (),
    # a tag has no score: tags read back at 1.0
    ("cvat", "prediction.confidence"): lambda s, g: close(g.confidence, 1.0 if SPEC.get(s.label).kind in (
        "tag", "radio", "checklist", "text") else s.confidence),
    # Label Studio: one ring per part, a hole hanging by a zero-width slit: the same pixels
    ("labelstudio", "polygon"): lambda s, g: np.array_equal(pixels(s.shape), pixels(g.shape)),
    # one key point per node: positions in node order, `occluded` lost
    ("labelstudio", "skeleton"): lambda s, g: exact(Skeleton(tuple(Node(n.name, n.x, n.y) for n in s.shape.nodes)),
                                                    g.shape),
}

ASPECT_FIELDS = {"prediction.attributes": ("attributes", ()), "prediction.text": ("text", None),
                 "prediction.confidence": ("confidence", 1.0), "prediction.frame": ("frame", None)}


def round_trip(platform: str, sent: list[Prediction]) -> list[Prediction]:
    adapter = ADAPTERS[platform]
    section = adapter.section(rename={"box": "Box", "name": "Name"})
    answer = adapter.write_answer(Result(sent, (HEIGHT, WIDTH), TEXT), SPEC, section, MANIFEST)
    answer = json.loads(json.dumps(answer))  # what crosses the wire
    return adapter.read_answer(answer, SPEC, section, (HEIGHT, WIDTH), TEXT)


def served(prediction: Prediction) -> list[Prediction]:
    """The prediction as the core serves it (entity spans quote TEXT; images are HEIGHT x WIDTH)."""
    return finish([prediction], SPEC, Finish(seen=(HEIGHT, WIDTH), canvas=(HEIGHT, WIDTH), text=TEXT))


@pytest.mark.parametrize("platform", sorted(ADAPTERS))
@pytest.mark.parametrize("kind", list(SHAPES))
def test_a_prediction_comes_back_as_the_conversion_table_says(platform: str, kind: str) -> None:
    table = ADAPTERS[platform].conversions

    @EXAMPLES
    @given(predictions(kind))
    def check(prediction: Prediction) -> None:
        sent = served(prediction)
        got = round_trip(platform, sent)
        row = table[kind].at(MANIFEST.geometry.simplify_tolerance)
        if row.fidelity == "dropped":
            assert got == [], f"{platform} drops {kind}, yet read back {got}"
            return
        assert [g.label for g in got] == [s.label for s in sent]
        for s, g in zip(sent, got):
            if row.fidelity == "exact":
                assert exact(s.shape, g.shape), f"{platform} {kind} is declared exact: sent {s.shape}, read {g.shape}"
            else:
                assert WITHIN[platform, kind](s, g), f"{platform} {kind} ({row.why}): sent {s.shape}, read {g.shape}"
            for aspect, (name, absent) in ASPECT_FIELDS.items():
                kept = table[aspect]
                if kept.fidelity == "exact":
                    ok = getattr(g, name) == getattr(s, name) if name != "confidence" else close(g.confidence,
                                                                                                  s.confidence)
                elif kept.fidelity == "dropped":
                    ok = getattr(g, name) == absent
                else:
                    ok = WITHIN[platform, aspect](s, g)
                assert ok, f"{platform} {aspect} is {kept.fidelity}: sent {getattr(s, name)!r}, " \
                           f"read {getattr(g, name)!r}"

    check()


@EXAMPLES
@given(predictions("box"))
def test_ango_attributes_named_by_the_class_mapping_come_back_as_nested_classifications(prediction: Prediction) -> None:
    section = ADAPTERS["ango"].section()
    ids = {"box": "schema-box", "occluded": "schema-occluded", "blurry": "schema-blurry"}
    sent = served(prediction)
    answer, _, _ = ango_answer(sent, SPEC, section, ids)
    (got,) = read_ango(json.loads(json.dumps(answer)), SPEC, section, ids, (HEIGHT, WIDTH), TEXT)
    assert got.attributes == tuple(a for a in prediction.attributes if a in ids)
    assert exact(sent[0].shape, got.shape)


def test_every_class_kind_and_aspect_is_covered() -> None:
    assert set(SHAPES) == {cls.kind for cls in CLASSES}
    for platform, adapter in ADAPTERS.items():
        lossy = {row for row, c in adapter.conversions.items() if c.at(0).fidelity == "lossy"}
        assert lossy == {row for p, row in WITHIN if p == platform}, f"{platform}: each lossy row says its 'within'"


@pytest.mark.parametrize("platform", sorted(ADAPTERS))
def test_one_answer_holding_every_kind_reads_back_each_prediction_under_its_own_class(platform: str) -> None:
    table = ADAPTERS[platform].conversions

    @EXAMPLES
    @given(st.tuples(*(predictions(kind) for kind in SHAPES)))
    def check(drawn: tuple[Prediction, ...]) -> None:
        sent = [p for prediction in drawn for p in served(prediction)]
        got = round_trip(platform, sent)
        kept = [s for s in sent if table[SPEC.get(s.label).kind].fidelity != "dropped"]
        assert sorted(g.label for g in got) == sorted(s.label for s in kept)

    check()


SIMPLIFIED = MANIFEST.model_copy(update={"geometry": MANIFEST.geometry.model_copy(update={"simplify_tolerance": 0.5})})


@pytest.mark.parametrize("platform", sorted(p for p in ADAPTERS if ADAPTERS[p].conversions["polygon"].traced))
@pytest.mark.parametrize("kind", ["polygon", "mask"])
def test_a_simplified_outline_comes_back_within_the_tolerance(platform: str, kind: str) -> None:
    """Traced rows at `simplify_tolerance: 0.5` (the default) are lossy by the tolerance: the outline read back
    lies within 0.5 px of the one sent (Hausdorff distance of the boundaries); a mask read back as pixels moves
    by at most one pixel more (a pixel flips when the simplified outline crosses its centre)."""
    adapter = ADAPTERS[platform]
    tolerance = SIMPLIFIED.geometry.simplify_tolerance
    assert adapter.conversions[kind].at(tolerance).fidelity == "lossy"

    @EXAMPLES
    @given(masks())
    def check(mask: Mask) -> None:
        sent = finish([Prediction(KIND[kind].name, mask)], SPEC, Finish(seen=(HEIGHT, WIDTH), canvas=(HEIGHT, WIDTH),
                                                                          tolerance=tolerance))
        assume(sent)  # rectangles that cancel out leave nothing to send
        section = adapter.section()
        answer = adapter.write_answer(Result(sent, (HEIGHT, WIDTH), TEXT), SPEC, section, SIMPLIFIED)
        (got,) = adapter.read_answer(json.loads(json.dumps(answer)), SPEC, section, (HEIGHT, WIDTH), TEXT)
        outline = shapely.boundary(to_shapely(to_polygon(mask)))
        moved = shapely.hausdorff_distance(outline, shapely.boundary(to_shapely(to_polygon(got.shape))))
        assert moved <= tolerance + (1 if kind == "mask" else 0) + 1e-9, f"moved {moved:.3f} px"

    check()
