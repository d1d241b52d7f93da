"""A plain Ray Serve deployment of the face detector (run by benchmarks/run.py with the Ray venv's Python).

    python benchmarks/ray_plain.py ADDRESS PORT REPLICAS

What a user writes without the bridge: one deployment, a FastAPI ingress that parses V7's JSON, decodes the
image, predicts and answers V7's form, `REPLICAS` replicas on the cluster at ADDRESS, Serve's proxy on PORT,
at /plain/v7/infer. Runs until SIGTERM, then removes its application. (No `from __future__ import
annotations`: Ray's class ingress loses the module's names, and FastAPI must see `Request` itself.)
"""


import base64
import io
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import ray
from fastapi import FastAPI, Request
from PIL import Image
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines import faces_answer  # noqa: E402
from examples.faces import FaceDetector  # noqa: E402

app = FastAPI()


@serve.deployment
@serve.ingress(app)
class Faces:
    def __init__(self) -> None:
        self.model = FaceDetector()
        self.params = {"threshold": 0.0, "min_neighbors": 5}

    @app.post("/v7/infer")
    async def infer(self, request: Request) -> dict:
        data = base64.b64decode((await request.json())["image"]["base64"])
        return faces_answer(self.model, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), self.params)


def main() -> None:
    address, port, replicas = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ray.init(address=address)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Faces.options(num_replicas=replicas, ray_actor_options={"num_cpus": 0.5}).bind(), name="plain",
              route_prefix="/plain")
    stop.wait()
    serve.delete("plain")


if __name__ == "__main__":
    main()
