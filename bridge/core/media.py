"""Media in, safely: images from base64 or URLs, video frames, with limits on bytes, pixels, memory and time.

Every image leaves here as an (H, W, 3) uint8 RGB array, upright (EXIF orientation applied), whatever it
was: grayscale, RGBA, palette, 16-bit or JPEG. URLs are fetched with one pooled async client; each
redirect is checked again, and addresses on private, loopback and link-local networks are refused unless
the manifest allows them (a model server must not become a way into the network it runs in). The check is
made on the addresses the host name resolves to before connecting; a host that resolves differently on the
second look (DNS rebinding) is not caught.

Bounded on purpose, because callers choose the URLs and the bytes:

- time: httpx owns every time-out (pool, connect, read, write); nothing cancels a pooled request from
  outside, since a request cancelled while it connects leaks its pool slot for good (httpcore 1.0). A
  caller that gives up (its job's deadline) leaves the fetch to end by its own time-outs.
- bytes: the body is read raw and `Content-Encoding` is undone here, off the event loop, a piece at a time,
  counting the decoded bytes against the download limit (a 2 KB `gzip, gzip` body may inflate to gigabytes).
- memory: images and video frames are decoded on `max_decodes` threads of the loader's own, and no image is
  copied where it need not be (see the README for the worst case per request).
- logs: httpx and httpcore log URLs (and redirect targets) at INFO/DEBUG; `bridge.core.logs` blanks their
  query strings, which carry the signatures of signed URLs, before any handler sees them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import functools
import io
import ipaddress
import socket
import warnings
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import SplitResult, urljoin, urlsplit

import av
import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError

from bridge.core.errors import (
    BadRequest,
    BridgeError,
    DeadlineExceeded,
    InvalidInput,
    TooLarge,
)
from bridge.core.metrics import timed

T = TypeVar("T")


@dataclass(frozen=True)
class MediaLimits:
    """What one request may bring in. The manifest's `limits` section fills these."""

    max_download_bytes: int = 50 * 2**20
    max_image_pixels: int = 50_000_000
    max_video_frames: int = 1000
    fetch_timeout: float = 10.0
    max_redirects: int = 5
    allow_private_urls: bool = False
    fetch_connections: int = 16
    max_decodes: int = 2


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
    """Decode image bytes to an upright (H, W, 3) uint8 RGB array, refusing images over the pixel limit.

    The size is read from the header before any pixel is decoded. Whatever a decoder raises on bytes it
    cannot read (Pillow raises more than OSError on corrupt files, e.g. struct.error from a broken EXIF
    block) is the caller's bad input, not our failure: 422.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(*image.size, limits, what)
            image.load()
            turn = _ORIENTATION.get(image.getexif().get(0x0112))
            array = to_rgb(image)
    except BridgeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(f"{what} is too large to decode safely") from None
    except UnidentifiedImageError:
        raise InvalidInput(f"{what} is not an image Pillow can read ({len(data)} bytes)") from None
    except MemoryError:
        raise
    except Exception as error:
        raise InvalidInput(f"{what} could not be decoded: {type(error).__name__}: {error}") from None
    return np.ascontiguousarray(turn(array)) if turn else array


_ORIENTATION: dict[Any, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a[::-1].transpose(1, 0, 2),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a[:, ::-1].transpose(1, 0, 2),
}
"""EXIF orientation -> the view that makes the RGB array upright (as Pillow's `exif_transpose`), applied to
the 3-byte-per-pixel array rather than to Pillow's 4-byte one; other values (1, none, nonsense) leave the
image as stored."""


def _check_pixels(width: int, height: int, limits: MediaLimits, what: str) -> None:
    if width * height > limits.max_image_pixels:
        raise TooLarge(f"{what} is {width}x{height} = {width * height:,} pixels; the limit is "
                       f"{limits.max_image_pixels:,} (limits.max_image_pixels)")


def from_array(array: np.ndarray, limits: MediaLimits, what: str = "image") -> np.ndarray:
    """An image a caller already decoded, as any decoded image leaves here: (H, W, 3) uint8 RGB, refused over
    the pixel limit. It may be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA (alpha dropped), of booleans, 8
    or 16 bits (scaled down); an RGB uint8 array is used as it is (made C-contiguous), not copied."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape:
        raise InvalidInput(f"{what} is an array of shape {array.shape}: an image is (H, W) grey, (H, W, 3) RGB "
                           "or (H, W, 4) RGBA")
    if array.dtype not in (np.bool_, np.uint8, np.uint16):
        raise InvalidInput(f"{what} is an array of {array.dtype}: an image's pixels are booleans, uint8 or uint16")
    _check_pixels(array.shape[1], array.shape[0], limits, what)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as 8-bit RGB; 16- and 32-bit integer images are scaled down, not clipped.

    Converted a strip of rows at a time into the one output array, so that besides the decoded image only
    the 3-byte-per-pixel result is ever held whole (Pillow keeps RGB at 4 bytes a pixel, and a whole-image
    `convert` or `tobytes` would add one or two more copies).
    """
    width, height = image.size
    rows = max(1, _STRIP_BYTES // (4 * width))
    if rows >= height:  # one strip: no crop (a copy); writable, as the strips' array is
        strip = _strip_to_rgb(image)
        return strip if strip.flags.writeable else strip.copy()
    out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        out[top:top + rows] = _strip_to_rgb(image.crop((0, top, width, min(height, top + rows))))
    return out


_STRIP_BYTES = 4 * 2**20


def _strip_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = np.asarray(image)
        gray = (gray // 257 if image.mode != "F" else gray).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


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


# --- content encodings ----------------------------------------------------------------------------------------

_INFLATE_PIECE = 2**20
"""Most bytes one inflate step produces: the download limit is checked between steps."""


def decode_content(data: bytes, encodings: str, limit: int, what: str) -> bytes:
    """Undo a `Content-Encoding` (e.g. "gzip, gzip": the last one applied is undone first), each layer
    producing at most `limit` bytes, counted as they are produced."""
    for encoding in reversed([e.strip().lower() for e in encodings.split(",")]):
        if encoding in ("", "identity"):
            continue
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise InvalidInput(f"{what} came with Content-Encoding {encoding!r}, which the bridge does not "
                               "decode (it asks for gzip or deflate)")
        try:
            data = _inflate(data, zlib.MAX_WBITS | 32, limit, what)  # gzip or zlib header
        except zlib.error as error:
            if encoding != "deflate":
                raise InvalidInput(f"{what} is not valid {encoding}: {error}") from None
            try:
                data = _inflate(data, -zlib.MAX_WBITS, limit, what)  # "deflate" sent raw, as some servers do
            except zlib.error as error:
                raise InvalidInput(f"{what} is not valid deflate: {error}") from None
    return data


def _inflate(data: bytes, wbits: int, limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    parts, size = [], 0
    while data and not inflater.eof:
        piece = inflater.decompress(data, _INFLATE_PIECE)
        data = inflater.unconsumed_tail
        size += len(piece)
        if size > limit:
            raise TooLarge(f"{what} inflates to over {limit:,} bytes (limits.max_download_bytes)")
        parts.append(piece)
    parts.append(inflater.flush())
    return b"".join(parts)


# --- URLs -----------------------------------------------------------------------------------------------------


class MediaLoader:
    """Fetches and decodes media within the limits; create it once per app, close it at shutdown.

    It also says whether fetching works at all (`stalled`): when fetches end waiting for a free connection
    of the pool and none has ended otherwise since, the pool is not serving (taken by slow URLs, or broken).
    """

    def __init__(self, limits: MediaLimits) -> None:
        self.limits = limits
        self._client = httpx.AsyncClient(
            timeout=limits.fetch_timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=limits.fetch_connections,
                                max_keepalive_connections=limits.fetch_connections),
            headers={"user-agent": "annotation-bridge", "accept-encoding": "gzip, deflate"},
        )
        self._decoder = ThreadPoolExecutor(limits.max_decodes, thread_name_prefix="decode")
        self._fetches: set[asyncio.Task] = set()
        self._stalled_since: float | None = None
        self._pool_timeouts = 0

    async def aclose(self) -> None:
        for task in self._fetches:
            task.cancel()  # shutting down: the pool goes with them
        await asyncio.gather(*self._fetches, return_exceptions=True)
        await self._client.aclose()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def stalled(self) -> str | None:
        """Why URL fetches are not being served, or None when they are (or nothing was fetched)."""
        if self._stalled_since is None:
            return None
        age = asyncio.get_running_loop().time() - self._stalled_since
        return (f"URL fetches are stuck: {self._pool_timeouts} waited over {self.limits.fetch_timeout:g} s for "
                f"one of the {self.limits.fetch_connections} connections (limits.fetch_connections) in the "
                f"last {age:.0f} s, and none finished")

    async def decode(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` on one of the `max_decodes` decode threads. A caller that gives up does not free
        the thread: the decode ends first, so no more than `max_decodes` ever run at once."""
        run = functools.partial(contextvars.copy_context().run, func, *args)  # the request's stage timings
        return await asyncio.get_running_loop().run_in_executor(self._decoder, run)

    async def batches(self, items: Iterator[T], size: int) -> AsyncIterator[list[T]]:
        """Lists of up to `size` items of a decoding iterator (video frames), each taken on a decode thread.

        The iterator is closed on the thread that last ran it once that batch is done: a caller that gives up
        mid-batch (its deadline) must not close a generator another thread is still running.
        """
        future = None
        try:
            while True:
                future = self._decoder.submit(contextvars.copy_context().run, list, islice(items, size))
                if not (batch := await asyncio.wrap_future(future)):
                    return
                yield batch
        finally:
            if future is not None and not future.done():
                future.add_done_callback(lambda _: items.close())
            else:
                items.close()

    @timed("fetch")
    async def fetch(self, url: str, what: str = "image.url", headers: Mapping[str, str] | None = None) -> bytes:
        """The body at `url`, following redirects, within the byte limit and the fetch timeout. `headers`
        (credentials) go to `url`'s origin only: a redirect elsewhere is fetched without them.

        The fetch runs as a task of its own: a caller cancelled by its deadline stops waiting at once, and
        the fetch ends by its own time-outs, so no request is ever cancelled inside the connection pool.
        """
        task = asyncio.ensure_future(self._fetch(url, what, headers or {}))
        self._fetches.add(task)
        task.add_done_callback(self._fetch_done)
        return await asyncio.shield(task)

    def _fetch_done(self, task: asyncio.Task) -> None:
        self._fetches.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here too: a caller that gave up must not leave it "never retrieved"

    async def _fetch(self, url: str, what: str, headers: Mapping[str, str]) -> bytes:
        origin = _origin(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.fetch_timeout
        late = DeadlineExceeded(f"fetching {what} took longer than {self.limits.fetch_timeout:g} s "
                                "(limits.fetch_timeout)")
        for _ in range(self.limits.max_redirects + 1):
            await self._check_url(url, what)
            left = deadline - loop.time()
            if left <= 0:
                raise late
            waited = False
            try:
                sent = headers if _origin(url) == origin else None
                async with self._client.stream("GET", url, headers=sent, timeout=httpx.Timeout(left)) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code >= 400:
                        raise InvalidInput(f"{what} answered HTTP {response.status_code}: {_short(url)}")
                    data = await read_capped(_until(response.aiter_raw(), deadline, late),
                                             response.headers.get("content-length"),
                                             self.limits.max_download_bytes, what, "limits.max_download_bytes")
                    encoding = response.headers.get("content-encoding", "")
            except httpx.PoolTimeout:
                waited = True
                raise late from None
            except httpx.TimeoutException:
                raise late from None
            except httpx.HTTPError as error:
                reason = str(error) or type(error).__name__
                raise InvalidInput(f"could not fetch {what} {_short(url)}: {reason}") from None
            finally:
                self._note(waited)
            if encoding:
                data = await self.decode(decode_content, data, encoding, self.limits.max_download_bytes, what)
            return data
        raise InvalidInput(f"{what} redirected more than {self.limits.max_redirects} times")

    def _note(self, waited: bool) -> None:
        """Count a fetch that waited out its time for a connection; any other ending clears the count."""
        if not waited:
            self._stalled_since = None
        elif self._stalled_since is None:
            self._stalled_since, self._pool_timeouts = asyncio.get_running_loop().time(), 1
        else:
            self._pool_timeouts += 1

    async def _check_url(self, url: str, what: str) -> None:
        parts = _parse_url(url, what)
        if self.limits.allow_private_urls:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                                type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise InvalidInput(f"could not resolve the host of {what} {_short(parts.hostname)!r}: "
                               f"{error}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not address.is_global:
                raise BadRequest(
                    f"{what} points at a non-public address ({address}); set limits.allow_private_urls "
                    "in the manifest to allow it"
                )

    async def image(self, url: str, what: str = "image.url", headers: Mapping[str, str] | None = None) -> np.ndarray:
        data = await self.fetch(url, what, headers)
        return await self.decode(decode_image, data, self.limits, what)


async def _until(chunks: AsyncIterator[bytes], deadline: float, late: DeadlineExceeded) -> AsyncIterator[bytes]:
    """The chunks, until the deadline passes: a body trickling in under the read time-out is cut too."""
    loop = asyncio.get_running_loop()
    async for chunk in chunks:
        if loop.time() > deadline:
            raise late
        yield chunk


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host and port); empty for a URL that does not parse (`_check_url` says why)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    return parts.scheme.lower(), parts.netloc.lower()


def _parse_url(url: str, what: str) -> SplitResult:
    """The parts of an http(s) URL that httpx can fetch; 400 naming the problem otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number in 0-65535)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"{what} must be an http(s) URL, got {_short(url)!r}")
        parts.hostname.encode("idna")  # a label over 63 characters, a lone surrogate...
        httpx.URL(url)
    except (ValueError, UnicodeError, httpx.InvalidURL) as error:
        raise BadRequest(f"{what} is not a valid URL ({error}): {_short(url)!r}") from None
    return parts


def _short(url: str, length: int = 120) -> str:
    """A URL fit for an error message: signed URLs carry tokens in the query, so it is left out; characters
    that cannot be sent as UTF-8 (lone surrogates) are escaped."""
    url = url.partition("#")[0].partition("?")[0]
    url = url.encode("utf-8", "backslashreplace").decode("utf-8")
    return url if len(url) <= length else url[:length] + "..."


# --- video ----------------------------------------------------------------------------------------------------


@timed("decode")
def decode_video(data: bytes, limits: MediaLimits, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB array) for every `stride`-th frame, decoded lazily with PyAV, so that a long video
    never sits in memory whole; within the frame and pixel limits. The container's frame size and count are
    checked up front, and every decoded frame's size again before it is converted: the header may lie."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InvalidInput("video.url holds no video stream")
            stream = container.streams.video[0]
            _check_frame(stream.width, stream.height, limits)
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
                _check_frame(frame.width, frame.height, limits, index)
                yield index, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
        raise InvalidInput(f"video.url could not be decoded: {error}") from None


def _check_frame(width: int, height: int, limits: MediaLimits, index: int | None = None) -> None:
    if width * height > limits.max_image_pixels:
        which = "video frames are" if index is None else f"video frame {index} is"
        raise TooLarge(f"{which} {width}x{height}, over limits.max_image_pixels ({limits.max_image_pixels:,})")
