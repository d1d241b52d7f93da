"""`bridge samples`: the sample inputs shipped in the package, so that the first request needs no file of
one's own: `bridge samples astronaut.jpg` prints the path of one, for `curl` or `base64`."""

from __future__ import annotations

import argparse

from bridge import samples
from bridge.core.errors import UsageError


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("samples", help="list the bundled sample images and texts, or print the path of "
                                                 "one (e.g. `bridge samples astronaut.jpg`)")
    parser.add_argument("name", nargs="?", default=None, help="a sample's name: print its path")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name is not None:
        try:
            print(samples.path(args.name))
        except KeyError as error:
            raise UsageError(str(error.args[0])) from None
        return 0
    width = max(map(len, samples.ABOUT))
    for name in samples.IMAGES + samples.TEXTS:
        print(f"{name:<{width}}  {samples.ABOUT[name]}")
    print("`bridge samples NAME` prints its path, e.g. base64 -w0 \"$(bridge samples astronaut.jpg)\"")
    return 0
