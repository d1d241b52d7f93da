"""adapters.cvat.convert through cvat-sdk's own driver: `annotate_task` (the mapper the agent uses too) runs a
bridge model of every class kind (`tests/cvat_bridge_function.py`) on real images served by the loopback
CVAT stand-in, whose task labels have ids and an order of their own; what it uploads is read back."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters.cvat.convert import (
    CONVERSIONS,
    function_labels,
    read_annotations,
    to_cvat,
)
from bridge import (
    Box,
    ClassSpec,
    Context,
    Cuboid,
    Line,
    Mask,
    ModelSpec,
    Polygon,
    Prediction,
    Skeleton,
)
from bridge.core.conversions import ROWS
from bridge.core.geometry import mask_to_polygon
from tests.conftest import ROOT
from tests.cvat_bridge_function import ATTRIBUTES, BridgeFunction, EveryKind, create
from tests.cvat_server import CvatStandIn, attribute, label, run_cli, sublabel

FUNCTION = str(ROOT / "tests" / "cvat_bridge_function.py")
SAMPLES = ROOT / "bridge" / "samples"
FRAMES = [(name, (SAMPLES / name).read_bytes()) for name in ("astronaut.jpg", "coins.png")]
SIZES = [(384, 384), (303, 384)]  # (height, width) of the frames


def task_labels(face: str = "face", coin: str = "mask", region: str = "polygon") -> list[dict]:
    """The task's labels as a CVAT user would set them up: the model's classes under ids and in an order of their
    own (attributes and skeleton nodes too), and a label the model lacks."""
    checkbox = ["false"]
    return [
        label("caption", 90, "tag", attributes=[attribute("caption", 901, "text")]),
        label("contents", 88, "tag", attributes=[attribute("cat", 883, "checkbox", checkbox),
                                                 attribute("dog", 882, "checkbox", checkbox),
                                                 attribute("person", 881, "checkbox", checkbox)]),
        label("weather", 86, "tag", attributes=[attribute("weather", 861, "radio", ["rainy", "sunny"])]),
        label("outdoor", 84, "tag"),
        label("crate", 82, "cuboid"),
        label("body", 80, "skeleton", attributes=[attribute("standing", 801, "checkbox", checkbox)],
              sublabels=[sublabel("right_hand", 803), sublabel("head", 805), sublabel("left_hand", 804)]),
        label("eye", 78, "ellipse"),
        label("horizon", 76, "polyline"),
        label("nose", 74, "points"),
        label("coin", 72, coin),
        label("region", 70, region),
        label("tilted", 68, "rectangle"),
        label(face, 66, "rectangle", attributes=[attribute("glasses", 662, "checkbox", checkbox),
                                                 attribute("smiling", 661, "checkbox", checkbox)]),
        label("pedestrian", 3, "rectangle"),
    ]


@pytest.fixture
def stand_in() -> Iterator[CvatStandIn]:
    with CvatStandIn() as server:
        yield server


@pytest.fixture
def client(stand_in: CvatStandIn, tmp_path: Path):
    from cvat_sdk import Client, Config
    from cvat_sdk.core.client import AccessTokenCredentials

    with Client(stand_in.url, config=Config(cache_dir=tmp_path / "cache"), check_server_version=False) as client:
        client.login(AccessTokenCredentials(stand_in.token))
        yield client


def annotate(stand_in: CvatStandIn, client, function: BridgeFunction, labels: list[dict], **options) -> dict:
    """Run cvat-sdk's `annotate_task` on a new task of the two sample frames; the annotations it uploaded."""
    from cvat_sdk.auto_annotation import annotate_task

    task = stand_in.add_task("samples", FRAMES, labels, chunk_size=1)
    annotate_task(client, task, function, **options)
    (upload,) = stand_in.uploads[task]
    return upload


def expected(*, shift: float = 2.0, conv_mask_to_poly: bool = False, threshold: float = 0.0) -> list[Prediction]:
    """What should come back of EveryKind on each frame: polygon parts apart and holes filled, a skeleton's
    missing node left out, tags at confidence 1.0, vectors and entities dropped."""
    found = []
    for frame, size in enumerate(SIZES):
        for p in EveryKind(shift).predict(np.zeros((*size, 3), np.uint8), Context()):
            kind = EveryKind.spec.get(p.label).kind
            if kind in ("vector", "entity") or p.confidence < threshold:
                continue
            shapes = [p.shape]
            if kind == "polygon" or (kind == "mask" and conv_mask_to_poly):
                polygon = mask_to_polygon(p.shape.array) if isinstance(p.shape, Mask) else p.shape
                shapes = [Polygon.from_ring(part[0]) for part in polygon.parts]
            confidence = 1.0 if kind in ("tag", "radio", "checklist", "text") else p.confidence
            found += [Prediction(p.label, shape, confidence, p.attributes, frame=frame) for shape in shapes]
    return found


