"""`bridge prelabel --to cvat`: CVAT for images 1.1 XML, written by the real command on real images and read
back two ways: by datumaro's own CVAT reader (`datumaro.plugins.data_formats.cvat`, the kinds it reads: boxes,
polygons, polylines, points, masks, tags) and by `load_anno` below, which reads every element the way CVAT's
own importer does (`cvat/apps/dataset_manager/formats/cvat.py`: the same attributes, the same arithmetic)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.cvat.convert import function_labels, read_annotations
from adapters.cvat.cvat_xml import CUBOID
from bridge.commands.main import main
from bridge.core.geometry import polygon_to_mask
from bridge.core.predictions import Ellipse, Prediction
from tests.conftest import encode_image
from tests.cvat_models import ATTRIBUTES, EveryKind
from tests.test_cvat_convert import expected, key, write_manifest

RENAME = {"face": "Face"}
SIZE = (384, 384)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.png", "c.png"):
        (folder / name).write_bytes(encode_image(np.zeros((*SIZE, 3), np.uint8)))
    return folder


@pytest.fixture
def exported(tmp_path: Path, images: Path, capsys) -> Path:
    manifest = write_manifest(tmp_path, "every-kind", geometry={"simplify_tolerance": 0},
                              model={"factory": f"{Path(__file__).parent}/cvat_models.py:EveryKind",
                                     "params": {"shift": 2}},
                              platforms={"cvat": {"rename": RENAME, "attributes": ATTRIBUTES}})
    assert main(["prelabel", manifest, str(images), "--to", "cvat", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"cvat: {tmp_path / 'out' / 'cvat' / 'annotations.xml'}" in out
    assert "  - confidence: dropped: CVAT's XML import reads no score" in out
    return tmp_path / "out" / "cvat" / "annotations.xml"


def load_anno(path: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per image name, its tags and shapes as CVAT's importer builds them from the XML: label names, `points`
    as CVAT holds them (an ellipse's right and top edges rounded to 0.01 px, a mask's box from left, top,
    width, height), attributes by name, `group_id` as the group, skeleton elements with `occluded` and
    `outside` (which the importer requires)."""
    images: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for image in ET.parse(path).getroot().iter("image"):
        found = images.setdefault(image.get("name"), {"tags": [], "shapes": [], "id": int(image.get("id"))})
        for element in image:
            attributes = {a.get("name"): a.text or "" for a in element.findall("attribute")}
            if element.tag == "tag":
                found["tags"].append({"label": element.get("label"), "attributes": attributes})
                continue
            shape = {"type": "rectangle" if element.tag == "box" else element.tag, "label": element.get("label"),
                     "points": _points(element), "rotation": float(element.get("rotation", 0)),
                     "group": int(element.get("group_id", 0)), "attributes": attributes,
                     "elements": [{"label": e.get("label"), "points": _points(e), "occluded": e.get("occluded") == "1",
                                   "outside": e.get("outside") == "1"} for e in element.findall("points")]}
            found["shapes"].append(shape)
    return images


