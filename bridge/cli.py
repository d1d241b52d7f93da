"""`bridge`: serve a manifest's model, check a manifest, publish the manifest's JSON Schema.

Adapters add their own sub-commands (`bridge labelbox-manifest`, `bridge ango`, ...).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

from pydantic import ConfigDict, create_model

from bridge import conversions, endpoint_check
from bridge.manifest import Manifest, ManifestError, load_manifest
from bridge.observability import LOG_FORMATS, configure_logging
from bridge.platforms import Adapter, discover, enabled_adapters

LOG_LEVELS = ["debug", "info", "warning", "error"]
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
    import uvicorn

    from bridge.app import create_app

    app = create_app(manifest_from(args), playground=wants_playground(args))
    try:  # bound before the model loads: a busy port is reported at once
        listening = socket.create_server((args.host, args.port))
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {os.strerror(error.errno)}") from None
    # logging as `main` configured it (uvicorn's lines too); the request line replaces uvicorn's access log
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           log_config=None, access_log=False))
    app.state.stop = lambda: setattr(server, "should_exit", True)  # a model that fails to load ends the server
    server.run(sockets=[listening])
    if app.state.load_error:
        print(f"bridge: {app.state.load_error}", file=sys.stderr)
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
    platforms = create_model(
        "Platforms",
        __config__=ConfigDict(extra="forbid"),
        **{name: (adapter.section | None, None) for name, adapter in sorted(adapters.items())},
    )
    full = create_model("Manifest", __base__=Manifest, platforms=(platforms, None))
    return full.model_json_schema()


def build_parser(adapters: dict[str, Adapter]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Serve one model to annotation platforms.")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--log-format", default="text", choices=list(LOG_FORMATS),
                        help="text, or json: one JSON object per line, for log shippers")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="serve the model over HTTP to every enabled platform")
    add_manifest_argument(serve_parser)
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                              "0.0.0.0 to be reachable from other machines)")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--ray", action="store_true", help="deploy on Ray Serve (the `ray` extra): "
                              "its HTTP proxy listens on --host and --port, model replicas per the manifest's "
                              "`ray` section")
    serve_parser.add_argument("--address", default=None, help="with --ray: the Ray cluster to join "
                              "(e.g. 10.0.0.5:6379 or auto; default: start a local one)")
    serve_parser.add_argument("--playground", action=argparse.BooleanOptionalAction, default=None,
                              help="the playground page at / (default: on when --host is a loopback address, "
                                   "since it answers without credentials)")
    serve_parser.set_defaults(func=serve)

    check_parser = commands.add_parser("check", help="load a manifest and its model; list lossy conversions; "
                                                     "or check a running endpoint (a URL) against a platform")
    check_parser.add_argument("manifest", nargs="?", default=None, metavar="MANIFEST|URL",
                              help="the model's YAML manifest (default: manifests/default.yaml), or the URL of an "
                                   "endpoint to check (with --platform)")
    endpoint_check.add_arguments(check_parser, sorted(adapters))
    check_parser.set_defaults(func=check)

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