def key(p: Prediction) -> tuple:
    """A prediction as comparable values (coordinates rounded to 1e-6)."""
    shape = p.shape
    if isinstance(shape, Mask):
        geometry: object = shape.array.tobytes()
    elif isinstance(shape, Polygon):
        geometry = tuple(np.round(np.concatenate([ring for part in shape.parts for ring in part]), 6).ravel())
    elif isinstance(shape, Line):
        geometry = tuple(np.round(shape.points, 6).ravel())
    elif isinstance(shape, Skeleton):
        geometry = tuple((n.name, round(n.x, 6), round(n.y, 6), n.occluded) for n in shape.nodes)
    elif isinstance(shape, Cuboid):
        geometry = (dataclasses.astuple(shape.front), dataclasses.astuple(shape.back))
    else:
        geometry = tuple(round(v, 6) if isinstance(v, float) else v for v in dataclasses.astuple(shape))
    return p.label, type(shape).__name__, geometry, round(p.confidence, 6), p.attributes, p.frame


def read_back(upload: dict, labels: list[dict], **options) -> list[Prediction]:
    found = []
    for frame, size in enumerate(SIZES):
        mine = {k: [item for item in upload[k] if item["frame"] == frame] for k in ("tags", "shapes")}
        found += read_annotations(mine, labels, EveryKind.spec, attributes=ATTRIBUTES, size=size, **options)
    return found


def test_every_kind_passes_the_sdks_driver_and_reads_back(stand_in, client):
    labels = task_labels()
    upload = annotate(stand_in, client, create(shift=2.0), labels)

    assert sorted(map(key, read_back(upload, labels))) == sorted(map(key, expected()))
    # CVAT's own forms, with the task's ids (frame 0; the function's ids were 0, 1, 2...)
    shapes = {(s["label_id"], s["type"]): s for s in upload["shapes"] if s["frame"] == 0}
    faces = [(s["points"], s["score"], s["attributes"]) for s in upload["shapes"] if s["label_id"] == 66]
    assert faces[:2] == [([12.0, 22.0, 42.0, 62.0], 0.9, [{"spec_id": 661, "value": "true"},
                                                          {"spec_id": 662, "value": "false"}]),
                         ([202.0, 202.0, 222.0, 222.0], 0.2, [{"spec_id": 661, "value": "false"},
                                                              {"spec_id": 662, "value": "false"}])]
    assert (shapes[68, "rectangle"]["points"], shapes[68, "rectangle"]["rotation"]) == ([47.0, 47.0, 77.0, 57.0], 30.0)
    assert (shapes[78, "ellipse"]["points"], shapes[78, "ellipse"]["rotation"]) == ([72.0, 92.0, 80.0, 88.0], 15.0)
    assert shapes[74, "points"]["points"] == [27.5, 32.25]
    assert shapes[82, "cuboid"]["points"] == [122.0, 22.0, 122.0, 52.0, 152.0, 22.0, 152.0, 52.0,
                                              162.0, 12.0, 162.0, 42.0, 132.0, 12.0, 132.0, 42.0]
    body = shapes[80, "skeleton"]
    assert body["attributes"] == [{"spec_id": 801, "value": "true"}]
    assert [(e["label_id"], e["points"], e.get("occluded", False), e.get("outside", False))
            for e in body["elements"]] == [(805, [52.0, 22.0], True, False), (804, [42.0, 62.0], False, False),
                                           (803, [47.0, 42.0], False, True)]  # the missing node: outside
    ring = next(p.shape.array for p in expected() if p.label == "coin" and p.frame == 0)
    rows, columns = np.nonzero(ring)
    box = [float(columns.min()), float(rows.min()), float(columns.max()), float(rows.max())]
    assert shapes[72, "mask"]["points"][-4:] == box  # encode_mask's form: runs, then the box (inclusive)
    tags = {t["label_id"]: t["attributes"] for t in upload["tags"] if t["frame"] == 0}
    assert tags == {84: [], 86: [{"spec_id": 861, "value": "rainy"}],
                    88: [{"spec_id": 881, "value": "true"}, {"spec_id": 882, "value": "true"},
                         {"spec_id": 883, "value": "false"}],
                    90: [{"spec_id": 901, "value": "a test"}]}
    assert {s["label_id"] for s in upload["shapes"]} | set(tags) <= {lb["id"] for lb in labels} - {3}
    assert all(s["source"] == "auto" for s in upload["shapes"] + upload["tags"])


