"""iMerit Ango model plugin, through the real `imerit-ango` SDK (1.4.x), over both of its connectors.

- `bridge ango MANIFEST`: the Socket.IO connector. The plugin is a client of the hub named by the section's
  `hub_url`, and reconnects with backoff when the hub drops it or restarts (`adapters.ango.hub`).
- `bridge serve`: the REST connector contract, `POST {base}/plugin` and `GET {base}/heartbeat` (base
  `/ango`), checked against the `Secret` header and answered by the SDK's own `ModelPlugin.on_plugin`.

The package: `convert` (the dialect, pure: run messages in, answers out, `CONVERSIONS`), `plugin` (the SDK's
ModelPlugin running the model; the SDK is imported there, on demand), `hub` (the Socket.IO connection),
`batch` (the Batch Model plugin), `commands` (`bridge ango`), `section` (the manifest section), `read`
(answers back to predictions), `client` (a REST connector, for `bridge check URL` and remote models;
`contract` is its check), `import_labels` (`bridge prelabel`'s files). Importing any of them has no side
effect.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.ango.client import AngoClient
from adapters.ango.convert import CONVERSIONS, PLATFORM, AngoRun, write
from adapters.ango.import_labels import ImportLabels
from adapters.ango.plugin import model_plugin, plugin_class, sdk_plugins
from adapters.ango.read import read_answer
from adapters.ango.section import AngoSection
from bridge.core.errors import BridgeError
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.core.predictions import Prediction
from bridge.core.service import Result, Service
from bridge.platforms import auth
from bridge.platforms.auth import Auth
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.protocol import Adapter, Route

RUN_THREADS = 16
"""REST runs at once: they wait on Ango's API or the model, on threads of their own, so a hanging Ango takes
no capacity from the other platforms; more runs queue."""

# --- the REST connector's contract (what /docs shows) ----------------------------------------------------------


class AngoRunMessage(BaseModel):
    """A run message of Ango's hub, as the SDK's REST connector receives it (other keys are passed on too)."""

    model_config = ConfigDict(extra="allow")
    projectId: str | None = None
    apiKey: str | None = Field(None, description="The running user's API key: asset lookups, workflow answers.")
    orgId: str | None = None
    runBy: str | None = None
    session: str | None = None
    taskId: str | None = None
    workflow: bool | None = Field(None, description="Truthy for a workflow Plugin stage: the answer is posted "
                                                    "to the task, and this request answers null.")
    overwrite: bool | None = None
    assetId: str | None = Field(None, description="The asset's external id.")
    dataURL: str | None = Field(None, description="The asset's URL, when the hub sends it.")
    configJSON: str | None = Field(None, description="The model's parameters, as a JSON string.")
    categorySchema: list[dict[str, str]] | None = Field(
        None, description="[{schemaId, modelClass}]: which of the user's label categories each class answers.")


class AngoRunAnswer(BaseModel):
    response: dict[str, Any] = Field(description="Ango's answer: {objects, classifications, relations}.")
    session: str


class AngoAdapter(Adapter):
    name = PLATFORM
    title = "iMerit Ango"
    section = AngoSection
    conversions = CONVERSIONS
    client = AngoClient()

    def auth(self, section: AngoSection) -> Auth:
        return auth.header("Secret", section.secret, "platforms.ango.secret")

    def write_answer(self, result: Result, spec: ModelSpec, section: AngoSection, manifest: Manifest,
                     run: AngoRun | None = None) -> dict[str, Any]:
        """A run's answer; without a run (the playground), as a run without a class mapping: objects carry
        `title`s."""
        return write(result, spec, section, manifest.outlines(), run or AngoRun())

    def read_answer(self, answer: Any, spec: ModelSpec, section: AngoSection, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        """An answer whose objects carry `title`s, or `schemaId`s equal to the class names (what `bridge check`
        and remote models send as `categorySchema`)."""
        return read_answer(answer, spec, section, None, size, text)

    def routes(self, section: AngoSection) -> list[Route]:
        plugins: dict[int, Any] = {}  # the SDK's plugin, made once the model is loaded (one per service)
        runs = ThreadPoolExecutor(RUN_THREADS, thread_name_prefix="ango-run")  # none of the other platforms'


        def plugin_for(service: Service) -> Any:
            if id(service) not in plugins:
                plugins.clear()
                plugin_cls = plugin_class(sdk_plugins("REST"), "REST", service.limits.fetch_timeout)
                plugins[id(service)] = model_plugin(plugin_cls, self, service, section, asyncio.get_running_loop())
            return plugins[id(service)]

        async def run(body: AngoRunMessage, service: Service) -> Any:
            """One model-plugin run, answered as the SDK's REST connector does: `{"response", "session"}`
            (`null` for a workflow run, whose answer the plugin posts to Ango itself)."""
            message = body.model_dump(exclude_unset=True)  # the run message as sent, for the SDK
            plugin = plugin_for(service)
            try:
                # in a copy of this request's context, so that its log line counts the run's stages
                return await asyncio.get_running_loop().run_in_executor(runs, contextvars.copy_context().run,
                                                                        plugin.on_plugin, message)
            except BridgeError as error:
                error.fields = {"session": message.get("session", "")}
                raise

        async def heartbeat(service: Service) -> str:
            """The plugin is up and its model loaded."""
            return "ok"

        return [Route("POST", "/plugin", run, AngoRunMessage, AngoRunAnswer | None),
                Route("GET", "/heartbeat", heartbeat, response=str)]

    def exporter(self, section: AngoSection, setup: ExportSetup) -> Exporter:
        return ImportLabels(self, section, setup)


adapter = AngoAdapter()
