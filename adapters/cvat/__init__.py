"""CVAT, through its native functions: a `cvat_sdk.auto_annotation` function that `cvat-cli function
create-native` registers and `cvat-cli function run-agent` serves. The agent polls CVAT for work: nothing
listens, so this adapter has no routes and no endpoint to check.

The package: `convert` (the dialect, pure: labels, predictions as CVAT's annotation JSON and back, prompts,
`CONVERSIONS`), `section` (`platforms.cvat`), `function` (what cvat-cli loads: `create(manifest=PATH)`, the
manifest's model built once and served as a detection function, or as an interaction function for a model
that takes prompts; it imports cvat-sdk, which nothing else here does), `cvat_xml` (`bridge prelabel --to
cvat`: CVAT for images 1.1 XML). `FACTS.md` holds what cvat-sdk and cvat-cli 2.80 do, with sources.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from adapters.cvat.convert import (
    CONVERSIONS,
    PLATFORM,
    CvatRun,
    function_labels,
    read_annotations,
    write,
)
from adapters.cvat.cvat_xml import CvatXml
from adapters.cvat.section import CvatSection
from bridge.core import conversions
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.core.params import InvalidParams, Params
from bridge.core.pipeline import Writer
from bridge.core.predictions import Prediction
from bridge.core.service import Result
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.protocol import Adapter


class CvatAdapter(Adapter):
    name = PLATFORM
    title = "CVAT"
    section = CvatSection
    conversions = CONVERSIONS

    def write_answer(self, result: Result, spec: ModelSpec, section: CvatSection, manifest: Manifest,
                     run: CvatRun | None = None) -> dict[str, Any]:
        """A request's answer as the agent completes it, in the function's label ids (CVAT's driver replaces
        them with the task's); without a run (the playground), a detection request with no threshold."""
        return write(result.predictions, result.size, spec, section.rename, section.attributes,
                     manifest.geometry.simplify_tolerance, run or CvatRun())

    def writer(self, section: CvatSection, spec: ModelSpec, manifest: Manifest, run: CvatRun | None = None) -> Writer:
        """The table of the request's own form: masks as polygons, or an interaction's masks."""
        return dataclasses.replace(super().writer(section, spec, manifest, run), table=(run or CvatRun()).table(spec))

    def read_answer(self, answer: Any, spec: ModelSpec, section: CvatSection, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        """A detection function's answer (`{"tags", "shapes"}` in the function's label ids)."""
        labels = [label.json() for label in function_labels(spec, section.rename, section.attributes).values()]
        return read_annotations(answer, labels, spec, rename=section.rename, attributes=section.attributes,
                                size=size, frames=False)

    def check(self, spec: ModelSpec, section: CvatSection, manifest: Manifest) -> list[str]:
        """What CVAT loses of the model, and what would keep the function from matching a task's labels."""
        if spec.input == "text":
            return ["CVAT's functions annotate images: a text model cannot be served to CVAT"]
        table = CvatRun(interaction=spec.prompts).table(spec)
        found = conversions.losses(table, spec, conversions.possible(spec), manifest.geometry.simplify_tolerance)
        names = {cls.name for cls in spec.classes}
        found += [f"platforms.cvat.rename names {name!r}, not a class of the model" for name in section.rename
                  if name not in names]
        try:
            Params(manifest.params).resolve(section.params)
            labels = function_labels(spec, section.rename, section.attributes)
        except InvalidParams as error:
            return [*found, f"platforms.cvat.params: {error.message}"]
        except ValueError as error:
            return [*found, f"platforms.cvat: {error}"]
        if spec.prompts:
            return found
        nodes = {label.name: ": " + ", ".join(label.cls.nodes) if label.cls.nodes else "" for label in labels.values()}
        listed = ", ".join(f"{label.name!r} ({label.type}{nodes[label.name]})" for label in labels.values())
        return [*found, f"CVAT matches labels by name: the task's labels must be named {listed} "
                        "(platforms.cvat.rename renames classes)"]

    def exporter(self, section: CvatSection, setup: ExportSetup) -> Exporter:
        return CvatXml(section, setup)


adapter = CvatAdapter()
