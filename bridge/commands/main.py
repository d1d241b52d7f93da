"""`bridge`: serve a manifest's model, check a manifest or an endpoint, start a project, pre-label a dataset,
print the reference tables.

Platforms add their own sub-commands (`bridge labelbox-manifest`, `bridge ango`, ...) through the
`bridge.commands` entry-point group (`bridge.platforms.registry`). A user's mistake (a bad manifest, a model
file that does not import, a model that fails to build, an option out of range, a busy port) prints one line
and exits with status 2; a traceback means a bug of ours. Logging is configured here, once, for the command.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from bridge.commands import check, init, prelabel, reference, samples, serve
from bridge.core.errors import UsageError
from bridge.core.logs import LOG_FORMATS, configure_logging
from bridge.core.manifest import ManifestError
from bridge.core.metrics import prepare_multiprocess
from bridge.platforms.protocol import Adapter
from bridge.platforms.registry import commands as platform_commands
from bridge.platforms.registry import discover

LOG_LEVELS = ["debug", "info", "warning", "error"]


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
    parser = argparse.ArgumentParser(
        prog="bridge", description="Serve one model to annotation platforms.",
        epilog=f"Configuration: every manifest key and environment variable in one table, `bridge reference` "
               f"({reference.REFERENCE_FILE} in the repository). A first request: `bridge serve`, then "
               f"`bridge samples astronaut.jpg` gives an image to send.")
    parser.add_argument("--version", action="version", version=f"bridge {version('annotation-bridge')}")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--log-format", default="text", choices=list(LOG_FORMATS),
                        help="text, or json: one JSON object per line, for log shippers")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add(commands, port_number)
    check.add(commands, adapters)
    init.add(commands)
    reference.add(commands, adapters)
    prelabel.add(commands, adapters)
    samples.add(commands)
    for add in platform_commands().values():
        add(commands)
    for command in commands.choices.values():  # `bridge serve --log-level debug` works as well
        command.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
        command.add_argument("--log-format", choices=list(LOG_FORMATS), default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    adapters = discover()
    args = build_parser(adapters).parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    prepare_multiprocess()
    try:
        return args.func(args)
    except (ManifestError, UsageError, argparse.ArgumentTypeError) as error:
        print(f"bridge: {error}", file=sys.stderr)
        return 2
