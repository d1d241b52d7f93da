"""Ango's file import for `bridge prelabel`: the payload of `SDK.import_labels(project_id, labels)`.

Each label is `{"externalId": <the item's identity>, "objects": [...], "classifications": [...]}`, built with
the SDK's own `Answer` from the Ango adapter's answer (`Adapter.write_answer`, as a plugin run answers). With a
`categorySchema`-style mapping file (`--mapping ango=FILE`: a JSON list of `{"schemaId", "modelClass"}`, and
the category's `tool` where known), every object and classification answers its `schemaId`, in the form of
the category's type, and classes the file does not map are dropped; without one, they carry `title` (the
class name after `rename`).

`ango/labels-00001.json`, ... hold the labels in chunks of `CHUNK` (a JSON list each), assembled from one
part per item at the end of every run; import them one call per file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from adapters.ango.convert import CONVERSIONS as ANSWER
from adapters.ango.convert import AngoRun, class_ids, class_tools
from adapters.ango.section import AngoSection
from bridge.core.conversions import Table, dropped
from bridge.core.errors import InvalidInput
from bridge.core.manifest import ManifestError
from bridge.core.outputs import warn_once
from bridge.core.service import Result
from bridge.platforms.export import (
    NO_PROMPTS,
    ExportSetup,
    Item,
    file_name,
    parts,
    parts_dir,
    write_atomic,
)

PLATFORM = "ango"
CHUNK = 500
"""Labels per file: one `import_labels` call each."""

CONVERSIONS: Table = {
    **ANSWER,
    "prediction.confidence": dropped("Ango's label import has no confidence"),
    "prediction.frame": dropped("bridge prelabel reads images, not videos"),
    "prompts": NO_PROMPTS,
}
"""A plugin run's answer conversion (`adapters.ango.convert`); only what an import cannot carry differs."""


class ImportLabels:
    """Writes each item's label to a part, and the chunked `import_labels` payloads from every part."""

    conversions = CONVERSIONS

    def __init__(self, adapter: Any, section: AngoSection, setup: ExportSetup) -> None:
        schema = read_mapping(setup.mapping) if setup.mapping else None
        run = AngoRun(class_ids(schema), note=functools.partial(warn_once, PLATFORM, ""), tools=class_tools(schema))
        self.answer = adapter.writer(section, setup.spec, setup.manifest, run).write

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        from imerit_ango.models.annotate import Answer

        answer = self.answer(result)
        label = {"externalId": item.identity, **Answer(answer["objects"], answer["classifications"]).toDict()}
        label.pop("relations")
        part = parts_dir(out_dir) / f"{file_name(item.identity)}.json"
        write_atomic(part, json.dumps(label).encode("utf-8"))
        return [part]

    def finish(self, out_dir: Path) -> list[Path]:
        found = parts(out_dir, ".json")
        files = []
        for number, start in enumerate(range(0, len(found), CHUNK), start=1):
            labels = [json.loads(part.read_bytes()) for part in found[start:start + CHUNK]]
            files.append(out_dir / f"labels-{number:05d}.json")
            write_atomic(files[-1], json.dumps(labels).encode("utf-8"))
        for stale in set(out_dir.glob("labels-*.json")) - set(files):
            stale.unlink()
        return files


def read_mapping(path: Path) -> list[dict[str, str]]:
    """A categorySchema-style JSON file: `[{"schemaId", "modelClass"}, ...]` (with the category's `tool` where
    known), checked."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        ids = class_ids(schema)
    except (OSError, ValueError) as error:
        raise ManifestError(f"--mapping ango={path}: {error}") from None
    except InvalidInput as error:
        raise ManifestError(f"--mapping ango={path}: {error.message}") from None
    if not ids:
        raise ManifestError(f"--mapping ango={path}: the mapping is empty")
    return schema
