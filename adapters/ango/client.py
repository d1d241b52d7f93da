"""An Ango REST connector (`POST {base}/plugin`), ours or anyone's, called by the bridge: `bridge check URL
--platform ango` (`contract`) and remote models (`bridge.core.remote`).

A connector lists no classes: the manifest's `classes` name them (the plugin's class names). Each item is one
run message: `dataURL` a `data:` URL of the item (PNG, or UTF-8 text), `configJSON` the parameters, and a
`categorySchema` mapping each class to itself, so the answer's `schemaId`s are the class names. The plugin
must accept `data:` URLs: one that fetches only http(s) cannot serve as a remote.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from adapters.ango import contract
from bridge.core.model import Context, ModelSpec
from bridge.core.remote import image_base64
from bridge.platforms.probe import Probe, Problem
from bridge.platforms.protocol import Client


class AngoClient(Client):
    def secret_headers(self, secret: str) -> dict[str, str]:
        return {"Secret": secret}

    def check(self, probe: Probe) -> list[Problem]:
        return contract.check(probe)

    def remote_spec(self, remote: Any, http: Any) -> ModelSpec:
        raise ValueError("model.remote: an Ango REST connector does not list its classes: give them under the "
                         "manifest's `classes` (and `input`)")

    def remote_request(self, item: Any, context: Context, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        if isinstance(item, str):
            url = "data:text/plain;charset=utf-8;base64," + base64.b64encode(item.encode("utf-8")).decode("ascii")
        else:
            url = "data:image/png;base64," + image_base64(item)
        return "/plugin", {"session": f"bridge-{uuid.uuid4().hex}", "dataURL": url, "assetId": "bridge-remote",
                           "configJSON": json.dumps(dict(context.params)),
                           "categorySchema": [{"schemaId": cls.name, "modelClass": cls.name}
                                              for cls in spec.classes]}
