"""iMerit Ango model plugin, through the real `imerit-ango` SDK (1.4.x), over both of its connectors.

- `bridge ango MANIFEST`: the Socket.IO connector. The plugin is a client of the hub named by the section's
  `hub_url`, and reconnects with backoff when the hub drops it or restarts (`adapters.ango_hub`).
- `bridge serve`: the REST connector contract, `POST {base}/plugin` and `GET {base}/heartbeat` (base
  `/ango`), checked against the `Secret` header and answered by the SDK's own `ModelPlugin.on_plugin`.

The SDK picks its connector from `$CONNECTOR` once, when `imerit_ango.plugins` is imported, so each command
sets the variable and only then imports it (`sdk_plugins`): REST in this router's lifespan, WS in `bridge
ango`. They are separate processes; a process that already imported the SDK the other way fails loudly.

One run is the SDK's callback, called on the SDK's threads: `configJSON` is parsed and validated against the
manifest's params schema; the asset is `dataURL`, else looked up with the user's `apiKey` (`assetId` is its
external id, then the task); the core's media loader fetches it (a text model reads the URL's body as UTF-8
text) and the service runs on its event loop. Predictions become Ango's answer JSON as DESIGN.md's matrix says:

- each class answers with the `schemaId` that `categorySchema` maps its name (after the section's `rename`)
  to; predictions of unmapped classes are dropped and logged to the run's log; with no mapping at all
  (`categorySchema` null or empty) objects and classifications carry `title` (the class name) instead;
- boxes, rotated boxes, points, lines (`polyline`) and entity spans (`ner`) map one to one; a polygon class
  (a mask it returns is traced) answers `polygon` unless holes or several parts make it `segmentation`
  zones; a mask class answers `segmentation`; an ellipse leaves as a 64-point `polygon`, a skeleton as one
  `point` per node, a cuboid as the `bounding-box` of its front face; vectors have no Ango form: dropped;
- classifications answer the option text (a string, or a list for a checklist), free text its text, a tag
  the class name; attributes that the mapping names become nested classifications answering themselves.

A failed run (bad `configJSON`, unknown asset, unreachable image, model error) is logged to the run's logger,
which the SDK forwards to Ango's plugin log, and raised so that the SDK reports the run as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from imerit_ango.models.annotate import AnnotationPayload, Answer
from imerit_ango.sdk import SDK
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bridge.cli import add_manifest_argument, manifest_from
from bridge.errors import BridgeError, InvalidInput, Unauthorized
from bridge.geometry import to_polygon
from bridge.manifest import Manifest, ManifestError, PlatformSection
from bridge.model import ClassSpec, ModelSpec
from bridge.platforms import Adapter, bridge_route, get_service, warn_once
from bridge.predictions import (
    Box,
    Classification,
    Cuboid,
    Ellipse,
    Line,
    Mask,
    Point,
    Polygon,
    Prediction,
    RotatedBox,
    Skeleton,
    Span,
    Tag,
    Vector,
)
from bridge.service import ImageSource, Job, Result, Service

PLATFORM = "ango"
log = logging.getLogger("bridge.ango")

LOSSY = {
    "ellipse": "Ango has no ellipse: sent as a 64-point polygon",
    "skeleton": "Ango has no skeleton: sent as one point per node (node names are not sent)",
    "cuboid": "Ango has no cuboid for images: sent as the bounding box of its front face",
    "vector": "Ango has no vector: its predictions are dropped",
}
"""What each class kind loses on the way to Ango; `bridge check` lists these."""


# --- manifest section -----------------------------------------------------------------------------------------


class AngoSection(PlatformSection):
    base_path: str = "/ango"
    plugin_id: str = Field("", description="The plugin's ID from Ango's plugin page; use ${ANGO_PLUGIN_ID}.")
    secret: str = Field("", description="The plugin's secret; use ${ANGO_PLUGIN_SECRET}. The REST connector "
                                        "refuses every call while it is empty.")
    hub_url: str = Field("https://eu-api.ango.ai", description="Socket.IO hub `bridge ango` connects to "
                                                               "(the SDK's default).")
    api_url: str = Field("https://imeritapi.ango.ai", description="Ango's REST API: asset lookups, workflow "
                                                                  "answers, REST run logs (the SDK's default).")
    concurrency: int | None = Field(None, gt=0, description="Workflow runs at once (the SDK's ModelPlugin "
                                                            "concurrency); default limits.concurrency.")
    reconnect_delay: float = Field(1.0, gt=0, description="Seconds before the first reconnection attempt; "
                                                          "doubles on each failure.")
    reconnect_max_delay: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    heartbeat_interval: float = Field(60.0, gt=0, description="Seconds between heartbeats to the hub.")


# --- the SDK ---------------------------------------------------------------------------------------------------


def sdk_plugins(connector: str) -> ModuleType:
    """`imerit_ango.plugins` with `CONNECTOR=connector`, which the SDK reads once, at its import."""
    os.environ["CONNECTOR"] = connector
    from imerit_ango import plugins

    if plugins.CONNECTOR != connector:
        raise RuntimeError(f"imerit_ango.plugins was imported with CONNECTOR={plugins.CONNECTOR} before the "
                           f"Ango adapter could choose {connector}; the REST connector (`bridge serve`) and "
                           "the Socket.IO one (`bridge ango`) need separate processes")
    return plugins


def api_client(api_key: str, host: str, timeout: float) -> SDK:
    """The SDK's REST client, its calls bounded by `timeout` seconds (the SDK sets no timeout)."""
    sdk = SDK(api_key=api_key, host=host)
    sdk.session.request = functools.partial(sdk.session.request, timeout=timeout)
    return sdk


