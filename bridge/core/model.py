"""The interface a user implements, and how the bridge finds and checks a model.

A model is any object with a `spec` (its classes) and a `predict(item, context)` method::

    class Blur:
        spec = ModelSpec(classes=[ClassSpec(name="Blurry Image", kind="tag")])

        def predict(self, image: np.ndarray, context: Context) -> list[Prediction]:
            ...

`item` is an (H, W, 3) uint8 RGB array for image models and a `str` for text models. A model may add
`predict_batch(items, contexts)`, used for the frames of a video. Either may be `async def` (a model that
awaits a remote service): it then runs on the event loop, at most `limits.concurrency` at once, and must not
block; plain methods run on worker threads. Classes are matched by name at every
platform's edge, never by a platform's ids.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.core.errors import ModelFailed
from bridge.core.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)

ClassKind = Literal[
    "box", "rotated_box", "polygon", "mask", "point", "line", "ellipse", "skeleton", "cuboid", "vector",
    "tag", "radio", "checklist", "text", "entity",
]

SHAPES_OF_KIND: dict[str, tuple[type, ...]] = {
    "box": (Box,),
    "rotated_box": (RotatedBox,),
    "polygon": (Polygon, Mask),  # a mask is a polygon not yet traced
    "mask": (Mask, Polygon),
    "point": (Point,),
    "line": (Line,),
    "ellipse": (Ellipse,),
    "skeleton": (Skeleton,),
    "cuboid": (Cuboid,),
    "vector": (Vector,),
    "tag": (Tag,),
    "radio": (Classification,),
    "checklist": (Classification,),
    "text": (Classification,),
    "entity": (Span,),
}
"""Which neutral shapes a prediction of each class kind may carry."""


class ClassSpec(BaseModel):
    """One class of the model: its name, its kind, and the options or nodes the kind needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="The class's name, as predictions label it.")
    kind: ClassKind = Field(description="Which shape its predictions carry.")
    options: tuple[str, ...] = Field((), description="Answers of a radio or checklist class.")
    nodes: tuple[str, ...] = Field((), description="Node names of a skeleton class, in order.")
    description: str = Field("", description="Shown where a platform shows a class's description.")

    @model_validator(mode="after")
    def _needs(self) -> ClassSpec:
        if self.kind in ("radio", "checklist") and not self.options:
            raise ValueError(f"class {self.name!r} is a {self.kind} and needs `options`")
        if self.kind == "skeleton" and not self.nodes:
            raise ValueError(f"class {self.name!r} is a skeleton and needs `nodes`")
        return self


class ModelSpec(BaseModel):
    """What a model offers: its input and classes, and whether it takes prompts (click to segment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: tuple[ClassSpec, ...] = Field(min_length=1)
    input: Literal["image", "text"] = "image"
    prompts: bool = Field(
        False,
        description="The model takes prompts (a box, positive and negative clicks) in `context.prompts` and "
        "always gets the whole image; without it, a box prompt crops the image and clicks are not used.",
    )

    @model_validator(mode="after")
    def _unique(self) -> ModelSpec:
        names = [c.name for c in self.classes]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"class names must be unique; repeated: {duplicates}")
        return self

    def get(self, name: str) -> ClassSpec | None:
        return self._classes_by_name.get(name)

    @cached_property
    def _classes_by_name(self) -> dict[str, ClassSpec]:
        """`get` is asked for every prediction of every request."""
        return {c.name: c for c in self.classes}


@dataclass(frozen=True)
class Prompts:
    """What a user pointed at, for click-to-segment models: a box and clicks, in full-image pixels."""

    box: Box | None = None
    positive: tuple[tuple[float, float], ...] = ()
    """Clicks on the object: (x, y) each."""
    negative: tuple[tuple[float, float], ...] = ()
    """Clicks on what is not the object."""

    def __bool__(self) -> bool:
        return self.box is not None or bool(self.positive) or bool(self.negative)


@dataclass(frozen=True)
class Context:
    """What a model knows of the request besides its input."""

    params: Mapping[str, Any] = field(default_factory=dict)
    """The request's parameters over the manifest's defaults (complete: every default applied), validated
    against its params schema; read-only."""
    region: Box | None = None
    """Where the item the model sees lies in the full image, when the bridge cropped it to a box prompt (a
    model that does not take prompts); None when the model sees the whole image."""
    prompts: Prompts = field(default_factory=lambda: Prompts())
    """The job's prompts, for a model whose spec sets `prompts` (empty otherwise)."""
    platform: str = ""
    """Which platform asked: "v7", "labelbox", "ango", ..."""
    min_confidence: Mapping[str, float] = field(default_factory=dict)
    """Each class's threshold on this platform (the manifest's `min_confidence`): the core drops predictions
    under it, so a model may skip work on them (as CVAT hands `conf_threshold` to its functions)."""


@runtime_checkable
class Model(Protocol):
    spec: ModelSpec

    def predict(self, item: np.ndarray | str, context: Context) -> Iterable[Prediction]: ...


def predict_batch(model: Model, items: Sequence[Any], contexts: Sequence[Context]) -> list[list[Prediction]]:
    """The model's own batch prediction when it has one, else one `predict` per item."""
    batch = getattr(model, "predict_batch", None)
    if batch is not None:
        return _one_per_item(model, batch(items, contexts), items)
    return [_listed(model, "predict", model.predict(item, context)) for item, context in zip(items, contexts)]


def _listed(model: Model, method: str, found: Any, item: int | None = None) -> list[Any]:
    """What `method` returned for one item, as a list; `ModelFailed` naming the model's class, the method and
    what it must return when that is no list at all (None from a forgotten `return`, a dict, one Prediction).
    The items themselves are checked after (`bridge.core.outputs.check`)."""
    if found is None or isinstance(found, (Mapping, str, bytes, Prediction)) or not isinstance(found, Iterable):
        at = "" if item is None else f" for item {item}"
        raise _failed(model, method, f"{_a(found)}{at}: expected a list of Prediction (an empty list when it "
                                     "finds nothing)")
    return list(found)


def _one_per_item(model: Model, results: Any, items: Sequence[Any]) -> list[list[Prediction]]:
    expected = "expected a list holding one list of Prediction per item"
    count = f"{len(items)} item{'s' if len(items) != 1 else ''}"
    if results is None or isinstance(results, (Mapping, str, bytes)) or not isinstance(results, Iterable):
        raise _failed(model, "predict_batch", f"{_a(results)}: {expected} ({count})")
    results = list(results)
    if len(results) != len(items):
        raise _failed(model, "predict_batch", f"{len(results)} lists for {count}: {expected}")
    return [_listed(model, "predict_batch", found, item) for item, found in enumerate(results)]


def _failed(model: Model, method: str, returned: str) -> ModelFailed:
    return ModelFailed(f"the model failed: {type(model).__name__}.{method} returned {returned}")


def _a(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def is_async(model: Model) -> bool:
    """Whether the model's prediction is a coroutine (a model that awaits a remote service, say)."""
    return inspect.iscoroutinefunction(getattr(model, "predict_batch", None) or model.predict)


async def predict_batch_async(model: Model, items: Sequence[Any],
                              contexts: Sequence[Context]) -> list[list[Prediction]]:
    """`predict_batch` for a model whose `predict` (or `predict_batch`) is `async def`."""
    batch = getattr(model, "predict_batch", None)
    if batch is not None:
        return _one_per_item(model, await batch(items, contexts), items)
    found = await asyncio.gather(*map(model.predict, items, contexts))
    return [_listed(model, "predict", one) for one in found]
