"""The journal of a `bridge prelabel` run: one JSON line per finished item, appended and fsync'd as it ends.

It is what makes a run resumable and crash-safe: a rerun reads it and skips what is done, so a run killed at
any moment loses at most the items in flight. A line cut short by the kill is ignored on reading (it was not
fsync'd, so its item was not done). The last line of an item wins: a failure later redone is done.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        with open(self.path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    data: dict[str, Any] = json.loads(line)
                    entry = Entry(data["item"], bool(data["ok"]), tuple(data.get("platforms", ())),
                                  dict(data.get("classes", {})), data.get("error", ""),
                                  tuple(tuple(row) for row in data.get("rows", ())))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
                self.entries[entry.item] = entry
        with open(self.path, "rb+") as raw:  # end a cut-short line, so the next entry starts on its own line
            raw.seek(0, os.SEEK_END)
            if raw.tell() and (raw.seek(-1, os.SEEK_END), raw.read(1))[1] != b"\n":
                raw.write(b"\n")

    def record(self, entry: Entry) -> None:
        """Append the entry and make it durable before returning."""
        line = json.dumps({"item": entry.item, "ok": entry.ok, "platforms": list(entry.platforms),
                           "classes": entry.classes, "rows": [list(row) for row in entry.rows],
                           **({"error": entry.error} if entry.error else {})})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.entries[entry.item] = entry

    def close(self) -> None:
        with self._lock:
            self._file.close()
