"""What an adapter's client role checks an endpoint with (`bridge check URL`): the `Probe` it is handed, the
`Problem`s it finds, and the helpers the contract checks share.

The command (`bridge.commands.check_url`) gathers what a check needs (the item, the credentials, an HTTP
client, where the endpoint can fetch the item) into a `Probe`; the platform's `Client.check` calls the
endpoint with it and returns each `Problem` with where it is (the request and a JSON path) and how to fix it.
The endpoint is a peer the user may not trust: each call is bounded in time and bytes (`Bounded`), its JSON
read strictly, and what it says is escaped when printed (`bridge.commands.check_url`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from bridge.core.errors import BridgeError, DeadlineExceeded, TooLarge
from bridge.core.remote import Bounded, Reply
from bridge.platforms.auth import NO_SECRET


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
    client: Bounded
    """Carries the credentials of `--basic`, `--header`, `--bearer` and `--secret`; bounds each call (`--timeout`,
    `limits.max_answer_bytes`)."""
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
    label_config: str | None = None
    """Label Studio: the project's label config (`--label-config`), whose controls the answers must use."""
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


def request(probe: Probe, method: str, path: str, problems: list[Problem], **send: Any) -> Reply | None:
    """One request to the endpoint; no answer in time or bytes, or a refusal of the credentials, is a problem."""
    where = probe.where(method, path)
    try:
        response = probe.client.request(method, probe.url + path, **send)
    except DeadlineExceeded as error:
        problems.append(Problem(where, error.message, f"answer within --timeout ({probe.client.seconds:g} s): V7 "
                                                      "waits 30 s at most, and an answer that drips is cut"))
        return None
    except TooLarge as error:
        problems.append(Problem(where, error.message, "answer what the platform needs: an answer this large is "
                                                      "refused by the bridge's remote models too"))
        return None
    except BridgeError as error:  # an encoding the checker does not undo
        problems.append(Problem(where, error.message, "answer plain JSON, or gzip or deflate it"))
        return None
    except httpx.HTTPError as error:
        problems.append(Problem(where, f"no answer: {type(error).__name__}: {error}",
                                "check the URL and that the endpoint is running and reachable from here"))
        return None
    if response.status_code in (401, 403):
        if NO_SECRET in response.text:
            fix = ("the server refuses every request until its secret is set: set it there (the variable its "
                   "manifest reads, e.g. `export LABELBOX_SECRET=...`), restart it, and pass the same secret here")
        elif probe.client.headers:
            fix = "the endpoint refused these credentials: check their value and their form (--basic, --header, " \
                  "--bearer or --secret)"
        else:
            fix = "pass the endpoint's credentials: --basic, --header, --bearer or --secret"
        problems.append(Problem(where, f"refused with {response.status_code}: {response.text[:200]}", fix))
        return None
    return response


def json_of(response: Reply, where: str, problems: list[Problem]) -> Any:
    """The JSON body, read strictly (`bridge.core.remote.parse_json`); a body that is not JSON is a problem
    (returns None)."""
    try:
        return response.json()
    except ValueError as error:
        problems.append(Problem(where, f"answered {response.status_code} with a body that is not JSON ({error}): "
                                       f"{response.text[:120]!r}", "answer JSON (Content-Type: application/json)"))
        return None


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
