"""A Label Studio ML backend, ours or anyone's, called by the bridge: `bridge check URL --platform
labelstudio` (`contract`) and remote models (`bridge.core.remote`).

A backend lists no classes: the manifest's `classes` name them. Each item is one `/predict` call with one task
whose data is a `data:` URL of the item (PNG, or the text itself), and the label config `mapping.label_config`
writes for the classes; the backend must read `data:` URLs (ours does). Label Studio authenticates to a
backend with HTTP Basic: `--secret USER:PASSWORD` (or a remote's `secret`) sends it so.
"""

from __future__ import annotations

import base64
from typing import Any

from adapters.labelstudio import contract
from adapters.labelstudio.mapping import label_config
from adapters.labelstudio.section import LabelStudioSection
from bridge.core.model import Context, ModelSpec
from bridge.core.remote import image_base64
from bridge.platforms.probe import Probe, Problem
from bridge.platforms.protocol import Client


class LabelStudioClient(Client):
    def secret_headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")}

    def check(self, probe: Probe) -> list[Problem]:
        return contract.check(probe)

    def remote_spec(self, remote: Any, http: Any) -> ModelSpec:
        raise ValueError("model.remote: a Label Studio ML backend does not list its classes: give them under the "
                         "manifest's `classes` (and `input`)")

    def remote_request(self, item: Any, context: Context, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        if isinstance(item, str):
            data = {"text": item}
        else:
            data = {"image": "data:image/png;base64," + image_base64(item)}
        return "/predict", {"tasks": [{"id": 1, "data": data}], "project": "bridge-remote",
                            "label_config": label_config(spec, LabelStudioSection()),
                            "params": {"context": None, **dict(context.params)}}
