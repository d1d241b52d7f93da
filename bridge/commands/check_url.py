"""`bridge check URL --platform NAME`: does a running endpoint, ours or anyone's, keep the platform's contract?

The core sends nothing itself: it gathers what a check needs (the item, the credentials, an HTTP client,
where the endpoint can fetch the item) into a `Probe` (`bridge.platforms.probe`), hands it to the platform's
client role (`Client.check`), and prints each `Problem` with where it is (the request and a JSON path) and how
to fix it, then a summary line. Exit status 1 when there is a problem.

Credentials: `--basic USER:PASSWORD`, `--header NAME:VALUE` (repeatable), `--bearer SECRET`, `--secret SECRET`
(the platform's own secret form, `Client.secret_headers`: V7 the `X-Auth` header, Labelbox a bearer token,
Ango the `Secret` header).
Any value may be `env:NAME`, read from the environment, so secrets stay out of shell history.

Media the endpoint must fetch itself (Ango's `dataURL`): `--image-url URL` when given (without `--image`, the
checker reads that image too, for what it sends the other platforms and for the size its answers are checked
against); else, for an endpoint on this machine (a loopback address), the checker serves the image and text on
a loopback port of its own (our server fetches from it only with `limits.allow_private_urls: true`); else it
sends `data:` URLs, which our server reads but a plugin that fetches only http(s) refuses: then pass
`--image-url` with a URL the endpoint can reach.

The endpoint may be anyone's: each call is bounded by `--timeout` in all (however slowly its bytes come) and its
answer by `limits.max_answer_bytes` (as sent and decoded), and nothing it says reaches the terminal raw (control
characters, escape sequences and bidi overrides are printed escaped).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import ipaddress
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml
from PIL import Image

from bridge import samples
from bridge.commands.file_server import serving
from bridge.core.errors import BridgeError
from bridge.core.logs import one_line
from bridge.core.manifest import Limits
from bridge.core.remote import Bounded, auth_headers, failure
from bridge.platforms.probe import Probe, Problem
from bridge.platforms.protocol import Adapter, Client

SAMPLE_IMAGE, SAMPLE_TEXT = "astronaut.jpg", "contact.txt"
"""What is sent without `--image` or `--text` (`bridge.samples`)."""


def resolve(value: str | None) -> str | None:
    """`env:NAME` read from the environment; anything else as given."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    if name not in os.environ:
        raise argparse.ArgumentTypeError(f"environment variable {name} is not set")
    return os.environ[name]


def credentials(client: Client, basic: str | None = None, headers: list[str] = (), bearer: str | None = None,
                secret: str | None = None) -> dict[str, str | bytes]:
    """The HTTP headers of `--basic USER:PASSWORD`, `--header NAME:VALUE`, `--bearer SECRET` and `--secret SECRET`
    (`env:NAME` values resolved)."""
    named: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--header takes NAME:VALUE, got {header!r}")
        named[name.strip()] = resolve(value.strip())
    try:
        return auth_headers(client.secret_headers, resolve(basic), resolve(bearer), resolve(secret), named)
    except ValueError:
        raise argparse.ArgumentTypeError("--basic takes USER:PASSWORD") from None


