"""Labelbox Foundry custom model: `POST {base}/infer`, and the `model.yaml` Labelbox's team asks for.

Give Labelbox `https://HOST/labelbox/infer` (the section's `base_path` + `/infer`) as the HTTP endpoint and the
section's `secret` as the model's secret. Every request must carry `Authorization: Bearer <secret>`, checked
in constant time before the body is parsed; without a configured secret the endpoint refuses every request,
so it is never open by accident. `bridge labelbox-manifest MANIFEST --endpoint URL` writes the `model.yaml`.

What the model receives and what it answers (`convert`, whose `CONVERSIONS` `bridge formats` prints): the
last user message's image or text; the top-level keys the manifest's `params` declares and the keys of
`inference_params` as parameters (Labelbox's own and unknown top-level keys are ignored); an answer keyed by
feature name: boxes with scores, areas as COCO RLE masks, options, free text, entity spans in UTF-16 code
units. Points, lines, skeletons, cuboids and vectors have no Foundry form: they are dropped, logged once per
class, and listed by `bridge check` and `bridge labelbox-manifest`.

The package: `convert` (the dialect, pure), `api` (request and answer models), `section`, `read` (answers back
to predictions), `model_yaml` and `commands` (`bridge labelbox-manifest`), `client` (an endpoint of this form,
for `bridge check URL` and remote models; `contract` is its check), `ndjson` (`bridge prelabel`'s files).
"""

from __future__ import annotations

from typing import Any

from adapters.labelbox.api import LabelboxAnswer, LabelboxRequest
from adapters.labelbox.client import LabelboxClient
from adapters.labelbox.convert import CONVERSIONS, PLATFORM, to_answer, to_job
from adapters.labelbox.model_yaml import check
from adapters.labelbox.ndjson import PredictionNdjson
from adapters.labelbox.read import read_answer
from adapters.labelbox.section import LabelboxSection
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.core.pipeline import answer
from bridge.core.predictions import Prediction
from bridge.core.service import Result, Service
from bridge.platforms import auth
from bridge.platforms.auth import Auth
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.protocol import Adapter, Route


class LabelboxAdapter(Adapter):
    name = PLATFORM
    title = "Labelbox Foundry"
    section = LabelboxSection
    conversions = CONVERSIONS
    client = LabelboxClient()

    def auth(self, section: LabelboxSection) -> Auth:
        return auth.bearer(section.secret, "platforms.labelbox.secret")

    def write_answer(self, result: Result, spec: ModelSpec, section: LabelboxSection, manifest: Manifest,
                     run: Any = None) -> dict[str, Any]:
        return to_answer(result.predictions, spec, section, result.size, result.text)

    def read_answer(self, answer: Any, spec: ModelSpec, section: LabelboxSection,
                    size: tuple[int, int] | None = None, text: str | None = None) -> list[Prediction]:
        return read_answer(answer, spec, section, size, text)

    def routes(self, section: LabelboxSection) -> list[Route]:
        async def infer(body: LabelboxRequest, service: Service) -> dict[str, Any]:
            """Run the model on the last user message's image or text; the answer is keyed by feature name."""
            job = to_job(body, service.spec.input, section, service.params)
            return await answer(service, job, self.writer(section, service.spec, service.manifest))

        return [Route("POST", "/infer", infer, LabelboxRequest, LabelboxAnswer, params_at=())]

    def check(self, spec: ModelSpec, section: LabelboxSection, manifest: Manifest) -> list[str]:
        return super().check(spec, section, manifest) + check(spec, section, manifest.params)

    def exporter(self, section: LabelboxSection, setup: ExportSetup) -> Exporter:
        return PredictionNdjson(section, setup)


adapter = LabelboxAdapter()
