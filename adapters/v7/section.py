"""The `platforms.v7` section of a manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bridge.core.manifest import PlatformSection, Strict

SECRET_HEADER = "X-Auth"
"""The header of V7's secret-key auth unless the section names another (V7's `auth_secret_header`)."""


class V7Auth(Strict):
    """How V7 proves itself: nothing, HTTP Basic, or a secret in a header of your choosing."""

    method: Literal["none", "basic", "header"] = Field("none", description="none, HTTP Basic, or a secret in "
                                                                         "`header`: as registered in V7.")
    username: str | None = Field(None, description="basic: the user name V7 sends.")
    password: str | None = Field(None, description="basic: the password V7 sends (use ${ENV}).")
    header: str = Field(SECRET_HEADER, description="Header that carries the secret (V7's `auth_secret_header`).")
    secret: str | None = Field(None, description="header: the secret V7 sends in `header` (use ${ENV}).")

    @model_validator(mode="after")
    def _complete(self) -> V7Auth:
        if self.method == "basic" and not (self.username and self.password):
            raise ValueError("basic auth needs `username` and `password` (use ${ENV} for the password)")
        if self.method == "header" and not self.secret:
            raise ValueError("header auth needs `secret` (use ${ENV})")
        return self


class V7Section(PlatformSection):
    """V7 Darwin's Bring-Your-Own-Model routes: `GET {base_path}/classes`, `POST {base_path}/infer`."""

    base_path: str = "/v7"
    auth: V7Auth = Field(default_factory=V7Auth, description="How V7 proves itself: `method` none, basic or "
                                                             "header.")
    tag_name: str = Field("{class}: {option}", description="V7 tag name for a radio/checklist option, from "
                                                           "'{class}' and '{option}'; every name V7 receives must "
                                                           "be unique in the model (checked at start-up).")