def _points(element: ET.Element) -> list[float]:
    get = element.get
    if element.tag == "box":
        return [float(get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]
    if element.tag == "ellipse":
        cx, cy = float(get("cx")), float(get("cy"))
        return [cx, cy, float(f"{cx + float(get('rx')):.2f}"), float(f"{cy - float(get('ry')):.2f}")]
    if element.tag == "mask":
        left, top = int(get("left")), int(get("top"))
        return [*map(int, get("rle").split(",")), left, top, left + int(get("width")) - 1, top + int(get("height")) - 1]
    if element.tag == "cuboid":
        return [float(get(k)) for k in CUBOID]
    if element.tag == "skeleton":
        return []
    return [float(v) for pair in get("points").split(";") for v in pair.split(",")]


def as_annotations(found: dict[str, list[dict[str, Any]]], labels: list[dict[str, Any]]) -> dict[str, list]:
    """CVAT's annotation JSON of what `load_anno` read, with the ids of `labels` (names matched, CVAT's rule)."""
    by_name = {label["name"]: label for label in labels}

    def values(label: dict[str, Any], attributes: dict[str, str]) -> list[dict[str, Any]]:
        ids = {a["name"]: a["id"] for a in label["attributes"]}
        return [{"spec_id": ids[name], "value": value} for name, value in attributes.items()]

    def shape(item: dict[str, Any]) -> dict[str, Any]:
        label = by_name[item["label"]]
        nodes = {sub["name"]: sub["id"] for sub in label["sublabels"]}
        return {**item, "label_id": label["id"], "frame": 0, "attributes": values(label, item["attributes"]),
                "elements": [{**e, "label_id": nodes[e["label"]]} for e in item["elements"]]}

    return {"tags": [{"label_id": by_name[t["label"]]["id"], "frame": 0,
                      "attributes": values(by_name[t["label"]], t["attributes"])} for t in found["tags"]],
            "shapes": [shape(item) for item in found["shapes"]]}


def test_every_kind_cvat_has_reads_back_as_cvats_importer_reads_it(exported):
    labels = [label.json() for label in function_labels(EveryKind.spec, RENAME, ATTRIBUTES).values()]
    images = load_anno(exported)
    assert [(name, found["id"]) for name, found in images.items()] == [("b.png", 0), ("c.png", 1), ("sub/a.png", 2)]
    want = [p for p in expected() if p.frame == 0]
    for name, found in images.items():
        got = read_annotations(as_annotations(found, labels), labels, EveryKind.spec, rename=RENAME,
                               attributes=ATTRIBUTES, size=SIZE, frames=False)
        # no score in the file: every confidence reads 1.0; an ellipse's edges are rounded to 0.01 px
        assert sorted(map(key, got)) == sorted(key(Prediction(p.label, _rounded(p.shape), 1.0, p.attributes))
                                               for p in want), name
    root = ET.parse(exported).getroot()
    assert root.find("version").text == "1.1"
    meta = {label.find("name").text: label.find("type").text for label in root.iter("label")}
    assert meta["Face"] == "rectangle" and meta["body"] == "skeleton" and "motion" not in meta


def _rounded(shape: Any) -> Any:
    if isinstance(shape, Ellipse):
        return Ellipse(shape.cx, shape.cy, round(shape.cx + shape.rx, 2) - shape.cx,
                       shape.cy - round(shape.cy - shape.ry, 2), shape.angle)
    return shape


def test_datumaros_cvat_reader_reads_the_kinds_it_knows(exported):
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset

    (exported.parent / "images").symlink_to(exported.parents[2] / "images")  # datumaro wants the media beside it
    dataset = Dataset.import_from(str(exported.parent), "cvat")
    names = dataset.categories()[AnnotationType.label]
    assert sorted(item.id for item in dataset) == ["b", "c", "sub/a"]
    item = dataset.get("b", subset=next(iter(dataset.subsets())))
    found: dict[str | None, list] = {}
    for annotation in item.annotations:
        found.setdefault(None if annotation.label is None else names[annotation.label].name, []).append(annotation)
    # datumaro has no skeletons: it reads their nodes as points of labels it does not know (nor ellipses, cuboids)
    assert sorted(tuple(a.points) for a in found[None]) == [(42.0, 62.0), (47.0, 42.0), (52.0, 22.0)]

    want = {p.label: p for p in expected() if p.frame == 0 and p.label != "face"}
    faces = sorted((a.x, a.y, a.w, a.h, a.attributes["smiling"]) for a in found["Face"])
    assert faces == [(12.0, 22.0, 30.0, 40.0, True), (202.0, 202.0, 20.0, 20.0, False)]
    assert found["nose"][0].points == [want["nose"].shape.x, want["nose"].shape.y]
    assert np.allclose(np.reshape(found["horizon"][0].points, (-1, 2)), want["horizon"].shape.points)
    region = np.zeros(SIZE, bool)
    for part in found["region"]:  # one polygon per part, in one group
        region |= polygon_to_mask(type(want["region"].shape).from_ring(np.reshape(part.points, (-1, 2))), *SIZE)
    assert {part.group for part in found["region"]} == {1}
    assert (region == polygon_to_mask(want["region"].shape, *SIZE)).all()  # its hole is filled: none was
    assert (found["coin"][0].image.astype(bool) == want["coin"].shape.array).all()  # the ring, hole and all
    tags = {names[a.label].name: a.attributes for a in item.annotations if a.type == AnnotationType.label}
    assert tags["weather"] == {"weather": "rainy"} and tags["caption"] == {"caption": "a test"}
    assert tags["contents"] == {"person": True, "dog": True, "cat": False} and "outdoor" in tags


def test_a_rerun_writes_the_same_file_and_a_text_model_is_refused(exported, tmp_path, images, capsys):
    before = exported.read_bytes()
    manifest = tmp_path / "every-kind.yaml"
    assert main(["prelabel", str(manifest), str(images), "--to", "cvat", "--out", str(tmp_path / "out")]) == 0
    assert "this run: 0 done, 0 failed, 3 skipped" in capsys.readouterr().out and exported.read_bytes() == before

    text = write_manifest(tmp_path, "text", model={"factory": f"{Path(__file__).parent}/shapes_model.py:TextShapes"})
    assert main(["prelabel", text, str(images), "--to", "cvat", "--out", str(tmp_path / "text")]) == 2
    assert "--to cvat: CVAT's XML annotates images, and this model reads text" in capsys.readouterr().err
