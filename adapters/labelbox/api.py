"""What Labelbox Foundry sends and gets, as the pydantic models of its route (what /docs shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.platforms.requests import OneOf


class LabelboxPart(OneOf):
    """One part of a message: a text or an image; other keys (`mime_type`, say) are ignored."""

    model_config = ConfigDict(extra="ignore")
    one_of = ("text", "image")
    text: str | None = None
    image: str | None = Field(None, description="Base64-encoded image (a `data:...;base64,` prefix is allowed).")


class LabelboxMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    parts: list[LabelboxPart] = Field(min_length=1)


class LabelboxRequest(BaseModel):
    """Labelbox's request; the keys of `inference_params`, and those beside `prompt` that the model's `params`
    declare, are inference params; other keys are Labelbox's own, ignored."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {"prompt": [
        {"role": "user", "parts": [{"text": "what is in this image?"}, {"image": "<base64>"}]}]}})
    prompt: list[LabelboxMessage] = Field(min_length=1)
    inference_params: dict[str, Any] | None = None


class LabelboxRLE(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (column-major runs), as pycocotools.mask.encode gives.")


class LabelboxBoxes(BaseModel):
    boxes: list[list[float]] = Field(description="[left, top, width, height] in pixels.")
    scores: list[float]


class LabelboxMasks(BaseModel):
    masks: list[LabelboxRLE]


class LabelboxEntity(BaseModel):
    start: int = Field(description="In UTF-16 code units, as JavaScript counts.")
    end: int = Field(description="Exclusive, in UTF-16 code units: text == row.slice(start, end) in JavaScript.")
    text: str


LabelboxAnswer = dict[str, LabelboxBoxes | LabelboxMasks | list[LabelboxEntity] | list[str] | str]
"""The answer: one entry per feature name."""
