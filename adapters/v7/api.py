"""What V7 sends and gets, as the pydantic models of its routes (what /docs shows)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.platforms.requests import OneOf


class V7Image(OneOf):
    """An image by URL, as base64, or both."""

    model_config = ConfigDict(extra="allow")
    one_of = ("base64", "url")
    several = True
    url: str | None = None
    base64: str | None = None


class V7Video(OneOf):
    """A video by URL, or as the URLs of its frames."""

    model_config = ConfigDict(extra="allow")
    one_of = ("url", "frame_urls")
    url: str | None = None
    frame_urls: list[V7Image] | None = None


class V7Region(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN, Infinity and 1e400 are not a box
    x: float
    y: float
    w: float = Field(ge=0)
    h: float = Field(ge=0)

    @model_validator(mode="after")
    def _finite_corner(self) -> V7Region:
        if not (math.isfinite(self.x + self.w) and math.isfinite(self.y + self.h)):
            raise ValueError("the box's far corner (x + w, y + h) is not a finite number")
        return self


class V7Params(BaseModel):
    """V7's own keys; any other key is a parameter of the model."""

    model_config = ConfigDict(extra="allow")
    bbox: V7Region | None = Field(None, description="The auto-annotate box: the model sees this region.")


class V7InferRequest(OneOf):
    """V7's inference request; the `{"details": {...}}` envelope and `external_model` are tolerated."""

    model_config = ConfigDict(extra="allow")
    one_of = ("image", "video")  # V7's published rule; the `details` envelope and `params.image` beside it
    image: V7Image | None = None
    video: V7Video | None = None
    params: V7Params = Field(default_factory=V7Params)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("details"), dict):
            data = {**data, **data["details"]}
        if data.get("params") is None:
            data = {**data, "params": {}}
        if "image" not in data and "video" not in data:
            params = data.get("params")
            if isinstance(params, dict) and isinstance(params.get("image"), dict):
                data = {**data, "image": params["image"]}
        return data


class V7Class(BaseModel):
    name: str
    type: str


class V7InferResponse(BaseModel):
    status: Literal["succeeded", "failed"]
    results: list[dict[str, Any]] = Field(description="Darwin-JSON results, one main annotation type each.")
    error: str | None = None


class V7Failed(BaseModel):
    status: Literal["failed"]
    results: list[dict[str, Any]]
    error: str
