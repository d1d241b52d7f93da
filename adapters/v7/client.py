"""A V7 BYOM endpoint, ours or anyone's, called by the bridge: `bridge check URL --platform v7` (`contract`)
and remote models (`bridge.core.remote`): its classes from `/classes`, one `/infer` per item.

`/classes` types map back to class kinds (`polygon` and V7's mask types read as polygon classes); skeleton
classes are left out, since `/classes` does not name their nodes (logged). Radio and checklist classes do not
survive the trip: V7 lists their options as plain tags, so they come back as tag classes.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters.v7 import contract
from adapters.v7.section import SECRET_HEADER
from bridge.core.model import ClassSpec, Context, ModelSpec
from bridge.core.remote import image_base64
from bridge.platforms.probe import Probe, Problem
from bridge.platforms.protocol import Client

log = logging.getLogger("bridge")

KIND_OF_TYPE = {"bounding_box": "box", "polygon": "polygon", "mask": "polygon", "raster_layer": "polygon",
                "keypoint": "point", "line": "line", "ellipse": "ellipse", "cuboid": "cuboid",
                "directional_vector": "vector", "tag": "tag"}


class V7Client(Client):
    def secret_headers(self, secret: str) -> dict[str, str]:
        return {SECRET_HEADER: secret}

    def check(self, probe: Probe) -> list[Problem]:
        return contract.check(probe)

    def remote_spec(self, remote: Any, http: Any) -> ModelSpec:
        response = http.get(remote.url.rstrip("/") + "/classes")
        if response.status_code != 200:
            raise ValueError(f"model.remote: GET {remote.url}/classes answered {response.status_code}: "
                             f"{response.text[:200]}")
        classes = []
        try:
            for entry in response.json():
                kind = KIND_OF_TYPE.get(entry.get("type"))
                if kind is None:
                    log.warning("remote V7 class %r (%s) is left out: no neutral kind reads it back",
                                entry.get("name"), entry.get("type"))
                else:
                    classes.append(ClassSpec(name=entry["name"], kind=kind))
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            raise ValueError(f"model.remote: {remote.url}/classes is not a list of {{name, type}}: "
                             f"{type(error).__name__}: {error} (`bridge check {remote.url} --platform v7` says "
                             "more)") from None
        if not classes:
            raise ValueError(f"model.remote: {remote.url}/classes lists no class the bridge can read")
        return ModelSpec(classes=classes)

    def remote_request(self, item: Any, context: Context, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        return "/infer", {"image": {"base64": image_base64(item)}, "params": dict(context.params)}
