"""The SDK's side: the `imerit-ango` ModelPlugin running the model, for both connectors.

Nothing here imports the SDK at module import: the SDK picks its connector from `$CONNECTOR` once, when
`imerit_ango.plugins` is first imported (and configures the root logger then), so `sdk_plugins(connector)`
imports it on demand with the variable set for that import only. The REST connector (`bridge serve`) and the
Socket.IO one (`bridge ango`) need separate processes; a process that already imported the SDK the other
way fails loudly. The SDK is an optional extra: without it, the Ango routes and `bridge ango` say what to
install.

One run is the SDK's callback, called on the SDK's threads: `configJSON` is parsed and validated against the
manifest's params schema; the asset is `dataURL`, else looked up with the user's `apiKey` (`assetId` is its
external id, then the task); the core's media loader fetches it (a text model reads the URL's body as UTF-8
text) and the service runs on its event loop. A failed run raises its `BridgeError`: the SDK logs it once to
the run's log (what the user reads in Ango) and reports the run failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from adapters.ango.convert import CONVERSIONS, PLATFORM, class_ids, run_params, to_answer, to_job
from adapters.ango.section import AngoSection
from bridge.errors import BridgeError, InvalidInput, NotReady
from bridge.media import decode_base64
from bridge.observability import stage
from bridge.platforms import note_losses
from bridge.service import Result, Service

log = logging.getLogger("bridge.ango")
# The SDK gives its "SDK" logger a stderr handler of its own unless it has one: this one leaves its lines to the
# root logger, so they take the server's log format and its redaction of secrets.
logging.getLogger("SDK").addHandler(logging.NullHandler())

INSTALL = "the Ango SDK is not installed: pip install 'annotation-bridge[ango]' (it is an optional extra)"


class AngoApiFailed(BridgeError):
    """Ango's REST API refused or failed a call the run needs."""

    status = 502


def sdk_plugins(connector: str) -> ModuleType:
    """`imerit_ango.plugins` imported with `CONNECTOR=connector` (the environment is left as it was)."""
    before = os.environ.get("CONNECTOR")
    os.environ["CONNECTOR"] = connector
    try:
        from imerit_ango import plugins
    except ImportError:
        raise NotReady(INSTALL) from None
    finally:
        if before is None:
            os.environ.pop("CONNECTOR", None)
        else:
            os.environ["CONNECTOR"] = before
    if plugins.CONNECTOR != connector:
        raise RuntimeError(f"imerit_ango.plugins was imported with CONNECTOR={plugins.CONNECTOR} before the "
                           f"Ango adapter could choose {connector}; the REST connector (`bridge serve`) and "
                           "the Socket.IO one (`bridge ango`) need separate processes")
    return plugins


RETRIES = 3
"""Ango's API is retried on connection errors and 5xx answers, 3 times, waiting 0.5, 1 and 2 s between tries;
not after a read time-out (Ango may have done what was asked)."""


def api_client(api_key: str, host: str, timeout: float, retries: int = RETRIES) -> Any:
    """The SDK's REST client: each call bounded by `timeout` seconds (the SDK sets none) and retried `retries`
    times as `RETRIES` says; its own error lines silenced (the run's log tells the failure once)."""
    from imerit_ango.sdk import SDK
    from requests.adapters import HTTPAdapter  # the SDK's own HTTP stack, there when the SDK is
    from urllib3.util import Retry

    retries = Retry(total=retries, read=0, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
                    allowed_methods=None, raise_on_status=False)
    sdk = SDK(api_key=api_key, host=host)
    sdk.logger.setLevel(logging.CRITICAL)
    sdk.session.mount("http://", HTTPAdapter(max_retries=retries))
    sdk.session.mount("https://", HTTPAdapter(max_retries=retries))
    sdk.session.request = functools.partial(sdk.session.request, timeout=timeout)
    return sdk


def asset_url(message: Mapping[str, Any], sdk: Any) -> str:
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
        raise AngoApiFailed(f"Ango's API at {sdk.host} failed the asset look-up: "
                            f"{type(error).__name__}: {error}") from None
    raise InvalidInput(f"no asset with external id {external!r} in project {project!r}"
                       + (f" nor in task {task!r}" if task else "") + ", and the message has no dataURL")


