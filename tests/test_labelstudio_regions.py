"""Neutral predictions to Label Studio regions and back, kind by kind (the real server's view is in
tests/test_labelstudio_server.py)."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from skimage import data

from adapters.labelstudio.config import parse_config
from adapters.labelstudio.regions import (
    from_regions,
    task_score,
    to_prompts,
    to_regions,
)
from bridge import (
    Box,
    Classification,
    Ellipse,
    Mask,
    Node,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
)
from bridge.core.geometry import (
    polygon_to_mask,
    rotated_box_corners,
    to_polygon,
    to_shapely,
)

CONFIG = parse_config("""
<View>
  <Image name="image" value="$image"/>
  <Text name="text" value="$text"/>
  <RectangleLabels name="box" toName="image"><Label value="Face"/><Label value="Eye" alias="E"/></RectangleLabels>
  <Rectangle name="rect" toName="image"/>
  <PolygonLabels name="poly" toName="image"><Label value="Coin"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" strokeWidth="4"><Label value="Eye"/></KeyPointLabels>
  <EllipseLabels name="ellipse" toName="image"><Label value="Cell"/></EllipseLabels>
  <BrushLabels name="brush" toName="image"><Label value="Coin"/></BrushLabels>
  <Choices name="blur" toName="image"><Choice value="Blurry"/><Choice value="Sharp" alias="S"/></Choices>
  <Choices name="topics" toName="text" choice="multiple"><Choice value="Sport"/><Choice value="News"/></Choices>
  <Choices name="dynamic" toName="text" value="$options"/>
  <TextArea name="caption" toName="image"/>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="Email" alias="mail"/></Labels>
  <Taxonomy name="taxonomy" toName="text">
    <Choice value="Animal"><Choice value="Bird" alias="B"><Choice value="Owl"/></Choice></Choice>
    <Choice value="Plant"/>
  </Taxonomy>
</View>
""")
SIZE = (300, 400)  # (height, width)


def same(shape: object, expected: object) -> bool:
    """Equal kind and fields, floats to a relative 1e-6 (pytest.approx compares dataclasses exactly)."""
    return type(shape) is type(expected) and astuple(shape) == pytest.approx(astuple(expected))


def round_trip(prediction: Prediction, control: str, label: str | None = None, size=SIZE) -> list[Prediction]:
    regions = to_regions(prediction, CONFIG.control(control), size, label)
    for region in regions:
        assert (region["from_name"], region["type"]) == (control, CONFIG.control(control).result_type)
        assert region["score"] == prediction.confidence
    return from_regions(regions, CONFIG)


def test_box_in_percent_of_the_image() -> None:
    [region] = to_regions(Prediction("Face", Box(40, 30, 100, 60), 0.9), CONFIG.control("box"), SIZE)
    assert region["value"] == {"x": 10.0, "y": 10.0, "width": 25.0, "height": 20.0, "rotation": 0.0,
                               "rectanglelabels": ["Face"]}
    assert (region["to_name"], region["original_width"], region["original_height"], region["image_rotation"]) == (
        "image", 400, 300, 0)
    [back] = from_regions([region], CONFIG)
    assert back.label == "Face" and back.confidence == 0.9 and back.id == region["id"]
    assert same(back.shape, Box(40, 30, 100, 60))


@pytest.mark.parametrize("angle", [30.0, 135.0, 200.0, -45.0])
def test_rotated_box_turns_about_its_top_left_corner(angle: float) -> None:
    """Label Studio's x, y is the corner the box turns about (`rotateBboxCoords` pivots on (x, y), in pixels)."""
    box = RotatedBox(200, 150, 120, 50, angle)
    [region] = to_regions(Prediction("Eye", box), CONFIG.control("box"), SIZE)
    value = region["value"]
    assert value["rectanglelabels"] == ["E"] and 0 <= value["rotation"] < 360  # the alias; LS keeps [0, 360)
    x, y, w, h = value["x"] * 4, value["y"] * 3, value["width"] * 4, value["height"] * 3
    a = math.radians(value["rotation"])
    # the editor's construction: the unrotated box's corners turned about (x, y)
    corners = [(x + dx * math.cos(a) - dy * math.sin(a), y + dx * math.sin(a) + dy * math.cos(a))
               for dx, dy in [(0, 0), (w, 0), (w, h), (0, h)]]
    assert np.allclose(corners, rotated_box_corners(box))
    [back] = from_regions([region], CONFIG)
    assert back.label == "Eye" and np.allclose(rotated_box_corners(back.shape), rotated_box_corners(box))


