"""Runs one job for any platform: fetch the media, apply the prompts, predict, within the deadline.

The one place for these concerns, so that every adapter only translates its dialect into a `Job` and writes
its answer from the `Result` (`bridge.core.pipeline`). A job's parameters are resolved once, here. Everything
after `predict` (check, clamp, place, thresholds: `bridge.core.outputs.finish`) runs in the same worker-thread
call as the model, never on the event loop. Predictions run on a thread pool of `limits.concurrency` workers:
the event loop keeps serving while the model works, and a job past its deadline answers 504 at once (the
model's thread cannot be interrupted; its result is thrown away, and queued jobs past their deadline never
start). An `async` model runs on the loop instead, `limits.concurrency` at once, and is cancelled at its
deadline. What the caller does with the result (`then`, the platform's answer) runs under the same deadline,
and the work a given-up job leaves on threads stops at its next `check_deadline` (`bridge.core.admission`).

A request pays no thread hop it does not need: an image small enough to decode in well under a millisecond is
decoded on the event loop and an answer without areas to trace or rasterise is written there. The model runs
there too only where the manifest allows it (`limits.inline_below`, off by default: a call that hangs there
holds the whole process), for small items, when its recent calls on them took under that and no other call of
it is running (a hop costs two thread wake-ups, milliseconds on a busy machine: more than such a call).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from bridge.core import geometry
from bridge.core.admission import Admission, deadline
from bridge.core.batching import Batcher
from bridge.core.errors import (
    BridgeError,
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    TooLarge,
)
from bridge.core.manifest import Manifest, ManifestError
from bridge.core.media import (
    MediaLoader,
    decode_base64,
    decode_image,
    decode_video,
    from_array,
)
from bridge.core.metrics import (
    job_in_flight,
    observe_batch,
    observe_predictions,
    queued,
    stage,
    timed,
)
from bridge.core.model import (
    Context,
    Model,
    ModelSpec,
    Prompts,
    is_async,
    predict_batch,
    predict_batch_async,
)
from bridge.core.outputs import Finish, finish
from bridge.core.params import Params
from bridge.core.predictions import Ellipse, Mask, Polygon, Prediction, RotatedBox

log = logging.getLogger("bridge")
T = TypeVar("T")

SMALL_IMAGE_PIXELS = 128 * 128
"""Images up to this size decode on the event loop (a few hundred microseconds at most): a thread hop costs
more than that."""
SMALL_ANSWER = 64
"""Answers of up to this many predictions, none of them an area (mask, polygon, rotated box, ellipse), are
written on the event loop."""
AREAS = (Mask, Polygon, RotatedBox, Ellipse)


@dataclass(frozen=True)
class Source:
    """An item: by URL, as base64 (a `data:` URL too), as the bytes themselves, or (an image a caller holds
    decoded already, as CVAT's agent does) as an array of pixels; exactly one."""

    url: str | None = None
    base64: str | None = None
    data: bytes | None = None
    array: np.ndarray | None = field(default=None, compare=False, repr=False)
    """(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, of booleans, 8 or 16 bits: taken like a decoded image
    (`bridge.core.media.from_array`), within `limits.max_image_pixels`."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with the URL (credentials: Label Studio's token), and on redirects within its origin only."""


@dataclass(frozen=True)
class VideoSource:
    """A video by URL, or as a list of frame images."""

    url: str | None = None
    frames: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Job:
    """One inference request in neutral terms: exactly one of image, video, text (the text itself, or where
    to read it as UTF-8)."""

    platform: str
    image: Source | None = None
    video: VideoSource | None = None
    text: str | Source | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    """As the request gives them; the service resolves them against the manifest's `params` once."""
    prompts: Prompts = field(default_factory=Prompts)
    """What the user pointed at (V7's auto-annotate box, ...): a model that takes prompts gets them with the
    whole image; any other model gets the image cropped to the box."""


@dataclass(frozen=True)
class Result:
    predictions: list[Prediction]
    size: tuple[int, int] | None = None
    """(height, width) of the image or video frames, for adapters that rasterise."""
    text: str | None = None
    """The text a text model read, for adapters that quote spans."""


class Service:
    """The loaded model and what it needs to serve: media loader, params, limits, worker threads."""

    def __init__(self, manifest: Manifest, model: Model) -> None:
        self.manifest = manifest
        self.model = model
        self.limits = manifest.limits
        self.media = MediaLoader(manifest.limits.media())
        self._small = replace(self.media.limits, max_image_pixels=min(SMALL_IMAGE_PIXELS,
                                                                      self.media.limits.max_image_pixels))
        self._workers = ThreadPoolExecutor(manifest.limits.concurrency, thread_name_prefix="model")
        self._async = is_async(model)
        self._slots = asyncio.Semaphore(manifest.limits.concurrency)
        self.admission = Admission(manifest.limits.concurrency, manifest.limits.max_queue, manifest.limits.deadline,
                                   manifest.limits.max_held_bytes)
        self.params = Params(manifest.params)
        self._thresholds: dict[str, dict[str, float]] = {}
        for platform in ("", *manifest.platforms):  # a threshold naming no class fails at start-up
            self.thresholds(platform)
        self._batcher = None
        if self.limits.batch_wait > 0 and hasattr(model, "predict_batch"):
            self._batcher = Batcher(self._call_model, self.limits.batch_size, self.limits.batch_wait)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    async def aclose(self) -> None:
        await self.media.aclose()
        if hasattr(self.model, "aclose"):  # a model holding connections (bridge.core.remote)
            await self.model.aclose()
        self._workers.shutdown(wait=False, cancel_futures=True)

    async def run(self, job: Job, then: Callable[[Result], T] | None = None) -> Result | T:
        """Run a job under the manifest's deadline, then `then(result)` (an answer's conversions: on a thread
        unless the answer is small) under the same deadline; every failure is a `BridgeError` with a clear
        message."""
        with job_in_flight(job.platform), self.admission.job(), deadline(self.limits.deadline):
            try:
                async with asyncio.timeout(self.limits.deadline):
                    result = await self._run(job, self.params.resolve(job.params))
                    observe_predictions(job.platform, result.predictions)
                    if then is None:
                        return result
                    with stage("convert"):
                        if _small(result.predictions):
                            return then(result)
                        return await asyncio.to_thread(then, result)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the job took longer than {self.limits.deadline:g} s (limits.deadline)"
                ) from None

    async def _run(self, job: Job, params: Mapping[str, Any]) -> Result:
        if self.spec.input == "text":
            if job.text is None:
                raise InvalidInput("this model reads text, and the request carries no text")
            text = job.text if isinstance(job.text, str) else await self.load_text(job.text)
            context = Context(params=params, platform=job.platform, min_confidence=self.thresholds(job.platform))
            how = Finish(text=text, min_confidence=self.thresholds(job.platform))
            (predictions,) = await self._predict([text], [context], [how])
            return Result(predictions, text=text)
        if job.text is not None and job.image is None and job.video is None:
            raise InvalidInput("this model reads images, and the request carries only text")
        if job.video is not None:
            return await self._run_video(job, params)
        if job.image is None:
            raise InvalidInput("the request carries no image")
        image = await self.load_image(job.image)
        (predictions,) = await self._predict_images([image], params, job)
        return Result(predictions, size=image.shape[:2])

    async def _run_video(self, job: Job, params: Mapping[str, Any]) -> Result:
        """Frames go to the model `limits.batch_size` at a time, so a long video never sits in memory whole."""
        video = job.video
        chunks = self._video_chunks_from_url(video.url) if video.url else self._video_chunks_from_frames(video)
        predictions: list[Prediction] = []
        size = None
        async for chunk in chunks:
            size = size or chunk[0][1].shape[:2]
            observe_batch("video", len(chunk))
            results = await self._predict_images([image for _, image in chunk], params, job)
            for (index, _), found in zip(chunk, results):
                predictions += [replace(p, frame=index) for p in found]
        return Result(predictions, size=size)

    async def _video_chunks_from_url(self, url: str) -> AsyncIterator[list[tuple[int, np.ndarray]]]:
        data = await self.media.fetch(url, "video.url")
        frames = decode_video(data, self.media.limits, self.manifest.video_frame_stride)
        async with aclosing(self.media.batches(frames, self.limits.batch_size)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _video_chunks_from_frames(self, video: VideoSource) -> AsyncIterator[list[tuple[int, np.ndarray]]]:
        if len(video.frames) > self.limits.max_video_frames:
            raise TooLarge(f"{len(video.frames)} frames sent; the limit is "
                               f"{self.limits.max_video_frames} (limits.max_video_frames)")
        step = self.limits.batch_size
        for start in range(0, len(video.frames), step):
            part = video.frames[start:start + step]
            images = await asyncio.gather(*(self.load_image(frame, f"video.frame_urls[{start + i}]")
                                            for i, frame in enumerate(part)))
            yield list(zip(range(start, start + len(part)), images))

    async def load_image(self, source: Source, what: str = "image") -> np.ndarray:
        """The image, decoded on one of the loader's decode threads (on the loop when it is small); the job
        holds its pixels until it ends (`limits.max_held_bytes`)."""
        if source.array is not None:
            image = await self.media.decode(from_array, source.array, self.media.limits, what)
        elif source.url:
            image = await self.media.image(source.url, f"{what}.url", source.headers)
        else:
            data = source.data if source.data is not None else self._base64(source, what)
            try:  # on the loop, as long as the header says it is small (a large one stops there)
                image = decode_image(data, self._small, what)
            except TooLarge:
                if self._small.max_image_pixels == self.media.limits.max_image_pixels:
                    raise
                image = await self.media.decode(decode_image, data, self.media.limits, what)
        self.admission.hold(image.nbytes)
        return image

    async def load_text(self, source: Source, what: str = "text") -> str:
        """A text given by URL or as bytes, read as UTF-8."""
        if source.url:
            data = await self.media.fetch(source.url, f"{what}.url", source.headers)
        else:
            data = source.data if source.data is not None else self._base64(source, what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"{what} is not UTF-8 text: {error.reason} at byte {error.start}") from None

    @staticmethod
    def _base64(source: Source, what: str) -> bytes:
        if source.base64 is None:
            raise InvalidInput(f"{what} needs a url, base64 or bytes")
        return decode_base64(source.base64, f"{what}.base64")

    async def _predict_images(self, images: list[np.ndarray], params: Mapping[str, Any],
                              job: Job) -> list[list[Prediction]]:
        """Predict on whole images with the prompts, or on the crop to the box prompt for a model that takes
        none; results come back in full-image terms."""
        region, thresholds = job.prompts.box, self.thresholds(job.platform)
        outlines = self.manifest.outlines()
        if self.spec.prompts or region is None:
            prompts = checked(job.prompts, images[0].shape[:2]) if self.spec.prompts else Prompts()
            context = Context(params=params, prompts=prompts, platform=job.platform, min_confidence=thresholds)
            finishes = [Finish(seen=image.shape[:2], canvas=image.shape[:2], min_confidence=thresholds,
                               outlines=outlines) for image in images]
            return await self._predict(images, [context] * len(images), finishes)
        crops, cuts = zip(*(geometry.crop(image, region) for image in images))
        if any(cut.w == 0 or cut.h == 0 for cut in cuts):
            raise InvalidInput(f"the region {region} lies outside the image")
        contexts = [Context(params=params, region=cut, platform=job.platform, min_confidence=thresholds)
                    for cut in cuts]
        finishes = [Finish(seen=crop.shape[:2], canvas=image.shape[:2], offset=cut, min_confidence=thresholds,
                           outlines=outlines) for crop, image, cut in zip(crops, images, cuts)]
        return await self._predict(list(crops), contexts, finishes)

    def thresholds(self, platform: str) -> Mapping[str, float]:
        """Each class's `min_confidence` on `platform`: the manifest's, under the platform section's own."""
        if platform not in self._thresholds:
            chosen = self.manifest.min_confidence_for(platform)
            unknown = sorted(set(chosen.classes) - {c.name for c in self.spec.classes})
            if unknown:
                raise ManifestError(f"{self.manifest.where()}: min_confidence names {', '.join(unknown)}, "
                                    f"not classes of the model ({', '.join(c.name for c in self.spec.classes)})")
            self._thresholds[platform] = {c.name: chosen.classes.get(c.name, chosen.default)
                                          for c in self.spec.classes}
        return self._thresholds[platform]

    def _predict_sync(self, items: list[Any], contexts: list[Context],
                      finishes: list[Finish]) -> list[list[Prediction]]:
        """On a worker thread: the model, then everything after it."""
        return self._finish(_guarded(predict_batch, self.model, items, contexts), finishes)

    def _finish(self, results: list[list[Any]], finishes: list[Finish]) -> list[list[Prediction]]:
        """Each item's results checked, clamped, placed and thresholded (`bridge.core.outputs.finish`)."""
        return [finish(found, self.spec, how) for found, how in zip(results, finishes)]

    async def _call_model(self, items: list[Any], contexts: list[Context],
                          finishes: list[Finish]) -> list[list[Prediction]]:
        with queued() as ticket:
            small = len(items) == 1 and _small_item(items[0])
            if small and not self._async and self.admission.inline(self.limits.inline_below):
                ticket.start()
                return self.admission.run_inline(self._predict_sync, items, contexts, finishes)
            if self._async:
                async with self._slots:
                    ticket.start()
                    start = asyncio.get_running_loop().time()
                    results = await _guarded_async(predict_batch_async(self.model, items, contexts))
                    self.admission.observe((asyncio.get_running_loop().time() - start) / len(items))
                return await asyncio.to_thread(self._finish, results, finishes)
            return await self.admission.call(self._workers, ticket.wrap(self._predict_sync), items, contexts,
                                             finishes, items=len(items), small=small)

    @timed("predict")
    async def _predict(self, items: list[Any], contexts: list[Context],
                       finishes: list[Finish]) -> list[list[Prediction]]:
        if self._batcher is not None and len(items) == 1:
            return [await self._batcher.predict(items[0], contexts[0], finishes[0])]
        return await self._call_model(items, contexts, finishes)


def _small_item(item: Any) -> bool:
    """A small image (at most `SMALL_IMAGE_PIXELS`) or a short text."""
    if isinstance(item, str):
        return len(item) <= SMALL_IMAGE_PIXELS // 4
    return isinstance(item, np.ndarray) and item.shape[0] * item.shape[1] <= SMALL_IMAGE_PIXELS


def _small(predictions: list[Prediction]) -> bool:
    """An answer cheap enough to write on the event loop: a few predictions, no area among them."""
    return len(predictions) <= SMALL_ANSWER and not any(isinstance(p.shape, AREAS) for p in predictions)


def checked(prompts: Prompts, size: tuple[int, int]) -> Prompts:
    """The prompts of a model that takes them, refused (422) when they cannot point at the image: a coordinate
    that is not a finite number, an empty box or one wholly outside, a click outside the image."""
    height, width = size
    numbers = [*((prompts.box.x, prompts.box.y, prompts.box.w, prompts.box.h) if prompts.box else ()),
               *(value for click in (*prompts.positive, *prompts.negative) for value in click)]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
        raise InvalidInput("a prompt's coordinate is not a finite number")
    box = prompts.box
    if box is not None:
        if box.w <= 0 or box.h <= 0:
            raise InvalidInput(f"the prompt box {box.w:g}x{box.h:g} is empty")
        if box.x >= width or box.y >= height or box.x + box.w <= 0 or box.y + box.h <= 0:
            raise InvalidInput(f"the prompt box at ({box.x:g}, {box.y:g}) lies outside the {width}x{height} image")
    for x, y in (*prompts.positive, *prompts.negative):
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(f"the click ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return prompts


def _guarded(predict: Any, *args: Any) -> list[list[Any]]:
    """The model's results; its exceptions become `ModelFailed` (traceback in the log, message to the caller)."""
    try:
        return predict(*args)
    except BridgeError:
        raise
    except Exception as error:
        raise _failed(error) from None


async def _guarded_async(results: Awaitable[list[list[Any]]]) -> list[list[Any]]:
    try:
        return await results
    except BridgeError:
        raise
    except Exception as error:
        raise _failed(error) from None


def _failed(error: Exception) -> ModelFailed:
    log.error("the model raised", exc_info=error)
    return ModelFailed(f"the model failed: {type(error).__name__}: {error}")
