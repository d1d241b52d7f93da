"""A remote model: an endpoint that already speaks one platform's dialect, served to every platform.

A manifest names it instead of Python code::

    model:
      remote:
        url: https://models.example.com/v7      # V7: the base as registered with V7; Labelbox: the endpoint
        platform: v7                            # v7 | labelbox | ango (any installed adapter)
        auth: {basic: "user:${V7_PASSWORD}"}    # or bearer / secret / headers; secrets as ${NAME}

The classes come from the remote (V7 `/classes`; Labelbox the `model_yaml` named in the section; an Ango
connector lists none, so the manifest's `classes` say them), or from the manifest's `classes` when given. Each
prediction is one request built by the platform's client role (`Client.remote_request`), sent over pooled
connections (retried on connection errors; the job's `limits.deadline` bounds it), and read back by the
adapter's reader (`Adapter.read_answer`). The adapters are handed in by whoever builds the model
(`bridge.core.loading`): the core imports none. The core then finishes the predictions as any model's. A remote that
fails, refuses or answers what cannot be read is a 502 with the remote's reason, in the asking platform's
error form.

A remote is a peer: its answers are read as they stream in and refused past `limits.max_answer_bytes`, both as
sent and once its `Content-Encoding` is undone (off the event loop, a piece at a time, so a small gzip bomb
never inflates whole), and parsed strictly (`parse_json`: no NaN or Infinity, no number past a double, no
nesting past 1024 levels). The calls made from synchronous code (the classes at start-up, `bridge check URL`)
go through `Bounded`, which also bounds each call's total time: an answer that drips a byte at a time is cut.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
import orjson
from PIL import Image

from bridge.core.errors import (
    BadAnswer,
    BridgeError,
    DeadlineExceeded,
    InvalidInput,
    TooLarge,
)
from bridge.core.manifest import RemoteRef
from bridge.core.media import decode_content, read_capped
from bridge.core.model import Context, ModelSpec
from bridge.core.predictions import Prediction

log = logging.getLogger("bridge")
T = TypeVar("T")


class RemoteFailed(BridgeError):
    """The remote endpoint failed, refused the request, or could not be reached."""

    status = 502


def auth_headers(secret_headers: Any, basic: str | None = None, bearer: str | None = None,
                 secret: str | None = None, headers: Mapping[str, str] | None = None) -> dict[str, str | bytes]:
    """The HTTP headers of a set of credentials; `secret_headers(secret)` is the platform's own secret form.
    One place for `model.remote.auth` and `bridge check URL`'s options. A value that is not ASCII goes as its
    UTF-8 bytes (Basic is UTF-8 before base64, as RFC 7617 has it)."""
    found: dict[str, str] = {}
    if basic is not None:
        user, sep, password = basic.partition(":")
        if not sep:
            raise ValueError("basic credentials are 'USER:PASSWORD'")
        found["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    if bearer is not None:
        found["Authorization"] = f"Bearer {bearer}"
    if secret is not None:
        found.update(secret_headers(secret))
    found.update(headers or {})
    return {name: value if value.isascii() else value.encode("utf-8") for name, value in found.items()}


def image_base64(image: np.ndarray) -> str:
    """An RGB image as base64 PNG (lossless: the remote sees the pixels the bridge decoded)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


MAX_ANSWER = "limits.max_answer_bytes"


def parse_json(data: bytes) -> Any:
    """JSON, strictly (orjson's rules): `ValueError` saying why for NaN, Infinity, a number past a double (1e400)
    or nesting deeper than 1024 levels, none of which a platform's answer holds."""
    return orjson.loads(data)


@dataclass(frozen=True)
class Reply:
    """A peer's answer, read within bounds: its status and its body, decoded."""

    status_code: int
    content: bytes
    reason_phrase: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return parse_json(self.content)

    def reason(self) -> str:
        """What a failed answer says: its `error` (every platform's error form has one), else its body."""
        try:
            body = self.json()
        except ValueError:
            return self.text[:300] or self.reason_phrase
        if isinstance(body, dict) and (body.get("error") or body.get("detail")):
            return str(body.get("error") or body.get("detail"))[:300]
        return str(body)[:300]


async def read_reply(response: httpx.Response, limit: int, setting: str = MAX_ANSWER) -> Reply:
    """A streamed response's body, refused (`TooLarge`, naming the `setting` of `limit`) past `limit` bytes as it
    arrives and again as its `Content-Encoding` is undone, off the event loop and a piece at a time; the rest is
    never read."""
    try:
        data = await read_capped(response.aiter_raw(), response.headers.get("content-length"), limit, "answer",
                                 setting)
        encoding = response.headers.get("content-encoding", "")
        if encoding:
            data = await asyncio.to_thread(decode_content, data, encoding, limit, "answer")
    except TooLarge:
        raise TooLarge(f"answered over {limit:,} bytes ({setting})") from None
    return Reply(response.status_code, data, response.reason_phrase)


