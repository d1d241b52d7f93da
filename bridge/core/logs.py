"""Logging: the text and JSON line formats, redaction of secrets, and escaping of what peers send.

Nothing here runs at import: the command that starts (`bridge serve`, `bridge ango`, ...) calls
`configure_logging`. Nothing secret reaches a log line: both formatters pass every message and traceback
through `redact` (URL query strings, `Bearer`/`Basic` credentials, `key=value` pairs whose key names a secret,
and the secret values of the manifest's platform sections where they stand as a value, registered by serving).

A text line is one record: its message has every character that could end a line, move the cursor or turn
the text around escaped (`one_line`), whoever supplied it (a session id, a path, a remote's reason), and the
lines of a traceback that follow it are indented, so only a record's first line starts at the left margin.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from bridge.core import metrics

CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""C0 and C1 controls (NEL among them), DEL, the line and paragraph separators, and the bidi marks and overrides:
the body of a regular expression's character class."""
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def one_line(text: str) -> str:
    """`text` with its control characters escaped (`\\n`, `\\x1b`, `\\u2028`, `\\u202e`...): a peer's string
    (a session id, a path such as `/a%0Ab`) can neither forge a log line nor garble a terminal."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


_secrets: set[str] = set()
_SECRET_KEY = re.compile(r"secret|password|token|api_?key", re.IGNORECASE)
MIN_SECRET_LENGTH = 4
"""Registered secret values shorter than this are not redacted by value (they would garble every line)."""

_REDACTIONS = [
    # credentials after an auth scheme: "Authorization: Bearer abc", "Basic dXNlcjpwdw=="
    (("bearer", "basic"), re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2[redacted]"),
    # a query string after a URL or a path: signed URLs carry their tokens there
    (("?",), re.compile(r"((?:[a-z][a-z0-9+.-]*://|/)[^\s?\"'<>]*)\?[^\s\"'<>#]+", re.IGNORECASE), r"\1?[redacted]"),
    # pairs whose key names a secret: "'apiKey': 'x'", '"secret": "x"', "password=x", "X-Amz-Signature=x"
    # (`key=value`, or a quoted key or value around a colon; prose such as "wrong secret: send..." stays, and
    # so does a placeholder without a letter or digit, as in "export LABELBOX_SECRET=...")
    (("secret", "passw", "token", "api", "authorization", "signature", "credential"),
     re.compile(r"(?i)((?:secret|password|passwd|token|api[_-]?key|authorization|signature|credential)[\w-]*"
                r"(?:\s*=\s*[\"']?|[\"']\s*:\s*[\"']?|:\s*[\"']))(?=[^\s\"',;&}\]]*[A-Za-z0-9])[^\s\"',;&}\]]+"),
     r"\1[redacted]"),
]
"""(words that a match contains, in lower case; the pattern; its replacement): an ASCII line holding none of
the words is not searched, so an ordinary line (the request line of every request) costs a few substring tests.
Other lines are always searched: case-insensitive matching also folds letters such as "ſ" and "ı" into the
words, which lower-casing does not."""

_AS_VALUE = r"(?:(?<=[=:'\"])|(?<=[=:] )){}(?=[\s'\"&@,;}}\]]|$)"
"""Where a registered secret is redacted: standing as a value (after `=`, `:` or a quote, up to a delimiter), as
in a header, a query string, a body or a URL's user info, never inside a word or a path: a secret that is
also an ordinary word (`POST /v7/infer`) blanked wherever it appears would tell what the secret is."""


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line as a value (the manifest's configured secrets)."""
    _secrets.update(value for value in values if len(value) >= MIN_SECRET_LENGTH)


def secret_values(data: Any, key: str = "") -> Iterator[str]:
    """String values under keys that name a secret (`secret`, `password`, `token`, `api_key`), at any depth."""
    if isinstance(data, dict):
        for name, value in data.items():
            yield from secret_values(value, str(name))
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from secret_values(value, key)
    elif isinstance(data, str) and data and _SECRET_KEY.search(key):
        yield data


def redact(text: str) -> str:
    """`text` without credentials, URL query strings or registered secret values."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = re.sub(_AS_VALUE.format(re.escape(secret)), "[redacted]", text)
    lower = text.lower() if text.isascii() else None
    for words, pattern, replacement in _REDACTIONS:
        if lower is None or any(word in lower for word in words):
            text = pattern.sub(replacement, text)
    return text


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            current = metrics.current()
            record.request_id = current.id if current else None
        return True


class TextFormatter(logging.Formatter):
    """`time level logger [request id]: message`, redacted; the message on one line (`one_line`), a traceback
    indented under it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        given = getattr(record, "request_id", None)
        record.request_id = given or "-"
        try:
            return redact(super().format(record))
        finally:
            record.request_id = given


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Every line has `time` (UTC, ISO 8601), `level`, `logger`, `message` and
    `request_id` (null outside a request); request lines add `method`, `route`, `path`, `status`,
    `platform`, `duration_ms`, `stages` ({stage: ms}), `predictions` and `error` (the message the caller
    got, or null); lines with a traceback add `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            line.update({key: redact(value) if isinstance(value, str) else value
                         for key, value in request.items()})
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _indented(text: str) -> str:
    """Continuation lines of a record: each indented, with no other control character than its line break."""
    return "\n".join("  " + one_line(line) for line in text.splitlines())


LOG_FORMATS = {"text": TextFormatter, "json": JsonFormatter}


def configure_logging(level: str, form: str = "text") -> None:
    """Every log line of the process (uvicorn's and the libraries' included) to stderr in `form`, redacted.

    Loggers that are not in the logging tree (the Ango SDK's per-run loggers) reach `logging.lastResort`,
    which gets the same handler at warning level. httpx's line per download stays at debug level: the
    request line already says what happened. Like `logging.basicConfig`, it leaves the handlers of a process
    that already has some (a program embedding the bridge, pytest) alone.
    """
    for name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
        logging.getLogger(name).addFilter(_HIDE_QUERIES)  # for handlers that are not ours, too
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if root.handlers:
        return
    root.addHandler(_handler(form, logging.NOTSET))
    logging.lastResort = _handler(form, logging.WARNING)


class _HideQueries(logging.Filter):
    """Blanks query strings in a record's message: signed URLs carry their signature there (httpx and httpcore
    log URLs and redirect targets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<hidden>", message), None
        return True


_QUERY = re.compile(r"\?[^\s'\"]*")
_HIDE_QUERIES = _HideQueries()


def _handler(form: str, level: int) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(LOG_FORMATS[form]())
    handler.addFilter(_RequestIdFilter())
    return handler

