"""The `platforms.labelstudio` section of a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from bridge.core.manifest import PlatformSection, Strict


class LabelStudioAuth(Strict):
    """How Label Studio proves itself to the backend: nothing, or the HTTP Basic credentials registered with
    the backend (Label Studio's `auth_method: BASIC_AUTH`)."""

    method: Literal["none", "basic"] = Field("none", description="none, or basic: the Basic credentials "
                                                                 "registered with the backend in Label Studio.")
    username: str | None = Field(None, description="Basic auth's user name.")
    password: str | None = Field(None, description="Basic auth's password (use ${ENV}).")

    @model_validator(mode="after")
    def _complete(self) -> LabelStudioAuth:
        if self.method == "basic" and not (self.username and self.password):
            raise ValueError("basic auth needs `username` and `password` (use ${ENV} for the password)")
        return self


class LabelStudioSection(PlatformSection):
    """Label Studio's ML backend routes: `{base_path}/health`, `/setup`, `/predict`, `/webhook`, `/versions`."""

    base_path: str = "/labelstudio"
    auth: LabelStudioAuth = Field(default_factory=LabelStudioAuth, description="How Label Studio proves itself: "
                                  "`method` none or basic.")
    url: str | None = Field(None, pattern=r"^(https?://.*)?$", description="Label Studio's base URL as the bridge "
                            "reaches it, for task media (default, or empty: the `hostname` Label Studio sends in "
                            "/setup).")
    api_token: str | None = Field(None, description="A Label Studio personal access token (or legacy token) to "
                                  "fetch task media with (use ${LABEL_STUDIO_API_KEY}); default: the token "
                                  "Label Studio sends in /setup, which fetches nothing when the organisation "
                                  "has legacy tokens off (the default since 1.22).")
    label_config: Path | None = Field(None, description="The project's label config (XML file, relative to the "
                                      "manifest), for `bridge check` and `bridge prelabel`; when serving, "
                                      "Label Studio sends it with every request.")
    empty_score: float = Field(0.0, description="The `score` of a task with no prediction (tasks with the lowest "
                               "score come first under Uncertainty sampling).")
    predict_batch: int = Field(16, gt=0, description="Tasks of one /predict call run at once (the rest wait).")