def test_unlabelled_rectangle() -> None:
    [region] = to_regions(Prediction("anything", Box(0, 0, 4, 3)), CONFIG.control("rect"), SIZE)
    assert "rectanglelabels" not in region["value"] and region["type"] == "rectangle"
    [back] = from_regions([region], CONFIG)
    assert back.label == "rect" and same(back.shape, Box(0, 0, 4, 3))


def test_polygon_parts_and_holes() -> None:
    """Each part is a region; holes (here touching each other and the exterior at corners, as traced masks
    do) ride on slits in the same ring and come back as holes."""
    coins = data.coins() > 100
    prediction = Prediction("Coin", Mask(coins), 0.7)
    regions = to_regions(prediction, CONFIG.control("poly"), coins.shape)
    polygons = [p.shape for p in from_regions(regions, CONFIG)]
    assert len(regions) == len(polygons) > 20 and len({r["id"] for r in regions}) == len(regions)
    assert all(len(shape.parts) == 1 for shape in polygons)
    assert sum(len(shape.parts[0]) - 1 for shape in polygons) > 10  # holes came back as holes
    redrawn = np.zeros(coins.shape, bool)
    for shape in polygons:
        redrawn |= polygon_to_mask(shape, *coins.shape)
    assert (redrawn == coins).all()
    assert all(r["value"]["closed"] is True and len(r["value"]["points"][0]) == 2 for r in regions)


def test_nested_holes_one_ring() -> None:
    """Holes above holes hang from each other; the ring's area is the polygon's."""
    holes = [[(10, 10), (90, 10), (90, 40), (10, 40)], [(20, 60), (30, 60), (30, 70), (20, 70)],
             [(25, 75), (35, 75), (35, 85), (25, 85)], [(50, 50), (60, 50), (60, 90), (50, 90)]]
    polygon = Polygon.from_ring([(0, 0), (100, 0), (100, 100), (0, 100)], holes)
    [region] = to_regions(Prediction("Coin", polygon), CONFIG.control("poly"), SIZE)
    [back] = from_regions([region], CONFIG)
    assert len(back.shape.parts) == 1 and len(back.shape.parts[0]) == 5
    assert to_shapely(back.shape).symmetric_difference(to_shapely(polygon)).area == pytest.approx(0, abs=1e-9)


def test_areas_as_polygons() -> None:
    for shape in (Box(10, 20, 30, 40), RotatedBox(100, 100, 60, 20, 30), Ellipse(200, 150, 50, 20, 15)):
        [back] = round_trip(Prediction("Coin", shape), "poly")
        assert to_shapely(back.shape).symmetric_difference(to_shapely(to_polygon(shape))).area == pytest.approx(
            0, abs=1e-6)


def test_masks_as_brush() -> None:
    coins = data.coins() > 100
    [region] = to_regions(Prediction("Coin", Mask(coins), 0.6), CONFIG.control("brush"), coins.shape)
    assert region["value"]["format"] == "rle" and region["value"]["brushlabels"] == ["Coin"]
    [back] = from_regions([region], CONFIG)
    assert (back.shape.array == coins).all()
    [box] = round_trip(Prediction("Coin", Box(10, 20, 30, 40)), "brush")  # areas are rasterised
    assert box.shape.array.sum() == 30 * 40


def test_a_mask_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match="mask"):
        to_regions(Prediction("Coin", Mask(np.ones((10, 10), bool))), CONFIG.control("brush"), SIZE)


def test_key_points() -> None:
    [region] = to_regions(Prediction("Eye", Point(100, 150), 0.5), CONFIG.control("kp"), SIZE)
    assert region["value"] == {"x": 25.0, "y": 50.0, "width": 1.0, "keypointlabels": ["Eye"]}  # 4 px wide
    [back] = from_regions([region], CONFIG)
    assert same(back.shape, Point(100, 150))
    skeleton = Skeleton((Node("a", 1, 2), Node("b", 3, 4)))
    first, second = round_trip(Prediction("Eye", skeleton), "kp")
    assert same(first.shape, Point(1, 2)) and same(second.shape, Point(3, 4))


