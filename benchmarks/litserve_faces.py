"""The face detector on LitServe, 2 workers, answering V7's form at /v7/infer (run by benchmarks/run.py).

    python benchmarks/litserve_faces.py PORT
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import litserve as ls
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines import faces_answer  # noqa: E402
from examples.faces import FaceDetector  # noqa: E402


class Faces(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = FaceDetector()
        self.params = {"threshold": 0.0, "min_neighbors": 5}

    def decode_request(self, request: dict) -> np.ndarray:
        data = base64.b64decode(request["image"]["base64"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def predict(self, image: np.ndarray) -> dict:
        return faces_answer(self.model, image, self.params)

    def encode_response(self, output: dict) -> dict:
        return output


if __name__ == "__main__":
    ls.LitServer(Faces(api_path="/v7/infer"), accelerator="cpu", workers_per_device=2).run(
        port=int(sys.argv[1]), generate_client_file=False)
