"""Runs one job for any platform: fetch the media, apply the region of interest, predict, within the deadline.

The one place for these concerns, so that every adapter only translates its dialect into a `Job` and a
`Result` back. Predictions run on a thread pool of `limits.concurrency` workers: the event loop keeps
serving while the model works, and a job past its deadline answers 504 at once (the model's thread cannot
be interrupted; its result is thrown away, and queued jobs past their deadline never start). An `async`
model runs on the loop instead, `limits.concurrency` at once, and is cancelled at its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import numpy as np

from bridge import geometry
from bridge.batching import Batcher
from bridge.errors import BridgeError, DeadlineExceeded, InvalidInput, ModelFailed, TooLarge
from bridge.manifest import Manifest
from bridge.media import MediaLoader, decode_base64, decode_image, decode_video
from bridge.model import (
    Context,
    Model,
    ModelSpec,
    check_prediction,
    is_async,
    predict_batch,
    predict_batch_async,
)
from bridge.predictions import Box, Prediction

log = logging.getLogger("bridge")


@dataclass(frozen=True)
class ImageSource:
    """An image by URL or as base64 (exactly one)."""

    url: str | None = None
    base64: str | None = None


@dataclass(frozen=True)
class VideoSource:
    """A video by URL, or as a list of frame images."""

    url: str | None = None
    frames: tuple[ImageSource, ...] = ()


@dataclass(frozen=True)
class Job:
    """One inference request in neutral terms: exactly one of image, video, text."""

    platform: str
    image: ImageSource | None = None
    video: VideoSource | None = None
    text: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    region: Box | None = None


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
        self._workers = ThreadPoolExecutor(manifest.limits.concurrency, thread_name_prefix="model")
        self._async = is_async(model)
        self._slots = asyncio.Semaphore(manifest.limits.concurrency)
        self._batcher = None
        if self.limits.batch_wait > 0 and hasattr(model, "predict_batch"):
            self._batcher = Batcher(self._call_model, self.limits.batch_size, self.limits.batch_wait)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    async def aclose(self) -> None:
        await self.media.aclose()
        self._workers.shutdown(wait=False, cancel_futures=True)

    async def run(self, job: Job) -> Result:
        """Run a job under the manifest's deadline; every failure is a `BridgeError` with a clear message."""
        params = self.manifest.resolve_params(job.params)
        try:
            async with asyncio.timeout(self.limits.deadline):
                return await self._run(job, params)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the job took longer than {self.limits.deadline:g} s (limits.deadline)"
            ) from None

    async def _run(self, job: Job, params: dict[str, Any]) -> Result:
        wanted = self.spec.input
        if wanted == "text":
            if job.text is None:
                raise InvalidInput("this model reads text, and the request carries no text")
            context = Context(params=params, platform=job.platform)
            (predictions,) = await self._predict([job.text], [context])
            return Result(predictions, text=job.text)
        if job.text is not None and job.image is None and job.video is None:
            raise InvalidInput("this model reads images, and the request carries only text")
        if job.video is not None:
            return await self._run_video(job, params)
        if job.image is None:
            raise InvalidInput("the request carries no image")
        image = await self.load_image(job.image)
        (predictions,) = await self._predict_images([image], params, job)
        return Result(predictions, size=image.shape[:2])

    async def _run_video(self, job: Job, params: dict[str, Any]) -> Result:
        """Frames go to the model `limits.batch_size` at a time, so a long video never sits in memory whole."""
        video = job.video
        chunks = self._video_chunks_from_url(video.url) if video.url else self._video_chunks_from_frames(video)
        predictions: list[Prediction] = []
        size = None
        async for chunk in chunks:
            size = size or chunk[0][1].shape[:2]
            results = await self._predict_images([image for _, image in chunk], params, job)
            for (index, _), found in zip(chunk, results):
                predictions += [replace(p, frame=index) for p in found]
        return Result(predictions, size=size)

    async def _video_chunks_from_url(self, url: str) -> AsyncIterator[list[tuple[int, np.ndarray]]]:
        data = await self.media.fetch(url, "video.url")
        frames = decode_video(data, self.media.limits, self.manifest.video_frame_stride)
        try:
            while chunk := await self.media.decode(list, islice(frames, self.limits.batch_size)):
                yield chunk
        finally:
            frames.close()

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

    async def load_image(self, source: ImageSource, what: str = "image") -> np.ndarray:
        if source.url:
            return await self.media.image(source.url, f"{what}.url")
        if source.base64:
            data = decode_base64(source.base64, f"{what}.base64")
            return await self.media.decode(decode_image, data, self.media.limits, what)
        raise InvalidInput(f"{what} needs a url or base64")

    async def _predict_images(self, images: list[np.ndarray], params: dict[str, Any],
                              job: Job) -> list[list[Prediction]]:
        """Predict on whole images, or on the region of interest and move the results back."""
        region = job.region
        if region is None or self.spec.whole_image:
            contexts = [Context(params=params, region=region, platform=job.platform)] * len(images)
            results = await self._predict(images, contexts)
            offset = None
        else:
            crops, cuts = zip(*(geometry.crop(image, region) for image in images))
            if any(cut.w == 0 or cut.h == 0 for cut in cuts):
                raise InvalidInput(f"the region {region} lies outside the image")
            contexts = [Context(params=params, platform=job.platform)] * len(images)
            results = await self._predict(list(crops), contexts)
            offset = cuts[0]
        return [self._place(found, image.shape[:2], offset) for found, image in zip(results, images)]

    def _place(self, predictions: list[Prediction], size: tuple[int, int],
               offset: Box | None) -> list[Prediction]:
        """Into full-image coordinates, clipped to the image; shapes wholly outside are dropped."""
        height, width = size
        placed = []
        for p in predictions:
            shape = p.shape
            if offset is not None:
                shape = geometry.translate(shape, offset.x, offset.y, canvas=size)
            shape = geometry.clip(shape, width, height)
            if shape is not None:
                placed.append(replace(p, shape=shape))
        return placed

    async def _call_model(self, items: list[Any], contexts: list[Context]) -> list[list[Prediction]]:
        if self._async:
            async with self._slots:
                return await predict_batch_async(self.model, items, contexts)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, predict_batch, self.model, items, contexts)

    async def _predict(self, items: list[Any], contexts: list[Context]) -> list[list[Prediction]]:
        try:
            if self._batcher is not None and len(items) == 1:
                results = [await self._batcher.predict(items[0], contexts[0])]
            else:
                results = await self._call_model(items, contexts)
        except BridgeError:
            raise
        except Exception as error:
            log.exception("the model raised")
            raise ModelFailed(f"the model failed: {type(error).__name__}: {error}") from None
        for found in results:
            for prediction in found:
                try:
                    check_prediction(self.spec, prediction)
                except ValueError as error:
                    raise ModelFailed(f"the model returned a bad prediction: {error}") from None
        return [[replace(p, confidence=_unit(p.confidence)) for p in found] for found in results]


def _unit(confidence: float) -> float:
    """Clamp to [0, 1]; NaN counts as 0."""
    value = float(confidence)
    return min(max(value, 0.0), 1.0) if value == value else 0.0