def test_the_real_agent_serves_the_bridge_model_in_each_form(stand_in, tmp_path):
    """cvat-cli's `create-native` and `run-agent` run the bridge function, with parameters, as a user would."""
    created = run_cli(stand_in, tmp_path, "function", "create-native", "Every kind", "--function-file", FUNCTION,
                      "-p", "face=str:Face")
    assert created.returncode == 0, created.stderr
    function_id = int(created.stdout)
    labels_v2 = {lb["name"]: lb for lb in stand_in.functions[function_id]["labels_v2"]}
    assert [(name, lb["type"]) for name, lb in labels_v2.items()] == [
        ("Face", "rectangle"), ("tilted", "rectangle"), ("region", "polygon"), ("coin", "mask"), ("nose", "points"),
        ("horizon", "polyline"), ("eye", "ellipse"), ("body", "skeleton"), ("crate", "cuboid"), ("outdoor", "tag"),
        ("weather", "tag"), ("contents", "tag"), ("caption", "tag")]
    assert labels_v2["body"]["sublabels"] == [{"name": node, "attributes": [], "type": "points"}
                                              for node in ("head", "left_hand", "right_hand")]
    assert labels_v2["weather"]["attributes"] == [{"name": "weather", "input_type": "radio",
                                                   "values": ["sunny", "rainy"]}]
    assert labels_v2["Face"]["attributes"] == [{"name": name, "input_type": "checkbox", "values": []}
                                               for name in ("smiling", "glasses")]

    labels = task_labels(face="Face", coin="any")
    task = stand_in.add_task("samples", FRAMES, labels, chunk_size=1)
    whole = stand_in.detection(function_id, task)
    frame = stand_in.detection(function_id, task, 1, threshold=0.5, conv_mask_to_poly=True)
    done = run_cli(stand_in, tmp_path, "function", "run-agent", str(function_id), "--function-file", FUNCTION,
                   "-p", "face=str:Face", "-p", "shift=float:2", "--burst")

    assert done.returncode == 0, done.stderr
    assert [stand_in.requests[ar].state for ar in (whole, frame)] == ["completed", "completed"]
    options = {"rename": {"face": "Face"}}
    assert sorted(map(key, read_back(stand_in.requests[whole].result["annotations"], labels, **options))) == sorted(
        map(key, expected()))
    assert sorted(map(key, read_back(stand_in.requests[frame].result["annotations"], labels, **options))) == sorted(
        key(p) for p in expected(conv_mask_to_poly=True, threshold=0.5) if p.frame == 1)


def test_masks_leave_as_polygons_when_asked_and_the_task_label_takes_them(stand_in, client):
    from cvat_sdk.auto_annotation import BadFunctionError

    labels = task_labels(coin="any")
    upload = annotate(stand_in, client, create(shift=2.0), labels, conv_mask_to_poly=True)
    assert sorted(map(key, read_back(upload, labels))) == sorted(map(key, expected(conv_mask_to_poly=True)))
    assert {s["type"] for s in upload["shapes"] if s["label_id"] == 72} == {"polygon"}
    # a `mask` task label refuses the polygons: the SDK's driver checks types before it runs the function
    with pytest.raises(BadFunctionError, match="label 'coin' has type 'polygon' in the function, but 'mask' in "
                                               "the dataset"):
        annotate(stand_in, client, create(shift=2.0), task_labels(), conv_mask_to_poly=True)


def test_the_confidence_threshold_keeps_predictions_at_or_above_it(stand_in, client):
    labels = task_labels()
    upload = annotate(stand_in, client, create(shift=2.0), labels, conf_threshold=0.5)
    assert sorted(map(key, read_back(upload, labels))) == sorted(map(key, expected(threshold=0.5)))
    assert {p.label for p in expected(threshold=0.5)} == {p.label for p in expected()} - {"contents", "caption"}


def test_a_renamed_class_meets_the_task_label_of_its_new_name(stand_in, client):
    labels = task_labels(face="Face")
    upload = annotate(stand_in, client, create(shift=0.0, face="Face"), labels)
    faces = read_annotations(upload, labels, EveryKind.spec, rename={"face": "Face"}, attributes=ATTRIBUTES,
                             size=SIZES[0])
    assert [(p.frame, p.shape) for p in faces if p.label == "face"] == [
        (frame, box) for frame in (0, 1) for box in (Box(10.0, 20.0, 30.0, 40.0), Box(200.0, 200.0, 20.0, 20.0))]