def basic_newline(headers: Mapping[str, str | bytes]) -> str | None:
    """Why Basic credentials that end in a line break are refused, or None: V7's registration snippet builds
    the header with `echo "$USER:$PASSWORD" | base64`, which encodes echo's newline into the password."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if isinstance(value, bytes):  # a non-ASCII header goes as UTF-8 bytes: no Basic header is one (base64)
        return None
    kind, _, encoded = value.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    if not decoded.endswith("\n"):
        return None
    return ("the Basic credentials end in a newline, so the password is wrong: `echo \"$U:$P\" | base64` (as in "
            "V7's registration snippet) encodes echo's newline; encode with `printf '%s' \"$U:$P\" | base64 -w0`, "
            "or pass --basic USER:PASSWORD (curl -u USER:PASSWORD)")


def add_arguments(parser: argparse.ArgumentParser, platforms: list[str]) -> None:
    """The options of `bridge check URL`."""
    group = parser.add_argument_group(
        "checking an endpoint (bridge check URL)",
        "Credential values may be env:NAME (read from the environment). Media the endpoint fetches (Ango's "
        "dataURL): --image-url if given; else, for an endpoint on this machine, a loopback port the checker "
        "opens (our server fetches it only with limits.allow_private_urls); else a data: URL.")
    group.add_argument("--platform", help="whose contract the endpoint keeps: " + ", ".join(platforms))
    group.add_argument("--image", type=Path, help="image to send (default: a bundled sample)")
    group.add_argument("--text", help="text to send to a text model (default: a bundled sample)")
    group.add_argument("--image-url", help="a URL of the image the endpoint can fetch (Ango's dataURL)")
    group.add_argument("--basic", metavar="USER:PASSWORD", help="HTTP Basic credentials")
    group.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="a header to send")
    group.add_argument("--bearer", metavar="SECRET", help="send `Authorization: Bearer SECRET`")
    group.add_argument("--secret", metavar="SECRET", help="the platform's secret, where the platform sends it")
    group.add_argument("--model-yaml", type=Path, help="Labelbox: the model.yaml naming the endpoint's features")
    group.add_argument("--label-config", type=Path, help="Label Studio: the project's label config (XML)")
    group.add_argument("--timeout", type=float, default=30.0,
                       help="seconds per request, from connecting to the answer's last byte (default 30)")


def is_url(target: str | None) -> bool:
    return bool(target) and urlsplit(str(target)).scheme in ("http", "https")


def run(args: argparse.Namespace, adapters: Mapping[str, Adapter]) -> int:
    """`bridge check URL`: print the problems and a summary; 1 when there is a problem, 2 on a usage error."""
    checkable = sorted(name for name, adapter in adapters.items() if adapter.client is not None)
    if args.platform not in checkable:
        raise argparse.ArgumentTypeError(f"--platform is one of {', '.join(checkable)}, got {args.platform!r}")
    adapter = adapters[args.platform]
    url = args.manifest.rstrip("/")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the problems are the output, not each request
    limits = Limits()
    try:
        if args.image:
            image, shown = args.image.read_bytes(), str(args.image)
        elif args.image_url:
            image, shown = _fetch_image(args.image_url, args.timeout, limits.max_download_bytes), "--image-url"
        else:
            image, shown = samples.read(SAMPLE_IMAGE), SAMPLE_IMAGE
        text = resolve(args.text) if args.text is not None else samples.read(SAMPLE_TEXT).decode("utf-8")
        model_yaml = yaml.safe_load(args.model_yaml.read_text(encoding="utf-8")) if args.model_yaml else None
        label_config = args.label_config.read_text(encoding="utf-8") if args.label_config else None
        headers = credentials(adapter.client, args.basic, args.header, args.bearer, args.secret)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {error.filename}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"--model-yaml {args.model_yaml}: not valid YAML: {error}") from None
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            size = (decoded.height, decoded.width)
    except Exception:
        raise argparse.ArgumentTypeError(f"{shown}: not an image Pillow can read") from None
    client = Bounded(headers, args.timeout, limits.max_answer_bytes)
    with media_urls(url, image, text, args.image_url) as (image_url, text_url, note):
        probe = Probe(url, client, image, size, text, image_url, text_url, model_yaml, args.text is not None,
                      label_config)
        if note:
            probe.notes.append(note)
        problems = adapter.client.check(probe)
    if cause := basic_newline(headers):
        problems = [Problem(p.where, p.what, cause) if p.what.startswith("refused with 401") else p for p in problems]
    print(f"bridge check: {one_line(url)} against the {adapter.title or adapter.name} contract")
    for note in probe.notes:
        print(f"  note: {one_line(note)}")
    for problem in problems:  # the endpoint's words are in them: escaped, they cannot drive the terminal
        print(f"  problem: {one_line(problem.where)}: {one_line(problem.what)}")
        print(f"      fix: {one_line(problem.fix)}")
    print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}: "
          + ("the endpoint keeps the contract" if not problems else "the endpoint breaks the contract"))
    return 1 if problems else 0


def _fetch_image(url: str, seconds: float, limit: int) -> bytes:
    """The image at `--image-url`, read as the endpoint will: what the checker sends and checks against."""
    try:
        reply = Bounded({}, seconds, limit, "limits.max_download_bytes").get(url, follow_redirects=True)
    except (httpx.HTTPError, BridgeError) as error:
        raise argparse.ArgumentTypeError(f"--image-url could not be read: {one_line(failure(error))}") from None
    if reply.status_code != 200:
        raise argparse.ArgumentTypeError(f"--image-url answered {reply.status_code}")
    return reply.content


@contextlib.contextmanager
def media_urls(endpoint: str, image: bytes, text: str,
               image_url: str | None) -> Iterator[tuple[str, str, str | None]]:
    """(image URL, text URL, a note) the endpoint can fetch: see the module's docstring."""
    text_data = text.encode("utf-8")
    kind = Image.open(io.BytesIO(image)).get_format_mimetype() or "application/octet-stream"
    if not _loopback(endpoint):
        data = f"data:{kind};base64,{base64.b64encode(image).decode('ascii')}"
        yield (image_url or data, "data:text/plain;charset=utf-8;base64," + base64.b64encode(text_data).decode(),
               None if image_url else "the endpoint is not on this machine: media go as data: URLs (--image-url "
                                      "gives one it can fetch)")
        return
    files = {"/image": (image, kind), "/text": (text_data, "text/plain; charset=utf-8")}
    with serving(files) as server:
        yield image_url or f"{server.base}/image", f"{server.base}/text", None


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
