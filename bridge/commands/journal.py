"""The journal of a `bridge prelabel` run: one JSON line per finished item, appended and fsync'd as it ends.

It is what makes a run resumable and crash-safe: a rerun reads it and skips what is done, so a run killed at
any moment loses at most the items in flight. A last line cut short by the kill is dropped on reading (it was
not fsync'd, so its item was not done). The last line of an item wins: a failure later redone is done.

Each line says what made the item (`producer`) and which files hold it (`files`), so that a rerun with another
model or parameters does not pass old pre-labels off as its own, and an item whose files are gone is made
again. Any other line (not JSON, not an entry, a byte that is not UTF-8) was not written by `bridge prelabel`:
the run stops with `JournalError` rather than guess what is done.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from bridge.core.errors import UsageError


class JournalError(UsageError):
    """A journal line `bridge prelabel` did not write: the run cannot resume from it."""


@dataclass(frozen=True)
class Entry:
    item: str
    ok: bool
    platforms: tuple[str, ...] = ()
    """The platforms whose imports hold this item."""
    classes: dict[str, int] = field(default_factory=dict)
    """Predictions per class."""
    error: str = ""
    rows: tuple[tuple[str, str], ...] = ()
    """What the predictions carried (`bridge.core.conversions.carried`), for the summary's losses."""
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per platform, the files that hold this item, relative to the run's folder (`Exporter.write`)."""
    producer: tuple[str, ...] = ()
    """(manifest name, version, fingerprint) of what made it (`bridge.commands.prelabel.producer`)."""


class _Line(BaseModel):
    """A journal line as `Journal.record` writes it."""

    model_config = ConfigDict(strict=True, extra="forbid")
    item: str
    ok: bool
    platforms: tuple[str, ...] = ()
    classes: dict[str, int] = {}
    rows: tuple[tuple[str, str], ...] = ()
    error: str = ""
    files: dict[str, tuple[str, ...]] = {}
    producer: tuple[str, ...] = ()


class Journal:
    """Append-only, one line per finished item; `entries` is the state of every item seen so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        if path.exists():
            self._read()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def _read(self) -> None:
        complete = 0
        with open(self.path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.endswith(b"\n"):
                    break  # the last line, cut short by a crash
                complete += len(line)
                if line.strip():
                    entry = self._entry(line, number)
                    self.entries[entry.item] = entry
        if complete < self.path.stat().st_size:
            os.truncate(self.path, complete)  # so that the next entry starts on a line of its own

    def _entry(self, line: bytes, number: int) -> Entry:
        where = f"{self.path}, line {number}"
        cannot = "the run cannot resume from a journal bridge prelabel did not write; remove that line, or move " \
                 "the journal away to start afresh"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JournalError(f"{where} holds a byte that is not UTF-8 (0x{line[error.start]:02x}): "
                               f"{cannot}") from None
        try:
            found = _Line.model_validate_json(text)
        except ValidationError as error:
            first = error.errors()[0]
            at = ".".join(map(str, first["loc"]))
            raise JournalError(f"{where} is not a journal entry ({at + ': ' if at else ''}{first['msg']}): "
                               f"{cannot}") from None
        return Entry(found.item, found.ok, found.platforms, found.classes, found.error, found.rows, found.files,
                     found.producer)

    def record(self, entry: Entry) -> None:
        """Append the entry and make it durable before returning."""
        line = json.dumps({"item": entry.item, "ok": entry.ok, "platforms": list(entry.platforms),
                           "classes": entry.classes, "rows": [list(row) for row in entry.rows],
                           "files": {name: list(paths) for name, paths in entry.files.items()},
                           "producer": list(entry.producer), **({"error": entry.error} if entry.error else {})})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.entries[entry.item] = entry

    def close(self) -> None:
        with self._lock:
            self._file.close()
