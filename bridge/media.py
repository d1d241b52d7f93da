"""Media in, safely: images from base64 or URLs, video frames, with limits on bytes, pixels and time.

Every image leaves here as an (H, W, 3) uint8 RGB array, upright (EXIF orientation applied), whatever it
was: grayscale, RGBA, palette, 16-bit or JPEG. URLs are fetched with one pooled async client; each
redirect is checked again, and addresses on private, loopback and link-local networks are refused unless
the manifest allows them (a model server must not become a way into the network it runs in). The check is
made on the addresses the host name resolves to before connecting; a host that resolves differently on the
second look (DNS rebinding) is not caught.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import av
import httpx
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bridge.errors import BadRequest, DeadlineExceeded, InvalidInput, TooLarge
from bridge.observability import timed


@dataclass(frozen=True)
class MediaLimits:
    """What one request may bring in. The manifest's `limits` section fills these."""

    max_download_bytes: int = 50 * 2**20
    max_image_pixels: int = 50_000_000
    max_video_frames: int = 1000
    fetch_timeout: float = 10.0
    max_redirects: int = 5
    allow_private_urls: bool = False


# --- images ---------------------------------------------------------------------------------------------------


@timed("decode")
def decode_base64(data: str, what: str = "image.base64") -> bytes:
    """Bytes from base64, tolerating a `data:...;base64,` prefix and line breaks; a clear error otherwise."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"{what} is not valid base64: {error}") from None


@timed("decode")
def decode_image(data: bytes, limits: MediaLimits, what: str = "image") -> np.ndarray:
    """Decode image bytes to an upright (H, W, 3) uint8 RGB array, refusing images over the pixel limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise TooLarge(
                    f"{what} is {width}x{height} = {width * height:,} pixels; the limit is "
                    f"{limits.max_image_pixels:,} (limits.max_image_pixels)"
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(f"{what} is too large to decode safely") from None
    except UnidentifiedImageError:
        raise InvalidInput(f"{what} is not an image Pillow can read ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidInput(f"{what} could not be decoded: {error}") from None
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as 8-bit RGB; 16- and 32-bit integer images are scaled down, not clipped."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        gray = (np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float64).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


async def read_capped(chunks: AsyncIterator[bytes], declared: str | None, limit: int, what: str,
                      setting: str) -> bytes:
    """A whole body, refused (413) as soon as its declared length or the bytes read so far pass `limit`."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is {int(declared):,} bytes; the limit is {limit:,} ({setting})")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is over {limit:,} bytes ({setting})")
        parts.append(chunk)
    return b"".join(parts)


# --- URLs -----------------------------------------------------------------------------------------------------


class MediaLoader:
    """Fetches media over HTTP with one pooled client; create it once per app, close it at shutdown."""

    def __init__(self, limits: MediaLimits, concurrency: int = 16) -> None:
        self.limits = limits
        self._client = httpx.AsyncClient(
            timeout=limits.fetch_timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"user-agent": "annotation-bridge"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    @timed("fetch")
    async def fetch(self, url: str, what: str = "image.url") -> bytes:
        """The body at `url`, following redirects, within the byte limit and the fetch timeout."""
        try:
            async with asyncio.timeout(self.limits.fetch_timeout):
                for _ in range(self.limits.max_redirects + 1):
                    await self._check_url(url, what)
                    async with self._client.stream("GET", url) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("location", ""))
                            continue
                        if response.status_code >= 400:
                            raise InvalidInput(f"{what} answered HTTP {response.status_code}: {_short(url)}")
                        return await read_capped(response.aiter_bytes(), response.headers.get("content-length"),
                                                 self.limits.max_download_bytes, what, "limits.max_download_bytes")
                raise InvalidInput(f"{what} redirected more than {self.limits.max_redirects} times")
        except (TimeoutError, httpx.TimeoutException):
            raise DeadlineExceeded(
                f"fetching {what} took longer than {self.limits.fetch_timeout:g} s (limits.fetch_timeout)"
            ) from None
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            raise InvalidInput(f"could not fetch {what} {_short(url)}: {reason}") from None

    async def _check_url(self, url: str, what: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"{what} must be an http(s) URL, got {_short(url)!r}")
        if self.limits.allow_private_urls:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                                type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise InvalidInput(f"could not resolve the host of {what} {parts.hostname!r}: {error}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not address.is_global:
                raise BadRequest(
                    f"{what} points at a non-public address ({address}); set limits.allow_private_urls "
                    "in the manifest to allow it"
                )

    async def image(self, url: str, what: str = "image.url") -> np.ndarray:
        data = await self.fetch(url, what)
        return await asyncio.to_thread(decode_image, data, self.limits, what)



@timed("decode")
def decode_video(data: bytes, limits: MediaLimits, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB array) for every `stride`-th frame, decoded lazily with PyAV, so that a long video
    never sits in memory whole; within the frame and pixel limits (checked up front when the container
    says how many frames it holds)."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InvalidInput("video.url holds no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > limits.max_image_pixels:
                raise TooLarge(f"video frames are {stream.width}x{stream.height}, over limits.max_image_pixels")
            too_many = TooLarge(f"video has more than {limits.max_video_frames} frames to infer on "
                                "(limits.max_video_frames; raise it or the frame stride)")
            if stream.frames and -(-stream.frames // stride) > limits.max_video_frames:
                raise too_many
            kept = 0
            for index, frame in enumerate(container.decode(stream)):
                if index % stride:
                    continue
                if kept == limits.max_video_frames:
                    raise too_many
                kept += 1
                yield index, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
        raise InvalidInput(f"video.url could not be decoded: {error}") from None


def _short(url: str, length: int = 120) -> str:
    """A URL fit for an error message: signed URLs carry tokens in the query, so it is left out."""
    url = urlsplit(url)._replace(query="", fragment="").geturl()
    return url if len(url) <= length else url[:length] + "..."
