"""`bridge`: serve a manifest's model, check a manifest, publish the manifest's JSON Schema.

Adapters add their own sub-commands (`bridge labelbox-manifest`, `bridge ango`, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ConfigDict, create_model

from bridge.manifest import Manifest, ManifestError, accept_env_references, load_manifest
from bridge.platforms import Adapter, discover

LOG_LEVELS = ["debug", "info", "warning", "error"]
PROJECT_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "default.yaml"


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
    import uvicorn

    from bridge.app import create_app

    app = create_app(manifest_from(args))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def check(args: argparse.Namespace) -> int:
    """Load the manifest and the model; print each platform's warnings."""
    from bridge.app import enabled_adapters

    manifest = manifest_from(args)
    platforms = enabled_adapters(manifest, discover())
    model = manifest.build_model()
    print(f"{manifest.where()}: {manifest.name} {manifest.version}, {len(model.spec.classes)} classes, "
          f"{model.spec.input} input")
    for name, (adapter, section) in platforms.items():
        warnings = adapter.check(model.spec, section)
        print(f"  {name}: {'ok' if not warnings else f'{len(warnings)} warning(s)'}")
        for warning in warnings:
            print(f"    - {warning}")
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


def build_parser(adapters: dict[str, Adapter]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Serve one model to annotation platforms.")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="serve the model over HTTP to every enabled platform")
    add_manifest_argument(serve_parser)
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                              "0.0.0.0 to be reachable from other machines)")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.set_defaults(func=serve)

    check_parser = commands.add_parser("check", help="load a manifest and its model; list lossy conversions")
    add_manifest_argument(check_parser)
    check_parser.set_defaults(func=check)

    schema_parser = commands.add_parser("manifest-schema", help="print the manifest's JSON Schema")
    schema_parser.set_defaults(func=manifest_schema)

    for adapter in adapters.values():
        adapter.add_commands(commands)
    for command in commands.choices.values():  # `bridge serve --log-level debug` works as well
        command.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    adapters = discover()
    args = build_parser(adapters).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ManifestError as error:
        print(f"bridge: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
