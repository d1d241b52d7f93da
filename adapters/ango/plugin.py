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

Every call to Ango's API goes through `api_client`, bounded by `limits.fetch_timeout` and retried where that is
safe, whatever the SDK would do: the SDK's own reads and posts (the task an interactive run keeps, with
`overwrite` off; a workflow run's answer) are made here instead, and an answer Ango refuses is an
`AngoApiFailed` (502) naming the API, the call and Ango's status.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

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
    """The SDK's REST client: each call bounded by `timeout` seconds (the SDK sets none), retried `retries` times
    as `RETRIES` says, and an answer Ango refuses (4xx, or 5xx after the retries) an `AngoApiFailed` with its
    status (the SDK's own error keeps only the body); its own error lines silenced (the run's log tells the
    failure once)."""
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
    sdk.session.request = _refusals(functools.partial(sdk.session.request, timeout=timeout))
    return sdk


def _refusals(request: Callable[..., Any]) -> Callable[..., Any]:
    """`requests.Session.request` raising `AngoApiFailed` for an answer of 400 or more, saying the call and what
    Ango answered (its error form is `{"status": "fail", "message": ...}`)."""

    def send(method: str, url: str, **keys: Any) -> Any:
        response = request(method, url, **keys)
        if response.status_code < 400:
            return response
        try:
            said = response.json().get("message") or response.text
        except (ValueError, AttributeError):
            said = response.text
        raise AngoApiFailed(f"answered {response.status_code} to {method} {urlsplit(url).path}: {str(said)[:200]}")

    return send


def failure(error: Exception) -> str:
    """A failed call to Ango's API in a few words: what Ango answered, or the exception's type and text."""
    return error.message if isinstance(error, AngoApiFailed) else f"{type(error).__name__}: {error}"


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
        raise AngoApiFailed(f"Ango's API at {sdk.host} failed the asset look-up: {failure(error)}") from None
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


def task_answer(data: Mapping[str, Any], host: str, timeout: float) -> Any:
    """The answer the run's task holds (what an interactive run with `overwrite` off merges into), read with
    `api_client`."""
    task = data.get("taskId")
    try:
        return api_client(data.get("apiKey", ""), host, timeout).get_task(task)["data"]["task"].get("answer")
    except Exception as error:
        raise AngoApiFailed(f"Ango's API at {host} failed reading task {task} (overwrite is off: the answer is "
                            f"merged into the task's): {failure(error)}") from None


class PluginCallback:
    """The SDK's model-plugin callback: one run message in, an `AnnotationPayload` out.

    The SDK calls it on its own threads; the service lives on `loop` (the server's, or `bridge ango`'s
    background loop) and each run is handed to it with `run_coroutine_threadsafe`. An interactive run with
    `overwrite` off is merged into its task's answer here, as the SDK would but through `api_client` (the plugin
    tells the SDK to overwrite: `plugin_class`).
    """

    def __init__(self, adapter: Adapter, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.adapter = adapter
        self.service = service
        self.section = section
        self.loop = loop

    def __call__(self, data: dict[str, Any]) -> Any:
        from imerit_ango.models.annotate import AnnotationPayload, Answer
        from imerit_ango.models.utils import merge_annotations

        job = run_job(data, self.service, self.section)
        run = run_of(data)
        writer = self.adapter.writer(self.section, self.service.spec, self.service.manifest, run)
        try:
            found = asyncio.run_coroutine_threadsafe(answer(self.service, job, writer), self.loop).result()
        except InvalidParams as error:
            raise InvalidInput(f"configJSON: {error.message}") from None
        payload = AnnotationPayload(answer=Answer(**found))
        if not run.overwrite and not data.get("workflow"):  # a workflow run's answer is merged as it is posted
            existing = task_answer(data, self.section.api_url, self.service.limits.fetch_timeout)
            payload.answer = merge_annotations(existing, payload.answer)
        return payload


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

        def _overwrite(self, data: Mapping[str, Any]) -> bool:
            """An interactive run is merged into its task's answer by the callback (`PluginCallback`), through
            `api_client`: the SDK, told to overwrite, reads nothing with its own client."""
            return super()._overwrite(data) if data.get("workflow") else True

        def _run_workflow(self, data: dict[str, Any]) -> None:
            """The SDK's workflow run, its answer posted with `api_client` (bounded, retried; merged into the
            task's with `overwrite` off); a failure is told once, by the SDK's caller."""
            payload = self.callback(data)
            payload.project_id = data.get("projectId")
            task = data.get("taskId")
            try:
                api_client(data.get("apiKey", ""), self.host, timeout)._annotate_task(
                    task, payload, self._overwrite(data), send_to_next_stage=True, is_plugin=True)
            except Exception as error:
                raise AngoApiFailed(f"Ango's API at {self.host} did not take the workflow answer of task {task}: "
                                    f"{failure(error)}") from None

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
