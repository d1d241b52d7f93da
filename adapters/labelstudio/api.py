"""What Label Studio sends an ML backend and gets back, as the pydantic models of its routes (what /docs
shows). Label Studio's keys that the bridge does not read are accepted (`extra="allow"`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SetupRequest(BaseModel):
    """`POST /setup`: sent when a backend is attached, and before each batch of predictions."""

    model_config = ConfigDict(extra="allow")
    project: str | None = Field(None, description='"<project id>.<created at, Unix seconds>"')
    schema_: str | None = Field(None, alias="schema", description="The project's label config (XML).")
    hostname: str | None = Field(None, description="Label Studio's base URL: task media are relative to it.")
    access_token: str | None = Field(None, description="The project creator's legacy API token.")
    extra_params: Any = None


class SetupAnswer(BaseModel):
    model_version: str
    warnings: list[str] = Field(default_factory=list, description="What the model cannot fill in this config, "
                                                                  "and what of the model the config lacks.")


class PredictRequest(BaseModel):
    """`POST /predict`: tasks lacking a prediction of the current model version, or one task and the
    regions a user drew (`params.context.result`) for an interactive call."""

    model_config = ConfigDict(extra="allow")
    tasks: list[dict[str, Any]] = Field(description="Label Studio's task objects (`id`, `data`, ...).")
    project: str | None = None
    label_config: str | None = None
    params: dict[str, Any] | None = Field(None, description="`context.result`: the regions of an interactive call.")


class TaskPrediction(BaseModel):
    result: list[dict[str, Any]] = Field(description="Label Studio regions.")
    score: float | None = Field(description="Lowest confidence of the task's regions (Uncertainty sampling).")
    model_version: str


class PredictAnswer(BaseModel):
    results: list[TaskPrediction | dict[str, Any]] = Field(
        description="One per task, in order; a task that failed has no `result` (Label Studio skips it and "
                    "asks again next time) and says why in `error`.")


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: str | None = Field(None, description="ANNOTATION_CREATED, START_TRAINING, TASKS_CREATED, ...")
