"""`bridge ango`: the model as an Ango model plugin over the SDK's Socket.IO connector (`adapters.ango.hub`),
reconnecting whenever the hub goes away; `--batch` for a Batch Model plugin."""

from __future__ import annotations

import argparse
import importlib.util

from adapters.ango import hub
from adapters.ango.convert import PLATFORM
from adapters.ango.plugin import INSTALL
from adapters.ango.section import AngoSection
from bridge.commands.common import add_manifest_argument, manifest_from
from bridge.core.errors import UsageError
from bridge.core.manifest import ManifestError


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ango", help="run the model as an iMerit Ango model plugin, connected to the "
                                              "Ango hub over Socket.IO")
    add_manifest_argument(parser)
    parser.add_argument("--batch", action="store_true", help="run as a Batch Model plugin: each run "
                        "pre-labels the project's unlabelled assets (adapters.ango.batch)")
    parser.set_defaults(func=run_hub)


def run_hub(args: argparse.Namespace) -> int:
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, AngoSection)
    for key, env in (("plugin_id", "ANGO_PLUGIN_ID"), ("secret", "ANGO_PLUGIN_SECRET")):
        if not getattr(section, key):
            raise ManifestError(f"{manifest.where()}: platforms.{PLATFORM}.{key} is empty: set it from the "
                                f"environment, e.g. `{key}: ${{{env}}}`, and export {env}")
    if importlib.util.find_spec("imerit_ango") is None:
        raise UsageError(f"bridge ango: {INSTALL}")
    return hub.serve(manifest, section, batch=args.batch)
