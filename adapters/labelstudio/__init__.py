"""Label Studio's ML backend: `GET {base}/health`, `POST {base}/setup`, `POST {base}/predict`,
`POST {base}/webhook`, `GET {base}/versions` (base `/labelstudio`).

Register `http://HOST:PORT/labelstudio` as the project's ML backend (Label Studio appends the routes). Each
call carries the project's label config; classes map to its control tags and labels by name (`mapping`), and
answers are Label Studio regions (`regions`: percent coordinates, its own brush RLE). `/predict` gets every
task lacking a prediction of the current model version in one call: the tasks run through the one answer
path a few at a time (`predict_batch` of the section; the core batches them across when `limits.batch_wait`
is set), and a task that fails answers no `result` (Label Studio skips it and asks again next time) with its
reason logged, never failing the others. An interactive call (`params.context.result`: the regions a user
drew) is a job with prompts: a box and clicks (`regions.to_prompts`).

The package: `convert` (the dialect: jobs, answers, `CONVERSIONS`), `mapping` (classes to the label config),
`config` (the label config's XML), `regions` and `brush` (Label Studio's result forms), `access` (credentials
for task media), `api` (request models), `section`, `client` (a backend of this form, for `bridge check URL`
and remote models; `contract` is its check), `tasks_json` (`bridge prelabel`'s import file), `commands`
(`bridge labelstudio-config`). See `PROTOCOL.md` for what Label Studio 1.23 sends, recorded from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from adapters.labelstudio.access import Access
from adapters.labelstudio.api import (
    PredictAnswer,
    PredictRequest,
    SetupAnswer,
    SetupRequest,
    WebhookRequest,
)
from adapters.labelstudio.client import LabelStudioClient
from adapters.labelstudio.config import ConfigError, parse_config
from adapters.labelstudio.convert import (
    CONVERSIONS,
    PLATFORM,
    Run,
    data_reference,
    media_reference,
    read,
    to_job,
    write,
)
from adapters.labelstudio.mapping import (
    Mapping,
    configured_mapping,
    generated_mapping,
    map_classes,
)
from adapters.labelstudio.regions import to_prompts
from adapters.labelstudio.section import LabelStudioSection
from adapters.labelstudio.tasks_json import TasksJson
from bridge.core.errors import BridgeError, InvalidInput
from bridge.core.logs import one_line
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec, Prompts
from bridge.core.pipeline import answer
from bridge.core.predictions import Prediction
from bridge.core.service import Result, Service
from bridge.platforms import auth
from bridge.platforms.auth import Auth
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.protocol import Adapter, Route

log = logging.getLogger("bridge.labelstudio")

CONFIGS = 32
"""Label configs whose class mapping is kept (one per project, usually)."""


def model_version(manifest: Manifest) -> str:
    """The version Label Studio stores with each prediction (and picks for Uncertainty sampling)."""
    return f"{manifest.name}-{manifest.version}"


class LabelStudioAdapter(Adapter):
    name = PLATFORM
    title = "Label Studio"
    section = LabelStudioSection
    conversions = CONVERSIONS
    client = LabelStudioClient()

    def auth(self, section: LabelStudioSection) -> Auth:
        if section.auth.method == "basic":
            return auth.basic(section.auth.username, section.auth.password, "platforms.labelstudio.auth.password")
        return auth.none()

    def write_answer(self, result: Result, spec: ModelSpec, section: LabelStudioSection, manifest: Manifest,
                     run: Run | None = None) -> dict[str, Any]:
        """One task's prediction; without a run (the playground), into the config `label_config` writes."""
        run = run or Run(generated_mapping(spec, section), model_version(manifest), section.empty_score)
        return write(result, run, manifest.geometry.simplify_tolerance)

    def read_answer(self, answer: Any, spec: ModelSpec, section: LabelStudioSection,
                    size: tuple[int, int] | None = None, text: str | None = None) -> list[Prediction]:
        """A task's prediction (or its result list) in the config `label_config` writes."""
        return read(answer, generated_mapping(spec, section), spec)

    def check(self, spec: ModelSpec, section: LabelStudioSection, manifest: Manifest) -> list[str]:
        found = super().check(spec, section, manifest)
        if section.label_config is not None:
            found += list(configured_mapping(spec, section, manifest.base_dir).warnings)
        return found

    def exporter(self, section: LabelStudioSection, setup: ExportSetup) -> Exporter:
        return TasksJson(self, section, setup)

    def routes(self, section: LabelStudioSection) -> list[Route]:
        projects: dict[str, Access] = {}  # project -> the credentials its /setup gave
        mappings: OrderedDict[tuple[int, str], Mapping] = OrderedDict()  # (service, config) -> mapping

        def mapping_of(service: Service, config: str | None) -> Mapping:
            if not config:
                raise InvalidInput("the request carries no label config")
            key = (id(service), config)
            if key not in mappings:
                try:
                    mappings[key] = map_classes(service.spec, parse_config(config), section)
                except ConfigError as error:
                    raise InvalidInput(str(error)) from None
                for warning in mappings[key].warnings:
                    log.warning("%s", warning)
                if len(mappings) > CONFIGS:
                    mappings.popitem(last=False)
            mappings.move_to_end(key)
            return mappings[key]

        def access_of(project: str | None, hostname: str | None = None, token: str | None = None) -> Access | None:
            """The project's credentials, as its /setup gave them (`hostname`, `token`: now) under the
            section's own; None when nothing says where Label Studio is."""
            found = projects.get(project or "")
            base = section.url or hostname or (found.base if found else None)
            if base is None:
                return None
            secret = section.api_token or token or (found.token if found else "") or ""
            if found is None or (found.base, found.token) != (base, secret):
                found = Access(base, secret)
                if project:
                    projects[project] = found
            return found

        async def job_of(task: dict[str, Any], mapping: Mapping, project: str | None, prompts: Prompts,
                         service: Service) -> Any:
            text_model = service.spec.input == "text"
            _, value = data_reference(task, mapping, service.spec.input)
            reference = media_reference(value, text_model)
            if reference is None:
                return to_job(value, None, {}, text_model, prompts)
            access = access_of(project)
            if access is None and not reference.startswith(("http://", "https://")):
                raise InvalidInput(f"the task's media {reference!r} are relative to Label Studio, whose URL is "
                                   "unknown: it comes with /setup, or set platforms.labelstudio.url")
            url = access.url(reference) if access else reference
            headers = dict(await access.headers(url, service.limits.fetch_timeout)) if access else {}
            return to_job(value, url, headers, text_model, prompts)

        async def health(service: Service) -> dict[str, str]:
            """Up once the model is loaded."""
            return {"status": "UP", "model_class": service.manifest.name}

        async def setup(body: SetupRequest, service: Service) -> dict[str, Any]:
            """A project attached (or about to predict): its label config and where its media are."""
            mapping = mapping_of(service, body.schema_)
            if body.hostname or section.url:
                access_of(body.project, body.hostname, body.access_token)
            return {"model_version": model_version(service.manifest), "warnings": list(mapping.warnings)}

        async def predict(body: PredictRequest, service: Service) -> dict[str, Any]:
            """Predictions for the tasks, one per task in order; with `params.context.result`, for the regions
            a user drew (prompts)."""
            mapping = mapping_of(service, body.label_config)
            context = (body.params or {}).get("context") or {}
            prompts = to_prompts(context.get("result") or []) if isinstance(context, dict) else Prompts()
            run = Run(mapping, model_version(service.manifest), section.empty_score)
            writer = self.writer(section, service.spec, service.manifest, run)
            slots = asyncio.Semaphore(section.predict_batch)

            async def one(task: dict[str, Any]) -> dict[str, Any]:
                async with slots:
                    try:
                        return await answer(service, await job_of(task, mapping, body.project, prompts, service),
                                            writer)
                    except BridgeError as error:
                        log.warning("task %s failed: %s", task.get("id"), one_line(error.message))
                        return {"error": error.message, "model_version": run.model_version}

            return {"results": list(await asyncio.gather(*(one(task) for task in body.tasks)))}

        async def versions(service: Service) -> dict[str, list[str]]:
            """The model's version (the only one this backend serves)."""
            return {"versions": [model_version(service.manifest)]}

        async def webhook(body: WebhookRequest, service: Service) -> dict[str, str]:
            """Project events Label Studio posts (annotations, tasks, START_TRAINING): noted, nothing is
            trained. Label Studio posts them without the backend's Basic auth, so this route needs none."""
            log.info("Label Studio event %s%s", one_line(str(body.action)),
                     ": this backend does not train" if body.action == "START_TRAINING" else "")
            return {"status": "ok"}

        return [Route("GET", "/health", health, response=dict[str, str]),
                Route("POST", "/setup", setup, SetupRequest, SetupAnswer),
                Route("POST", "/predict", predict, PredictRequest, PredictAnswer),
                Route("GET", "/versions", versions, response=dict[str, list[str]]),
                Route("POST", "/webhook", webhook, WebhookRequest, dict[str, str], public=True)]


adapter = LabelStudioAdapter()
