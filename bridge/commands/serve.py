"""`bridge serve`: the model over HTTP to every platform its manifest serves, in one process, supervised
workers (`--workers`), a reloading process for development (`--reload`), or on Ray Serve (`--ray`)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from bridge.commands.common import add_manifest_argument
from bridge.core.errors import UsageError
from bridge.core.manifest import default_manifest, load_manifest


def add(commands: argparse._SubParsersAction, port_type: type) -> None:
    parser = commands.add_parser("serve", help="serve the model over HTTP to every enabled platform")
    add_manifest_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                        "0.0.0.0 to be reachable from other machines)")
    parser.add_argument("--port", type=port_type, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="N supervised worker processes, each with the model loaded once; a worker that "
                             "dies or is stuck past limits.hard_limit is replaced (default: one process, "
                             "unsupervised)")
    parser.add_argument("--ray", action="store_true", help="deploy on Ray Serve (the `ray` extra): its HTTP "
                        "proxy listens on --host and --port, model replicas per the manifest's `ray` section")
    parser.add_argument("--address", default=None, help="with --ray: the Ray cluster to join "
                        "(e.g. 10.0.0.5:6379 or auto; default: start a local one)")
    parser.add_argument("--playground", action=argparse.BooleanOptionalAction, default=None,
                        help="the playground page at / (default: on when --host is a loopback address, since "
                             "it answers without credentials)")
    parser.add_argument("--reload", action="store_true",
                        help="for model development: restart when a .py or .yaml file changes in the "
                             "manifest's, the model's or the current folder")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    path = (args.manifest or default_manifest()).resolve()
    manifest = load_manifest(path)  # a broken manifest is reported before anything listens
    playground = args.playground if args.playground is not None else is_loopback(args.host)
    if args.ray:
        return _serve_on_ray(manifest, args, playground)
    if args.address:
        raise UsageError("--address names a Ray cluster and needs --ray")
    if args.workers:
        from bridge.serving.workers import serve as serve_workers

        return serve_workers(path, args.host, args.port, args.workers, args.log_level, args.log_format, playground)
    from bridge.serving.server import listen, run

    listening = listen(args.host, args.port)  # bound before the model loads: a busy port is reported at once
    # uvicorn says where it listens only when it binds the socket itself
    logging.getLogger("bridge").info("listening on http://%s:%d (API docs at /docs)", args.host, args.port)
    if args.reload:
        from bridge.serving import reload

        reload.serve(manifest, args.host, args.port, listening, args.log_level, args.log_format, playground)
        return 0
    load_error = run(manifest, args.host, args.port, log_level=args.log_level, playground=playground,
                     sock=listening)
    if load_error:
        print(f"bridge: {load_error}", file=sys.stderr)
        return 2
    return 0


def _serve_on_ray(manifest: object, args: argparse.Namespace, playground: bool) -> int:
    """`bridge serve --ray`: the same app as Ray Serve deployments (`bridge.serving.ray_serve`)."""
    try:
        from bridge.serving import ray_serve
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "ray":
            raise
        raise UsageError(f"serve --ray needs Ray Serve ({error}): pip install 'annotation-bridge[ray]'") from None
    return ray_serve.run(manifest, args.host, args.port, args.address, playground)


def is_loopback(host: str) -> bool:
    """Whether `host` is an address of this machine only (the playground answers without credentials)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
