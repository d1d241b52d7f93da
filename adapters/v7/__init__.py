"""V7 Darwin "Bring Your Own Model": `GET {base}/classes` and `POST {base}/infer`.

Register `http://HOST:PORT/v7` (the section's `base_path`) as the model's external URL; V7 appends
`/classes` and `/infer`. Answers are Darwin-JSON results that validate against V7's published response
schema. The package: `convert` (the dialect, pure, and its `CONVERSIONS`), `api` (the request and answer
models), `section` (the manifest section), `read` (Darwin-JSON results back to predictions), `client` (an
endpoint of V7's form, for `bridge check URL` and remote models; `contract` is its check), `darwin_json`
(`bridge prelabel`'s import files).
"""

from __future__ import annotations

from typing import Any

from adapters.v7.api import V7Class, V7Failed, V7InferRequest, V7InferResponse
from adapters.v7.client import V7Client
from adapters.v7.convert import (
    CONVERSIONS,
    PLATFORM,
    names,
    to_job,
    to_results,
    v7_classes,
)
from adapters.v7.darwin_json import DarwinJson
from adapters.v7.read import read_results
from adapters.v7.section import V7Section
from bridge.core.errors import BridgeError
from bridge.core.manifest import Manifest, ManifestError
from bridge.core.model import ModelSpec
from bridge.core.pipeline import answer
from bridge.core.predictions import Prediction
from bridge.core.service import Result, Service
from bridge.platforms import auth
from bridge.platforms.auth import Auth
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.protocol import Adapter, Route


class V7Adapter(Adapter):
    name = PLATFORM
    title = "V7 Darwin"
    section = V7Section
    conversions = CONVERSIONS
    error_model = V7Failed
    client = V7Client()

    def auth(self, section: V7Section) -> Auth:
        given = section.auth
        if given.method == "basic":
            return auth.basic(given.username, given.password, "platforms.v7.auth.password")
        if given.method == "header":
            return auth.header(given.header, given.secret, "platforms.v7.auth.secret")
        return auth.none()

    def error_body(self, error: BridgeError) -> dict[str, Any]:
        """V7's failure form: V7 logs it and moves on to the next item."""
        return {"status": "failed", "results": [], "error": error.message}

    def write_answer(self, result: Result, spec: ModelSpec, section: V7Section, manifest: Manifest,
                     run: Any = None) -> dict[str, Any]:
        results = to_results(result.predictions, spec, section, manifest.geometry.simplify_tolerance)
        return {"status": "succeeded", "results": results}

    def read_answer(self, answer: Any, spec: ModelSpec, section: V7Section, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        return read_results(answer, spec, section, size)

    def check(self, spec: ModelSpec, section: V7Section, manifest: Manifest) -> list[str]:
        """What V7 loses of the model; a `ManifestError` when two names V7 would receive are the same (at
        start-up and in `bridge check`: V7 would merge the two classes)."""
        unique_names(spec, section, manifest.where())
        return super().check(spec, section, manifest)

    def routes(self, section: V7Section) -> list[Route]:
        async def classes(service: Service) -> list[dict[str, str]]:
            """The classes V7 links to its own: name and main annotation type."""
            return v7_classes(service.spec, section)

        async def infer(body: V7InferRequest, service: Service) -> dict[str, Any]:
            """Run the model on an image or a video; results in full-image coordinates."""
            return await answer(service, to_job(body), self.writer(section, service.spec, service.manifest))

        return [Route("GET", "/classes", classes, response=list[V7Class]),
                Route("POST", "/infer", infer, V7InferRequest, V7InferResponse, params_at=("params",))]

    def exporter(self, section: V7Section, setup: ExportSetup) -> Exporter:
        unique_names(setup.spec, section, setup.manifest.where())
        return DarwinJson(section, setup)


def unique_names(spec: ModelSpec, section: V7Section, where: str) -> None:
    """`names` as a manifest error naming the file and the key."""
    try:
        names(spec, section)
    except ValueError as error:
        raise ManifestError(f"{where}: platforms.v7.tag_name: {error}") from None


adapter = V7Adapter()
