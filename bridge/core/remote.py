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
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bridge.core.errors import BadAnswer, BridgeError
from bridge.core.manifest import RemoteRef
from bridge.core.model import Context, ModelSpec
from bridge.core.predictions import Prediction

log = logging.getLogger("bridge")


class RemoteFailed(BridgeError):
    """The remote endpoint failed, refused the request, or could not be reached."""

    status = 502


def auth_headers(secret_headers: Any, basic: str | None = None, bearer: str | None = None,
                 secret: str | None = None, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """The HTTP headers of a set of credentials; `secret_headers(secret)` is the platform's own secret form.
    One place for `model.remote.auth` and `bridge check URL`'s options."""
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
    return found


def image_base64(image: np.ndarray) -> str:
    """An RGB image as base64 PNG (lossless: the remote sees the pixels the bridge decoded)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def reason(response: httpx.Response) -> str:
    """What a failed answer says: its `error` (every platform's error form has one), else its body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and (body.get("error") or body.get("detail")):
        return str(body.get("error") or body.get("detail"))[:300]
    return str(body)[:300]


class RemoteModel:
    """The model interface over a remote endpoint: `spec` read once, `predict_batch` async (on the event loop)."""

    def __init__(self, remote: RemoteRef, adapter: Any, spec: ModelSpec, headers: dict[str, str],
                 timeout: float) -> None:
        self.remote, self.adapter, self.spec = remote, adapter, spec
        self.section = adapter.section()
        self.url = remote.url.rstrip("/")
        self._headers, self._timeout = headers, timeout
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def connect(cls, remote: RemoteRef, adapters: Mapping[str, Any], classes: Sequence[Any] | None,
                input: str | None, timeout: float) -> RemoteModel:
        """The remote model, its classes read from the remote unless `classes` are given. Raises `ValueError`
        with what is wrong (an unknown platform, an unreachable endpoint, an answer without classes)."""
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
            with httpx.Client(headers=headers, timeout=timeout) as client:
                try:
                    spec = adapter.client.remote_spec(remote, client)
                except httpx.HTTPError as error:
                    raise ValueError(f"model.remote: the classes of {remote.url} could not be read: "
                                     f"{type(error).__name__}: {error}") from None
        log.info("remote %s model at %s: %d classes", remote.platform, remote.url, len(spec.classes))
        return cls(remote, adapter, spec, headers, timeout)

    async def predict_batch(self, items: Sequence[Any], contexts: Sequence[Context]) -> list[list[Prediction]]:
        return list(await asyncio.gather(*map(self._predict, items, contexts)))

    async def _predict(self, item: Any, context: Context) -> list[Prediction]:
        path, body = await asyncio.to_thread(self.adapter.client.remote_request, item, context, self.spec,
                                             self.remote)
        where = f"the remote {self.remote.platform} endpoint {self.url}{path}"
        try:
            response = await self._http().post(self.url + path, json=body)
        except httpx.HTTPError as error:
            raise RemoteFailed(f"{where} could not be reached: {type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise RemoteFailed(f"{where} answered {response.status_code}: {reason(response)}")
        try:
            answer = response.json()
        except ValueError:
            raise RemoteFailed(f"{where} answered something that is not JSON: {response.text[:120]!r}") from None
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
