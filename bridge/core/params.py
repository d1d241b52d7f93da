"""A request's inference parameters: the manifest's `params` JSON Schema applied to what a request sends.

Resolved once per job, by the service: the schema's defaults under the request's values, validated, read-only.
A request without parameters gets the defaults, validated once for all (no schema walk per request).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jsonschema

from bridge.core.errors import InvalidInput


class InvalidParams(InvalidInput):
    """A request's parameters do not fit the schema (422): the platform may say where they came from."""


class Params:
    """The parameters schema of one manifest, ready to resolve requests' parameters against."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.properties: Mapping[str, Any] = schema.get("properties", {})
        self._validator = jsonschema.Draft202012Validator(schema)
        self._defaults: Mapping[str, Any] | None = None

    def resolve(self, given: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """Defaults under `given`, validated; 422 names the parameter. A parameter the schema does not declare
        is refused unless it sets `additionalProperties`.

        NaN and infinities (JSON's `NaN`, `Infinity`, or `1e400`) are refused first: NaN compares false with
        everything, so it would pass any `minimum`/`maximum` of the schema.
        """
        if not given and self._defaults is not None:
            return self._defaults
        if where := _non_finite(given):
            raise InvalidParams(f"invalid parameter {where}: not a finite number")
        given = given or {}
        if self.schema.get("additionalProperties", False) is False:
            unknown = sorted(set(given) - set(self.properties))
            if unknown:
                known = ", ".join(sorted(self.properties)) or "none"
                raise InvalidParams(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                                   f"{', '.join(unknown)}; this model's parameters: {known}")
        params = {k: v["default"] for k, v in self.properties.items() if isinstance(v, dict) and "default" in v}
        params.update(given)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(params))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "params"
            raise InvalidParams(f"invalid parameter {where}: {error.message}")
        resolved = MappingProxyType(params)
        if not given:
            self._defaults = resolved
        return resolved


def _non_finite(value: Any) -> str | None:
    """The path ("a.b.0") of the first NaN or infinite number in a JSON value, or None (iterative: request
    values may be nested deep)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "params"
        if isinstance(item, Mapping):
            stack += [(f"{where}.{k}" if where else str(k), v) for k, v in item.items()]
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}.{i}" if where else str(i), v) for i, v in enumerate(item)]
    return None


