"""Small real models for the service tests: each records what it saw so a test can check the bridge's work.

Referenced from manifests as `tests.service_models:Name`; a test reaches the instance the bridge built
through `app.state.service.model` (over HTTP) or `service.model` (directly).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from bridge import (
    Box,
    Classification,
    ClassSpec,
    Context,
    InvalidInput,
    Line,
    Mask,
    ModelSpec,
    Point,
    Polygon,
    Prediction,
    Span,
    Tag,
)
from bridge.core.geometry import mask_to_polygon


class Gate:
    """Blocks in `predict` until released (at most `limit` seconds), so a test controls how long it runs.

    Params: `wait` (default true) to block, `hold` seconds to sleep instead. Counts calls and tracks the
    largest number of simultaneous predictions.
    """

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="tag")])

    def __init__(self, limit: float = 10.0) -> None:
        self.limit = limit
        self.started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.finished = 0
        self.running = 0
        self.most_running = 0

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.set()
        try:
            if context.params.get("hold") is not None:
                time.sleep(float(context.params["hold"]))
            elif context.params.get("wait", True):
                self.release.wait(self.limit)
        finally:
            with self.lock:
                self.running -= 1
                self.finished += 1
        return [Prediction("thing", Tag(), 0.9)]


class Finder:
    """Finds the bright pixels (any channel > 200) of the image it is given.

    Returns them as a mask, a polygon, their box, the centre of the first bright pixel as a point and a line
    from the first to the last, all in the coordinates of the image it saw; remembers the shapes and contexts
    it was given. `outside` adds a point and a box past the image's edges.
    """

    CLASSES = [
        ClassSpec(name="mask", kind="mask"),
        ClassSpec(name="polygon", kind="polygon"),
        ClassSpec(name="box", kind="box"),
        ClassSpec(name="point", kind="point"),
        ClassSpec(name="line", kind="line"),
    ]

    def __init__(self, prompts: bool = False) -> None:
        self.spec = ModelSpec(classes=self.CLASSES, prompts=prompts)
        self.seen: list[tuple[int, ...]] = []
        self.dtypes: list[np.dtype] = []
        self.contexts: list[Context] = []

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        self.seen.append(image.shape)
        self.dtypes.append(image.dtype)
        self.contexts.append(context)
        bright = (image > 200).any(axis=2)
        rows, cols = np.nonzero(bright)
        if rows.size == 0:
            return []
        found = [
            Prediction("mask", Mask(bright), 0.9),
            Prediction("polygon", mask_to_polygon(bright), 0.8),
            Prediction("box", Box(float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                                  float(rows.max() - rows.min() + 1)), 0.7),
            Prediction("point", Point(cols[0] + 0.5, rows[0] + 0.5), 0.6),
            Prediction("line", Line([(cols[0] + 0.5, rows[0] + 0.5), (cols[-1] + 0.5, rows[-1] + 0.5)]), 0.5),
        ]
        if context.params.get("outside"):
            h, w = image.shape[:2]
            found += [Prediction("point", Point(w + 5, h / 2), 0.4),
                      Prediction("box", Box(w - 4, -3, 10, 10), 0.4)]
        return found


class Misbehaving:
    """Returns whatever `params.bad` asks for: the bridge must catch what does not fit the spec."""

    spec = ModelSpec(classes=[
        ClassSpec(name="box", kind="box"),
        ClassSpec(name="weather", kind="radio", options=("sunny", "rainy")),
        ClassSpec(name="objects", kind="checklist", options=("car", "tree")),
        ClassSpec(name="caption", kind="text"),
        ClassSpec(name="outline", kind="polygon"),
    ])

    CASES = {
        "ok": Prediction("box", Box(1, 1, 2, 2), 0.5),
        "label": Prediction("cat", Box(1, 1, 2, 2)),
        "shape": Prediction("box", Point(1, 1)),
        "polygon_as_box": Prediction("outline", Box(1, 1, 2, 2)),
        "radio": Prediction("weather", Classification("snowy")),
        "radio_list": Prediction("weather", Classification(("sunny",))),
        "checklist": Prediction("objects", Classification(("car", "boat"))),
        "checklist_str": Prediction("objects", Classification("car")),
        "text": Prediction("caption", Classification(("a", "b"))),
    }

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        bad = context.params.get("bad", "ok")
        if bad == "confidences":
            return [Prediction("box", Box(0, 0, 1, 1), c) for c in (1.5, -0.2, float("nan"), 0.3, 1.0, 0.0)]
        if bad == "refuse":
            raise InvalidInput("the image is too dark to say anything")
        if bad == "none":
            return None  # type: ignore[return-value]
        if bad == "dict":
            return {"box": [1, 1, 2, 2]}  # type: ignore[return-value]
        if bad == "one":
            return self.CASES["ok"]  # type: ignore[return-value]
        if bad == "not a prediction":
            return [self.CASES["ok"], {"label": "box", "box": [1, 1, 2, 2]}]  # type: ignore[list-item]
        if bad == "confidence":
            return [self.CASES["ok"], Prediction("box", Box(1, 1, 2, 2), None)]  # type: ignore[arg-type]
        if bad == "numpy confidence":
            return [Prediction("box", Box(1, 1, 2, 2), np.float32(0.25)), Prediction("box", Box(1, 1, 2, 2),
                                                                                   np.float64(2.0))]
        return [self.CASES["ok"], self.CASES[bad]]


class Batcher:
    """Records the size of each batch it is given; one box per frame, with the frame's mean grey as text."""

    spec = ModelSpec(classes=[ClassSpec(name="frame", kind="box")])

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.single = 0

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        self.single += 1
        return self.predict_batch([image], [context])[0]

    def predict_batch(self, images: list[np.ndarray], contexts: list[Context]) -> list[list[Prediction]]:
        self.batches.append(len(images))
        if any(context.params.get("fail") for context in contexts):
            raise RuntimeError("one bad item fails its batch")
        return [[Prediction("frame", Box(0, 0, 1, 1), text=f"{image.mean():.0f}")] for image in images]