class AngoApiFailed(BridgeError):
    """Ango's REST API refused or failed a call the run needs."""

    status = 502


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


# --- conversions (pure) ---------------------------------------------------------------------------------------


def run_params(config_json: Any, manifest: Manifest) -> dict[str, Any]:
    """The model's parameters from `configJSON` (a JSON string, or empty), validated by the manifest."""
    if config_json is None or (isinstance(config_json, str) and not config_json.strip()):
        given = {}
    elif not isinstance(config_json, str):
        raise InvalidInput(f"configJSON must be a JSON string, got {type(config_json).__name__}")
    else:
        try:
            given = json.loads(config_json)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"configJSON is not valid JSON: {error}") from None
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidInput(f"configJSON must be a JSON object of the model's parameters, got "
                           f"{type(given).__name__}")
    try:
        return manifest.resolve_params(given)
    except InvalidInput as error:
        raise InvalidInput(f"configJSON: {error.message}") from None


def class_ids(category_schema: Any) -> dict[str, str] | None:
    """`modelClass` -> `schemaId` from `categorySchema`; None when the user mapped nothing (answer titles)."""
    if not category_schema:
        return None
    if not isinstance(category_schema, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("modelClass"), str)
        and isinstance(entry.get("schemaId"), str) for entry in category_schema
    ):
        raise InvalidInput("categorySchema must be a list of {\"schemaId\": ..., \"modelClass\": ...} objects")
    return {entry["modelClass"]: entry["schemaId"] for entry in category_schema}


def to_job(params: dict[str, Any], url: str | None = None, text: str | None = None) -> Job:
    """The neutral job of one run: the asset's image by URL, or the text a text model read from it."""
    image = ImageSource(url=url) if text is None else None
    return Job(platform=PLATFORM, image=image, text=text, params=params)


def to_answer(predictions: list[Prediction], spec: ModelSpec, section: AngoSection, ids: dict[str, str] | None,
              tolerance: float = 0.0) -> tuple[dict[str, list], list[str]]:
    """Ango's answer JSON, and the (platform) names of the classes dropped because `ids` does not map them."""
    objects: list[dict[str, Any]] = []
    classifications: list[dict[str, Any]] = []
    unmapped: set[str] = set()
    for prediction in predictions:
        cls = spec.get(prediction.label)
        name = section.platform_name(cls.name)
        if cls.kind in LOSSY:
            warn_once(PLATFORM, cls.name, LOSSY[cls.kind])
        if isinstance(prediction.shape, Vector):
            continue
        ref = {"title": name} if ids is None else {"schemaId": ids[name]} if name in ids else None
        if ref is None:
            unmapped.add(name)
        elif isinstance(prediction.shape, (Classification, Tag)):
            classifications.append({**ref, "answer": _answer(prediction.shape, name)})
        else:
            extra = _nested(prediction, ids)
            for geometry in _geometries(prediction.shape, cls, tolerance):
                objects.append({**ref, **extra, **geometry})
    return {"objects": objects, "classifications": classifications, "relations": []}, sorted(unmapped)


def _answer(shape: Classification | Tag, name: str) -> str | list[str]:
    if isinstance(shape, Tag):
        return name
    return shape.answer if isinstance(shape.answer, str) else list(shape.answer)


