"""`bridge labelbox-manifest`: the model.yaml on stdout or in a file; warnings on stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

from adapters.labelbox import adapter
from adapters.labelbox.convert import PLATFORM
from adapters.labelbox.model_yaml import PLACEHOLDER_SECRET, model_yaml, render_yaml
from adapters.labelbox.section import LabelboxSection
from bridge.commands.common import add_manifest_argument, manifest_from
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.platforms.registry import Platforms, discover
from bridge.platforms.startup import start_service


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("labelbox-manifest", help="write the model.yaml Labelbox Foundry asks for")
    add_manifest_argument(parser)
    parser.add_argument("--endpoint", required=True,
                        help="the public URL Labelbox will POST to, e.g. https://models.example.com/labelbox/infer")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="file to write (default: standard output); holding the secret, it is made 0600")
    parser.add_argument("--placeholder-secret", action="store_true",
                        help="write a placeholder instead of the secret (send the secret separately)")
    parser.set_defaults(func=write_model_yaml)


def write_model_yaml(args: argparse.Namespace) -> int:
    """`bridge labelbox-manifest`: the model.yaml on stdout or in a file; warnings on stderr."""
    manifest = manifest_from(args)
    section = manifest.section(PLATFORM, LabelboxSection)
    endpoint = urlsplit(args.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
        print(f"bridge labelbox-manifest: --endpoint must be an http(s) URL, got {args.endpoint!r}", file=sys.stderr)
        return 2
    if not (section.secret or args.placeholder_secret):
        print("bridge labelbox-manifest: platforms.labelbox.secret is not set; set it from the environment "
              "(secret: ${LABELBOX_SECRET}) or pass --placeholder-secret", file=sys.stderr)
        return 2
    spec = asyncio.run(_spec(manifest))
    warnings = adapter.check(spec, section, manifest)
    if PLATFORM not in manifest.platforms or not section.enabled:
        warnings.append("the manifest has no enabled platforms.labelbox section: `bridge serve` does not serve "
                        "this endpoint")
    if endpoint.scheme != "https":
        warnings.append("the endpoint is not https: the bearer secret would cross the internet in clear")
    if not endpoint.path.endswith(f"{section.base_path.rstrip('/')}/infer"):
        warnings.append(f"the endpoint's path {endpoint.path!r} does not end with {section.base_path}/infer")
    secret = PLACEHOLDER_SECRET if args.placeholder_secret else section.secret
    if not args.placeholder_secret:
        warnings.append("the file holds the endpoint's secret (`secrets`): send it privately and keep it out of "
                        "version control, or pass --placeholder-secret")
    text = render_yaml(model_yaml(manifest, spec, section, args.endpoint, secret))
    if args.output is None:
        sys.stdout.write(text)
    else:
        if not args.placeholder_secret:  # owner-only before the secret is written
            args.output.touch(mode=0o600)
            args.output.chmod(0o600)
        args.output.write_text(text, encoding="utf-8")
    for warning in warnings:
        print(f"bridge labelbox-manifest: warning: {warning}", file=sys.stderr)
    return 0


async def _spec(manifest: Manifest) -> ModelSpec:
    """The model's classes, from the model built as every command builds it."""
    service = await start_service(manifest, Platforms(discover(), {}))
    await service.aclose()
    return service.spec
