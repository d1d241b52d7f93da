"""The CVAT function (`adapters.cvat.function`, made from a manifest as cvat-cli makes it) through cvat-sdk's own
driver: `annotate_task` (whose label mapper the agent uses too) runs it on real images served by the loopback
CVAT stand-in, whose task labels have ids and an order of their own; what it uploads is read back. And the
dialect's pure parts: labels, masks against the SDK's own codec, prompts, numbers."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from adapters.cvat import adapter
from adapters.cvat.convert import (
    CONVERSIONS,
    CvatRun,
    decode_mask,
    encode_mask,
    function_labels,
    prompts_from_cvat,
    read_annotations,
    to_cvat,
)
from adapters.cvat.function import DetectionFunction, InteractionFunction, create
from bridge import Box, ClassSpec, Context, Cuboid, Line, Mask, ModelSpec, Polygon, Prediction, Skeleton
from bridge.core.conversions import missing_rows
from bridge.core.errors import InvalidInput
from bridge.core.geometry import mask_to_polygon, polygon_to_mask
from bridge.core.manifest import ManifestError
from tests.conftest import ROOT, encode_image
from tests.cvat_models import ATTRIBUTES, EveryKind
from tests.cvat_server import CvatStandIn, attribute, label, sublabel, task_labels_of

SAMPLES = ROOT / "bridge" / "samples"
FRAMES = [(name, (SAMPLES / name).read_bytes()) for name in ("astronaut.jpg", "coins.png")]
SIZES = [(384, 384), (303, 384)]  # (height, width) of the frames


def write_manifest(folder: Path, name: str, **keys: object) -> str:
    """A manifest file for the CVAT function (its one parameter is the manifest's path)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **keys}), encoding="utf-8")
    return str(path)


def every_kind(folder: Path, face: str = "face", shift: float = 2.0) -> str:
    return write_manifest(folder, f"every-kind-{face}-{shift:g}",
                          model={"factory": f"{ROOT}/tests/cvat_models.py:EveryKind", "params": {"shift": shift}},
                          geometry={"simplify_tolerance": 0},
                          platforms={"cvat": {"rename": {"face": face}, "attributes": ATTRIBUTES}})


@pytest.fixture(scope="module")
def function(tmp_path_factory) -> DetectionFunction:
    return create(every_kind(tmp_path_factory.mktemp("manifests")))


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


def annotate(stand_in: CvatStandIn, client, function, labels: list[dict], frames=FRAMES, **options) -> dict:
    """Run cvat-sdk's `annotate_task` on a new task of `frames`; the annotations it uploaded."""
    from cvat_sdk.auto_annotation import annotate_task

    task = stand_in.add_task("samples", frames, labels, chunk_size=1)
    annotate_task(client, task, function, **options)
    (upload,) = stand_in.uploads[task]
    return upload


def expected(*, shift: float = 2.0, conv_mask_to_poly: bool = False, threshold: float = 0.0) -> list[Prediction]:
    """What should come back of EveryKind on each frame: polygons' holes filled (their parts grouped), tags at
    confidence 1.0, vectors and entities dropped."""
    found = []
    for frame, size in enumerate(SIZES):
        for p in EveryKind(shift).predict(np.zeros((*size, 3), np.uint8), Context()):
            kind = EveryKind.spec.get(p.label).kind
            if kind in ("vector", "entity") or p.confidence < threshold:
                continue
            shape = p.shape
            if kind == "polygon" or (kind == "mask" and conv_mask_to_poly):
                polygon = mask_to_polygon(shape.array) if isinstance(shape, Mask) else shape
                shape = Polygon(tuple((part[0],) for part in polygon.parts))
            confidence = 1.0 if kind in ("tag", "radio", "checklist", "text") else p.confidence
            found.append(Prediction(p.label, shape, confidence, p.attributes, frame=frame))
    return found


def key(p: Prediction) -> tuple:
    """A prediction as comparable values (coordinates rounded to 1e-6)."""
    shape = p.shape
    if isinstance(shape, Mask):
        geometry: object = shape.array.tobytes()
    elif isinstance(shape, Polygon):  # by its pixels and parts: the core orients rings as it pleases
        geometry = (len(shape.parts), polygon_to_mask(shape, 400, 400).tobytes())
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


# --- through cvat-sdk's driver ----------------------------------------------------------------------------------


def test_every_kind_passes_the_sdks_driver_and_reads_back(stand_in, client, function):
    labels = task_labels()
    upload = annotate(stand_in, client, function, labels)

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
    regions = [s for s in upload["shapes"] if s["label_id"] == 70 and s["frame"] == 0]
    assert [len(s["points"]) for s in regions] == [8, 6] and {s["group"] for s in regions} == {1}  # 2 parts, 1 group
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


def test_masks_leave_as_polygons_when_asked_and_the_task_label_takes_them(stand_in, client, function):
    from cvat_sdk.auto_annotation import BadFunctionError

    labels = task_labels(coin="any")
    upload = annotate(stand_in, client, function, labels, conv_mask_to_poly=True)
    assert sorted(map(key, read_back(upload, labels))) == sorted(map(key, expected(conv_mask_to_poly=True)))
    assert {s["type"] for s in upload["shapes"] if s["label_id"] == 72} == {"polygon"}
    # a `mask` task label refuses the polygons: the SDK's driver checks types before it runs the function
    with pytest.raises(BadFunctionError, match="label 'coin' has type 'polygon' in the function, but 'mask' in "
                                               "the dataset"):
        annotate(stand_in, client, function, task_labels(), conv_mask_to_poly=True)


def test_the_confidence_threshold_keeps_predictions_at_or_above_it(stand_in, client, function):
    labels = task_labels()
    upload = annotate(stand_in, client, function, labels, conf_threshold=0.5)
    assert sorted(map(key, read_back(upload, labels))) == sorted(map(key, expected(threshold=0.5)))
    assert {p.label for p in expected(threshold=0.5)} == {p.label for p in expected()} - {"contents", "caption"}


def test_a_renamed_class_meets_the_task_label_of_its_new_name(stand_in, client, tmp_path):
    labels = task_labels(face="Face")
    upload = annotate(stand_in, client, create(every_kind(tmp_path, face="Face", shift=0)), labels)
    faces = read_annotations(upload, labels, EveryKind.spec, rename={"face": "Face"}, attributes=ATTRIBUTES,
                             size=SIZES[0])
    assert [(p.frame, p.shape) for p in faces if p.label == "face"] == [
        (frame, box) for frame in (0, 1) for box in (Box(10.0, 20.0, 30.0, 40.0), Box(200.0, 200.0, 20.0, 20.0))]
    from cvat_sdk.auto_annotation import BadFunctionError

    with pytest.raises(BadFunctionError, match="label 'Face' is not in dataset"):  # CVAT's rule: names match
        annotate(stand_in, client, create(every_kind(tmp_path, face="Face", shift=0)), task_labels())


def test_bad_outputs_and_mismatched_labels_fail_with_the_sdks_messages(stand_in, client, function):
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.api_client.exceptions import ApiTypeError

    with pytest.raises(ApiTypeError, match=r"Invalid type for variable '0'. Required value type is float and "
                                           r"passed type was float64 at \['points'\]\[0\]"):
        cvataa.rectangle(0, list(np.array([1.0, 2.0, 3.0, 4.0])))  # why every number is made a float

    class DropsANode:
        spec = function.spec

        def detect(self, context, image):
            annotations = function.detect(context, image)
            for annotation in annotations:
                if getattr(annotation, "elements", None):
                    annotation.elements.pop()
            return annotations

    with pytest.raises(cvataa.BadFunctionError, match=r"function output skeleton with fewer elements than "
                                                      r"expected \(2 vs 3\)"):
        annotate(stand_in, client, DropsANode(), task_labels())
    with pytest.raises(cvataa.BadFunctionError, match="label 'region' has type 'polygon' in the function, but "
                                                      "'rectangle' in the dataset"):
        annotate(stand_in, client, function, task_labels(region="rectangle"))
    with pytest.raises(cvataa.BadFunctionError, match="attribute 'standing' of label 'body' is not in dataset"):
        annotate(stand_in, client, function, [lb for lb in task_labels() if lb["name"] != "body"]
                 + [label("body", 80, "skeleton", sublabels=[sublabel(n, i) for i, n in
                                                             enumerate(("head", "left_hand", "right_hand"))])])


MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_every_example_manifest_is_a_cvat_function_or_says_why_not(path, stand_in, client, serve_app, monkeypatch):
    """Each example as cvat-cli would make it: image models pass the SDK's driver on three frames, with
    task labels named as the function's (ids and order the task's own) and the answer the adapter wrote;
    models that take prompts are interaction functions; text models are refused, saying why."""
    if path.stem == "mobilesam":
        pytest.importorskip("onnxruntime", reason="MobileSAM serves on onnxruntime: pip install -e '.[sam]'")
    if path.stem == "remote_v7":  # its remote: the default manifest's V7 endpoint, served here
        from bridge.core.manifest import load_manifest
        from bridge.serving.app import create_app

        monkeypatch.setenv("REMOTE_V7_URL", serve_app(create_app(load_manifest(ROOT / "manifests/default.yaml"),
                                                                 playground=False)) + "/v7")
    if path.stem.startswith("text_"):
        with pytest.raises(ManifestError, match="CVAT's functions annotate images, and this model reads text"):
            create(str(path))
        return
    function = create(str(path))
    if path.stem in ("grabcut", "mobilesam"):
        assert isinstance(function, InteractionFunction)
        return
    labels = task_labels_of(function.spec)
    blurred = cv2.GaussianBlur(np.asarray(Image.open(SAMPLES / "astronaut.jpg")), (0, 0), 6)  # for the blur example
    frames = [*FRAMES, ("blurred.png", encode_image(blurred))]
    upload = annotate(stand_in, client, function, labels, frames)

    section, spec = function.model.section, function.model.service.spec
    for frame, ((_, data), size) in enumerate(zip(frames, [*SIZES, SIZES[0]])):
        answer = function.model.answer(Image.open(io.BytesIO(data)), CvatRun(labels=function.model.labels))
        own = adapter.read_answer(answer, spec, section, size)
        mine = {k: [item for item in upload[k] if item["frame"] == frame] for k in ("tags", "shapes")}
        got = read_annotations(mine, labels, spec, rename=section.rename, attributes=section.attributes, size=size,
                               frames=False)
        assert sorted(map(key, got)) == sorted(map(key, own))  # all of it, under the task's ids
    assert {item["frame"] for item in upload["shapes"] + upload["tags"]}, f"{path.stem}: nothing found"


def test_a_manifest_cvat_cannot_serve_is_refused_when_the_function_loads(tmp_path):
    model = {"factory": f"{ROOT}/tests/cvat_models.py:EveryKind"}
    params = {"type": "object", "properties": {"level": {"type": "integer", "maximum": 3}}}
    cases = [
        ({"params": {"level": 9}}, r"platforms.cvat.params: invalid parameter level: 9 is greater than the maximum"),
        ({"attributes": {"nobody": ["tall"]}}, r"platforms.cvat: attributes are declared for classes the model "
                                              r"does not have: \['nobody'\]"),
        ({"rename": {"face": "eye"}}, r"platforms.cvat: classes \['face', 'eye'\] are all named 'eye' in CVAT"),
        ({"enabled": False}, "platforms.cvat.enabled is false: this manifest is not served to CVAT"),
    ]
    for number, (section, message) in enumerate(cases):
        manifest = write_manifest(tmp_path, f"bad-{number}", model=model, params=params,
                                  platforms={"cvat": section})
        with pytest.raises(ManifestError, match=message):
            create(manifest)


def test_bridge_check_says_what_cvat_loses_and_which_labels_a_task_needs(tmp_path, capsys):
    from bridge.commands.main import main

    manifest = write_manifest(tmp_path, "check", model={"factory": f"{ROOT}/tests/cvat_models.py:EveryKind"},
                              platforms={"cvat": {"rename": {"face": "Face", "fcae": "x"}}})
    assert main(["check", manifest]) == 0
    out = capsys.readouterr().out
    assert "  cvat: 7 warning(s)" in out
    for line in ("class 'region' (polygon): sent as polygon: a CVAT polygon is one ring: holes are filled",
                 "class 'motion' (vector): dropped: CVAT has no vector shape",
                 "class 'phrase' (entity): dropped: CVAT's functions annotate images, not text",
                 "confidence: sent as score: a tag has no score in CVAT",
                 "platforms.cvat.rename names 'fcae', not a class of the model",
                 "CVAT matches labels by name: the task's labels must be named 'Face' (rectangle), 'tilted' "
                 "(rectangle), 'region' (polygon), 'coin' (mask), 'nose' (points), 'horizon' (polyline), 'eye' "
                 "(ellipse), 'body' (skeleton: head, left_hand, right_hand), 'crate' (cuboid), 'outdoor' (tag)"):
        assert f"    - {line}" in out, line
    text = write_manifest(tmp_path, "text", model={"factory": f"{ROOT}/tests/shapes_model.py:TextShapes"},
                          platforms={"cvat": {}})
    assert main(["check", text]) == 0
    assert "cvat: 1 warning(s)\n    - CVAT's functions annotate images: a text model cannot be served" in (
        capsys.readouterr().out)


# --- the dialect, pure ------------------------------------------------------------------------------------------


def test_the_function_declares_what_cvat_has_and_nothing_else(function):
    declared = {lb.name: lb for lb in function.spec.labels}
    assert list(declared) == ["face", "tilted", "region", "coin", "nose", "horizon", "eye", "body", "crate",
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
    assert [a.name for a in declared["face"].attributes] == ["smiling", "glasses"]
    assert missing_rows(CONVERSIONS) == []
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
    answer = to_cvat(EveryKind(0.5).predict(image, Context()), labels, size=image.shape[:2])
    numbers = [v for s in answer["shapes"] for v in [*s["points"], s["score"], s.get("rotation", 0.0)]]
    numbers += [v for s in answer["shapes"] for e in s.get("elements", []) for v in e["points"]]
    assert len(numbers) > 100 and {type(v) for v in numbers} == {float}


@pytest.mark.parametrize("seed", range(6))
def test_masks_are_coded_as_cvat_sdks_own_codec_codes_them(seed):
    from cvat_sdk.masks import decode_mask as sdk_decode
    from cvat_sdk.masks import encode_mask as sdk_encode

    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) < [0.02, 0.5, 0.98][seed % 3]
    mask[rng.integers(37), rng.integers(53)] = True
    if seed == 5:
        mask[:] = False
        mask[0, 0] = True  # a box of one pixel, in at its first
    assert encode_mask(mask) == [float(v) for v in sdk_encode(mask)]
    assert (decode_mask(sdk_encode(mask), (37, 53)) == mask).all()
    assert (sdk_decode(encode_mask(mask), image_width=53, image_height=37) == mask).all()
    with pytest.raises(ValueError, match=r"box \[0, 0, 60, 0\] does not fit an image of 53x37"):
        decode_mask([1.0, 0, 0, 60, 0], (37, 53))
    with pytest.raises(ValueError, match="runs cover 5 pixels, its box 4"):
        decode_mask([5.0, 0, 0, 1, 1], (37, 53))


@pytest.mark.parametrize(("prompts", "message"), [
    ({"pos_points": [(400, 10)]}, r"the positive click \(400, 10\) lies outside the 384x303 image"),
    ({"neg_points": [(10, -1)]}, r"the negative click \(10, -1\) lies outside"),
    ({"pos_points": [(float("nan"), 10)]}, "is not two finite numbers"),
    ({"pos_points": [(1, 2, 3)]}, "is not two finite numbers"),
    ({"bounding_box": ((50, 50), (50, 90))}, r"the box from \(50, 50\) to \(50, 90\) is empty"),
    ({"bounding_box": ((90, 50), (20, 60))}, "is empty"),
    ({"bounding_box": ((500, 500), (520, 520))}, "lies outside the 384x303 image"),
    ({"bounding_box": ((1, float("inf")), (2, 3))}, "is not two corners of finite numbers"),
])
def test_bad_prompts_are_invalid_input(prompts, message):
    asked = {"pos_points": [], "neg_points": [], "bounding_box": None, **prompts}
    with pytest.raises(InvalidInput, match=message):
        prompts_from_cvat(asked["pos_points"], asked["neg_points"], asked["bounding_box"], (303, 384))
    good = prompts_from_cvat([(10, 20)], [(384, 303)], ((-5, 10), (30, 40)), (303, 384))
    assert (good.box, good.positive, good.negative) == (Box(-5, 10, 35, 30), ((10, 20),), ((384, 303),))


def test_importing_the_adapter_needs_no_cvat_sdk():
    """`bridge formats`, `check`, the playground and `prelabel --to cvat` run without the `cvat` extra."""
    code = ("import sys, adapters.cvat, adapters.cvat.cvat_xml; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cvat_sdk', 'cvat_cli')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr
