"""`bridge serve --ray`: the same app on Ray Serve, past one machine.

One Serve application. When nothing asks for a second deployment (no cross-request batching, `limits.batch_wait`
0; no GPU; no `ingress_replicas`), it is one deployment, `Ingress`, whose replicas (the manifest's `ray`
section: fixed or autoscaled, and what each reserves) each run `bridge serve`'s app with its own model: a
request never leaves the replica that reads it, as under `bridge serve --workers`. Otherwise, two deployments:

- `Model`: the manifest's `ray` section sets its replicas (fixed, or autoscaled) and what each reserves. Each
  replica loads the model once and runs nothing but its prediction, batched across requests (and across
  ingress replicas) by Ray Serve's own `serve.batch`, `limits.batch_size` items waiting at most
  `limits.batch_wait` s. One batch runs at a time per replica: scale out with replicas.
- `Ingress`: the very app of `bridge serve` (`bridge.serving.app.create_app`), so every HTTP platform route, its
  authentication, request validation, decoding and conversions run exactly as they do there. Its model is a
  `RemoteModel`, which forwards to the `Model` deployment's handle.

Only `bridge serve --ray` (or a Serve config naming `bridge.serving.ray_serve:app_builder`) imports this module: the
core never imports Ray. The manifest is read where the application is built (the CLI's process, or the one
that runs `app_builder`), so its `${NAME}` secrets come from that environment and reach the replicas with the
deployments' arguments, inside the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from bridge.core.errors import UsageError
from bridge.core.loading import build_model
from bridge.core.manifest import Manifest, default_manifest, load_manifest
from bridge.core.model import (
    Context,
    ModelSpec,
    is_async,
    predict_batch,
    predict_batch_async,
)
from bridge.core.predictions import Prediction
from bridge.platforms.registry import discover
from bridge.serving.app import create_app
from bridge.serving.ray_settings import RayScaling

log = logging.getLogger("bridge")


class RemoteModel:
    """The model interface (`spec`, async `predict_batch`) over the `Model` deployment's handle.

    Each item is a call of its own, so that `serve.batch` gathers items of concurrent requests (and a video's
    frames) into the model's batches. The model's own exception comes back as itself, not wrapped by Ray, so
    the core reports it as it does in one process.
    """

    def __init__(self, handle: DeploymentHandle, spec: ModelSpec) -> None:
        self.handle = handle
        self.spec = spec

    async def predict_batch(self, items: list[Any], contexts: list[Context]) -> list[list[Prediction]]:
        calls = [self.handle.predict.remote(item, context) for item, context in zip(items, contexts)]
        try:
            return list(await asyncio.gather(*calls))
        except RayTaskError as error:
            raise error.cause from None


@serve.deployment(name="Model")
class ModelDeployment:
    """One replica: the model, loaded once; `predict` is batched across requests by `serve.batch`."""

    def __init__(self, manifest: Manifest) -> None:
        self.model = build_model(manifest, discover())
        self._async = is_async(self.model)
        self.predict.set_max_batch_size(manifest.limits.batch_size)
        self.predict.set_batch_wait_timeout_s(manifest.limits.batch_wait)

    def spec(self) -> ModelSpec:
        return self.model.spec

    @serve.batch
    async def predict(self, items: list[Any], contexts: list[Context]) -> list[list[Prediction]]:
        if self._async:
            return await predict_batch_async(self.model, items, contexts)
        return await asyncio.to_thread(predict_batch, self.model, items, contexts)


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """`bridge serve`'s app, its model the `Model` deployment."""

    def __init__(self, manifest: Manifest, model: DeploymentHandle | None, playground: bool) -> None:
        self.manifest = manifest
        self.model = model
        self.playground = playground

    async def __serve_build_asgi_app__(self) -> Any:
        if self.model is None:  # one deployment: the model in this replica
            return create_app(self.manifest, playground=self.playground)
        remote = RemoteModel(self.model, await self.model.spec.remote())
        return create_app(ingress_manifest(self.manifest), playground=self.playground, load_model=lambda: remote)


