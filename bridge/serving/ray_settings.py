"""The manifest's `ray` section: how `bridge serve --ray` deploys the model on Ray Serve.

Validated here, where it is used (importing this module does not import Ray): by `bridge serve --ray`, by
`bridge check` and in the published manifest schema.
"""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator

from bridge.core.manifest import Manifest, ManifestError, Strict, describe


class RayScaling(Strict):
    """How `bridge serve --ray` deploys the model on Ray Serve: its replicas (fixed, or autoscaled between
    `min_replicas` and `max_replicas`) and what each reserves, and the ingress that speaks the platforms."""

    replicas: int = Field(1, gt=0, description="Model replicas, each loading the model once (when "
                                               "autoscaling: the count it starts with, min_replicas by default).")
    min_replicas: int | None = Field(None, ge=0, description="Autoscale down to this many (1 by default; "
                                                             "needs max_replicas).")
    max_replicas: int | None = Field(None, gt=0, description="Autoscale up to this many replicas.")
    max_ongoing_requests: int | None = Field(
        None, gt=0, description="Requests one model replica takes at once (default limits.batch_size, so "
                                "that a whole batch can gather).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each model replica reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each model replica reserves.")
    ingress_replicas: int = Field(1, gt=0, description="Replicas of the ingress (HTTP routes, decoding, "
                                                       "conversions).")
    ingress_num_cpus: float = Field(0.5, ge=0, description="CPUs each ingress replica reserves.")

    @property
    def min_replicas_or_default(self) -> int:
        return 1 if self.min_replicas is None else self.min_replicas

    @model_validator(mode="after")
    def _bounds(self) -> RayScaling:
        if self.max_replicas is None:
            if self.min_replicas is not None:
                raise ValueError("min_replicas needs max_replicas")
            return self
        low = self.min_replicas_or_default
        if low > self.max_replicas:
            raise ValueError(f"min_replicas ({low}) is above max_replicas ({self.max_replicas})")
        if "replicas" in self.model_fields_set and not low <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas ({self.replicas}) must lie within min_replicas ({low}) and "
                             f"max_replicas ({self.max_replicas})")
        return self

    @classmethod
    def of(cls, manifest: Manifest) -> RayScaling:
        """The manifest's `ray` section, validated; a mistake names the file and the key."""
        try:
            return cls.model_validate(manifest.ray)
        except ValidationError as error:
            raise ManifestError(describe(error, manifest.where(), prefix="ray")) from None
