"""`bridge`: serve a manifest's model, check a manifest, publish the manifest's JSON Schema, start a project.

Adapters add their own sub-commands (`bridge labelbox-manifest`, `bridge ango`, ...). A user's mistake (a bad
manifest, a model file that does not import, a model that fails to build, an option out of range) prints one
line and exits with status 2; a traceback means a bug of ours.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, create_model

from bridge import conversions, endpoint_check
from bridge.manifest import Manifest, ManifestError, accept_env_references, load_manifest
from bridge.observability import LOG_FORMATS, configure_logging
from bridge.platforms import Adapter, discover, enabled_adapters

LOG_LEVELS = ["debug", "info", "warning", "error"]
RELOAD = "BRIDGE_RELOAD"
"""How `serve --reload` tells its worker processes what to serve (they are fresh interpreters), as JSON."""
PROJECT_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "default.yaml"


class CommandError(Exception):
    """A mistake on the command line (a busy port, say): one line on stderr, exit status 2."""


def default_manifest() -> Path:
    """`manifests/default.yaml` in the current folder if there is one, else the project's own."""
    local = Path("manifests/default.yaml")
    return local if local.is_file() else PROJECT_MANIFEST


def add_manifest_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", nargs="?", type=Path, default=None,
                        help="the model's YAML manifest (default: manifests/default.yaml)")


def manifest_from(args: argparse.Namespace) -> Manifest:
    return load_manifest(args.manifest or default_manifest())


def serve(args: argparse.Namespace) -> int:
    if args.ray:
        return serve_on_ray(args)
    if args.address:
        raise CommandError("--address names a Ray cluster and needs --ray")
    if args.workers:
        from bridge.workers import serve as serve_workers

        return serve_workers(args.manifest or default_manifest(), args.host, args.port, args.workers,
                             args.log_level, args.log_format, wants_playground(args))
    from bridge.server import run

    path = (args.manifest or default_manifest()).resolve()
    manifest = load_manifest(path)  # a broken manifest is reported before anything listens
    playground = wants_playground(args)
    try:  # bound before the model loads: a busy port is reported at once
        listening = socket.create_server((args.host, args.port))
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {os.strerror(error.errno)}") from None
    # uvicorn says where it listens only when it binds the socket itself
    logging.getLogger("bridge").info("listening on http://%s:%d (API docs at /docs)", args.host, args.port)
    if args.reload:
        return serve_reloading(args, manifest, playground, listening)
    load_error = run(manifest, args.host, args.port, log_level=args.log_level, playground=playground,
                     sock=listening)
    if load_error:
        print(f"bridge: {load_error}", file=sys.stderr)
        return 2
    return 0


def serve_on_ray(args: argparse.Namespace) -> int:
    """`bridge serve --ray`: the same app as Ray Serve deployments (`bridge.ray_serve`)."""
    try:
        from bridge import ray_serve
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "ray":
            raise
        raise CommandError(f"serve --ray needs Ray Serve ({error}): pip install 'annotation-bridge[ray]'") from None
    return ray_serve.run(manifest_from(args), args.host, args.port, args.address, wants_playground(args))


def wants_playground(args: argparse.Namespace) -> bool:
    """--playground, else on for a loopback --host only."""
    return args.playground if args.playground is not None else is_loopback(args.host)


def is_loopback(host: str) -> bool:
    """Whether `host` is an address of this machine only (the playground answers without credentials)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def stopper(server: Any) -> Callable[[], None]:
    """A call that ends `server` once it has started: asked to exit during its start-up, uvicorn skips its
    shutdown, and the app's lifespan is cancelled with a traceback (a model that fails at once)."""

    def stop() -> None:
        if server.started:
            server.should_exit = True
        else:
            asyncio.get_running_loop().call_later(0.05, stop)

    return stop


