"""CVAT's file import for `bridge prelabel --to cvat`: one "CVAT for images 1.1" XML, `cvat/annotations.xml`.

Of CVAT's import formats it keeps the most of a model's kinds: boxes and rotated boxes (`<box>` with
`rotation`), polygons, polylines, points, ellipses, cuboids, masks (`<mask rle left top width height>`),
skeletons (`<skeleton>` of `<points>` elements), tags, and attributes on each (`<attribute name>`). COCO keeps
boxes, polygons and masks only. Neither carries a confidence: CVAT's XML import reads no score.

The forms are those CVAT's own importer reads (`cvat/apps/dataset_manager/formats/cvat.py`, `load_anno`): the
same shapes as a function's answer (`adapters.cvat.convert`), labels by name. Each `<image>` is named by the
item's identity (its path in the input folder), which is how CVAT matches it to a task's frame; its `id` is
its position among the items sorted by identity, the frame number CVAT falls back to when no frame has that
name (the frames of a task made of exactly these files, which CVAT sorts by name). Import it into the task
with CVAT's "Upload annotations" (format "CVAT 1.1"), or `cvat-cli task import-dataset TASK_ID
cvat/annotations.xml --format "CVAT 1.1"`.

Each item's `<image>` is a part (`cvat/.parts/`), assembled into the file at the end of every run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from adapters.cvat.convert import CONVERSIONS as ANSWER
from adapters.cvat.convert import Label, function_labels, to_cvat
from adapters.cvat.section import CvatSection
from bridge.core.conversions import Table, dropped, lossy
from bridge.core.manifest import ManifestError
from bridge.core.service import Result
from bridge.platforms.export import (
    ExportSetup,
    Item,
    file_name,
    parts,
    parts_dir,
    write_atomic,
)

OUTPUT = "annotations.xml"

CONVERSIONS: Table = {
    **ANSWER,
    "ellipse": lossy("ellipse", "CVAT's import rounds an ellipse's right and top edges (cx + rx, cy - ry) to "
                                "0.01 px"),
    "prediction.confidence": dropped("CVAT's XML import reads no score"),
    "prediction.frame": dropped("bridge prelabel reads images, not videos"),
}
"""A function's answer (`adapters.cvat.convert`); only what the file import cannot carry differs."""

CUBOID = ("xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
          "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2")
"""The attributes of a `<cuboid>`, in the order of its 16 numbers (CVAT's canvas order)."""

ELEMENTS = {"rectangle": "box", "polygon": "polygon", "polyline": "polyline", "points": "points",
            "ellipse": "ellipse", "cuboid": "cuboid", "mask": "mask", "skeleton": "skeleton"}


class CvatXml:
    """Writes each item's `<image>` to a part, and `annotations.xml` from every part."""

    conversions = CONVERSIONS

    def __init__(self, section: CvatSection, setup: ExportSetup) -> None:
        if setup.spec.input == "text":
            raise ManifestError("--to cvat: CVAT's XML annotates images, and this model reads text")
        try:
            self.labels = function_labels(setup.spec, section.rename, section.attributes)
        except ValueError as error:
            raise ManifestError(f"{setup.manifest.where()}: platforms.cvat: {error}") from None
        self.by_id = {label.id: label for label in self.labels.values()}
        self.name = setup.manifest.name
        self.tolerance = setup.manifest.geometry.simplify_tolerance

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        height, width = result.size
        image = ET.Element("image", {"name": item.identity, "width": str(width), "height": str(height)})
        answer = to_cvat(result.predictions, self.labels, size=result.size, tolerance=self.tolerance)
        for shape in answer["shapes"]:
            self._shape(image, shape)
        for tag in answer["tags"]:
            label = self.by_id[tag["label_id"]]
            self._attributes(ET.SubElement(image, "tag", {"label": label.name, "source": "auto"}), tag, label)
        ET.indent(image, "  ", level=1)
        part = parts_dir(out_dir) / f"{file_name(item.identity)}.xml"
        write_atomic(part, ET.tostring(image, encoding="unicode").encode("utf-8"))
        return [part]

    def _shape(self, parent: ET.Element, shape: dict[str, Any]) -> None:
        label = self.by_id[shape["label_id"]]
        kind, points = shape["type"], shape["points"]
        keys = {"label": label.name, "source": "auto", "occluded": "0"}
        if kind == "rectangle":
            keys |= dict(zip(("xtl", "ytl", "xbr", "ybr"), map(_number, points)))
        elif kind == "ellipse":
            cx, cy, right, top = points
            keys |= {"cx": _number(cx), "cy": _number(cy), "rx": _number(right - cx), "ry": _number(cy - top)}
        elif kind == "cuboid":
            keys |= dict(zip(CUBOID, map(_number, points)))
        elif kind == "mask":
            *runs, x1, y1, x2, y2 = points
            keys |= {"rle": ", ".join(str(int(run)) for run in runs), "left": str(int(x1)), "top": str(int(y1)),
                     "width": str(int(x2 - x1) + 1), "height": str(int(y2 - y1) + 1)}
        elif kind != "skeleton":
            keys["points"] = _points(points)
        if shape.get("rotation"):
            keys["rotation"] = _number(shape["rotation"])
        keys["z_order"] = "0"
        if shape.get("group"):
            keys["group_id"] = str(shape["group"])
        if kind == "skeleton":
            del keys["occluded"]
        element = ET.SubElement(parent, ELEMENTS[kind], keys)
        for node in shape.get("elements", []):
            ET.SubElement(element, "points", {"label": label.cls.nodes[node["label_id"]], "source": "auto",
                                              "outside": str(int(node.get("outside", False))),
                                              "occluded": str(int(node.get("occluded", False))),
                                              "points": _points(node["points"])})
        self._attributes(element, shape, label)

    @staticmethod
    def _attributes(element: ET.Element, annotation: dict[str, Any], label: Label) -> None:
        for value in annotation["attributes"]:
            ET.SubElement(element, "attribute", {"name": label.attributes[value["spec_id"]].name}).text = value["value"]

    def finish(self, out_dir: Path) -> list[Path]:
        found = parts(out_dir, ".xml")
        if not found:
            (out_dir / OUTPUT).unlink(missing_ok=True)
            return []
        images = [part.read_text(encoding="utf-8").replace("<image ", f'<image id="{number}" ', 1)
                  for number, part in enumerate(found)]
        text = ("<?xml version='1.0' encoding='utf-8'?>\n<annotations>\n  <version>1.1</version>\n"
                f"{self._meta(len(found))}\n  " + "\n  ".join(images) + "\n</annotations>\n")
        write_atomic(out_dir / OUTPUT, text.encode("utf-8"))
        return [out_dir / OUTPUT]

    def _meta(self, size: int) -> str:
        """The task's labels, for reference (CVAT's import reads only the images; datumaro's reader needs it)."""
        meta = ET.Element("meta")
        task = ET.SubElement(meta, "task")
        for key, value in (("name", self.name), ("size", str(size)), ("mode", "annotation")):
            ET.SubElement(task, key).text = value
        labels = ET.SubElement(task, "labels")
        for label in self.labels.values():
            element = ET.SubElement(labels, "label")
            ET.SubElement(element, "name").text = label.name
            ET.SubElement(element, "type").text = label.type
            attributes = ET.SubElement(element, "attributes")
            for attribute in label.attributes:
                spec = ET.SubElement(attributes, "attribute")
                for key, value in (("name", attribute.name), ("mutable", "False"), ("input_type", attribute.input_type),
                                   ("default_value", _default(attribute.input_type, attribute.values)),
                                   ("values", "\n".join(attribute.values))):
                    ET.SubElement(spec, key).text = value
        ET.indent(meta, "  ", level=1)
        return "  " + ET.tostring(meta, encoding="unicode")


def _number(value: float) -> str:
    """A coordinate as CVAT's importer reads it (`float`), in full: the shortest text that gives it back."""
    return repr(float(value))


def _points(points: list[float]) -> str:
    return ";".join(f"{_number(x)},{_number(y)}" for x, y in zip(points[0::2], points[1::2]))


def _default(input_type: str, values: tuple[str, ...]) -> str:
    return "false" if input_type == "checkbox" else values[0] if values else ""
