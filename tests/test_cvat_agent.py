"""cvat-cli's real `function create-native` and `function run-agent` against the loopback CVAT stand-in.

The CLI runs as a subprocess, its agent with its own worker process, exactly as a user runs it; the function
is `tests/cvat_probe_function.py` (cvat-sdk only). The stand-in records what the agent completes and fails.
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

import pytest
from PIL import Image

from tests.conftest import ROOT, encode_image
from tests.cvat_probe_function import bright_box
from tests.cvat_server import CLI, CvatStandIn, cli_env, label, run_cli

PROBE = str(ROOT / "tests" / "cvat_probe_function.py")
GRABCUT = str(ROOT / "tests" / "cvat_grabcut_function.py")
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


def test_the_agent_runs_an_interaction_function_on_a_box_prompt(stand_in, cvat_cli):
    """The GrabCut example (a model that takes prompts) as an interactor: a box in, a mask out."""
    from cvat_sdk.masks import decode_mask

    from tests.cvat_grabcut_function import create

    created = cvat_cli("function", "create-native", "GrabCut", "--function-file", GRABCUT, "-p", "iterations=int:2")
    assert created.returncode == 0, created.stderr
    function_id = int(created.stdout)
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

    done = cvat_cli("function", "run-agent", str(function_id), "--function-file", GRABCUT, "-p", "iterations=int:2",
                    "--burst")

    assert done.returncode == 0, done.stderr
    assert [(stand_in.requests[ar].state, stand_in.requests[ar].error) for ar in (no_box, clicked)] == [
        ("failed", "Invalid annotation request: a bounding box is required"),
        ("failed", "Invalid annotation request: negative points are not supported")]
    (shape,) = stand_in.requests[good].result["shapes"]
    assert (shape["type"], shape["attributes"]) == ("mask", [{"spec_id": 0, "value": "1.0"}])
    image = Image.open(io.BytesIO(frames()[1][1]))
    found = decode_mask(shape["points"], image_width=image.width, image_height=image.height)

    class Prompts:
        pos_points, neg_points, bounding_box = (), (), ((20.0, 20.0), (75.0, 75.0))

    (here,) = create(iterations=2).detect(None, image, Prompts())  # GrabCut seeds its own k-means: near, not equal
    reference = decode_mask(here.points, image_width=image.width, image_height=image.height)
    assert (found & reference).sum() / (found | reference).sum() > 0.95
    assert not found[:, 90:].any() and found.sum() > 1000  # one coin, inside its box's window


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
