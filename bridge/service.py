"""Runs one job for any platform: fetch the media, apply the region of interest, predict, within the deadline.

The one place for these concerns, so that every adapter only translates its dialect into a `Job` and a
`Result` back. Everything after `predict` (check, clamp, place, thresholds: `bridge.outputs.finish`) runs in
the same worker-thread call as the model, never on the event loop. Predictions run on a thread pool of `limits.concurrency` workers: the event loop keeps
serving while the model works, and a job past its deadline answers 504 at once (the model's thread cannot
be interrupted; its result is thrown away, and queued jobs past their deadline never start). An `async`
model runs on the loop instead, `limits.concurrency` at once, and is cancelled at its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bridge import geometry
from bridge.admission import Admission
from bridge.batching import Batcher
from bridge.errors import BridgeError, DeadlineExceeded, InvalidInput, ModelFailed, TooLarge
from bridge.manifest import Manifest, ManifestError
from bridge.media import MediaLoader, decode_base64, decode_image, decode_video
from bridge.model import Context, Model, ModelSpec, Prompts, is_async, predict_batch, predict_batch_async
from bridge.observability import observe_batch, observe_job, queued, timed
from bridge.outputs import Finish, finish
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
        self._workers = ThreadPoolExecutor(manifest.limits.concurrency, thread_name_prefix="model")
        self._async = is_async(model)
        self._slots = asyncio.Semaphore(manifest.limits.concurrency)
        self.admission = Admission(manifest.limits.concurrency, manifest.limits.max_queue, manifest.limits.deadline)
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
        if hasattr(self.model, "aclose"):  # a model holding connections (bridge.remote)
            await self.model.aclose()
        self._workers.shutdown(wait=False, cancel_futures=True)

    @observe_job
    async def run(self, job: Job) -> Result:
        """Run a job under the manifest's deadline; every failure is a `BridgeError` with a clear message."""
        params = self.manifest.resolve_params(job.params)
        try:
            with self.admission.job():
                async with asyncio.timeout(self.limits.deadline):
                    return await self._run(job, params)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the job took longer than {self.limits.deadline:g} s (limits.deadline)"
            ) from None

    async def _run(self, job: Job, params: Mapping[str, Any]) -> Result:
        wanted = self.spec.input
        if wanted == "text":
            if job.text is None:
                raise InvalidInput("this model reads text, and the request carries no text")
            context = Context(params=params, platform=job.platform)
            how = Finish(text=job.text, min_confidence=self.thresholds(job.platform))
            (predictions,) = await self._predict([job.text], [context], [how])
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

    async def load_image(self, source: ImageSource, what: str = "image") -> np.ndarray:
        if source.url:
            return await self.media.image(source.url, f"{what}.url")
        if source.base64:
            data = decode_base64(source.base64, f"{what}.base64")
            return await self.media.decode(decode_image, data, self.media.limits, what)
        raise InvalidInput(f"{what} needs a url or base64")

    async def _predict_images(self, images: list[np.ndarray], params: Mapping[str, Any],
                              job: Job) -> list[list[Prediction]]:
        """Predict on whole images with the prompts, or on the crop to the box prompt for a model that takes
        none; results come back in full-image terms."""
        region, thresholds = job.prompts.box, self.thresholds(job.platform)
        drawn = self.manifest.geometry
        outlines = dict(tolerance=drawn.simplify_tolerance, min_area=drawn.min_area,
                        max_vertices=self.limits.max_vertices)
        if self.spec.prompts or region is None:
            prompts = job.prompts if self.spec.prompts else Prompts()
            context = Context(params=params, prompts=prompts, platform=job.platform)
            finishes = [Finish(seen=image.shape[:2], canvas=image.shape[:2], min_confidence=thresholds,
                               **outlines) for image in images]
            return await self._predict(images, [context] * len(images), finishes)
        crops, cuts = zip(*(geometry.crop(image, region) for image in images))
        if any(cut.w == 0 or cut.h == 0 for cut in cuts):
            raise InvalidInput(f"the region {region} lies outside the image")
        contexts = [Context(params=params, region=cut, platform=job.platform) for cut in cuts]
        finishes = [Finish(seen=crop.shape[:2], canvas=image.shape[:2], offset=cut, min_confidence=thresholds,
                           **outlines) for crop, image, cut in zip(crops, images, cuts)]
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
        """Each item's results checked, clamped, placed and thresholded (`bridge.outputs.finish`)."""
        return [finish(found, self.spec, how) for found, how in zip(results, finishes)]

    async def _call_model(self, items: list[Any], contexts: list[Context],
                          finishes: list[Finish]) -> list[list[Prediction]]:
        with queued() as ticket:
            if self._async:
                async with self._slots:
                    ticket.start()
                    results = await _guarded_async(predict_batch_async(self.model, items, contexts))
                return await asyncio.to_thread(self._finish, results, finishes)
            return await self.admission.call(self._workers, ticket.wrap(self._predict_sync), items, contexts,
                                             finishes)

    @timed("predict")
    async def _predict(self, items: list[Any], contexts: list[Context],
                       finishes: list[Finish]) -> list[list[Prediction]]:
        if self._batcher is not None and len(items) == 1:
            return [await self._batcher.predict(items[0], contexts[0], finishes[0])]
        return await self._call_model(items, contexts, finishes)


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
