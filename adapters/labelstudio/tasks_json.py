"""Label Studio's file import for `bridge prelabel`: tasks with their predictions (`tasks.json`), and the label
config they are made for (`config.xml`).

Each task is `{"data": {"<object's data key>": <the item>}, "predictions": [<the backend's answer for it>]}`:
the prediction is the Label Studio adapter's own answer (`Adapter.write_answer`, as `/predict` answers it), in
the project's label config when `platforms.labelstudio.label_config` names one, else in the one
`bridge labelstudio-config` prints (written beside as `config.xml`: create the project with it). The item is
its URL as given, a local path as given (Label Studio reads it only through a local-files storage that serves
that folder), or a CSV's text. Import with Label Studio's API or its Import dialog; an item's identity goes in
`data.identity` (Label Studio has no external id of its own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.labelstudio.convert import Run
from adapters.labelstudio.mapping import configured_mapping, label_config
from adapters.labelstudio.section import LabelStudioSection
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

TASKS = "tasks.json"
CONFIG = "config.xml"


class TasksJson:
    """Writes each item's task to a part, and `tasks.json` (with `config.xml`) from every part."""

    def __init__(self, adapter: Any, section: LabelStudioSection, setup: ExportSetup) -> None:
        mapping = configured_mapping(setup.spec, section, setup.manifest.base_dir)
        self.conversions = {**adapter.conversions, "prompts": NO_PROMPTS}
        self.config = mapping.config
        self.config_text = _config_text(setup, section)
        self.key = _data_key(mapping.config, setup.spec.input)
        version = f"{setup.manifest.name}-{setup.manifest.version}"
        self.answer = adapter.writer(section, setup.spec, setup.manifest, Run(mapping, version, section.empty_score)).write

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        task = {"data": {self.key: item.source, "identity": item.identity}, "predictions": [self.answer(result)]}
        part = parts_dir(out_dir) / f"{file_name(item.identity)}.json"
        write_atomic(part, json.dumps(task).encode("utf-8"))
        return [part]

    def finish(self, out_dir: Path) -> list[Path]:
        tasks = [json.loads(part.read_bytes()) for part in parts(out_dir, ".json")]
        write_atomic(out_dir / TASKS, json.dumps(tasks).encode("utf-8"))
        write_atomic(out_dir / CONFIG, self.config_text.encode("utf-8"))
        return [out_dir / TASKS, out_dir / CONFIG]


def _config_text(setup: ExportSetup, section: LabelStudioSection) -> str:
    if section.label_config is not None:
        return (setup.manifest.base_dir / section.label_config).read_text(encoding="utf-8")
    return label_config(setup.spec, section)


def _data_key(config: Any, reads: str) -> str:
    wanted = ("Text", "HyperText", "Paragraphs") if reads == "text" else ("Image",)
    return next((obj.data_key for obj in config.objects if obj.type in wanted), reads)
