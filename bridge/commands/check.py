"""`bridge check`: load a manifest and its model and say what each platform loses of it; or, given a URL,
check a running endpoint against a platform's contract (`bridge.commands.check_url`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge.commands import check_url
from bridge.commands.common import manifest_from
from bridge.core.loading import build_model
from bridge.platforms.protocol import Adapter
from bridge.platforms.registry import Platforms
from bridge.serving.ray_settings import RayScaling


def add(commands: argparse._SubParsersAction, adapters: dict[str, Adapter]) -> None:
    parser = commands.add_parser("check", help="load a manifest and its model; list lossy conversions; or check "
                                               "a running endpoint (a URL) against a platform")
    parser.add_argument("manifest", nargs="?", default=None, metavar="MANIFEST|URL",
                        help="the model's YAML manifest (default: manifests/default.yaml), or the URL of an "
                             "endpoint to check (with --platform)")
    check_url.add_arguments(parser, sorted(name for name, a in adapters.items() if a.client is not None))
    parser.set_defaults(func=lambda args: check(args, adapters))


def check(args: argparse.Namespace, adapters: dict[str, Adapter]) -> int:
    """Load the manifest and the model; print each platform's warnings. A URL is an endpoint to check."""
    if check_url.is_url(args.manifest):
        return check_url.run(args, adapters)
    args.manifest = Path(args.manifest) if args.manifest else None
    manifest = manifest_from(args)
    platforms = Platforms.of(manifest, adapters)
    RayScaling.of(manifest)
    model = build_model(manifest, adapters)
    print(f"{manifest.where()}: {manifest.name} {manifest.version}, {len(model.spec.classes)} classes, "
          f"{model.spec.input} input")
    if not platforms.served:
        print(f"  no platform is served: add a section under `platforms` ({', '.join(sorted(adapters))})")
    for name, (adapter, section) in platforms.served.items():
        warnings = adapter.check(model.spec, section, manifest)
        print(f"  {name}: {'ok' if not warnings else f'{len(warnings)} warning(s)'}")
        for warning in warnings:
            print(f"    - {warning}")
    return 0