def test_ellipse() -> None:
    ellipse = Ellipse(200, 150, 80, 30, -20)
    [back] = round_trip(Prediction("Cell", ellipse), "ellipse")
    assert same(back.shape, Ellipse(200, 150, 80, 30, 340))


def test_choices() -> None:
    [region] = to_regions(Prediction("blur", Classification("Sharp"), 0.8), CONFIG.control("blur"))
    assert region["value"] == {"choices": ["S"]} and "original_width" not in region
    [back] = from_regions([region], CONFIG)
    assert back.label == "blur" and back.shape == Classification("Sharp")
    [back] = round_trip(Prediction("topics", Classification(("Sport", "News"))), "topics")
    assert back.shape == Classification(("Sport", "News"))
    [region] = to_regions(Prediction("Blurry", Tag()), CONFIG.control("blur"))  # a tag class: its own option
    assert region["value"] == {"choices": ["Blurry"]}
    [region] = to_regions(Prediction("x", Classification("from the task")), CONFIG.control("dynamic"))
    assert region["value"] == {"choices": ["from the task"]}


def test_taxonomy_paths() -> None:
    [region] = to_regions(Prediction("taxonomy", Classification(("Owl", "Plant"))), CONFIG.control("taxonomy"))
    assert region["value"] == {"taxonomy": [["Animal", "B", "Owl"], ["Plant"]]}
    [back] = from_regions([region], CONFIG)
    assert back.shape == Classification(("Owl", "Plant"))


def test_text_area() -> None:
    [back] = round_trip(Prediction("caption", Classification("an astronaut")), "caption")
    assert back.label == "caption" and back.shape == Classification("an astronaut")


def test_spans_count_code_points() -> None:
    """The editor counts code points (`[...text]`), as Python's str does: an emoji before a span is one."""
    text = "Hi 👋🏽 write to tom@example.com"
    start = text.index("tom")
    span = Span(start, start + len("tom@example.com"), "tom@example.com")
    [region] = to_regions(Prediction("Email", span), CONFIG.control("ner"))
    assert region["value"] == {"start": 15, "end": 30, "text": "tom@example.com", "labels": ["mail"]}
    assert len(text[:start].encode("utf-16-le")) // 2 == 17  # in UTF-16 units (JavaScript's length) it is 17
    [back] = from_regions([region], CONFIG)
    assert back.label == "Email" and text[back.shape.start:back.shape.end] == back.shape.text


@pytest.mark.parametrize("prediction, control, message", [
    (Prediction("Nose", Box(0, 0, 1, 1)), "box", "no label 'Nose'"),
    (Prediction("Face", Point(0, 0)), "box", "no form for a Point"),
    (Prediction("blur", Classification("Soft")), "blur", "no label 'Soft'"),
    (Prediction("caption", Classification(("a", "b"))), "caption", "free-text"),
    (Prediction("Person", Box(0, 0, 1, 1)), "ner", "entity spans"),
])
def test_refused(prediction: Prediction, control: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_regions(prediction, CONFIG.control(control), SIZE)


def test_prompts_from_what_the_user_drew() -> None:
    def region(kind: str, value: dict, **extra) -> dict:
        return {"type": kind, "value": value, "original_width": 400, "original_height": 300, **extra}

    prompts = to_prompts([
        region("rectanglelabels", {"x": 10, "y": 10, "width": 25, "height": 20, "rotation": 0}),
        region("keypointlabels", {"x": 50, "y": 50, "width": 1}, is_positive=True),
        region("keypointlabels", {"x": 25, "y": 10, "width": 1}, is_positive=False),
        region("keypointlabels", {"x": 75, "y": 20, "width": 1}),
        region("brushlabels", {"format": "rle", "rle": []}),
    ])
    assert same(prompts.box, Box(40, 30, 100, 60))
    assert prompts.positive == ((200, 150), (300, 60)) and prompts.negative == ((100, 30),)


def test_task_score() -> None:
    found = [Prediction("a", Tag(), 0.9), Prediction("b", Tag(), 0.2), Prediction("c", Tag(), 0.5)]
    assert task_score(found) == 0.2
    assert task_score(found, max) == 0.9
    assert task_score([]) is None