class BadBatches:
    """A `predict_batch` that returns what the `bad` parameter asks for instead of one list per item."""

    spec = ModelSpec(classes=[ClassSpec(name="frame", kind="box")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return []

    def predict_batch(self, images: list[np.ndarray], contexts: list[Context]) -> Any:
        return {"none": None, "dict": {"frame": []}, "none inside": [None for _ in images],
                "one more": [[] for _ in range(len(images) + 1)]}[contexts[0].params["bad"]]


class AwaitsNothing:
    """An `async def predict` that returns None."""

    spec = ModelSpec(classes=[ClassSpec(name="frame", kind="box")])

    async def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return None  # type: ignore[return-value]


class Echo:
    """A text model: answers its free-text class with the text's first word."""

    spec = ModelSpec(input="text", classes=[ClassSpec(name="caption", kind="text")])

    def predict(self, text: str, context: Context) -> list[Prediction]:
        return [Prediction("caption", Classification(text.split()[0] if text.split() else ""))]



class Awaiting:
    """An `async def predict`, like a model that awaits a remote service: params `hold` seconds to await.

    Tracks the largest number of simultaneous predictions, and how many were cancelled.
    """

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="tag")])

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.cancelled = 0
        self.threads: set[str] = set()

    async def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        import asyncio

        self.threads.add(threading.current_thread().name)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(float(context.params.get("hold", 0)))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if context.params.get("fail"):
            raise RuntimeError("the remote service said no")
        return [Prediction("thing", Tag(), 0.75)]


