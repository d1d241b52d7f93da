"""The `platforms.cvat` section of a manifest: what the CVAT function declares and how it answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bridge.core.manifest import PlatformSection, Strict


class CvatInteraction(Strict):
    """What the interaction function asks of a user's prompts (cvat-sdk's `InteractionFunctionSpec`), for a model
    that takes prompts. CVAT's UI and the agent refuse prompts that do not meet it."""

    min_pos_points: int = Field(0, ge=0, description="Positive clicks a prompt needs at least.")
    min_neg_points: int | None = Field(0, ge=0, description="Negative clicks a prompt needs at least; null: "
                                                            "negative clicks are not allowed.")
    min_bounding_boxes: Literal[0, 1] | None = Field(0, description="1: a box is required; 0: a box is optional; "
                                                                    "null: boxes are not allowed.")


class CvatSection(PlatformSection):
    """CVAT's native function (`adapters.cvat.function`, which cvat-cli's agent runs: no routes): the labels it
    declares and how it answers."""

    attributes: dict[str, list[str]] = Field(
        default_factory=dict, description="Per class: the prediction attributes its CVAT label declares, each a "
                                          "checkbox attribute (\"true\" when the prediction carries it); the "
                                          "task's label must declare them too. Other attributes are dropped.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The model's parameters for every CVAT request (CVAT's requests carry "
                                          "none), over the manifest's `params` defaults.")
    interaction: CvatInteraction = Field(
        default_factory=CvatInteraction, description="For a model that takes prompts (served as an interaction "
                                                     "function): the clicks and box a prompt needs.")
