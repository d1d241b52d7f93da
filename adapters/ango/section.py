"""The `platforms.ango` section of a manifest."""

from __future__ import annotations

from pydantic import Field

from bridge.core.manifest import PlatformSection


class AngoSection(PlatformSection):
    """iMerit Ango's model plugin: the REST connector (`{base_path}/plugin`, `{base_path}/heartbeat`) of `bridge
    serve`, and the Socket.IO hub of `bridge ango`."""

    base_path: str = "/ango"
    plugin_id: str = Field("", description="The plugin's ID from Ango's plugin page; use ${ANGO_PLUGIN_ID}.")
    secret: str = Field("", description="The plugin's secret; use ${ANGO_PLUGIN_SECRET}. The REST connector "
                                        "refuses every call while it is empty.")
    hub_url: str = Field("https://eu-api.ango.ai", description="Socket.IO hub `bridge ango` connects to "
                                                               "(the SDK's default).")
    api_url: str = Field("https://imeritapi.ango.ai", description="Ango's REST API: asset lookups, workflow "
                                                                  "answers, REST run logs (the SDK's default).")
    reconnect_delay: float = Field(1.0, gt=0, description="Seconds before the first reconnection attempt; "
                                                          "doubles on each failure.")
    reconnect_max_delay: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    heartbeat_interval: float = Field(60.0, gt=0, description="Seconds between heartbeats to the hub.")
    answers_kept: int = Field(100, gt=0, description="Answers held while the hub is away, delivered when it is "
                                                     "back; beyond, the oldest is lost (logged).")
    answers_max_age: float = Field(600.0, gt=0, description="Seconds an answer may wait for the hub; older ones "
                                                            "are lost (logged) instead of delivered late.")
