"""cvat-cli's real `function create-native` and `function run-agent` against the loopback CVAT stand-in.

The CLI runs as a subprocess, its agent with its own worker process, exactly as a user runs it. The first tests
check the stand-in with `tests/cvat_probe_function.py` (cvat-sdk only); the others run the bridge's function
(`--function-module adapters.cvat.function -p manifest=str:PATH`) on the tests' models and the examples. The
stand-in records what the agent completes and fails.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT, encode_image
from tests.cvat_probe_function import bright_box
from tests.cvat_server import CLI, CvatStandIn, cli_env, label, run_cli

PROBE = str(ROOT / "tests" / "cvat_probe_function.py")
BRIDGE = ("--function-module", "adapters.cvat.function")
SAMPLES = ROOT / "bridge" / "samples"


@pytest.fixture
def stand_in() -> Iterator[CvatStandIn]:
    with CvatStandIn() as server:
        yield server


@pytest.fixture
def cvat_cli(stand_in: CvatStandIn, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    return lambda *args: run_cli(stand_in, tmp_path, *args)


def frames() -> list[tuple[str, bytes]]:
    from skimage import data

    return [("astronaut.jpg", (SAMPLES / "astronaut.jpg").read_bytes()),
            ("coins.png", (SAMPLES / "coins.png").read_bytes()),
            ("crash.png", encode_image(data.camera())), ("wrong.png", encode_image(data.moon()))]


def create_probe(cvat_cli: Callable[..., subprocess.CompletedProcess], *parameters: str) -> int:
    done = cvat_cli("function", "create-native", "Probe", "--function-file", PROBE, *parameters)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_create_native_posts_the_functions_labels_and_parameters_reach_create(stand_in, cvat_cli):
    function_id = create_probe(cvat_cli, "-p", "label=str:person", "-p", "score=float:0.8")

    assert stand_in.calls == ["GET /api/server/about", "POST /api/functions"]
    registered = {k: v for k, v in stand_in.functions[function_id].items() if k not in ("id", "created_date")}
    assert registered == {
        "provider": "native", "name": "Probe", "visibility": "private", "kind": "detector",
        "labels_v2": [{"name": "person", "attributes": [], "type": "rectangle"},
                      {"name": "scene", "attributes": [], "type": "tag"}],
    }
    unknown = cvat_cli("function", "create-native", "Probe", "--function-file", PROBE, "-p", "colour=str:red")
    assert unknown.returncode != 0 and "unexpected keyword argument 'colour'" in unknown.stderr


def test_the_agent_completes_each_request_and_reports_failing_frames_as_failures(stand_in, cvat_cli):
    function_id = create_probe(cvat_cli, "-p", "label=str:person", "-p", "score=float:0.8")
    # the task's labels: ids and order unlike the function's (person 0, scene 1), and one the function lacks
    labels = [label("car", 5, "rectangle"), label("scene", 31, "tag"), label("person", 17, "rectangle")]
    task = stand_in.add_task("four frames", frames(), labels, chunk_size=2)
    good = stand_in.add_task("two frames", frames()[:2], labels, chunk_size=2)
    queued = {
        "astronaut": stand_in.detection(function_id, task, 0),
        "crash": stand_in.detection(function_id, task, 2),
        "wrong": stand_in.detection(function_id, task, 3),
        "coins, high threshold": stand_in.detection(function_id, task, 1, threshold=0.9),
        "whole good task": stand_in.detection(function_id, good),
        "whole task with the crash": stand_in.detection(function_id, task),
    }

    done = cvat_cli("function", "run-agent", str(function_id), "--function-file", PROBE, "-p", "label=str:person",
                    "-p", "score=float:0.8", "--burst")

    assert done.returncode == 0, done.stderr
    assert "No annotation requests left in queue; exiting." in done.stderr
    state = {name: stand_in.requests[ar] for name, ar in queued.items()}
    assert {name: ar.state for name, ar in state.items()} == {
        "astronaut": "completed", "crash": "failed", "wrong": "failed", "coins, high threshold": "completed",
        "whole good task": "completed", "whole task with the crash": "failed"}
    assert state["crash"].error == "Unknown error"  # the agent keeps a function's own exception to itself
    assert state["wrong"].error == ("Underlying function returned incorrect result: "
                                    "function output shape of type 'polygon' (expected 'rectangle')")
    assert state["whole task with the crash"].error == "Unknown error"  # one bad frame fails a whole task

    astronaut = bright_box(Image.open(io.BytesIO(frames()[0][1])), 200)
    assert state["astronaut"].result == {"annotations": {
        "tags": [{"label_id": 31, "frame": 0, "source": "auto"}],
        "shapes": [{"type": "rectangle", "label_id": 17, "frame": 0, "points": astronaut, "score": 0.8,
                    "source": "auto"}]}}
    # the threshold reached the function's context: its 0.8 box is under 0.9, the tag stays
    assert state["coins, high threshold"].result == {"annotations": {
        "tags": [{"label_id": 31, "frame": 1, "source": "auto"}], "shapes": []}}
    coins = bright_box(Image.open(io.BytesIO(frames()[1][1])), 200)
    whole = state["whole good task"].result["annotations"]
    assert whole["tags"] == [{"label_id": 31, "frame": 0, "source": "auto"},
                             {"label_id": 31, "frame": 1, "source": "auto"}]
    assert [(s["frame"], s["label_id"], s["points"]) for s in whole["shapes"]] == [(0, 17, astronaut),
                                                                                   (1, 17, coins)]

    queue = f"/api/functions/queues/function:{function_id}/requests"
    settled = {f"POST {queue}/{ar}/{'complete' if r.state == 'completed' else 'fail'}"
               for ar, r in stand_in.requests.items()}
    assert {call.split("?")[0] for call in stand_in.calls} == {
        "GET /api/server/about", "POST /api/functions", f"GET /api/functions/{function_id}", f"POST {queue}/acquire",
        *settled, f"GET /api/tasks/{task}", f"GET /api/tasks/{good}", "GET /api/labels",
        f"GET /api/tasks/{task}/data/meta", f"GET /api/tasks/{good}/data/meta",
        f"GET /api/tasks/{task}/data/", f"GET /api/tasks/{good}/data/"}
    fetched = [call.split("?")[1] for call in stand_in.calls if "/data/?" in call]
    assert "number=0&quality=original&type=frame" in fetched  # annotate_frame: the one frame
    assert "number=1&quality=original&type=chunk" in fetched  # annotate_task: chunks of frames


def test_the_agent_wakes_on_the_queues_event_stream(stand_in, cvat_cli, tmp_path):
    """Without --burst the agent watches the queue; a new request's event, not a poll, wakes it."""
    function_id = create_probe(cvat_cli)
    task = stand_in.add_task("one frame", frames()[:1], [label("face", 8, "rectangle"), label("scene", 9, "tag")])
    log = tmp_path / "agent.log"
    with log.open("w") as stderr:
        agent = subprocess.Popen([CLI, "--server-host", stand_in.url, "function", "run-agent", str(function_id),
                                  "--function-file", PROBE], env=cli_env(stand_in, tmp_path), stderr=stderr,
                                 start_new_session=True)
    try:
        _wait(lambda: stand_in.watchers() == 1, "the agent to watch the queue")
        request = stand_in.detection(function_id, task, 0)
        _wait(stand_in.settled, "the request to be settled")
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(timeout=30)
    text = log.read_text()
    assert "Connected to the queue event stream" in text
    assert "Received notification about a new request of category 'interactive'" in text
    assert stand_in.requests[request].state == "completed"
    assert f"GET /api/functions/queues/function:{function_id}/watch" in stand_in.calls


