"""V7's file import for `bridge prelabel`: Darwin JSON 2.0, one file per item (`darwin dataset import ... darwin`).

Unlike the BYOM answer, Darwin JSON has a raster type: the predictions of a `mask` class leave as one
`mask` annotation each plus the item's `raster_layer` (`__raster_layer__`), whose `dense_rle` is the
row-major run-length encoding `[value, count, ...]` of a label map where each mask paints its own value
(`mask_annotation_ids_mapping`). A pixel has one value: where masks overlap, the more confident keeps it, and
a mask left with no pixel is not written. Polygons leave as `polygon.paths` (exterior, holes and further
parts; V7 fills them even-odd) with their `bounding_box`; every other kind in its BYOM form (the V7 adapter's
own conversion). Each file names its item (`item.name`, the identity's last part; `item.path`, the folder
part) and its image slot `"0"` with the image's size, as V7's exports do.

A prediction's confidence travels in the `inference` sub-annotation (`{"confidence", "model": {"name",
"type": "external"}}`), which darwin-py imports as it is; we assume V7 accepts it without a model id.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from adapters.v7.convert import CONVERSIONS as BYOM
from adapters.v7.convert import main_types
from adapters.v7.section import V7Section
from bridge.core.conversions import Table, dropped, exact, lossy
from bridge.core.geometry import EXACT, Outlines, rasterize
from bridge.core.predictions import Mask, Prediction
from bridge.core.service import Result
from bridge.platforms.export import (
    NO_PROMPTS,
    ExportSetup,
    Item,
    file_name,
    write_atomic,
)

SCHEMA = "https://darwin-public.s3.eu-west-1.amazonaws.com/darwin_json/2.0/schema.json"
SLOT = "0"
RASTER_LAYER = "__raster_layer__"

CONVERSIONS: Table = {
    **BYOM,
    "mask": lossy("mask + raster_layer", "one value per pixel: where masks overlap the more confident keeps "
                                         "the pixel, and a mask with no pixel left is dropped"),
    "entity": dropped("V7 items are images here: entity spans have no Darwin JSON form"),
    "prediction.confidence": exact("inference.confidence"),
    "prediction.frame": dropped("bridge prelabel reads images, not videos"),
    "prompts": NO_PROMPTS,
}
"""The BYOM answer's conversions (`adapters.v7.convert.CONVERSIONS`) but for masks, which Darwin JSON holds as rasters."""


class DarwinJson:
    """Writes `<item>.json` in Darwin JSON 2.0 for each item."""

    conversions = CONVERSIONS

    def __init__(self, section: V7Section, setup: ExportSetup) -> None:
        self.section = section
        self.spec = setup.spec
        self.model = setup.manifest.name
        self.outlines = setup.manifest.outlines()

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        document = darwin_file(item.identity, result, self.spec, self.section, self.model, self.outlines)
        path = out_dir / f"{file_name(item.identity)}.json"
        write_atomic(path, json.dumps(document).encode("utf-8"))
        return [path]

    def finish(self, out_dir: Path) -> list[Path]:
        return sorted(out_dir.glob("*.json"))


def darwin_file(identity: str, result: Result, spec: Any, section: V7Section, model: str,
                outlines: Outlines = EXACT) -> dict[str, Any]:
    """The Darwin JSON 2.0 document of one item."""
    path = PurePosixPath("/" + identity.lstrip("/"))
    slots = []
    if result.size is not None:
        height, width = result.size
        slots = [{"type": "image", "slot_name": SLOT, "width": width, "height": height,
                  "source_files": [{"file_name": path.name}]}]
    inference = {"model": {"name": model, "type": "external"}}
    annotations, masks = [], []
    for prediction in result.predictions:
        cls = spec.get(prediction.label)
        if cls.kind == "mask" and result.size is not None:
            masks.append(prediction)
            continue
        for name, main in main_types(prediction, cls, section, outlines):
            if "polygon" in main:
                main = _polygon(main["polygon"])
            annotations.append(_annotation(name, main, prediction, inference))
    if masks:
        annotations += _raster(masks, spec, section, result.size, inference)
    return {"version": "2.0", "schema_ref": SCHEMA,
            "item": {"name": path.name, "path": str(path.parent), "slots": slots},
            "annotations": annotations}


def _annotation(name: str, main: dict[str, Any], prediction: Prediction,
                inference: dict[str, Any]) -> dict[str, Any]:
    annotation = {"id": str(uuid.uuid4()), "name": name, **main, "slot_names": [SLOT],
                  "inference": {"confidence": prediction.confidence, **inference}}
    if prediction.attributes:
        annotation["attributes"] = list(prediction.attributes)
    if prediction.text is not None and "text" not in annotation:
        annotation["text"] = {"text": prediction.text}
    return annotation


def _polygon(byom: dict[str, Any]) -> dict[str, Any]:
    """BYOM's `path` + `additional_paths` as Darwin JSON 2.0's `paths`, with the bounding box V7 stores."""
    paths = [byom["path"], *byom.get("additional_paths", [])]
    xs = [point["x"] for path in paths for point in path]
    ys = [point["y"] for path in paths for point in path]
    box = {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}
    return {"polygon": {"paths": paths}, "bounding_box": box}


def _raster(masks: list[Prediction], spec: Any, section: V7Section, size: tuple[int, int],
            inference: dict[str, Any]) -> list[dict[str, Any]]:
    """One `mask` annotation per visible mask, and the `raster_layer` that paints them."""
    height, width = size
    labels = np.zeros((height, width), dtype=np.int32)
    ordered = sorted(masks, key=lambda p: p.confidence)  # the most confident is painted last: it wins overlaps
    for value, prediction in enumerate(ordered, start=1):
        shape = prediction.shape if isinstance(prediction.shape, Mask) else rasterize(prediction.shape, height, width)
        labels[shape.array] = value
    visible = set(np.unique(labels).tolist())
    annotations, mapping = [], {}
    for value, prediction in enumerate(ordered, start=1):
        if value in visible:
            name = section.platform_name(spec.get(prediction.label).name)
            annotation = _annotation(name, {"mask": {"sparse_rle": None}}, prediction, inference)
            mapping[annotation["id"]] = value
            annotations.append(annotation)
    if not annotations:
        return []
    layer = {"dense_rle": dense_rle(labels), "mask_annotation_ids_mapping": mapping, "total_pixels": height * width}
    return [*annotations, {"id": str(uuid.uuid4()), "name": RASTER_LAYER, "raster_layer": layer,
                           "slot_names": [SLOT]}]


def dense_rle(labels: np.ndarray) -> list[int]:
    """Darwin's dense RLE of a label map: `[value, count, ...]` over the pixels in row-major order."""
    flat = labels.ravel()
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return np.stack([flat[starts], counts], axis=1).ravel().tolist()

