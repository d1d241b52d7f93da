"""The `platforms.v7` section of a manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bridge.core.manifest import PlatformSection, Strict

SECRET_HEADER = "X-Auth"
"""The header of V7's secret-key auth unless the section names another (V7's `auth_secret_header`)."""


class V7Auth(Strict):
    """How V7 proves itself: nothing, HTTP Basic, or a secret in a header of your choosing."""

    method: Literal["none", "basic", "header"] = "none"
    username: str | None = None
    password: str | None = None
    header: str = Field(SECRET_HEADER, description="Header that carries the secret (V7's `auth_secret_header`).")
    secret: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> V7Auth:
        if self.method == "basic" and not (self.username and self.password):
            raise ValueError("basic auth needs `username` and `password` (use ${ENV} for the password)")
        if self.method == "header" and not self.secret:
            raise ValueError("header auth needs `secret` (use ${ENV})")
        return self


class V7Section(PlatformSection):
    base_path: str = "/v7"
    auth: V7Auth = Field(default_factory=V7Auth)
    tag_name: str = Field("{class}: {option}", description="V7 tag name for a radio/checklist option, from "
                                                           "'{class}' and '{option}'; every name V7 receives must "
                                                           "be unique in the model (checked at start-up).")