def test_update_and_settle_belong_to_the_agent_that_acquired(stand_in, cvat_cli):
    """The agent reports progress every 30 s of a batch request, too slow for a test run: the same calls as
    its `_update_ar` and `_complete_ar`, made here with the SDK's client."""
    from cvat_sdk import make_client
    from cvat_sdk.exceptions import ApiException

    function_id = create_probe(cvat_cli)
    task = stand_in.add_task("one frame", frames()[:1], [label("face", 8, "rectangle")])
    ar = stand_in.detection(function_id, task)
    queue = f"function:{function_id}"
    with make_client(stand_in.url, access_token=stand_in.token) as client:
        def post(path: str, body: dict) -> dict:
            _, response = client.api_client.call_api(f"/api/functions/queues/{{queue}}/requests/{path}", "POST",
                                                     path_params={"queue": queue}, body=body)
            return json.loads(response.data)

        assignment = post("acquire", {"agent_id": "a1", "request_category": "batch"})["ar_assignment"]
        assert assignment == {"ar_id": ar, "ar_params": {"type": "annotate_task", "task": task, "threshold": None,
                                                         "mapping": {"face": {"name": "face"}},
                                                         "conv_mask_to_poly": False}}
        assert post("acquire", {"agent_id": "a2", "request_category": "batch"}) == {"ar_assignment": None}
        post(f"{ar}/update", {"agent_id": "a1", "progress": 0.5})
        with pytest.raises(ApiException) as refused:
            post(f"{ar}/complete", {"agent_id": "a2", "annotations": {"tags": [], "shapes": []}})
        assert refused.value.status == 409
        post(f"{ar}/complete", {"agent_id": "a1", "annotations": {"tags": [], "shapes": []}})
    assert (stand_in.requests[ar].progress, stand_in.requests[ar].state) == ([0.5], "completed")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll until `condition` holds; a bound for a hung run, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# --- the bridge's function ---------------------------------------------------------------------------------------