class NoisyOutlines:
    """Returns a few long, noisy outlines (polygons traced from noisy masks look like this): clipping them
    costs shapely a noticeable time. `returned` is set the moment `predict` hands them back."""

    spec = ModelSpec(classes=[ClassSpec(name="blob", kind="polygon")])

    def __init__(self, count: int = 4, vertices: int = 20_000) -> None:
        self.returned = threading.Event()
        rng = np.random.default_rng(0)
        angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
        self.rings = []
        for _ in range(count):
            radius = 100 + rng.random(vertices) * 20
            self.rings.append(np.c_[150 + radius * np.cos(angles), 150 + radius * np.sin(angles)])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        found = [Prediction("blob", Polygon.from_ring(ring)) for ring in self.rings]
        self.returned.set()
        return found


class WhereRuns:
    """Records the name of the thread each call runs on."""

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="tag")])

    def __init__(self) -> None:
        self.threads: list[str] = []

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        self.threads.append(threading.current_thread().name)
        return []


class Faulty:
    """Returns one kind of faulty prediction, chosen by the `fault` parameter, beside a good box."""

    spec = ModelSpec(classes=[ClassSpec(name="box", kind="box"), ClassSpec(name="blob", kind="mask"),
                              ClassSpec(name="path", kind="line"), ClassSpec(name="mark", kind="tag")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        height, width = image.shape[:2]
        good = Prediction("box", Box(1, 1, 5, 5), 0.8)
        fault = context.params.get("fault")
        faults = {
            "small mask": Prediction("blob", Mask(np.ones((height // 2, width // 2), bool))),
            "nan box": Prediction("box", Box(float("nan"), 0, 3, 3)),
            "huge box": Prediction("box", Box(10**400, 0, 3, 3)),  # an int past any double
            "infinite line": Prediction("path", Line([[0, 0], [float("inf"), 4]])),
            "confidences": [Prediction("mark", Tag(), c) for c in (1.7, float("nan"), -1.0)],
        }
        extra = faults.get(fault, [])
        return [good, *(extra if isinstance(extra, list) else [extra])]


class Spans:
    """A text model returning the span its `start`/`end` parameters give, as class `word`."""

    spec = ModelSpec(classes=[ClassSpec(name="word", kind="entity")], input="text")

    def predict(self, text: str, context: Context) -> list[Prediction]:
        start, end = context.params["start"], context.params["end"]
        return [Prediction("word", Span(start, end, context.params.get("quote", "")))]


class Scored:
    """Returns one tag per class at the confidences its classes are named for: `a` at 0.3, `b` at 0.6."""

    spec = ModelSpec(classes=[ClassSpec(name="a", kind="tag"), ClassSpec(name="b", kind="tag")])

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("a", Tag(), 0.3), Prediction("b", Tag(), 0.6)]


LOADING = threading.Event()
"""Held until a test sets it: `SlowToLoad` waits for it in its constructor (at most 30 s)."""


class SlowToLoad:
    """A model whose loading takes until the test says so (weights being read, say)."""

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="tag")])

    def __init__(self) -> None:
        LOADING.wait(30)

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        return [Prediction("thing", Tag())]


class BrokenToLoad:
    """A model whose constructor fails (its weights file is missing, say)."""

    spec = ModelSpec(classes=[ClassSpec(name="thing", kind="tag")])

    def __init__(self) -> None:
        raise FileNotFoundError("weights.bin")


class ManyMasks:
    """`count` (param, 2000 by default) copies of one ragged 600x600 blob, each tens of milliseconds to trace:
    as a polygon class (`kind: outline`, traced by the core after predict) or a mask class (`kind: area`,
    traced by V7's writer). Returning them is quick; converting them all takes minutes."""

    spec = ModelSpec(classes=[ClassSpec(name="outline", kind="polygon"), ClassSpec(name="area", kind="mask")])

    def __init__(self) -> None:
        rows, cols = np.mgrid[:600, :600]
        noise = np.random.default_rng(1).normal(0, 2, (600, 600))
        self.blob = np.hypot(rows - 300, cols - 300) < 250 + noise

    def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
        label = "area" if context.params.get("kind") == "area" else "outline"
        blob = self.blob[:image.shape[0], :image.shape[1]]
        return [Prediction(label, Mask(blob), 0.9) for _ in range(int(context.params.get("count", 2000)))]
