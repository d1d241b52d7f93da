"""A Labelbox Foundry endpoint, ours or anyone's, called by the bridge: `bridge check URL --platform labelbox`
(`contract`) and remote models (`bridge.core.remote`): its features from the `model.yaml` named by
`model.remote.model_yaml`, one request per item (the image, or the text, as the last user message)."""

from __future__ import annotations

from typing import Any

import yaml

from adapters.labelbox import contract
from adapters.labelbox.read import spec_from_model_yaml
from bridge.core.model import Context, ModelSpec
from bridge.core.remote import image_base64
from bridge.platforms.probe import Probe, Problem
from bridge.platforms.protocol import Client


class LabelboxClient(Client):
    """Labelbox sends its secret as a bearer token (the base class's form)."""

    def check(self, probe: Probe) -> list[Problem]:
        return contract.check(probe)

    def remote_spec(self, remote: Any, http: Any) -> ModelSpec:
        if remote.model_yaml is None:
            raise ValueError("model.remote.model_yaml: a Labelbox endpoint does not list its features: name its "
                             "model.yaml")
        try:
            document = yaml.safe_load(remote.model_yaml.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"model.remote.model_yaml: cannot read {remote.model_yaml}: {error}") from None
        return spec_from_model_yaml(document, f"model.remote.model_yaml ({remote.model_yaml})")

    def remote_request(self, item: Any, context: Context, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        part = {"text": item} if isinstance(item, str) else {"image": image_base64(item)}
        return "", {"prompt": [{"role": "user", "parts": [part]}], **context.params}
