"""What an adapter implements: one platform's dialect, and apart from it, its client role.

The dialect (`Adapter`) is everything the bridge says and hears on one platform: its manifest section, how the
platform proves itself (`auth`), its routes (each turns a request into a `Job` and answers through the one
answer path, `bridge.core.pipeline`), its answer writer and the reader of that form, its conversion table,
the check of a model against the platform, its error form, and its file import (`bridge prelabel`). The
client role (`Client`), offered as `Adapter.client`, is what the bridge needs to call an endpoint that speaks
the dialect: `bridge check URL` and remote models.

Adapters are found through the `bridge.adapters` entry-point group (`bridge.platforms.registry`), so the core
names none of them and another package can add a platform::

    [project.entry-points."bridge.adapters"]
    cvat = "my_package.cvat:adapter"
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bridge.core import conversions
from bridge.core.conversions import Table
from bridge.core.errors import BridgeError
from bridge.core.manifest import Manifest, PlatformSection
from bridge.core.model import Context, ModelSpec
from bridge.core.pipeline import Writer
from bridge.core.predictions import Prediction
from bridge.core.service import Result
from bridge.platforms import auth
from bridge.platforms.auth import Auth
from bridge.platforms.export import Exporter, ExportSetup
from bridge.platforms.probe import Probe, Problem


@dataclass(frozen=True)
class Route:
    """One HTTP route of a platform, as its adapter declares it; serving builds the FastAPI route.

    `endpoint(body, service)` (or `endpoint(service)` without a `request` model) returns the answer as a
    JSON-able value; every failure it raises is answered in the platform's error form (`Adapter.error_body`).
    """

    method: str
    path: str
    endpoint: Callable[..., Awaitable[Any]]
    request: type[BaseModel] | None = None
    response: Any = None
    summary: str = ""
    params_at: tuple[str, ...] | None = None
    """Where the model's parameters sit in the request body (e.g. `("params",)`), for the OpenAPI schema."""
    public: bool = False
    """Answers without the platform's credentials (Label Studio posts webhooks without the backend's)."""


class Client:
    """An adapter's client role: calling an endpoint that speaks the platform's dialect, ours or anyone's."""

    def secret_headers(self, secret: str) -> dict[str, str]:
        """The headers that carry the platform's secret to an endpoint (`--secret`, a remote's `secret`)."""
        return {"Authorization": f"Bearer {secret}"}

    def check(self, probe: Probe) -> list[Problem]:
        """How the endpoint at `probe.url` breaks the platform's contract, found by calling it."""
        raise NotImplementedError

    def remote_spec(self, remote: Any, http: Any) -> ModelSpec:
        """The classes of a remote endpoint, read once at start-up with `http` (`bridge.core.remote.Bounded`:
        `http.get(url)` answers a `Reply`, bounded in time and bytes)."""
        raise NotImplementedError

    def remote_request(self, item: Any, context: Context, spec: ModelSpec, remote: Any) -> tuple[str, Any]:
        """(path after the remote's URL, JSON body) asking a remote endpoint about `item` (an RGB image array or
        a text); its answer is read back by the adapter's `read_answer`."""
        raise NotImplementedError


class Adapter:
    """A platform's dialect. Subclass it and declare what the platform has; the defaults offer nothing."""

    name: str = ""
    title: str = ""
    """The platform's name for people, e.g. "V7 Darwin"; groups its routes in /docs."""
    section: type[PlatformSection] = PlatformSection
    """The pydantic model of this platform's manifest section."""
    conversions: Table = {}
    """What each class kind and aspect of a prediction becomes on this platform (`bridge.core.conversions`)."""
    error_model: type[BaseModel] | None = None
    """The body of this platform's error answers, for the OpenAPI schema (default `{"error": ...}`)."""
    client: Client | None = None
    """How to call an endpoint of this platform (`bridge check URL`, remote models); None: it cannot."""

    def auth(self, section: PlatformSection) -> Auth:
        """How the platform proves itself on this adapter's routes."""
        return auth.none()

    def error_body(self, error: BridgeError) -> Any:
        """This platform's error form (the status is the error's); `{"error": message}` and the error's
        fields by default."""
        return {"error": error.message, **error.fields}

    def routes(self, section: PlatformSection) -> list[Route]:
        """HTTP routes under the section's `base_path`, mounted by `bridge serve` when the section is present."""
        return []

    def write_answer(self, result: Result, spec: ModelSpec, section: PlatformSection, manifest: Manifest,
                     run: Any = None) -> Any:
        """The platform's answer (JSON-able) for a job's result, as its route sends it: pure, no I/O, called on
        a worker thread. `run` is what only one run knows (Ango's class mapping), in the adapter's own type."""
        raise NotImplementedError(f"{self.name} does not write answers")

    def writer(self, section: PlatformSection, spec: ModelSpec, manifest: Manifest, run: Any = None) -> Writer:
        """`write_answer` for the answer path (`bridge.core.pipeline.answer`)."""
        return Writer(self.name, self.conversions, functools.partial(
            self.write_answer, spec=spec, section=section, manifest=manifest, run=run))

    def read_answer(self, answer: Any, spec: ModelSpec, section: PlatformSection, size: tuple[int, int] | None = None,
                    text: str | None = None) -> list[Prediction]:
        """The neutral predictions of an answer in this platform's form: the inverse of `write_answer`, exact
        where the conversion table says exact. `size` (height, width) and `text` are the item's."""
        raise NotImplementedError(f"{self.name} does not read answers")

    def check(self, spec: ModelSpec, section: PlatformSection, manifest: Manifest) -> list[str]:
        """What this platform loses of the model (from the conversion table), and a missing secret."""
        found = conversions.losses(self.conversions, spec, conversions.possible(spec),
                                   manifest.geometry.simplify_tolerance)
        scheme = self.auth(section)
        missing = scheme.missing(manifest.variable_of(scheme.key))
        return found + ([missing] if missing else [])

    def exporter(self, section: PlatformSection, setup: ExportSetup) -> Exporter | None:
        """The platform's import format for `bridge prelabel`, or None when it has no file import."""
        return None