def _nested(prediction: Prediction, ids: dict[str, str] | None) -> dict[str, Any]:
    """`objectId` from the prediction's id, and its attributes that the mapping names as classifications."""
    extra: dict[str, Any] = {}
    if prediction.id is not None:
        extra["objectId"] = prediction.id
    nested = [{"schemaId": ids[a], "answer": a} for a in prediction.attributes if ids and a in ids]
    if nested:
        extra["classifications"] = nested
    return extra


def _geometries(shape: Any, cls: ClassSpec, tolerance: float) -> list[dict[str, Any]]:
    """The Ango shape(s) of one neutral shape: several for a skeleton, none for an empty outline."""
    if isinstance(shape, Cuboid):
        shape = shape.front
    if isinstance(shape, Box):
        return [{"bounding-box": {"x": float(shape.x), "y": float(shape.y),
                                  "width": float(shape.w), "height": float(shape.h)}}]
    if isinstance(shape, RotatedBox):
        return [{"rotated-bounding-box": {"x": float(shape.cx - shape.w / 2), "y": float(shape.cy - shape.h / 2),
                                          "width": float(shape.w), "height": float(shape.h),
                                          "rotation": (float(shape.angle) + 180.0) % 360.0 - 180.0}}]
    if isinstance(shape, Point):
        return [{"point": [float(shape.x), float(shape.y)]}]
    if isinstance(shape, Skeleton):
        return [{"point": [float(node.x), float(node.y)]} for node in shape.nodes]
    if isinstance(shape, Line):
        return [{"polyline": shape.points.tolist()}]
    if isinstance(shape, Span):
        return [{"ner": {"start": shape.start, "end": shape.end}}]
    if isinstance(shape, (Polygon, Mask, Ellipse)):
        polygon = to_polygon(shape, tolerance)
        if not polygon.parts:
            return []
        if cls.kind == "mask" or polygon.has_holes or len(polygon.parts) > 1:
            zones = [{"region": part[0].tolist(), "holes": [hole.tolist() for hole in part[1:]]}
                     for part in polygon.parts]
            return [{"segmentation": {"zones": zones}}]
        return [{"polygon": polygon.parts[0][0].tolist()}]
    raise TypeError(f"no Ango form for {type(shape).__name__}")


def check(spec: ModelSpec, section: AngoSection) -> list[str]:
    """What Ango cannot show as the model says it, and a missing secret."""
    warnings = [f"class {c.name!r} ({c.kind}): {LOSSY[c.kind]}" for c in spec.classes if c.kind in LOSSY]
    if not section.secret:
        warnings.append("platforms.ango.secret is not set: the REST connector refuses every call")
    return warnings


# --- one run: the SDK's callback -------------------------------------------------------------------------------


def asset_url(message: dict[str, Any], sdk: SDK) -> str:
    """The data URL of a run's asset, for messages without `dataURL`: the asset by external id (`assetId`),
    else the task's asset. The task's form is not documented: its URL is read at `asset.data` or `data`."""
    project, external, task = message.get("projectId"), message.get("assetId"), message.get("taskId")
    try:
        if project and external:
            assets = sdk.get_assets(project, filters={"externalId": external})["data"]["assets"]
            if assets:
                return assets[0]["data"]
        if task:
            found = sdk.get_task(task)["data"]["task"]
            asset = found.get("asset")
            url = asset.get("data") if isinstance(asset, dict) else found.get("data")
            if url:
                return url
    except Exception as error:
        raise AngoApiFailed(f"could not look up the asset on {sdk.host}: {error}") from None
    raise InvalidInput(f"no asset with external id {external!r} in project {project!r}"
                       + (f" nor in task {task!r}" if task else "") + ", and the message has no dataURL")


async def run_asset(service: Service, url: str, params: dict[str, Any]) -> Result:
    """Run the model on the asset at `url`: an image, or for a text model the URL's body as UTF-8 text."""
    if service.spec.input != "text":
        return await service.run(to_job(params, url=url))
    data = await service.media.fetch(url, "the asset's text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the asset is not UTF-8 text") from None
    return await service.run(to_job(params, text=text))