def one_deployment(manifest: Manifest) -> bool:
    """Whether the ingress holds the model itself (no hop to a model replica per request): unless requests are
    batched across replicas (`limits.batch_wait`), the model wants GPUs the ingress need not hold, or the
    manifest sets the ingress's replicas apart from the model's."""
    scaling = RayScaling.of(manifest)
    return (manifest.limits.batch_wait == 0 and scaling.num_gpus == 0
            and "ingress_replicas" not in scaling.model_fields_set)


def ingress_manifest(manifest: Manifest) -> Manifest:
    """The manifest as the ingress runs it: it batches nothing itself (the `Model` deployment does), and lets
    as many predictions through at once as the model replicas take."""
    scaling = RayScaling.of(manifest)
    capacity = (scaling.max_replicas or scaling.replicas) * max_ongoing_requests(manifest)
    limits = manifest.limits.model_copy(update={"batch_wait": 0.0, "concurrency": capacity})
    return manifest.model_copy(update={"limits": limits})


def max_ongoing_requests(manifest: Manifest) -> int:
    return RayScaling.of(manifest).max_ongoing_requests or manifest.limits.batch_size


def model_options(manifest: Manifest) -> dict[str, Any]:
    """`Model`'s deployment options from the manifest's `ray` section."""
    scaling = RayScaling.of(manifest)
    options: dict[str, Any] = {
        "max_ongoing_requests": max_ongoing_requests(manifest),
        "ray_actor_options": {"num_cpus": scaling.num_cpus, "num_gpus": scaling.num_gpus},
    }
    if scaling.max_replicas is None:
        options["num_replicas"] = scaling.replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas_or_default,
            "max_replicas": scaling.max_replicas,
            "initial_replicas": scaling.replicas if "replicas" in scaling.model_fields_set else None,
        }
    return options


def build_app(manifest: Manifest, playground: bool = False) -> serve.Application:
    """The Serve application: `Ingress` (with the playground at `/` if asked: it answers without credentials),
    holding the model (`one_deployment`) or in front of `Model`."""
    if one_deployment(manifest):  # the bridge's own admission queues, by the deadline: let Ray hand it requests
        limits = manifest.limits
        options = {**model_options(manifest), "max_ongoing_requests": limits.concurrency + limits.max_queue}
        return Ingress.options(**options).bind(manifest, None, playground)
    model = ModelDeployment.options(**model_options(manifest)).bind(manifest)
    scaling = RayScaling.of(manifest)
    ingress = Ingress.options(num_replicas=scaling.ingress_replicas,
                              ray_actor_options={"num_cpus": scaling.ingress_num_cpus})
    return ingress.bind(manifest, model, playground)


def app_builder(args: dict[str, str]) -> serve.Application:
    """For a Serve config (`import_path: bridge.serving.ray_serve:app_builder`, `args: {manifest: PATH}`), as in a
    KubeRay `RayService`; without `manifest`, `bridge serve`'s default one. No playground: a cluster's proxy
    is not a loopback address."""
    return build_app(load_manifest(args.get("manifest") or default_manifest()))


def run(manifest: Manifest, host: str, port: int, address: str | None = None, playground: bool = False) -> int:
    """Deploy on the cluster at `address` (else on a local one, started here) until interrupted; then remove
    the application from that cluster, or stop the local one."""
    try:
        ray.init(address=address, logging_level=logging.getLogger().level)
    except ConnectionError as error:
        raise UsageError(f"cannot join the Ray cluster at {address}: {error}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(manifest, playground), name=manifest.name, route_prefix="/")
        log.info("serving %s on Ray Serve at http://%s:%d (%s)", manifest.name, host, port,
                 f"cluster {address}" if address else "local cluster")
        stop.wait()
    finally:
        if address is not None:  # a local cluster goes as a whole
            serve.delete(manifest.name)
        ray.shutdown()
    return 0
