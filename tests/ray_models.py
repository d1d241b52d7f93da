"""A model for the Ray Serve tests whose answers show how it was called, since its replicas live in other
processes: each box says how many items shared its `predict_batch` call; `params.fail` makes it refuse the
input or crash."""

from __future__ import annotations

import numpy as np

from bridge import Box, ClassSpec, Context, InvalidInput, ModelSpec, Prediction


class BatchReporter:
    spec = ModelSpec(classes=[ClassSpec(name="item", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return self.predict_batch([image], [context])[0]

    def predict_batch(self, images: list[np.ndarray], contexts: list[Context]) -> list[list[Prediction]]:
        failures = {context.params.get("fail") for context in contexts}
        if "refuse" in failures:
            raise InvalidInput("the image is too dark to say anything")
        if "crash" in failures:
            raise RuntimeError("the model fell over")
        return [[Prediction("item", Box(0, 0, 1, 1), 1.0, text=f"batch of {len(images)}")] for _ in images]