class PluginCallback:
    """The SDK's model-plugin callback: one run message in, an `AnnotationPayload` out.

    The SDK calls it on its own threads; the service lives on `loop` (the server's, or `bridge ango`'s
    background loop) and each run is handed to it with `run_coroutine_threadsafe`.
    """

    def __init__(self, service: Service, section: AngoSection, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.section = section
        self.loop = loop

    def __call__(self, data: dict[str, Any]) -> AnnotationPayload:
        # the SDK logs a failed run to data["logger"] as well, after this returns: it must not fail either
        logger = data["logger"] = RunLogger(data.get("logger") or log)
        try:
            params = run_params(data.get("configJSON"), self.service.manifest)
            ids = class_ids(data.get("categorySchema"))
            url = data.get("dataURL") or asset_url(data, api_client(
                data.get("apiKey", ""), self.section.api_url, self.service.limits.fetch_timeout))
            result = asyncio.run_coroutine_threadsafe(run_asset(self.service, url, params), self.loop).result()
        except BridgeError as error:
            logger.error(error.message)
            raise
        tolerance = self.service.manifest.geometry.simplify_tolerance
        answer, unmapped = to_answer(result.predictions, self.service.spec, self.section, ids, tolerance)
        if unmapped:
            logger.warning(f"dropped the predictions of {', '.join(map(repr, unmapped))}: no label category "
                           "is mapped to them in this run's class mapping")
        return AnnotationPayload(answer=Answer(**answer))


class RunLogger(logging.LoggerAdapter):
    """The run's logger, whose lines the SDK forwards to Ango's REST API: a line Ango cannot take (an
    unreachable `api_url`, as in a local try) is logged here instead, and fails no run nor hides its error."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        try:
            self.logger.log(level, msg, *args, **kwargs)
        except Exception as error:
            log.log(level, "%s (not forwarded to Ango: %s)", msg % args if args else msg, error)


def model_plugin(plugin_class: type, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> Any:
    """The SDK's ModelPlugin (or a subclass) running this model, with the manifest's concurrency."""
    concurrency = section.concurrency or service.limits.concurrency
    return plugin_class(section.plugin_id, section.secret, PluginCallback(service, section, loop),
                        host=section.api_url, concurrency=concurrency)


# --- REST connector (bridge serve) ------------------------------------------------------------------------------


def check_secret(expected: str, given: str | None) -> None:
    """Constant-time check of the `Secret` header; raises Unauthorized (401)."""
    if not expected:
        raise Unauthorized("no Ango plugin secret is configured (platforms.ango.secret); every call is refused")
    if not secrets.compare_digest((given or "").encode(), expected.encode()):
        raise Unauthorized("missing or wrong Secret header")


class AngoAdapter(Adapter):
    name = PLATFORM
    section = AngoSection

    def router(self, section: AngoSection) -> APIRouter:
        plugin: Any = None

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            """After the app's own lifespan loaded the model: the SDK's plugin, in REST mode, on this loop."""
            nonlocal plugin
            plugin_class = sdk_plugins("REST").ModelPlugin
            plugin = model_plugin(plugin_class, app.state.service, section, asyncio.get_running_loop())
            yield
            plugin = None

        def auth(request: Request) -> None:
            check_secret(section.secret, request.headers.get("Secret"))

        router = APIRouter(prefix=section.base_path.rstrip("/"), tags=["iMerit Ango"], lifespan=lifespan,
                           route_class=bridge_route(authenticate=auth))

        @router.post("/plugin", dependencies=[Depends(get_service)], response_model=AngoRunAnswer | None)
        async def run(body: AngoRunMessage) -> JSONResponse:
            """One model-plugin run, answered as the SDK's REST connector does: `{"response", "session"}`
            (`null` for a workflow run, whose answer the plugin posts to Ango itself)."""
            message = body.model_dump(exclude_unset=True)  # the run message as sent, for the SDK
            try:
                answer = await run_in_threadpool(plugin.on_plugin, message)
            except BridgeError as error:
                return JSONResponse({"error": error.message, "session": message.get("session", "")},
                                    status_code=error.status)
            return JSONResponse(answer)

        @router.get("/heartbeat")
        async def heartbeat() -> str:
            return "ok"

        return router

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser("ango", help="run the model as an iMerit Ango model plugin, connected to "
                                                  "the Ango hub over Socket.IO")
        add_manifest_argument(parser)
        parser.set_defaults(func=run_hub)

    def check(self, spec: ModelSpec, section: AngoSection) -> list[str]:
        return check(spec, section)


def run_hub(args: argparse.Namespace) -> int:
    """`bridge ango`: the Socket.IO connector, reconnecting whenever the hub goes away."""
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, AngoSection)
    for key, env in (("plugin_id", "ANGO_PLUGIN_ID"), ("secret", "ANGO_PLUGIN_SECRET")):
        if not getattr(section, key):
            raise ManifestError(f"{manifest.where()}: platforms.{PLATFORM}.{key} is empty: set it from the "
                                f"environment, e.g. `{key}: ${{{env}}}`, and export {env}")
    from adapters.ango import hub as ango_hub  # imports the SDK with CONNECTOR=WS

    return ango_hub.serve(manifest, section)


adapter = AngoAdapter()
