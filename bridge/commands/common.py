"""What the `bridge` sub-commands share, the core's and the platforms' (`bridge ango`, ...): the manifest
argument and the one-line form of a user's mistake."""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge.core.manifest import Manifest, default_manifest, load_manifest


def add_manifest_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", nargs="?", type=Path, default=None,
                        help="the model's YAML manifest (default: manifests/default.yaml)")


def manifest_from(args: argparse.Namespace) -> Manifest:
    """The manifest the command names, or the default one."""
    return load_manifest(args.manifest or default_manifest())
