"""The `platforms.labelbox` section of a manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bridge.core.manifest import PlatformSection, Strict

AssetType = Literal["image", "text", "video", "html", "conversational"]


class LabelboxTags(Strict):
    """Which classification feature tag classes answer: each tag class is one of its options."""

    question: str = Field("tags", min_length=1, description="Feature name of the classification.")
    kind: Literal["checklist", "radio"] = Field(
        "checklist", description="checklist: every tag found; radio: the most confident tag only.")


class LabelboxSection(PlatformSection):
    """Labelbox Foundry's custom-model endpoint, `POST {base_path}/infer`, and its model.yaml."""

    base_path: str = "/labelbox"
    secret: str | None = Field(None, description="Bearer secret Labelbox sends (use ${ENV}); unset or empty: "
                                                 "every request is refused.")
    text_part: int = Field(-1, description="Which text part of the last user message a text model reads "
                                           "(Python index: -1 is the last, 0 the first).")
    tags: LabelboxTags = Field(default_factory=LabelboxTags, description="The one classification feature "
                                                                     "that tag classes answer.")
    requests_per_second: float = Field(1.0, gt=0, description="model.yaml: your estimate of the throughput.")
    allowed_asset_types: list[AssetType] | None = Field(
        None, min_length=1, description="model.yaml: asset types Labelbox may send (default: the model's input).")
    max_tokens: int | None = Field(None, gt=0, description="model.yaml: token limit, for LLM-like models.")