def create_bridge(cvat_cli: Callable[..., subprocess.CompletedProcess], manifest: str | Path, name: str) -> int:
    done = cvat_cli("function", "create-native", name, *BRIDGE, "-p", f"manifest=str:{manifest}")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def run_bridge(cvat_cli: Callable[..., subprocess.CompletedProcess], manifest: str | Path,
               function_id: int) -> subprocess.CompletedProcess:
    """`run-agent --burst`: the agent serves every queued request, then exits."""
    done = cvat_cli("function", "run-agent", str(function_id), *BRIDGE, "-p", f"manifest=str:{manifest}", "--burst")
    assert done.returncode == 0, done.stderr
    assert "No annotation requests left in queue; exiting." in done.stderr
    return done


def outcome(stand_in: CvatStandIn, ar: str) -> tuple[str, str | None]:
    return stand_in.requests[ar].state, stand_in.requests[ar].error


def test_the_agent_serves_the_bridge_function_in_each_form(stand_in, cvat_cli, tmp_path):
    """Every class kind, the request's threshold and conv_mask_to_poly, renamed classes, task ids."""
    from tests.test_cvat_convert import FRAMES, every_kind, expected, key, read_back, task_labels

    manifest = every_kind(tmp_path, face="Face")
    function_id = create_bridge(cvat_cli, manifest, "Every kind")
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
    run_bridge(cvat_cli, manifest, function_id)

    assert [stand_in.requests[ar].state for ar in (whole, frame)] == ["completed", "completed"]
    options = {"rename": {"face": "Face"}}
    assert sorted(map(key, read_back(stand_in.requests[whole].result["annotations"], labels, **options))) == sorted(
        map(key, expected()))
    assert sorted(map(key, read_back(stand_in.requests[frame].result["annotations"], labels, **options))) == sorted(
        key(p) for p in expected(conv_mask_to_poly=True, threshold=0.5) if p.frame == 1)


def test_a_failing_frame_fails_its_request_with_a_clear_message_and_the_agent_keeps_serving(stand_in, cvat_cli,
                                                                                            tmp_path):
    """The counterparts of the other platforms' bad inputs: a model exception, a model past the deadline, a
    class the model does not have, an image over the pixel limit, an unreadable frame, a label the task lacks."""
    from tests.cvat_models import FAIL_WIDTH, SLOW_WIDTH, STRAY_WIDTH

    manifest = tmp_path / "temperamental.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "temperamental", "model": {"factory": f"{ROOT}/tests/cvat_models.py:Temperamental"},
        "limits": {"deadline": 1.0, "concurrency": 2, "max_image_pixels": 200 * 150},  # a thread for the next frame
        "platforms": {"cvat": {}}}))
    function_id = create_bridge(cvat_cli, manifest, "Temperamental")

    def frame(width: int, height: int = 100) -> bytes:
        image = np.zeros((height, width, 3), np.uint8)
        image[20:40, 30:60] = 255
        return encode_image(image)

    frames = [("good.png", frame(120)), ("fails.png", frame(FAIL_WIDTH)), ("slow.png", frame(SLOW_WIDTH)),
              ("stray.png", frame(STRAY_WIDTH)), ("big.png", frame(300, 200)), ("broken.png", b"\x89PNG but no more")]
    task = stand_in.add_task("frames", frames, [label("scene", 7, "tag"), label("face", 5, "rectangle")])
    bad = {name: stand_in.detection(function_id, task, index) for index, (name, _) in enumerate(frames)
           if name != "good.png"}
    bad["Face.png"] = stand_in.detection(function_id, task, 0, mapping={"face": {"name": "Face"}})
    good = [stand_in.detection(function_id, task, 0) for _ in range(len(bad))]
    order = [ar for pair in zip(bad.values(), good) for ar in pair]  # each bad request followed by a good one
    stand_in.requests = {ar: stand_in.requests[ar] for ar in order}  # served in this order
    without_scene = stand_in.detection(function_id, task, 0, mapping={"face": {"name": "face"}})
    run_bridge(cvat_cli, manifest, function_id)

    incorrect, invalid = "Underlying function returned incorrect result: ", "Invalid annotation request: "
    assert {name: outcome(stand_in, ar) for name, ar in bad.items()} == {
        "fails.png": ("failed", incorrect + "the model failed: RuntimeError: the model broke on this frame"),
        "slow.png": ("failed", incorrect + "the job took longer than 1 s (limits.deadline)"),
        "stray.png": ("failed", incorrect + "the model returned a bad prediction: label 'cat' is not one of its "
                                            "classes ['face', 'scene']"),
        "big.png": ("failed", invalid + "image is 300x200 = 60,000 pixels; the limit is 30,000 "
                                        "(limits.max_image_pixels)"),
        "broken.png": ("failed", "Unknown error"),  # cvat-cli reads the frame before the function: its message
        "Face.png": ("failed", incorrect + "label 'face' is not in dataset"),  # CVAT's rule: names must match
    }
    box = {"type": "rectangle", "label_id": 5, "frame": 0, "points": [30.0, 20.0, 60.0, 40.0], "score": 0.8,
           "attributes": [], "source": "auto"}
    scene = {"label_id": 7, "frame": 0, "attributes": [], "source": "auto"}
    assert [stand_in.requests[ar].result for ar in good] == [{"annotations": {"tags": [scene], "shapes": [box]}}
                                                             ] * len(good)
    # a label the request's mapping leaves out is left out (CVAT's dialog maps the labels it matched)
    assert stand_in.requests[without_scene].result == {"annotations": {"tags": [], "shapes": [box]}}


def test_grabcut_is_an_interaction_function_a_box_in_a_mask_out(stand_in, cvat_cli):
    """The GrabCut example (a model that takes prompts) as its manifest declares it: a box required, no clicks."""
    from cvat_sdk.masks import decode_mask

    manifest = ROOT / "manifests" / "grabcut.yaml"
    function_id = create_bridge(cvat_cli, manifest, "GrabCut")
    registered = {k: v for k, v in stand_in.functions[function_id].items() if k not in ("id", "created_date")}
    assert {k: v for k, v in registered.items() if k not in ("min_neg_points", "startswith_box_optional")} == {
        "provider": "native", "name": "GrabCut", "visibility": "private", "kind": "interactor",
        "min_pos_points": 0, "startswith_box": True}  # as sent: no negative clicks, a box required
    task = stand_in.add_task("coins", frames()[1:2], [label("object", 4, "polygon")])
    box = [[20.0, 20.0], [75.0, 75.0]]
    interact = {"type": "interact", "task": task, "frame": 0, "pos_points": [], "neg_points": []}
    good = stand_in.queue(function_id, {**interact, "obj_bbox": box})
    no_box = stand_in.queue(function_id, {**interact, "obj_bbox": []})
    clicked = stand_in.queue(function_id, {**interact, "obj_bbox": box, "neg_points": [[5.0, 5.0]]})
    outside = stand_in.queue(function_id, {**interact, "obj_bbox": [[500.0, 500.0], [520.0, 520.0]]})
    run_bridge(cvat_cli, manifest, function_id)

    assert [outcome(stand_in, ar) for ar in (no_box, clicked, outside)] == [
        ("failed", "Invalid annotation request: a bounding box is required"),
        ("failed", "Invalid annotation request: negative points are not supported"),
        ("failed", "Invalid annotation request: the box from (500, 500) to (520, 520) lies outside the 384x303 "
                   "image")]
    (shape,) = stand_in.requests[good].result["shapes"]
    assert (shape["type"], shape["attributes"]) == ("mask", [{"spec_id": 0, "value": "1.0"}])
    found = decode_mask(shape["points"], image_width=384, image_height=303)
    assert not found[:, 90:].any() and found[:20].sum() < 0.1 * found.sum() and found.sum() > 1000  # one coin


@pytest.fixture(scope="module")
def mobilesam_dir() -> Path:
    pytest.importorskip("onnxruntime", reason="MobileSAM serves on onnxruntime: pip install -e '.[sam]'")
    from examples.mobilesam import build

    return build.build()  # nothing to do when the folder is up to date


def test_mobilesam_segments_what_cvat_prompts_point_at(stand_in, cvat_cli, mobilesam_dir, monkeypatch):
    """The prompts issue on CVAT: on the astronaut, a box around the face gives a mask inside it that covers
    most of it; clicks on the helmet and on the face give different masks; a negative click removes what it
    touches. Bad prompts are invalid requests, and the agent keeps serving."""
    from cvat_sdk.masks import decode_mask

    from tests.test_mobilesam import FACE, FACE_BOX, HELMET, PATCH, SUIT, at, iou

    monkeypatch.setenv("MOBILESAM_DIR", str(mobilesam_dir))
    manifest = ROOT / "manifests" / "mobilesam.yaml"
    function_id = create_bridge(cvat_cli, manifest, "MobileSAM")
    assert {k: stand_in.functions[function_id][k] for k in ("kind", "min_pos_points", "min_neg_points",
                                                             "startswith_box_optional")} == {
        "kind": "interactor", "min_pos_points": 0, "min_neg_points": 0, "startswith_box_optional": True}
    task = stand_in.add_task("astronaut", frames()[:1], [label("object", 4, "mask")])

    def interact(box: list | None = None, positive: tuple = (), negative: tuple = ()) -> str:
        return stand_in.queue(function_id, {"type": "interact", "task": task, "frame": 0, "obj_bbox": box or [],
                                            "pos_points": [list(p) for p in positive],
                                            "neg_points": [list(p) for p in negative]})

    x, y, w, h = FACE_BOX.x, FACE_BOX.y, FACE_BOX.w, FACE_BOX.h
    asked = {"face box": interact([[x, y], [x + w, y + h]]), "helmet": interact(positive=(HELMET,)),
             "face": interact(positive=(FACE,)), "suit": interact(positive=(SUIT,)),
             "suit, not the patch": interact(positive=(SUIT,), negative=(PATCH,))}
    bad = {"outside": interact(positive=((400, 10),)), "empty box": interact([[50, 50], [50, 90]]),
           "NaN": interact(positive=((float("nan"), 10),)),
           "hundreds": interact(positive=tuple((float(i % 384), 10.0) for i in range(300))),
           "nothing": interact()}
    after = interact(positive=(FACE,))
    run_bridge(cvat_cli, manifest, function_id)

    invalid = "Invalid annotation request: "
    assert {name: outcome(stand_in, ar) for name, ar in bad.items()} == {
        "outside": ("failed", invalid + "the positive click (400, 10) lies outside the 384x384 image"),
        "empty box": ("failed", invalid + "the box from (50, 50) to (50, 90) is empty"),
        "NaN": ("failed", invalid + "the positive click [nan, 10] is not two finite numbers (x, y)"),
        "hundreds": ("failed", invalid + "300 clicks are more than this model takes (at most 64)"),
        "nothing": ("failed", invalid + "MobileSAM needs a prompt: a box around the object, or clicks on it"),
    }
    masks = {}
    for name, ar in {**asked, "after": after}.items():
        (shape,) = stand_in.requests[ar].result["shapes"]
        assert shape["type"] == "mask" and 0 < float(shape["attributes"][0]["value"]) <= 1
        masks[name] = decode_mask(shape["points"], image_width=384, image_height=384)
    box = np.zeros((384, 384), bool)
    box[y:y + h, x:x + w] = True
    face = masks["face box"]
    assert (face & box).sum() >= 0.95 * face.sum() and (face & box).sum() >= 0.5 * box.sum()
    assert at(masks["helmet"], HELMET) and not at(masks["helmet"], FACE) and at(masks["face"], FACE)
    assert iou(masks["helmet"], masks["face"]) < 0.01
    assert at(masks["suit"], PATCH) and not at(masks["suit, not the patch"], PATCH)
    assert at(masks["suit, not the patch"], SUIT)
    assert iou(masks["after"], masks["face"]) > 0.99  # still serving, the same answer


def test_task_auto_annotate_runs_the_function_once_without_an_agent(stand_in, cvat_cli):
    """Community CVAT has no agents: `cvat-cli task auto-annotate` runs the same function on the user's machine
    (cvat-sdk's `annotate_task`) and uploads the annotations."""
    labels = [label("Eye", 12, "points"), label("Face", 11, "rectangle")]
    task = stand_in.add_task("astronaut", frames()[:1], labels)
    done = cvat_cli("task", "auto-annotate", str(task), *BRIDGE, "-p",
                    f"manifest=str:{ROOT / 'manifests' / 'default.yaml'}", "--conf-threshold", "0.5")
    assert done.returncode == 0, done.stderr
    (upload,) = stand_in.uploads[task]
    assert {(s["type"], s["label_id"]) for s in upload["shapes"]} == {("rectangle", 11), ("points", 12)}
    assert all(s["score"] >= 0.5 for s in upload["shapes"])
