"""iMerit Ango model plugin, through the real `imerit-ango` SDK (1.4.x), over both of its connectors.

- `bridge ango MANIFEST`: the Socket.IO connector. The plugin is a client of the hub named by the section's
  `hub_url`, and reconnects with backoff when the hub drops it or restarts (`adapters.ango.hub`).
- `bridge serve`: the REST connector contract, `POST {base}/plugin` and `GET {base}/heartbeat` (base
  `/ango`), checked against the `Secret` header and answered by the SDK's own `ModelPlugin.on_plugin`.

The package: `convert` (the dialect, pure: run messages in, answers out, `CONVERSIONS`), `plugin` (the SDK's
ModelPlugin running the model; the SDK is imported there, on demand), `hub` (the Socket.IO connection),
`section` (the manifest section). Importing any of them has no side effect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.ango import contract
from adapters.ango import remote as remote_model
from adapters.ango.convert import CONVERSIONS, PLATFORM, to_answer
from adapters.ango.plugin import INSTALL, model_plugin, plugin_class, sdk_plugins
from adapters.ango.read import read_answer
from adapters.ango.section import AngoSection
from bridge import auth
from bridge.auth import Auth
from bridge.cli import add_manifest_argument, manifest_from
from bridge.errors import BridgeError, DeadlineExceeded
from bridge.export import Exporter, ExportSetup
from bridge.manifest import Manifest, ManifestError
from bridge.model import ModelSpec
from bridge.observability import note_error
from bridge.platforms import Adapter, Route
from bridge.predictions import Prediction
from bridge.service import Result, Service

RUN_THREADS = 16
"""REST runs at once: they wait on Ango's API or the model, on threads of their own, so a hanging Ango takes
no capacity from the other platforms; more runs queue, and each answers 504 at `limits.deadline`."""

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

    def auth(self, section: AngoSection) -> Auth:
        return auth.header("Secret", section.secret, "platforms.ango.secret")

    def write_answer(self, result: Result, spec: ModelSpec, section: AngoSection, manifest: Manifest) -> dict[str, Any]:
        """The answer of a run without a class mapping (objects carry `title`s)."""
        found, _, _ = to_answer(result.predictions, spec, section, None, manifest.geometry.simplify_tolerance)
        return found

    def read_answer(self, answer: Any, spec: ModelSpec, section: AngoSection, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        """An answer whose objects carry `title`s, or `schemaId`s equal to the class names (what `bridge check`
        and remote models send as `categorySchema`)."""
        return read_answer(answer, spec, section, None, size, text)

    def remote_spec(self, remote: Any, client: Any) -> ModelSpec:
        return remote_model.remote_spec(remote, client)

    def remote_request(self, item: Any, context: Any, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        return remote_model.remote_request(item, context, spec, remote)

    def check_endpoint(self, probe: Any) -> list[Any]:
        return contract.check(probe)

    def secret_headers(self, secret: str) -> dict[str, str]:
        return {"Secret": secret}

    def routes(self, section: AngoSection) -> list[Route]:
        plugins: dict[int, Any] = {}  # the SDK's plugin, made once the model is loaded (one per service)
        runs = ThreadPoolExecutor(RUN_THREADS, thread_name_prefix="ango-run")  # none of the other platforms'


        def plugin_for(service: Service) -> Any:
            if id(service) not in plugins:
                plugins.clear()
                plugin_cls = plugin_class(sdk_plugins("REST"), "REST", service.limits.fetch_timeout)
                plugins[id(service)] = model_plugin(plugin_cls, service, section, asyncio.get_running_loop())
            return plugins[id(service)]

        async def run(body: AngoRunMessage, service: Service) -> Any:
            """One model-plugin run, answered as the SDK's REST connector does: `{"response", "session"}`
            (`null` for a workflow run, whose answer the plugin posts to Ango itself)."""
            message = body.model_dump(exclude_unset=True)  # the run message as sent, for the SDK
            plugin = plugin_for(service)
            deadline = service.limits.deadline
            try:
                async with asyncio.timeout(deadline):
                    # in a copy of this request's context, so that its log line counts the run's stages
                    return await asyncio.get_running_loop().run_in_executor(runs, contextvars.copy_context().run,
                                                                            plugin.on_plugin, message)
            except TimeoutError:
                error: BridgeError = DeadlineExceeded(f"the run took longer than {deadline:g} s (limits.deadline)")
            except BridgeError as failed:
                error = failed
            note_error(error.message)
            return JSONResponse({"error": error.message, "session": message.get("session", "")},
                                status_code=error.status)

        async def heartbeat(service: Service) -> str:
            """The plugin is up and its model loaded."""
            return "ok"

        return [Route("POST", "/plugin", run, AngoRunMessage, AngoRunAnswer | None),
                Route("GET", "/heartbeat", heartbeat, response=str)]

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser("ango", help="run the model as an iMerit Ango model plugin, connected to "
                                                  "the Ango hub over Socket.IO")
        add_manifest_argument(parser)
        parser.add_argument("--batch", action="store_true", help="run as a Batch Model plugin: each run "
                            "pre-labels the project's unlabelled assets (adapters.ango.batch)")
        parser.set_defaults(func=run_hub)

    def exporter(self, section: AngoSection, setup: ExportSetup) -> Exporter:
        from adapters.ango.import_labels import ImportLabels

        return ImportLabels(section, setup)


def run_hub(args: argparse.Namespace) -> int:
    """`bridge ango`: the Socket.IO connector, reconnecting whenever the hub goes away."""
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, AngoSection)
    for key, env in (("plugin_id", "ANGO_PLUGIN_ID"), ("secret", "ANGO_PLUGIN_SECRET")):
        if not getattr(section, key):
            raise ManifestError(f"{manifest.where()}: platforms.{PLATFORM}.{key} is empty: set it from the "
                                f"environment, e.g. `{key}: ${{{env}}}`, and export {env}")
    if importlib.util.find_spec("imerit_ango") is None:
        raise ManifestError(f"bridge ango: {INSTALL}")
    from adapters.ango import hub

    return hub.serve(manifest, section, batch=args.batch)


adapter = AngoAdapter()
