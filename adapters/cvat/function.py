"""The CVAT native function that cvat-cli loads, with the manifest as its one parameter::

    cvat-cli --server-host URL function create-native NAME --function-module adapters.cvat.function \\
        -p manifest=str:PATH
    cvat-cli --server-host URL function run-agent ID --function-module adapters.cvat.function \\
        -p manifest=str:PATH [--burst]

cvat-cli calls `create(manifest=PATH)` (its convention for a function with parameters) in each process that
loads the function: `create-native`'s, to read the spec it registers, and the agent's worker, which then calls
`detect` for each frame. `create` builds the manifest's model once, through the start-up every mode shares
(`bridge.platforms.startup.start_service`), on an event loop of its own in a background thread; `detect`,
called on the agent's thread, hands each frame to it through the one answer path
(`bridge.core.pipeline.answer`: the manifest's parameters, limits and deadline, losses logged once per class)
with the CVAT adapter's writer, and makes cvat-sdk's objects of the answer.

A model that takes prompts (`ModelSpec.prompts`) is an interaction function (cvat-sdk's
`InteractionFunctionSpec`, settings in `platforms.cvat.interaction`): clicks and a box in, one mask per area
out. It implements no `preprocess_image`: the agent keeps the frame itself for the next prompts on it, and a
model keeps what it derives from a frame (MobileSAM its embedding) in its own cache. Any other image model is
a detection function whose labels are its classes (`adapters.cvat.convert.function_labels`).

A frame that fails is told to CVAT by the agent, which passes on the message of two errors only and says
"Unknown error" for any other: a request's fault (a prompt outside the image, an image over the pixel limit,
a model's `InvalidInput`: the core's 4xx) is raised as the agent's own `BadArError` ("Invalid annotation
request: ..."), and ours (the model raised, or ran past `limits.deadline`) as cvat-sdk's `BadFunctionError`
("Underlying function returned incorrect result: ..."). `BadArError` lives in cvat-cli's private module; where
it cannot be imported (cvat-sdk's `annotate_task` alone, another cvat-cli), both are `BadFunctionError`s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from adapters.cvat import adapter
from adapters.cvat.convert import (
    PLATFORM,
    CvatRun,
    Label,
    function_labels,
    prompts_from_cvat,
)
from adapters.cvat.section import CvatSection
from bridge.core.errors import BridgeError
from bridge.core.manifest import Manifest, ManifestError, load_manifest
from bridge.core.model import Prompts
from bridge.core.params import InvalidParams, Params
from bridge.core.pipeline import answer
from bridge.core.service import Job, Source
from bridge.platforms.registry import Platforms, discover
from bridge.platforms.startup import start_service

if TYPE_CHECKING:
    import PIL.Image
    from cvat_sdk import auto_annotation as cvataa
    from cvat_sdk import models

T = TypeVar("T")


def create(manifest: str) -> DetectionFunction | InteractionFunction:
    """The function of the manifest at `manifest` (`-p manifest=str:PATH`)."""
    model = Runner(load_manifest(manifest))
    return InteractionFunction(model) if model.service.spec.prompts else DetectionFunction(model)


class Runner:
    """The manifest's model, loaded once and served on a background event loop."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.section: CvatSection = manifest.section(PLATFORM, CvatSection)
        if not self.section.enabled:
            raise ManifestError(f"{manifest.where()}: platforms.cvat.enabled is false: this manifest is not served "
                                "to CVAT")
        try:
            Params(manifest.params).resolve(self.section.params)
        except InvalidParams as error:
            raise ManifestError(f"{manifest.where()}: platforms.cvat.params: {error.message}") from None
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bridge-cvat", daemon=True).start()
        self.service = self.wait(start_service(manifest, Platforms(discover(), {PLATFORM: (adapter, self.section)})))
        spec = self.service.spec
        if spec.input == "text":
            raise ManifestError(f"{manifest.where()}: CVAT's functions annotate images, and this model reads text")
        try:
            self.labels = function_labels(spec, self.section.rename, self.section.attributes)
        except ValueError as error:
            raise ManifestError(f"{manifest.where()}: platforms.cvat: {error}") from None

    def wait(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def answer(self, image: PIL.Image.Image, run: CvatRun, prompts: Prompts = Prompts()) -> dict[str, Any]:
        """The adapter's answer for one frame, through the one answer path."""
        job = Job(platform=PLATFORM, image=Source(array=pixels(image)), params=self.section.params, prompts=prompts)
        writer = adapter.writer(self.section, self.service.spec, self.manifest, run)
        return self.wait(answer(self.service, job, writer))


def pixels(image: PIL.Image.Image) -> np.ndarray:
    """A frame's pixels as `Source.array` takes them: modes numpy reads as an image as they are, others as RGB."""
    return np.asarray(image if image.mode in ("1", "L", "RGB", "RGBA", "I;16") else image.convert("RGB"))


def refusal(error: BridgeError) -> Exception:
    """The error whose message the agent passes on to CVAT (see the module's docstring)."""
    from cvat_sdk.auto_annotation import BadFunctionError

    if error.status < 500:
        try:
            from cvat_cli._internal.agent_driver import BadArError
        except ImportError:
            pass
        else:
            return BadArError(error.message)
    return BadFunctionError(error.message)


class DetectionFunction:
    """Annotates a frame with the model's classes, as CVAT labels matched to the task's by name."""

    def __init__(self, model: Runner) -> None:
        from cvat_sdk.auto_annotation import DetectionFunctionSpec

        self.model = model
        self.spec = DetectionFunctionSpec(labels=[label_spec(label) for label in model.labels.values()])

    def detect(self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image) -> list[Any]:
        run = CvatRun(context.conf_threshold, context.conv_mask_to_poly, labels=self.model.labels)
        try:
            found = self.model.answer(image, run)
        except BridgeError as error:
            raise refusal(error) from None
        return [*map(tag, found["tags"]), *map(shape, found["shapes"])]


class InteractionFunction:
    """Segments what a user's clicks and box point at: one `mask` per area the model answers."""

    def __init__(self, model: Runner) -> None:
        from cvat_sdk.auto_annotation import InteractionFunctionSpec

        self.model = model
        self.spec = InteractionFunctionSpec(**model.section.interaction.model_dump())

    def detect(self, context: cvataa.InteractionFunctionContext, image: PIL.Image.Image,
               prompts: cvataa.InteractionPrompts) -> list[cvataa.InteractionResultShape]:
        from cvat_sdk.auto_annotation import InteractionResultShape

        try:
            asked = prompts_from_cvat(prompts.pos_points, prompts.neg_points, prompts.bounding_box,
                                      (image.height, image.width))
            found = self.model.answer(image, CvatRun(interaction=True), asked)
        except BridgeError as error:
            raise refusal(error) from None
        return [InteractionResultShape(type=result["type"], points=result["points"],
                                       attributes=attributes(result["attributes"])) for result in found["shapes"]]


# --- cvat-sdk's objects of the adapter's JSON (cvat-sdk imported here: importing this module changes nothing) -----


def label_spec(label: Label) -> models.PatchedLabelRequest:
    import cvat_sdk.auto_annotation as cvataa

    specs = [cvataa.attribute_spec(attribute.name, i, attribute.input_type, list(attribute.values))
             for i, attribute in enumerate(label.attributes)]
    if label.type == "skeleton":
        nodes = [cvataa.keypoint_spec(node, i) for i, node in enumerate(label.cls.nodes)]
        return cvataa.skeleton_label_spec(label.name, label.id, nodes, attributes=specs)
    return cvataa.label_spec(label.name, label.id, type=label.type, attributes=specs)


def attributes(values: list[dict[str, Any]]) -> list[models.AttributeValRequest]:
    from cvat_sdk import models

    return [models.AttributeValRequest(spec_id=value["spec_id"], value=value["value"]) for value in values]


def tag(found: dict[str, Any]) -> models.LabeledImageRequest:
    import cvat_sdk.auto_annotation as cvataa

    return cvataa.tag(found["label_id"], attributes=attributes(found["attributes"]))


def shape(found: dict[str, Any]) -> models.LabeledShapeRequest:
    import cvat_sdk.auto_annotation as cvataa

    keys = {key: value for key, value in found.items() if key not in ("label_id", "frame", "attributes", "elements")}
    if "elements" in found:
        keys["elements"] = [cvataa.keypoint(element["label_id"], element["points"],
                                            **{k: element[k] for k in ("occluded", "outside") if k in element})
                            for element in found["elements"]]
    return cvataa.shape(found["label_id"], attributes=attributes(found["attributes"]), **keys)