async def run_asset(service: Service, url: str, params: Mapping[str, Any]) -> Result:
    """Run the model on the asset at `url`: an image, or for a text model the URL's body as UTF-8 text. A base64
    `data:` URL (what a remote bridge sends) carries the asset itself: nothing is fetched."""
    if service.spec.input != "text":
        return await service.run(to_job(params, url=url))
    if url.startswith("data:"):
        data = decode_base64(url, "dataURL")
    else:
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

    def __call__(self, data: dict[str, Any]) -> Any:
        from imerit_ango.models.annotate import AnnotationPayload, Answer

        logger = data.get("logger") or log
        params = run_params(data.get("configJSON"), self.service.manifest)
        ids = class_ids(data.get("categorySchema"))
        url = data.get("dataURL") or asset_url(data, api_client(
            data.get("apiKey", ""), self.section.api_url, self.service.limits.fetch_timeout))
        result = asyncio.run_coroutine_threadsafe(run_asset(self.service, url, params), self.loop).result()
        tolerance = self.service.manifest.geometry.simplify_tolerance
        note_losses(PLATFORM, CONVERSIONS, self.service.spec, result.predictions, tolerance)
        with stage("convert"):
            answer, unmapped, attributes = to_answer(result.predictions, self.service.spec, self.section, ids,
                                                     tolerance)
        if unmapped:
            logger.warning(f"dropped the predictions of {', '.join(map(repr, unmapped))}: no label category is "
                           "mapped to them in this run's class mapping")
        if attributes:
            logger.warning(f"left out the attributes {', '.join(map(repr, attributes))}: no label category of "
                           "this run's class mapping names them")
        if data.get("overwrite") is False:
            unmerged = [c for c in answer["classifications"] if "schemaId" not in c]
            if unmerged:  # the SDK merges classifications into the task's answer by schemaId
                answer["classifications"] = [c for c in answer["classifications"] if "schemaId" in c]
                logger.warning(f"left out the classifications {', '.join(repr(c['title']) for c in unmerged)}: "
                               "keeping the task's answer (overwrite off) merges classifications by label "
                               "category, and none is mapped to them in this run's class mapping")
        return AnnotationPayload(answer=Answer(**answer))


class RunLogger(logging.Logger):
    """The run's log, as the SDK's `PluginLogger` sends it to Ango (the hub's `log` event, or `POST
    /v2/pluginLog` over REST), except that a post is bounded by a timeout and a line Ango cannot take fails no
    run. Each line is also logged here (`bridge.ango`); a `BridgeError`'s traceback is left out."""

    def __init__(self, plugin: Any, data: Mapping[str, Any], connector: str, timeout: float) -> None:
        super().__init__("bridge.ango.run", logging.INFO)
        self.plugin, self.connector, self.timeout = plugin, connector, timeout
        self.api_key = data.get("apiKey", "")
        self.fields = {"organization": data.get("orgId", ""), "pluginId": plugin.id,
                       "runBy": data.get("runBy", ""), "session": data.get("session", "")}

    def handle(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        line = {"level": record.levelname, **self.fields, "msg": message}
        try:
            if self.connector == "REST":
                api_client(self.api_key, self.plugin.host, self.timeout, retries=0)._plugin_log(line)
            else:
                self.plugin.emit("log", line)
        except Exception as error:
            log.warning("run %s: a log line did not reach Ango: %s", self.fields["session"],
                        f"{type(error).__name__}: {error}")
        bug = record.exc_info and not isinstance(record.exc_info[1], BridgeError)
        log.log(record.levelno, "run %s: %s", self.fields["session"], message,
                exc_info=record.exc_info if bug else None)


def plugin_class(plugins: ModuleType, connector: str, timeout: float) -> type:
    """The SDK's ModelPlugin with the run logger above."""

    class BridgePlugin(plugins.ModelPlugin):
        def _get_logger(self, data: Mapping[str, Any]) -> logging.Logger:
            return RunLogger(self, data, connector, timeout)

        def _run_workflow(self, data: dict[str, Any]) -> None:
            """The SDK's workflow run, its answer posted with `api_client` (bounded, retried); a failure is
            told once, by the SDK's caller."""
            payload = self.callback(data)
            payload.project_id = data.get("projectId")
            api_client(data.get("apiKey", ""), self.host, timeout)._annotate_task(
                data.get("taskId"), payload, self._overwrite(data), send_to_next_stage=True, is_plugin=True)

        def __init__(self, *args: Any, **keys: Any) -> None:
            super().__init__(*args, **keys)
            self._run = threading.local()
            self._slots = Slots(self.concurrency, self._run)

        def _handle_workflow(self, data: dict[str, Any]) -> None:
            """The SDK's; `Slots` tells a run refused for want of a slot in that run's own log."""
            self._run.logger = data["logger"]
            try:
                return super()._handle_workflow(data)
            finally:
                self._run.logger = None

    return BridgePlugin


class Slots(threading.BoundedSemaphore):
    """The SDK's workflow slots (`limits.concurrency`). Over Socket.IO the SDK refuses a run when none is free
    and says nothing; this says so in the run's log (`run.logger`, set by the plugin for the calling thread)."""

    def __init__(self, value: int, run: threading.local) -> None:
        super().__init__(value)
        self.value, self.run = value, run

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        taken = super().acquire(blocking, timeout)
        logger = getattr(self.run, "logger", None)
        if not taken and not blocking and logger is not None:
            logger.error(f"refused: {self.value} workflow run(s) are running already (limits.concurrency); "
                         "run it again when one is done")
        return taken


def model_plugin(plugin_cls: type, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> Any:
    """The plugin running this model. Its concurrency (workflow runs at once) is `limits.concurrency`: since
    imerit-ango 1.4.9, a Socket.IO plugin refuses workflow runs beyond it at once rather than queueing them."""
    return plugin_cls(section.plugin_id, section.secret, PluginCallback(service, section, loop),
                      host=section.api_url, concurrency=service.limits.concurrency)
