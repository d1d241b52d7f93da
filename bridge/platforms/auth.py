"""How a platform proves itself: no credentials, HTTP Basic, a secret header, or a bearer token.

One implementation for every adapter: secrets compared in constant time, checked before any of the body is
read, and a scheme whose secret is not set refuses every request (an endpoint is never open by accident).
Secrets may be any Unicode: compared as UTF-8 bytes, whether they arrive base64-encoded (Basic, RFC 7617's
UTF-8) or as the raw bytes of a header (which Starlette hands over decoded as Latin-1). Each scheme also
declares itself to OpenAPI, so `/docs`' "Authorize" button can send it; the declaration checks nothing, so it
cannot change who gets in.
"""

from __future__ import annotations

import secrets
from base64 import b64decode
from binascii import Error as Base64Error
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBearer
from fastapi.security.base import SecurityBase

from bridge.core.errors import Unauthorized

NO_SECRET = "has no secret set"
"""How an endpoint whose secret is not set says so (`bridge check URL` tells the fix by it)."""


@dataclass(frozen=True)
class Auth:
    """A scheme and its expected credentials; `key` names the manifest key that sets the secret."""

    scheme: str = "none"
    secret: str = ""
    username: str = ""
    header: str = ""
    key: str = ""

    def check(self, request: Request) -> None:
        """Raise `Unauthorized` (401) unless the request carries the expected credentials."""
        if self.scheme == "none":
            return
        if not self.secret:
            raise Unauthorized(f"this endpoint {NO_SECRET} ({self.key}) and refuses every request")
        if self.scheme == "basic":
            kind, _, encoded = _header(request, "authorization").partition(b" ")
            try:
                user, _, password = b64decode(encoded, validate=True).partition(b":")
            except (Base64Error, ValueError):
                user = password = b""
            same_user = _same(user, self.username)
            if kind.lower() != b"basic" or not (_same(password, self.secret) and same_user):
                raise Unauthorized("missing or wrong HTTP Basic credentials")
        elif self.scheme == "bearer":
            kind, _, token = _header(request, "authorization").partition(b" ")
            if kind.lower() != b"bearer" or not _same(token.strip(), self.secret):
                raise Unauthorized("missing or wrong secret: send the header `Authorization: Bearer <secret>`")
        elif not _same(_header(request, self.header), self.secret):
            raise Unauthorized(f"missing or wrong secret in the {self.header} header")

    def missing(self, variable: str | None = None) -> str | None:
        """A warning when the scheme needs a secret the manifest does not set; `variable` is the environment
        variable the manifest reads it from, if it does."""
        if self.scheme == "none" or self.secret:
            return None
        how = f"export {variable}=..." if variable else f"write `{self.key.rsplit('.', 1)[-1]}: ${{NAME}}` and " \
                                                            "export NAME"
        return f"{self.key} is not set: the endpoint refuses every request ({how})"

    def openapi(self) -> SecurityBase | None:
        """The FastAPI security declaration of this scheme (documentation only: `check` does the checking;
        FastAPI's own `HTTPBasic` would refuse UTF-8 credentials that `check` let in)."""
        if self.scheme == "basic":
            return _declared(HTTPBasic)(auto_error=False, scheme_name=self.key)
        if self.scheme == "bearer":
            return _declared(HTTPBearer)(auto_error=False, scheme_name=self.key)
        if self.scheme == "header":
            return _declared(APIKeyHeader)(name=self.header, auto_error=False, scheme_name=self.key)
        return None


def none() -> Auth:
    return Auth()


def basic(username: str | None, password: str | None, key: str) -> Auth:
    return Auth("basic", secret=password or "", username=username or "", key=key)


def header(name: str, secret: str | None, key: str) -> Auth:
    return Auth("header", secret=secret or "", header=name, key=key)


def bearer(secret: str | None, key: str) -> Auth:
    return Auth("bearer", secret=secret or "", key=key)


def _declared(scheme: type[SecurityBase]) -> type[SecurityBase]:
    """`scheme` as an OpenAPI declaration only: as a dependency it reads nothing and refuses no one."""

    class Declared(scheme):  # type: ignore[valid-type, misc]
        async def __call__(self, request: Request) -> None:
            return None

    Declared.__name__ = scheme.__name__
    return Declared


def _header(request: Request, name: str) -> bytes:
    """A header's bytes as sent (Starlette decodes them as Latin-1, which this undoes)."""
    return request.headers.get(name, "").encode("latin-1")


def _same(given: bytes, expected: str) -> bool:
    return secrets.compare_digest(given, expected.encode())