def test_bad_outputs_fail_with_the_sdks_messages(stand_in, client):
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.api_client.exceptions import ApiTypeError

    with pytest.raises(ApiTypeError, match=r"Invalid type for variable '0'. Required value type is float and "
                                           r"passed type was float64 at \['points'\]\[0\]"):
        cvataa.rectangle(0, list(np.array([1.0, 2.0, 3.0, 4.0])))  # why every number is made a float

    class DropsANode(BridgeFunction):
        def detect(self, context, image):
            annotations = super().detect(context, image)
            for annotation in annotations:
                if getattr(annotation, "elements", None):
                    annotation.elements.pop()
            return annotations

    with pytest.raises(cvataa.BadFunctionError, match=r"function output skeleton with fewer elements than "
                                                      r"expected \(2 vs 3\)"):
        annotate(stand_in, client, DropsANode(EveryKind(), attributes=ATTRIBUTES), task_labels())
    with pytest.raises(cvataa.BadFunctionError, match="label 'region' has type 'polygon' in the function, but "
                                                      "'rectangle' in the dataset"):
        annotate(stand_in, client, create(), task_labels(region="rectangle"))
    with pytest.raises(cvataa.BadFunctionError, match="attribute 'standing' of label 'body' is not in dataset"):
        annotate(stand_in, client, create(), [lb for lb in task_labels() if lb["name"] != "body"]
                 + [label("body", 80, "skeleton", sublabels=[sublabel(n, i) for i, n in
                                                             enumerate(("head", "left_hand", "right_hand"))])])


def test_the_function_spec_declares_what_cvat_has_and_nothing_else():
    labels = function_labels(EveryKind.spec, {"face": "Face"}, ATTRIBUTES)
    declared = {lb.name: lb for lb in labels.spec.labels}
    assert list(declared) == ["Face", "tilted", "region", "coin", "nose", "horizon", "eye", "body", "crate",
                              "outdoor", "weather", "contents", "caption"]  # no vector, no entity
    assert [(lb.id, lb.type) for lb in declared.values()] == [
        (0, "rectangle"), (1, "rectangle"), (2, "polygon"), (3, "mask"), (4, "points"), (5, "polyline"),
        (6, "ellipse"), (7, "skeleton"), (8, "cuboid"), (10, "tag"), (11, "tag"), (12, "tag"), (13, "tag")]
    assert [(s.name, s.id, s.type) for s in declared["body"].sublabels] == [
        ("head", 0, "points"), ("left_hand", 1, "points"), ("right_hand", 2, "points")]
    assert [(a.name, a.id, a.input_type.value, a.values) for a in declared["contents"].attributes] == [
        ("person", 0, "checkbox", []), ("dog", 1, "checkbox", []), ("cat", 2, "checkbox", [])]
    assert [(a.name, a.input_type.value, a.values) for a in declared["weather"].attributes] == [
        ("weather", "radio", ["sunny", "rainy"])]
    assert [a.name for a in declared["Face"].attributes] == ["smiling", "glasses"]
    assert set(CONVERSIONS) == set(ROWS)
    assert {kind for kind, form in CONVERSIONS.items() if form.fidelity == "dropped"} == {
        "vector", "entity", "prediction.text", "prediction.frame"}

    two = ModelSpec(classes=[ClassSpec(name="a", kind="box"), ClassSpec(name="b", kind="box")])
    with pytest.raises(ValueError, match=r"classes \['a', 'b'\] are all named 'x' in CVAT"):
        function_labels(two, {"a": "x", "b": "x"})
    with pytest.raises(ValueError, match=r"attributes are declared for classes the model does not have: \['c'\]"):
        function_labels(two, attributes={"c": ["big"]})
    radio = ModelSpec(classes=[ClassSpec(name="w", kind="radio", options=("sun", "rain"))])
    with pytest.raises(ValueError, match=r"class 'w': attribute names repeat in \['w', 'w'\]"):
        function_labels(radio, attributes={"w": ["w"]})


def test_every_number_leaves_as_a_plain_float():
    labels = function_labels(EveryKind.spec, attributes=ATTRIBUTES)
    image = np.asarray(Image.open(SAMPLES / "astronaut.jpg"))
    annotations = to_cvat(EveryKind(0.5).predict(image, Context()), labels, size=image.shape[:2])
    numbers = [v for a in annotations for v in [*getattr(a, "points", []), getattr(a, "score", 0.0),
                                                getattr(a, "rotation", 0.0)]]
    numbers += [v for a in annotations for e in getattr(a, "elements", []) for v in e.points]
    assert len(numbers) > 100 and {type(v) for v in numbers} == {float}


def test_importing_the_conversions_needs_no_cvat_sdk():
    code = ("import sys, adapters.cvat.convert; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cvat_sdk', 'cvat_cli')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr
