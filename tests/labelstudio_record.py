"""Record what Label Studio sends an ML backend, as JSON fixtures in tests/data/labelstudio/.

`python -m tests.labelstudio_record` starts a Label Studio (see `labelstudio_server`), plays the scenario
below with a recording backend and rewrites the fixtures: `/setup`, a batch `/predict`, interactive
`/predict` calls (a rectangle, key points with `is_positive`, a brush stroke) and the webhook bodies. The
server's address is written as http://127.0.0.1:8080 so that a new recording only differs where Label
Studio does. A test replays the scenario and checks that the fixtures' structure is still what is sent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from adapters.labelstudio.config import parse_config
from adapters.labelstudio.regions import to_regions
from bridge import Box, Classification, Mask, Point, Prediction
from tests.labelstudio_server import LabelStudio
from tests.recording_backend import RecordingBackend

FIXTURES = Path(__file__).resolve().parent / "data" / "labelstudio"
SAMPLE = Path(__file__).resolve().parents[1] / "bridge" / "samples" / "astronaut.jpg"
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Face"/><Label value="Eye"/></RectangleLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Eye"/></KeyPointLabels>
  <BrushLabels name="brush" toName="image" smart="true"><Label value="Face"/></BrushLabels>
  <Choices name="blur" toName="image"><Choice value="Blurry"/><Choice value="Sharp"/></Choices>
</View>"""
PLACEHOLDER = "http://127.0.0.1:8080"


def record(server: LabelStudio) -> dict[str, Any]:
    """Fixture name -> body, from one scenario against a running server."""
    config = parse_config(CONFIG)
    backend = RecordingBackend(model_version="recorder-1")
    try:
        with server.client() as client:
            project = client.create_project(CONFIG, title="recorded")["id"]
            client.import_files(project, [SAMPLE])
            client.import_tasks(project, [{"data": {"image": "https://example.com/other.jpg"}, "predictions": [
                {"result": [], "score": 0.9, "model_version": "imported"}]}])
            attached = client.add_ml_backend(project, backend.url, is_interactive=True)
            client.retrieve_predictions(project)
            task = client.tasks(project)[0]["id"]
            rectangle = to_regions(Prediction("Face", Box(150, 50, 150, 150)), config.control("box"), (512, 512))
            clicks = [to_regions(Prediction("Eye", Point(x, y)), config.control("kp"), (512, 512))[0]
                      | {"is_positive": positive} for x, y, positive in [(205, 112, True), (60, 400, False)]]
            stroke = np.zeros((512, 512), bool)
            stroke[200:212, 100:300] = True
            brush = to_regions(Prediction("Face", Mask(stroke)), config.control("brush"), (512, 512))
            for drawn in (rectangle, clicks, brush):
                client.interactive_annotating(attached["id"], task, {"result": drawn})
            client.import_tasks(project, [{"data": {"image": "https://example.com/third.jpg"}}])
            choice = to_regions(Prediction("blur", Classification("Sharp")), config.control("blur"))
            annotation = client.create_annotation(task, choice)["id"]
            client.request("PATCH", f"/api/annotations/{annotation}", json={"result": []})
            client.request("DELETE", f"/api/annotations/{annotation}")
            client.update_project(project, title="recorded, renamed")
            client.train(attached["id"])
            webhooks = {call.body["action"]: call.body for call in backend.wait_for("/webhook", 6)}
        predicts = backend.calls_to("/predict")
        bodies = {
            "setup": backend.calls_to("/setup")[-1].body,
            "predict": predicts[0].body,
            "predict_interactive_rectangle": predicts[1].body,
            "predict_interactive_keypoints": predicts[2].body,
            "predict_interactive_brush": predicts[3].body,
            **{f"webhook_{action.lower()}": body for action, body in webhooks.items()},
        }
    finally:
        backend.close()
    return json.loads(json.dumps(bodies).replace(server.url, PLACEHOLDER))


def structure(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first item): what stays when ids and times change."""
    if isinstance(value, dict):
        return {key: structure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [structure(value[0])] if value else []
    return type(value).__name__


def main() -> int:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with LabelStudio() as server:
        bodies = record(server)
    for name, body in bodies.items():
        (FIXTURES / f"{name}.json").write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(bodies)} fixtures to {FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
