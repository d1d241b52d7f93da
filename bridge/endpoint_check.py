"""`bridge check URL --platform NAME`: does a running endpoint, ours or anyone's, keep the platform's contract?

The core sends nothing itself: it gathers what a check needs (the item, the credentials, an HTTP client,
where the endpoint can fetch the item) into a `Probe`, hands it to the platform's adapter
(`Adapter.check_endpoint`), and prints each `Problem` with where it is (the request and a JSON path) and how
to fix it, then a summary line. Exit status 1 when there is a problem.

Credentials: `--basic USER:PASSWORD`, `--header NAME:VALUE` (repeatable), `--bearer SECRET`, `--secret SECRET`
(the platform's own secret form, `Adapter.secret_headers`: V7 the `X-Auth` header, Labelbox a bearer token,
Ango the `Secret` header).
Any value may be `env:NAME`, read from the environment, so secrets stay out of shell history.

Media the endpoint must fetch itself (Ango's `dataURL`): `--image-url URL` when given; else, for an endpoint on
this machine (a loopback address), the checker serves the image and text on a loopback port of its own (our
server fetches from it only with `limits.allow_private_urls: true`); else it sends `data:` URLs, which our
server reads but a plugin that fetches only http(s) refuses: then pass `--image-url` with a URL the endpoint
can reach.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import ipaddress
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import yaml
from PIL import Image

from bridge import samples
from bridge.platforms import discover
from bridge.remote import auth_headers

SAMPLE_IMAGE, SAMPLE_TEXT = "astronaut.jpg", "contact.txt"
"""What is sent without `--image` or `--text` (`bridge.samples`)."""


@dataclass(frozen=True)
class Problem:
    """One way the endpoint breaks the contract: where (request and JSON path), what, and how to fix it."""

    where: str
    what: str
    fix: str


@dataclass
class Probe:
    """What a platform's check sends, and the means to send it."""

    url: str
    """The endpoint as the platform is given it (V7: the base; Labelbox: the endpoint; Ango: the REST base)."""
    client: httpx.Client
    """Carries the credentials of `--basic`, `--header` and `--bearer`."""
    image: bytes
    """The encoded image (`--image`, else the bundled sample)."""
    size: tuple[int, int]
    """(height, width) of the image."""
    text: str
    image_url: str
    """Where the endpoint can fetch the image."""
    text_url: str
    model_yaml: dict[str, Any] | None = None
    text_given: bool = False
    """Whether `--text` was given (a text model is then what the user means to check)."""
    notes: list[str] = field(default_factory=list)
    """What the check did, printed before the problems."""

    @property
    def image_base64(self) -> str:
        return base64.b64encode(self.image).decode("ascii")

    def where(self, method: str, path: str = "") -> str:
        """How problems name a request: `POST /infer`, or the endpoint's own path when `path` is empty."""
        return f"{method} {path or urlsplit(self.url).path or '/'}"

    def inside(self, x: float, y: float) -> bool:
        """Whether a point lies in the image (edges included)."""
        height, width = self.size
        return 0 <= x <= width and 0 <= y <= height


def resolve(value: str | None) -> str | None:
    """`env:NAME` read from the environment; anything else as given."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    if name not in os.environ:
        raise argparse.ArgumentTypeError(f"environment variable {name} is not set")
    return os.environ[name]


def credentials(adapter: Any, basic: str | None = None, headers: list[str] = (), bearer: str | None = None,
                secret: str | None = None) -> dict[str, str]:
    """The HTTP headers of `--basic USER:PASSWORD`, `--header NAME:VALUE`, `--bearer SECRET` and `--secret SECRET`
    (`env:NAME` values resolved)."""
    named: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--header takes NAME:VALUE, got {header!r}")
        named[name.strip()] = resolve(value.strip())
    try:
        return auth_headers(adapter.secret_headers, resolve(basic), resolve(bearer), resolve(secret), named)
    except ValueError:
        raise argparse.ArgumentTypeError("--basic takes USER:PASSWORD") from None


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
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")


def is_url(target: str | None) -> bool:
    return bool(target) and urlsplit(str(target)).scheme in ("http", "https")


def run(args: argparse.Namespace) -> int:
    """`bridge check URL`: print the problems and a summary; 1 when there is a problem, 2 on a usage error."""
    adapters = discover()
    if args.platform not in adapters:
        raise argparse.ArgumentTypeError(f"--platform is one of {', '.join(sorted(adapters))}, "
                                         f"got {args.platform!r}")
    adapter = adapters[args.platform]
    url = args.manifest.rstrip("/")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the problems are the output, not each request
    try:
        image = args.image.read_bytes() if args.image else samples.read(SAMPLE_IMAGE)
        text = resolve(args.text) if args.text is not None else samples.read(SAMPLE_TEXT).decode("utf-8")
        model_yaml = yaml.safe_load(args.model_yaml.read_text(encoding="utf-8")) if args.model_yaml else None
        headers = credentials(adapter, args.basic, args.header, args.bearer, args.secret)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {error.filename}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"--model-yaml {args.model_yaml}: not valid YAML: {error}") from None
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            size = (decoded.height, decoded.width)
    except Exception:
        raise argparse.ArgumentTypeError(f"{args.image}: not an image Pillow can read") from None
    with httpx.Client(headers=headers, timeout=args.timeout) as client, \
            media_urls(url, image, text, args.image_url) as (image_url, text_url, note):
        probe = Probe(url, client, image, size, text, image_url, text_url, model_yaml, args.text is not None)
        if note:
            probe.notes.append(note)
        try:
            problems = adapter.check_endpoint(probe)
        except NotImplementedError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    print(f"bridge check: {url} against the {adapter.title or adapter.name} contract")
    for note in probe.notes:
        print(f"  note: {note}")
    for problem in problems:
        print(f"  problem: {problem.where}: {problem.what}")
        print(f"      fix: {problem.fix}")
    print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}: "
          + ("the endpoint keeps the contract" if not problems else "the endpoint breaks the contract"))
    return 1 if problems else 0


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

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body, kind = files.get(self.path, (b"not found", "text/plain"))
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield image_url or f"{base}/image", f"{base}/text", None
    finally:
        server.shutdown()
        server.server_close()


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- helpers the adapters' contract checks share ---------------------------------------------------------------


def request(probe: Probe, method: str, path: str, problems: list[Problem], **send: Any) -> httpx.Response | None:
    """One request to the endpoint; a connection failure or a refusal of the credentials is a problem."""
    where = probe.where(method, path)
    try:
        response = probe.client.request(method, probe.url + path, **send)
    except httpx.HTTPError as error:
        problems.append(Problem(where, f"no answer: {type(error).__name__}: {error}",
                                "check the URL and that the endpoint is running and reachable from here"))
        return None
    if response.status_code in (401, 403):
        problems.append(Problem(where, f"refused with {response.status_code}: {response.text[:200]}",
                                "pass the endpoint's credentials: --basic, --header, --bearer or --secret"))
        return None
    return response


def json_of(response: httpx.Response, where: str, problems: list[Problem]) -> Any:
    """The JSON body; a body that is not JSON is a problem (returns None)."""
    try:
        return response.json()
    except ValueError:
        problems.append(Problem(where, f"answered {response.status_code} with a body that is not JSON: "
                                       f"{response.text[:120]!r}", "answer JSON (Content-Type: application/json)"))
        return None


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
