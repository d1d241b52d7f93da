"""`bridge labelstudio-config`: the label config that holds every class of the model, to create a Label
Studio project with (`mapping.label_config`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.labelstudio.convert import PLATFORM
from adapters.labelstudio.mapping import label_config
from adapters.labelstudio.section import LabelStudioSection
from bridge.commands.common import add_manifest_argument, manifest_from
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.platforms.registry import Platforms, discover
from bridge.platforms.startup import start_service


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("labelstudio-config", help="print a Label Studio label config holding every "
                                                            "class of the model")
    add_manifest_argument(parser)
    parser.set_defaults(func=print_config)


def print_config(args: argparse.Namespace) -> int:
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, LabelStudioSection)
    sys.stdout.write(label_config(asyncio.run(_spec(manifest)), section))
    return 0


async def _spec(manifest: Manifest) -> ModelSpec:
    """The model's classes, from the model built as every command builds it."""
    service = await start_service(manifest, Platforms(discover(), {}))
    await service.aclose()
    return service.spec