def serve_reloading(args: argparse.Namespace, manifest: Manifest, playground: bool, listening: socket.socket) -> int:
    """`serve --reload`: uvicorn's reloader runs the app in a fresh worker process, again after each change to
    a .py or .yaml file, so the app is named by an import string and what to serve travels in the environment."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    os.environ[RELOAD] = json.dumps({"manifest": str(manifest.path), "log_level": args.log_level,
                                     "log_format": args.log_format, "playground": playground})
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not a line per file written nearby
    config = uvicorn.Config("bridge.cli:reloaded_app", factory=True, host=args.host, port=args.port,
                            log_level=args.log_level, log_config=None, access_log=False, reload=True,
                            reload_dirs=watched_folders(manifest), reload_includes=["*.py", "*.yaml", "*.yml"])
    ChangeReload(config, target=uvicorn.Server(config).run, sockets=[listening]).run()
    return 0


def reloaded_app() -> Any:
    """The app of `bridge serve --reload`, built in each fresh worker process.

    A manifest broken by an edit prints its one line and the reloader waits for the next change; a model that
    fails to load keeps the worker answering 503 with the reason (`/readyz`) until the next change.
    """
    settings = json.loads(os.environ[RELOAD])
    configure_logging(settings["log_level"], settings["log_format"])
    from bridge.app import create_app

    try:
        return create_app(load_manifest(settings["manifest"]), playground=settings["playground"])
    except ManifestError as error:
        print(f"bridge: {error}", file=sys.stderr)
        sys.exit(2)


def watched_folders(manifest: Manifest) -> list[str]:
    """The manifest's folder and the model file's (uvicorn also watches the current folder)."""
    folders = {manifest.base_dir}
    target = manifest.model.factory.rpartition(":")[0]
    if target.endswith(".py"):
        folders.add((manifest.base_dir / target).resolve().parent)
    return [str(folder) for folder in sorted(folders)]


def check(args: argparse.Namespace) -> int:
    """Load the manifest and the model; print each platform's warnings. A URL is an endpoint to check."""
    if endpoint_check.is_url(args.manifest):
        return endpoint_check.run(args)
    args.manifest = Path(args.manifest) if args.manifest else None
    manifest = manifest_from(args)
    platforms = enabled_adapters(manifest, discover())
    model = manifest.build_model()
    print(f"{manifest.where()}: {manifest.name} {manifest.version}, {len(model.spec.classes)} classes, "
          f"{model.spec.input} input")
    if not platforms:
        print("  no platform is served: add a section under `platforms` (v7, labelbox, ango)")
    for name, (adapter, section) in platforms.items():
        warnings = adapter.check(model.spec, section, manifest)
        print(f"  {name}: {'ok' if not warnings else f'{len(warnings)} warning(s)'}")
        for warning in warnings:
            print(f"    - {warning}")
    return 0


def init(args: argparse.Namespace) -> int:
    """Write a starter model and manifest, and say what to run next."""
    from bridge.scaffold import write_starter

    try:
        model, manifest = write_starter(args.folder)
    except FileExistsError as error:
        print(f"bridge: {error}", file=sys.stderr)
        return 2
    bridge = sys.argv[0] if Path(sys.argv[0]).name == "bridge" else "bridge"  # e.g. .venv/bin/bridge
    print(f"wrote {model} and {manifest}; next:\n"
          f"  {bridge} check {manifest}\n"
          f"  {bridge} serve {manifest} --reload      # restarts when you edit {model.name} or the manifest")
    return 0


def formats(args: argparse.Namespace) -> int:
    """What every installed platform receives of each class kind: the conversion matrix, as markdown."""
    adapters = discover()
    sys.stdout.write(conversions.markdown({name: adapters[name].conversions for name in sorted(adapters)}))
    return 0


def manifest_schema(args: argparse.Namespace) -> int:
    """The manifest's JSON Schema, with each installed platform's section, for editors."""
    print(json.dumps(full_manifest_schema(discover()), indent=2))
    return 0


