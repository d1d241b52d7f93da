"""`bridge ango --batch`: the model as an Ango Batch Model plugin, pre-labelling a project's assets in bulk.

The SDK's `BatchModelPlugin` gives its callback the run message and no asset list (see the platform notes);
one run here:

1. pages the project's assets that carry no labels yet (`get_assets` with `{"isPreLabeled": false}`, `PAGE` at
   a time) into a list, before importing anything, so imports cannot shift pages. With batches, one listing
   per batch, merged: the SDK documents its `batches` filter as "assets should have both", and a run over
   two batches means the assets of either;
2. runs them through the service `CHUNK` at a time (the service bounds the model's concurrency);
3. imports each chunk's labels with `import_labels` (each asset's answer is a plugin run's: the one answer
   path with the Ango writer and the run's class mapping, keyed by `externalId`), and tells the run's logger
   `n/N` and the failures so far (Ango's plugin console);
4. answers a one-line summary, the run's answer.

A re-run resumes: imported assets are pre-labelled and no longer listed; an asset that failed (its reason is in
the log) was not imported, so the next run tries it again. This module imports no part of the SDK that picks a
connector: `batch_plugin_class` takes the plugin class of the connector in use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from adapters.ango.convert import run_params, to_job
from adapters.ango.plugin import AngoApiFailed, api_client, failure, run_of
from adapters.ango.section import AngoSection
from bridge.core.errors import BridgeError, InvalidInput
from bridge.core.params import InvalidParams
from bridge.core.pipeline import Writer, answer
from bridge.core.service import Service
from bridge.platforms.protocol import Adapter

log = logging.getLogger("bridge.ango")

PAGE = 100
"""Assets per `get_assets` call."""
CHUNK = 50
"""Assets run, then imported with one `import_labels` call, at a time."""


class BatchCallback:
    """The Batch Model plugin's callback: one run message in, the run's summary out (on the SDK's thread)."""

    def __init__(self, adapter: Adapter, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.adapter = adapter
        self.service = service
        self.section = section
        self.loop = loop

    def __call__(self, data: dict[str, Any]) -> str:
        logger = data.get("logger") or log
        project = data.get("projectId")
        try:
            params = run_params(data.get("configJSON"))
            try:
                self.service.params.resolve(params)  # a bad parameter fails the run before any asset is listed
            except InvalidParams as error:
                raise InvalidInput(f"configJSON: {error.message}") from None
            run = run_of(data)
            sdk = api_client(data.get("apiKey", ""), self.section.api_url, self.service.limits.fetch_timeout)
            assets = self.pending(sdk, project, data.get("batches") or [])
        except BridgeError as error:
            logger.error(error.message)
            raise
        total, done, failed = len(assets), 0, 0
        writer = self.adapter.writer(self.section, self.service.spec, self.service.manifest, run)
        logger.info(f"pre-labelling {total} assets of project {project} without labels")
        for start in range(0, total, CHUNK):
            chunk = assets[start:start + CHUNK]
            answers = asyncio.run_coroutine_threadsafe(self.run_chunk(chunk, params, writer), self.loop).result()
            labels = []
            for asset, found in zip(chunk, answers):
                if isinstance(found, BaseException):
                    failed += 1
                    reason = found.message if isinstance(found, BridgeError) else f"{type(found).__name__}: {found}"
                    logger.warning(f"asset {asset['externalId']} failed: {reason}")
                    continue
                labels.append({"externalId": asset["externalId"], "objects": found["objects"],
                               "classifications": found["classifications"]})
            if labels:
                try:
                    sdk.import_labels(project, labels)
                except Exception as error:
                    message = (f"Ango's API at {sdk.host} did not import the labels after {done}/{total}: "
                               f"{failure(error)}; run again to resume")
                    logger.error(message)
                    raise AngoApiFailed(message) from None
            done += len(labels)
            logger.info(f"{done + failed}/{total} assets: {done} pre-labelled, {failed} failed")
        summary = f"pre-labelled {done} of {total} assets, {failed} failed"
        logger.info(summary + ("; run again to retry the failures" if failed else ""))
        return summary

    def pending(self, sdk: Any, project: str | None, batches: list[str]) -> list[dict[str, Any]]:
        """Every asset without labels in any of the run's batches (the whole project without batches), each
        once, paged in before anything is imported."""
        assets: dict[str, dict[str, Any]] = {}
        for batch in batches or [None]:
            filters: dict[str, Any] = {"isPreLabeled": False}
            if batch is not None:
                filters["batches"] = [batch]  # one at a time: a list of several is an AND
            for asset in self.listing(sdk, project, filters):
                assets.setdefault(asset.get("_id") or asset["externalId"], asset)
        return list(assets.values())

    @staticmethod
    def listing(sdk: Any, project: str | None, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every asset passing `filters`, page by page until a short page."""
        assets: list[dict[str, Any]] = []
        page = 1
        while True:
            try:
                found = sdk.get_assets(project, page=page, limit=PAGE, filters=filters)["data"]["assets"]
            except Exception as error:
                raise AngoApiFailed(f"Ango's API at {sdk.host} did not list the project's assets: "
                                    f"{failure(error)}") from None
            assets += found
            if len(found) < PAGE:
                return assets
            page += 1

    async def run_chunk(self, chunk: list[dict[str, Any]], params: dict[str, Any], writer: Writer) -> list[Any]:
        """Each asset's answer, or the exception that failed it."""
        text = self.service.spec.input == "text"
        return await asyncio.gather(*(answer(self.service, to_job(params, asset["data"], text), writer)
                                      for asset in chunk), return_exceptions=True)


def batch_plugin_class(base: type) -> type:
    """A Batch Model plugin on `base`, a `ModelPlugin` class of the connector in use (its connection and run
    logger: the hub's `HubPlugin`, or the SDK's own), answering runs as the SDK's `BatchModelPlugin` does."""
    from imerit_ango.plugins import BasePlugin, BatchModelPlugin

    class AngoBatchPlugin(base, BatchModelPlugin):
        def on_plugin(self, data: dict[str, Any]) -> Any:
            try:
                return BasePlugin.on_plugin(self, data)  # BatchModelPlugin's own: the callback's answer
            except Exception as error:
                log.info("batch run %s ended with an error: %s", data.get("session", ""), error)
                return None

    return AngoBatchPlugin


def batch_plugin(base: type, adapter: Adapter, service: Service, section: AngoSection,
                 loop: asyncio.AbstractEventLoop) -> Any:
    return batch_plugin_class(base)(section.plugin_id, section.secret,
                                    BatchCallback(adapter, service, section, loop), host=section.api_url)