class Bounded:
    """Calls to a peer from synchronous code (the remote's classes at start-up, `bridge check URL`), each bounded in
    total time (`seconds`, from connecting to the last byte, however slowly the bytes come: `DeadlineExceeded`)
    and in bytes (`limit`, as sent and decoded: `TooLarge`). Other failures raise `httpx.HTTPError`."""

    def __init__(self, headers: Mapping[str, str | bytes], seconds: float, limit: int,
                 setting: str = MAX_ANSWER) -> None:
        self.headers, self.seconds, self.limit, self.setting = dict(headers), seconds, limit, setting

    def get(self, url: str, **send: Any) -> Reply:
        return self.request("GET", url, **send)

    def request(self, method: str, url: str, **send: Any) -> Reply:
        return _blocking(self._request(method, url, **send))

    async def _request(self, method: str, url: str, **send: Any) -> Reply:
        async with httpx.AsyncClient(headers=self.headers, timeout=self.seconds) as client:
            try:
                async with asyncio.timeout(self.seconds):  # one client per call: cancelling it leaks nothing
                    async with client.stream(method, url, **send) as response:
                        return await read_reply(response, self.limit, self.setting)
            except TimeoutError:
                raise DeadlineExceeded(f"no answer in {self.seconds:g} s") from None


def _blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end on an event loop of its own thread: the caller's thread may run a loop already (a
    Ray replica builds its model there)."""
    with ThreadPoolExecutor(1, thread_name_prefix="bounded-call") as pool:
        return pool.submit(asyncio.run, work).result()


def failure(error: Exception) -> str:
    """What went wrong with a call, in a few words: a `BridgeError`'s message, else the exception's type and text."""
    if isinstance(error, BridgeError):
        return error.message
    return f"{type(error).__name__}: {error}"


class RemoteModel:
    """The model interface over a remote endpoint: `spec` read once, `predict_batch` async (on the event loop)."""

    def __init__(self, remote: RemoteRef, adapter: Any, spec: ModelSpec, headers: dict[str, str | bytes],
                 timeout: float, limit: int) -> None:
        self.remote, self.adapter, self.spec = remote, adapter, spec
        self.section = adapter.section()
        self.url = remote.url.rstrip("/")
        self._headers, self._timeout, self._limit = headers, timeout, limit
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def connect(cls, remote: RemoteRef, adapters: Mapping[str, Any], classes: Sequence[Any] | None,
                input: str | None, timeout: float, limit: int) -> RemoteModel:
        """The remote model, its classes read from the remote unless `classes` are given; each call bounded by
        `timeout` seconds and answers by `limit` bytes. Raises `ValueError` with what is wrong (an unknown
        platform, an unreachable or hostile endpoint, an answer without classes)."""
        if remote.platform not in adapters:
            raise ValueError(f"model.remote.platform: no adapter named {remote.platform!r} "
                             f"(installed: {', '.join(sorted(adapters))})")
        adapter = adapters[remote.platform]
        if adapter.client is None:
            raise ValueError(f"model.remote.platform: the {remote.platform} adapter cannot call an endpoint")
        given = remote.auth
        headers = auth_headers(adapter.client.secret_headers, given.basic, given.bearer, given.secret,
                               given.headers)
        if classes:
            spec = ModelSpec(classes=classes, input=input or "image")
        else:
            try:
                spec = adapter.client.remote_spec(remote, Bounded(headers, timeout, limit))
            except (httpx.HTTPError, BridgeError) as error:
                raise ValueError(f"model.remote: the classes of {remote.url} could not be read: "
                                 f"{failure(error)}") from None
        log.info("remote %s model at %s: %d classes", remote.platform, remote.url, len(spec.classes))
        return cls(remote, adapter, spec, headers, timeout, limit)

    async def predict_batch(self, items: Sequence[Any], contexts: Sequence[Context]) -> list[list[Prediction]]:
        return list(await asyncio.gather(*map(self._predict, items, contexts)))

    async def _predict(self, item: Any, context: Context) -> list[Prediction]:
        path, body = await asyncio.to_thread(self.adapter.client.remote_request, item, context, self.spec,
                                             self.remote)
        where = f"the remote {self.remote.platform} endpoint {self.url}{path}"
        try:
            async with self._http().stream("POST", self.url + path, json=body) as response:
                reply = await read_reply(response, self._limit)
        except httpx.HTTPError as error:
            raise RemoteFailed(f"{where} could not be reached: {type(error).__name__}: {error}") from None
        except (TooLarge, InvalidInput) as error:  # over the cap; an encoding the bridge does not undo
            raise RemoteFailed(f"{where} {error.message}") from None
        if reply.status_code >= 400:
            raise RemoteFailed(f"{where} answered {reply.status_code}: {reply.reason()}")
        try:
            answer = await asyncio.to_thread(reply.json)
        except ValueError as error:
            raise RemoteFailed(f"{where} answered something that is not JSON ({error}): "
                               f"{reply.text[:120]!r}") from None
        size, text = (item.shape[:2], None) if isinstance(item, np.ndarray) else (None, item)
        try:
            return await asyncio.to_thread(self.adapter.read_answer, answer, self.spec, self.section, size, text)
        except BadAnswer as error:
            raise RemoteFailed(f"{where} answered what cannot be read: {error.message}") from None

    def _http(self) -> httpx.AsyncClient:
        """One pooled client, made on the serving loop at first use; connection failures are retried."""
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout,
                                             transport=httpx.AsyncHTTPTransport(retries=self.remote.retries))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
