"""The SDK's side: the `imerit-ango` ModelPlugin running the model, for both connectors.

Nothing here imports the SDK at module import: the SDK picks its connector from `$CONNECTOR` once, when
`imerit_ango.plugins` is first imported (and configures the root logger then), so `sdk_plugins(connector)`
imports it on demand with the variable set for that import only. The REST connector (`bridge serve`) and the
Socket.IO one (`bridge ango`) need separate processes; a process that already imported the SDK the other
way fails loudly. The SDK is an optional extra: without it, the Ango routes and `bridge ango` say what to
install.

One run is the SDK's callback, called on the SDK's threads: `configJSON` holds the model's parameters; the
asset is `dataURL`, else looked up with the user's `apiKey` (`assetId` is its external id, then the task); the
run goes through the one answer path (`bridge.core.pipeline.answer`) on the service's event loop, with the
run's class mapping for the Ango adapter's writer (what the answer is, on either connector and in the
playground). A failed run raises its `BridgeError`: the SDK logs it once to the run's log (what the user reads
in Ango) and reports the run failed.
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

from adapters.ango.convert import AngoRun, class_ids, class_tools, run_params, to_job
from adapters.ango.section import AngoSection
from bridge.core.errors import BridgeError, InvalidInput, NotReady
from bridge.core.params import InvalidParams
from bridge.core.pipeline import answer
from bridge.core.service import Service
from bridge.platforms.protocol import Adapter

log = logging.getLogger("bridge.ango")

INSTALL = "the Ango SDK is not installed: pip install 'annotation-bridge[ango]' (it is an optional extra)"


class AngoApiFailed(BridgeError):
    """Ango's REST API refused or failed a call the run needs."""

    status = 502


def sdk_plugins(connector: str) -> ModuleType:
    """`imerit_ango.plugins` imported with `CONNECTOR=connector` (the environment is left as it was)."""
    # The SDK gives its "SDK" logger a stderr handler of its own unless it has one: this one leaves its lines to
    # the root logger, so they take the server's log format and its redaction of secrets.
    logging.getLogger("SDK").handlers or logging.getLogger("SDK").addHandler(logging.NullHandler())
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
    from requests.adapters import (
        HTTPAdapter,  # the SDK's own HTTP stack, there when the SDK is
    )
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


def run_job(data: Mapping[str, Any], service: Service, section: AngoSection) -> Any:
    """One run's job: its asset (`dataURL`, else looked up with the run's API key) and its parameters."""
    params = run_params(data.get("configJSON"))
    url = data.get("dataURL") or asset_url(data, api_client(data.get("apiKey", ""), section.api_url,
                                                              service.limits.fetch_timeout))
    return to_job(params, url, text=service.spec.input == "text")


def run_of(data: Mapping[str, Any]) -> AngoRun:
    """What only this run knows: its class mapping, whether it keeps the task's answer, its log."""
    logger = data.get("logger") or log
    schema = data.get("categorySchema")
    return AngoRun(class_ids(schema), data.get("overwrite") is not False, logger.warning, class_tools(schema))


class PluginCallback:
    """The SDK's model-plugin callback: one run message in, an `AnnotationPayload` out.

    The SDK calls it on its own threads; the service lives on `loop` (the server's, or `bridge ango`'s
    background loop) and each run is handed to it with `run_coroutine_threadsafe`.
    """

    def __init__(self, adapter: Adapter, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.adapter = adapter
        self.service = service
        self.section = section
        self.loop = loop

    def __call__(self, data: dict[str, Any]) -> Any:
        from imerit_ango.models.annotate import AnnotationPayload, Answer

        job = run_job(data, self.service, self.section)
        writer = self.adapter.writer(self.section, self.service.spec, self.service.manifest, run_of(data))
        try:
            found = asyncio.run_coroutine_threadsafe(answer(self.service, job, writer), self.loop).result()
        except InvalidParams as error:
            raise InvalidInput(f"configJSON: {error.message}") from None
        return AnnotationPayload(answer=Answer(**found))


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


def model_plugin(plugin_cls: type, adapter: Adapter, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> Any:
    """The plugin running this model. Its concurrency (workflow runs at once) is `limits.concurrency`: since
    imerit-ango 1.4.9, a Socket.IO plugin refuses workflow runs beyond it at once rather than queueing them."""
    return plugin_cls(section.plugin_id, section.secret, PluginCallback(adapter, service, section, loop),
                      host=section.api_url, concurrency=service.limits.concurrency)
