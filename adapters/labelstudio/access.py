"""The credentials task media are fetched with: Label Studio's own, as each project's `/setup` gives them or
as the manifest configures them.

A task's media are URLs relative to Label Studio (`/data/upload/...`, `/data/local-files/?d=...`); Label
Studio serves them to `Authorization: Token <legacy token>` (while the organisation allows legacy tokens: off
by default since 1.22) or `Authorization: Bearer <access token>`, an access token that a personal access token
(a JWT refresh token) buys at `/api/token/refresh/` for 5 minutes. So:

- the token is the section's `api_token` if set, else the one `/setup` sent (the project creator's legacy
  token); a JWT is exchanged for an access token, kept until shortly before it expires;
- credentials go only to Label Studio's own origin (the section's `url`, else `/setup`'s `hostname`): a task
  URL pointing elsewhere (a bucket, a CDN) is fetched without them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from bridge.core.errors import BridgeError

REFRESH_MARGIN = 30.0
"""Seconds before an access token expires when a new one is bought."""


class TokenRefused(BridgeError):
    """Label Studio refused the personal access token."""

    status = 502


@dataclass
class Access:
    """Label Studio's base URL and a token, for one project (or the section's, for all)."""

    base: str
    token: str
    _access: str | None = None
    _expires: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def url(self, reference: str) -> str:
        """A task's media reference as an absolute URL (relative ones are Label Studio's)."""
        return urljoin(self.base.rstrip("/") + "/", reference)

    def owns(self, url: str) -> bool:
        """Whether `url` is on Label Studio's own origin (the only one its credentials go to)."""
        mine, theirs = urlsplit(self.base), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    async def headers(self, url: str, timeout: float) -> Mapping[str, str]:
        """The credentials for fetching `url`: none off Label Studio's origin, or without a token."""
        if not self.token or not self.owns(url):
            return {}
        if not is_jwt(self.token):
            return {"Authorization": f"Token {self.token}"}
        async with self._lock:
            if self._access is None or time.monotonic() > self._expires:
                self._access, lifetime = await self._refresh(timeout)
                self._expires = time.monotonic() + max(lifetime - REFRESH_MARGIN, 0.0)
        return {"Authorization": f"Bearer {self._access}"}

    async def _refresh(self, timeout: float) -> tuple[str, float]:
        where = self.url("/api/token/refresh/")
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                answer = await client.post(where, json={"refresh": self.token})
        except httpx.HTTPError as error:
            raise TokenRefused(f"Label Studio's token refresh at {where} failed: {type(error).__name__}") from None
        if answer.status_code != 200 or "access" not in _json(answer):
            raise TokenRefused(f"Label Studio refused the personal access token at {where} (HTTP "
                               f"{answer.status_code}): check platforms.labelstudio.api_token")
        access = answer.json()["access"]
        return access, _lifetime(access)


def is_jwt(token: str) -> bool:
    """Whether a token is a JWT (a personal access token), not a legacy key."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


def _lifetime(token: str) -> float:
    """Seconds an access token lives, from its `exp` (Label Studio's last 300 s)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return max(float(claims["exp"]) - time.time(), 0.0)
    except (ValueError, KeyError, IndexError, TypeError):
        return 60.0


def _json(answer: httpx.Response) -> dict:
    try:
        found = answer.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