def full_manifest_schema(adapters: dict[str, Adapter]) -> dict:
    """The manifest's schema with each adapter's section; any constrained value may be a `${NAME}`."""
    platforms = create_model(
        "Platforms",
        __config__=ConfigDict(extra="forbid"),
        **{name: (adapter.section | None, None) for name, adapter in sorted(adapters.items())},
    )
    full = create_model("Manifest", __base__=Manifest, platforms=(platforms, None))
    return accept_env_references(full.model_json_schema())


def port_number(text: str) -> int:
    """argparse type: a TCP port, so a mistyped one is a usage error, not a traceback from the socket."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def build_parser(adapters: dict[str, Adapter]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Serve one model to annotation platforms.")
    parser.add_argument("--version", action="version", version=f"bridge {version('annotation-bridge')}")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--log-format", default="text", choices=list(LOG_FORMATS),
                        help="text, or json: one JSON object per line, for log shippers")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="serve the model over HTTP to every enabled platform")
    add_manifest_argument(serve_parser)
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                              "0.0.0.0 to be reachable from other machines)")
    serve_parser.add_argument("--port", type=port_number, default=8000, help="TCP port (default 8000)")
    serve_parser.add_argument("--workers", type=int, default=0, metavar="N",
                              help="N supervised worker processes, each with the model loaded once; a worker "
                              "that dies or is stuck past limits.hard_limit is replaced (default: one process, "
                              "unsupervised)")
    serve_parser.add_argument("--ray", action="store_true", help="deploy on Ray Serve (the `ray` extra): "
                              "its HTTP proxy listens on --host and --port, model replicas per the manifest's "
                              "`ray` section")
    serve_parser.add_argument("--address", default=None, help="with --ray: the Ray cluster to join "
                              "(e.g. 10.0.0.5:6379 or auto; default: start a local one)")
    serve_parser.add_argument("--playground", action=argparse.BooleanOptionalAction, default=None,
                              help="the playground page at / (default: on when --host is a loopback address, "
                                   "since it answers without credentials)")
    serve_parser.add_argument("--reload", action="store_true",
                              help="for model development: restart when a .py or .yaml file changes in the "
                                   "manifest's, the model's or the current folder")
    serve_parser.set_defaults(func=serve)

    check_parser = commands.add_parser("check", help="load a manifest and its model; list lossy conversions; "
                                                     "or check a running endpoint (a URL) against a platform")
    check_parser.add_argument("manifest", nargs="?", default=None, metavar="MANIFEST|URL",
                              help="the model's YAML manifest (default: manifests/default.yaml), or the URL of an "
                                   "endpoint to check (with --platform)")
    endpoint_check.add_arguments(check_parser, sorted(adapters))
    check_parser.set_defaults(func=check)

    init_parser = commands.add_parser("init", help="write a starter model.py and manifest.yaml to start from")
    init_parser.add_argument("folder", nargs="?", type=Path, default=Path("."),
                             help="where to write them (default: the current folder)")
    init_parser.set_defaults(func=init)

    schema_parser = commands.add_parser("manifest-schema", help="print the manifest's JSON Schema")
    schema_parser.set_defaults(func=manifest_schema)

    formats_parser = commands.add_parser("formats", help="print what each platform receives of each class kind")
    formats_parser.set_defaults(func=formats)

    from bridge import prelabel  # `bridge prelabel`: the model over a dataset, into each platform's import files

    prelabel.add_command(commands, adapters)

    for adapter in adapters.values():
        adapter.add_commands(commands)
    for command in commands.choices.values():  # `bridge serve --log-level debug` works as well
        command.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
        command.add_argument("--log-format", choices=list(LOG_FORMATS), default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    adapters = discover()
    args = build_parser(adapters).parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        return args.func(args)
    except (ManifestError, CommandError, argparse.ArgumentTypeError) as error:
        print(f"bridge: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
