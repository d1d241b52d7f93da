"""What a platform's import format offers `bridge prelabel`: an `Exporter`, and the file helpers they share.

An adapter returns one from `Adapter.exporter(section, setup)`; the core names no platform. `bridge prelabel`
hands each finished item to `write` (on worker threads, several items at once: keep no state shared between
items) and calls `finish` once at the end of every run, resumed or interrupted.

Crash safety is the exporters' half of the bargain with the journal: `write` must be idempotent (an item
killed after its files were written and before it was journaled is run and written again), so per-item
output goes to one file per item, named by `file_name`, replaced atomically (`write_atomic`). A format that is
one file for the whole dataset keeps each item's part under `parts_dir` and assembles the file in `finish` from
every part (`parts`). `write` returns the item's files: the journal keeps them, and a rerun skips an item only
while they are all there.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bridge.core.conversions import Table, dropped
from bridge.core.logs import CONTROL_CHARACTERS
from bridge.core.manifest import Manifest
from bridge.core.model import ModelSpec
from bridge.core.service import Result

NO_PROMPTS = dropped("bridge prelabel runs the model without prompts")
"""Every exporter's `prompts` row: a file import has no user pointing at anything."""


@dataclass(frozen=True)
class ExportSetup:
    """What every exporter may need besides its platform section."""

    manifest: Manifest
    spec: ModelSpec
    mapping: Path | None = None
    """A class-mapping file given for this platform (`--mapping PLATFORM=FILE`), in the platform's own form."""


@dataclass(frozen=True)
class Item:
    """One item of the dataset: its identity on the platforms and where its media came from."""

    identity: str
    """V7 item name, Labelbox global key, Ango external id."""
    source: str
    """A path, a URL, or (a CSV's text column) the text itself."""
    text: bool = False
    """`source` is the text itself."""


class Exporter(Protocol):
    conversions: Table
    """Class kind (and aspect) -> what this format makes of it (`bridge.core.conversions`)."""

    def write(self, item: Item, result: Result, out_dir: Path) -> list[Path]:
        """Write (or replace) one item's import; `out_dir` is this platform's folder. Returns the files that
        hold the item (its file, or its part)."""

    def finish(self, out_dir: Path) -> list[Path]:
        """Assemble what needs every item; return the files that make up the import."""


NAME_BYTES = 200
"""Most bytes of a name `file_name` makes, leaving room for a suffix under the 255 bytes file systems take."""
_ENCODED = re.compile(rf"[/\\%{CONTROL_CHARACTERS}\udc80-\udcff]|^\.")
"""Percent-encoded in a file name: the path separators, `%` itself, control characters, the bytes of a name that
is not UTF-8 (read from disk as lone surrogates), and a leading dot (no hidden file, no `..`)."""


def file_name(identity: str) -> str:
    """A file name for an item identity, for any name a file may have on disk: unique per identity, never a
    path, readable (letters of any script stay as they are; only what `_ENCODED` lists is percent-encoded) and
    at most `NAME_BYTES` bytes: a longer one keeps its beginning and ends with `%%` and a hash of the whole
    identity (`%%` appears in no other name: every other `%` starts a code)."""
    name = _ENCODED.sub(lambda found: "".join(f"%{byte:02X}" for byte in
                                              found.group().encode("utf-8", "surrogateescape")), identity) or "%00"
    encoded = name.encode("utf-8")
    if len(encoded) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return encoded[:NAME_BYTES - 34].decode("utf-8", "ignore") + "%%" + digest


def parts_dir(out_dir: Path) -> Path:
    """Where an exporter whose import is one file keeps each item's part until `finish`."""
    return out_dir / ".parts"


def parts(out_dir: Path, suffix: str) -> list[Path]:
    """Every item's part (named `file_name(identity) + suffix`), in order; not the temporary file a killed run
    may have left beside them (`write_atomic`'s start with a dot)."""
    return sorted(part for part in parts_dir(out_dir).glob(f"*{suffix}") if not part.name.startswith("."))


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once, durably: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; an import file is an ordinary file
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
