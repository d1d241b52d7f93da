"""Errors that reach the caller: each carries the HTTP status it answers with and a message a user can act on.

Anything else a request raises is a bug of ours or of the model, and answers 500 with a short message; the
traceback goes to the log, never to the caller.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of the errors a platform sees; `status` is the HTTP status code to answer with."""

    status: int = 500
    headers: dict[str, str] = {}
    """Headers the answer carries (Retry-After of a 503)."""
    fields: dict[str, object] = {}
    """Keys the platform's error form carries besides the message (Ango's `session`)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(BridgeError):
    """The request cannot be read: malformed JSON, a forbidden URL, broken base64."""

    status = 400


class Unauthorized(BridgeError):
    status = 401


class TooLarge(BridgeError):
    """A body, a download or an image past the manifest's limits."""

    status = 413


class InvalidInput(BridgeError):
    """The request is well-formed but unusable: wrong schema, bad params, not an image, unfetchable URL."""

    status = 422


class ModelFailed(BridgeError):
    """The model raised; the message names the exception, the log holds the traceback."""

    status = 500


class NotReady(BridgeError):
    status = 503


class Overloaded(BridgeError):
    """More requests than the model's threads and queue take (`limits.concurrency`, `limits.max_queue`)."""

    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class DeadlineExceeded(BridgeError):
    """The job (fetch + predict) ran past the manifest's deadline, or a download timed out."""

    status = 504


class BadAnswer(BridgeError):
    """A platform answer (a remote endpoint's) that its reader cannot read; the message says where (JSON path)."""

    status = 502


class UsageError(Exception):
    """A user's mistake outside any request (a busy port, a Ray cluster that cannot be joined, a missing
    setting): the command prints one line and exits with status 2."""
