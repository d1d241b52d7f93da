"""`bridge prelabel`: run the model over a whole dataset and write each platform's own import files.

    bridge prelabel [MANIFEST] INPUT --to v7,labelbox,ango --out DIR

INPUT is a folder (every file in it and its sub-folders, hidden ones aside; an item's identity is its path
relative to the folder), a file listing paths or URLs (one a line; `#` comments; identity: the file name),
or a `.csv` file whose `--source-column` holds the path, URL or, in a column named `text`, the text itself,
and whose `--id-column` gives the item's identity on the platforms (V7 item name, Labelbox global key, Ango
external id; default: the file name). Relative paths in a list or CSV are relative to that file.

Items run through the one answer path of `bridge serve` (`bridge.core.pipeline`: limits, deadline,
batching), `limits.concurrency` at once, each written by every platform's exporter (the adapters'
`Adapter.exporter`; this module names no platform). A local file is read here (within
`limits.max_download_bytes`) and handed to the service as bytes, so it meets the same decoding and size
checks as an uploaded image. Each finished item is then recorded in `DIR/journal.jsonl`, fsync'd, with what
made it (`producer`) and the files that hold it: a rerun of the same command skips what is done while its
files are there, `--retry-failed` redoes the failures, `--limit N` runs N items only (a trial), and a run
killed at any point loses only the items in flight. A rerun with another model, version, manifest or
parameters refuses to mix its pre-labels with the journal's (`--force` makes them again). The summary,
printed and written to `DIR/summary.json`, counts items and predictions per class and lists what each
platform's conversion dropped or approximated, from the exporters' declared conversion tables.

Identities are exported exactly as they are (they name the platforms' items), control characters and all;
whatever is printed is escaped (`one_line`). Every mistake around a run (an input that is not UTF-8, an `--out`
that cannot be written or lies inside the input folder, a journal it did not write) is one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from bridge.commands.common import add_manifest_argument, manifest_from
from bridge.commands.journal import Entry, Journal
from bridge.core import conversions
from bridge.core.errors import BridgeError, InvalidInput, TooLarge, UsageError
from bridge.core.loading import factory_file, model_params
from bridge.core.logs import one_line
from bridge.core.manifest import Manifest, ManifestError
from bridge.core.model import ModelSpec
from bridge.core.params import Params
from bridge.core.pipeline import Writer, answers
from bridge.core.service import Job, Result, Service, Source
from bridge.platforms.export import Exporter, ExportSetup, Item
from bridge.platforms.protocol import Adapter
from bridge.platforms.registry import Platforms
from bridge.platforms.startup import start_service

log = logging.getLogger("bridge.prelabel")

PLATFORM = "prelabel"
"""`Context.platform` of a pre-labelling run: the model is not answering any one platform."""

SOURCE_COLUMNS = ("url", "path", "image", "file", "text", "source")
ID_COLUMNS = ("id", "identity", "name", "global_key", "external_id", "key")


# --- reading the input ------------------------------------------------------------------------------------------


def read_items(source: Path, source_column: str | None = None, id_column: str | None = None,
               max_field: int = 50 * 2**20) -> list[Item]:
    """The dataset's items, in order; a repeated identity is an error (each names one item on a platform). A list
    or CSV must be UTF-8; a CSV field (a text) may hold `max_field` characters (`limits.max_download_bytes`, as a
    file would)."""
    try:
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(source).parts))
            items = [Item(p.relative_to(source).as_posix(), str(p)) for p in files]
        elif source.suffix.lower() == ".csv":
            items = _read_csv(source, source_column, id_column, max_field)
        elif source.is_file():
            lines = (line.strip() for line in source.read_text(encoding="utf-8").splitlines())
            items = [Item(_name_of(line), _resolve(line, source)) for line in lines
                     if line and not line.startswith("#")]
        else:
            raise InvalidInput(f"{source}: no such file or folder")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{source}: not UTF-8 (byte 0x{error.object[error.start]:02x} at offset {error.start}): "
                           "save it as UTF-8") from None
    except OSError as error:
        raise InvalidInput(f"{error.filename or source}: {error.strerror or error}") from None
    repeated = sorted(name for name, count in Counter(item.identity for item in items).items() if count > 1)
    if repeated:
        raise InvalidInput(f"{source}: these identities name more than one item: {', '.join(repeated[:5])}"
                           + (" ..." if len(repeated) > 5 else "") + " (give each its own, e.g. an id column)")
    return items


def _read_csv(path: Path, source_column: str | None, id_column: str | None, max_field: int) -> list[Item]:
    default = csv.field_size_limit(max_field)
    try:
        return _read_rows(path, source_column, id_column)
    finally:
        csv.field_size_limit(default)


def _read_rows(path: Path, source_column: str | None, id_column: str | None) -> list[Item]:
    with open(path, newline="", encoding="utf-8-sig") as rows:
        reader = csv.DictReader(rows)
        columns = reader.fieldnames or []
        source_column = source_column or next((c for c in SOURCE_COLUMNS if c in columns), None) or (
            columns[0] if columns else None)
        id_column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
        for wanted in (source_column, id_column):
            if wanted is not None and wanted not in columns:
                raise InvalidInput(f"{path}: no column {wanted!r} (columns: {', '.join(columns)})")
        items = []
        for row in _rows(reader, path):
            value = (row.get(source_column) or "").strip()
            if not value:
                continue
            identity = (row.get(id_column) or "").strip() if id_column else ""
            if source_column == "text":
                if not identity:
                    raise InvalidInput(f"{path}: line {reader.line_num}: a text needs an identity "
                                       f"({id_column or 'id'} column)")
                items.append(Item(identity, value, text=True))
            else:
                items.append(Item(identity or _name_of(value), _resolve(value, path)))
    return items


def _rows(reader: csv.DictReader, path: Path) -> Iterator[dict[str, str]]:
    """The CSV's rows; one it cannot read is an error naming its line."""
    try:
        yield from reader
    except csv.Error as error:
        raise InvalidInput(f"{path}: line {reader.line_num}: {error}") from None


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _name_of(source: str) -> str:
    """The file name of a path or of a URL's path."""
    path = unquote(urlsplit(source).path) if _is_url(source) else source
    return Path(path).name or source


def _resolve(source: str, listed_in: Path) -> str:
    return source if _is_url(source) else str((listed_in.parent / source).expanduser())


# --- running ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run did, for the summary."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    """Items to do that `--limit` left for a later run."""
    interrupted: bool = False
    files: dict[str, list[Path]] = field(default_factory=dict)


class Prelabel:
    """One pre-labelling run over `items` into `out`, with the given platforms' exporters; `producer` is what
    makes the pre-labels (`producer()`), `limit` the most items to run."""

    def __init__(self, service: Service, exporters: dict[str, Exporter], out: Path,
                 params: dict[str, Any] | None = None, retry_failed: bool = False,
                 stream: TextIO | None = None, journal: Journal | None = None, producer: tuple[str, ...] = (),
                 limit: int | None = None) -> None:
        self.service = service
        self.exporters = exporters
        self.out = out
        self.params = params or {}
        self.retry_failed = retry_failed
        self.stream = stream or sys.stderr  # the process's at the run, not at import (tests replace it)
        self.journal = journal or Journal(out / "journal.jsonl")
        self.producer = producer
        self.limit = limit
        self.report = Run()
        """What this run did so far: complete even when it is interrupted."""

    def pending(self, items: list[Item]) -> list[Item]:
        """Items the journal does not show done by this producer for every platform asked, with their files all
        there (nor failed, unless retried)."""
        wanted = set(self.exporters)
        todo = []
        for item in items:
            entry = self.journal.entries.get(item.identity)
            if entry is None or (not entry.ok and self.retry_failed) or (entry.ok and not (
                    wanted <= set(entry.platforms) and entry.producer == self.producer and self._kept(entry))):
                todo.append(item)
        return todo

    def _kept(self, entry: Entry) -> bool:
        """Whether the files that hold the item are all there, on every platform asked."""
        return all((self.out / path).is_file() for name in self.exporters for path in entry.files.get(name, ()))

    async def run(self, items: list[Item]) -> Run:
        todo = self.pending(items)
        run = self.report
        run.total, run.skipped = len(items), len(items) - len(todo)
        if self.limit is not None:
            run.left, todo = max(0, len(todo) - self.limit), todo[:self.limit]
        progress = Progress(len(todo), self.stream)
        queue = iter(todo)

        async def worker() -> None:
            for item in queue:  # each worker takes the next item as it finishes one
                entry = await self.one(item)
                run.done += entry.ok
                run.failed += not entry.ok
                progress.update(run.done, run.failed)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.service.limits.concurrency, len(todo)) or 1)))
        except asyncio.CancelledError:
            run.interrupted = True
            raise
        finally:
            progress.close()
            self.journal.close()
            for name, exporter in self.exporters.items():  # files match the journal, even when interrupted
                run.files[name] = exporter.finish(self.out / name)
        return run

    async def one(self, item: Item) -> Entry:
        """Predict one item, write it for every platform and journal it; a failure is the item's, with its
        reason. The files are written before the journal line that says they are."""
        try:
            *written, (classes, rows) = await answers(self.service, await self.job(item), self.writers(item))
        except BridgeError as error:
            entry = Entry(item.identity, False, error=error.message, producer=self.producer)
        except Exception as error:  # a bug of ours, an exporter's, a full disk: this item fails, not the run
            log.exception("item %s failed", item.identity)
            entry = Entry(item.identity, False, error=f"{type(error).__name__}: {error}", producer=self.producer)
        else:
            files = {name: tuple(str(path.relative_to(self.out)) for path in paths)
                     for name, paths in zip(self.exporters, written)}
            entry = Entry(item.identity, True, tuple(self.exporters), classes, rows=rows, files=files,
                          producer=self.producer)
        await asyncio.to_thread(self.journal.record, entry)
        return entry

    def writers(self, item: Item) -> list[Writer]:
        """Each exporter's writer of this item, then what the journal keeps of its predictions."""
        spec = self.service.spec

        def exporting(name: str, exporter: Exporter) -> Writer:
            return Writer(name, exporter.conversions, lambda result: exporter.write(item, result, self.out / name))

        def counted(result: Result) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
            rows = conversions.carried(spec, result.predictions)
            return dict(Counter(p.label for p in result.predictions)), tuple(sorted(rows))

        return [*(exporting(name, exporter) for name, exporter in self.exporters.items()),
                Writer(PLATFORM, None, counted)]

    async def job(self, item: Item) -> Job:
        """The neutral job of an item: its text, or its image or text by URL or as the file's bytes."""
        if item.text:
            if self.service.spec.input != "text":
                raise InvalidInput("this model reads images; the CSV gives a text")
            return Job(platform=PLATFORM, text=item.source, params=self.params)
        if _is_url(item.source):
            source = Source(url=item.source)
        else:
            source = Source(data=await asyncio.to_thread(self._read, Path(item.source)))
        if self.service.spec.input == "text":
            return Job(platform=PLATFORM, text=source, params=self.params)
        return Job(platform=PLATFORM, image=source, params=self.params)

    def _read(self, path: Path) -> bytes:
        limit = self.service.limits.max_download_bytes
        try:
            size = path.stat().st_size
            if size > limit:
                raise TooLarge(f"the file has {size} bytes; the limit is {limit} (limits.max_download_bytes)")
            return path.read_bytes()
        except OSError as error:
            raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None


# --- progress --------------------------------------------------------------------------------------------------


class Progress:
    """A bar on a terminal (items/s, ETA, failures), plain lines every `every` seconds otherwise."""

    def __init__(self, total: int, stream: TextIO, every: float = 10.0) -> None:
        self.total, self.stream, self.every = total, stream, every
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()
        self.done = self.failed = 0

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line(now, bar=True))
            self.stream.flush()
        elif now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float, bar: bool = False) -> str:
        finished = self.done + self.failed
        rate = finished / max(now - self.start, 1e-9)
        eta = (self.total - finished) / rate if rate > 0 else 0.0
        filled = int(30 * finished / max(self.total, 1))
        head = f"[{'#' * filled}{'.' * (30 - filled)}] " if bar else "prelabel: "
        return (f"{head}{finished}/{self.total} items, {self.failed} failed, {rate:.1f} items/s, "
                f"ETA {_duration(eta)}")

    def close(self) -> None:
        if self.total:
            if self.tty:
                self.stream.write("\n")
            else:
                print(self.line(time.monotonic()), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


# --- summary ---------------------------------------------------------------------------------------------------


def summary(run: Run, journal: Journal, items: list[Item], exporters: dict[str, Exporter], spec: ModelSpec,
            manifest: Manifest) -> dict[str, Any]:
    """Counts over the whole dataset (this run and earlier ones), and what each platform's file loses of the
    predictions it holds; how many identities hold control characters (exported as they are)."""
    entries = [journal.entries[item.identity] for item in items if item.identity in journal.entries]
    done = [e for e in entries if e.ok]
    classes: Counter[str] = Counter()
    for entry in done:
        classes.update(entry.classes)
    rows = {row for entry in done for row in entry.rows}
    tolerance = manifest.geometry.simplify_tolerance
    losses = {name: conversions.losses(exporter.conversions, spec, rows, tolerance)
              for name, exporter in exporters.items()}
    return {
        "items": len(items), "done": len(done), "failed": len(entries) - len(done),
        "this_run": {"done": run.done, "failed": run.failed, "skipped": run.skipped, "left": run.left,
                     "interrupted": run.interrupted},
        "identities_with_control_characters": sum(one_line(item.identity) != item.identity for item in items),
        "predictions": dict(sorted(classes.items())),
        "failures": {e.item: e.error for e in entries if not e.ok},
        "conversions": losses,
        "files": {name: [str(path) for path in paths] for name, paths in run.files.items()},
    }


def render(report: dict[str, Any], out: Path) -> str:
    """The summary for a terminal: every name and message escaped (`one_line`), so a file name cannot drive it."""
    this = report["this_run"]
    left = f", {this['left']} left for a later run (--limit)" if this["left"] else ""
    lines = [f"{report['items']} items: {report['done']} done, {report['failed']} failed "
             f"(this run: {this['done']} done, {this['failed']} failed, {this['skipped']} skipped as journaled "
             f"before{left}{', interrupted' if this['interrupted'] else ''})"]
    if report["predictions"]:
        lines.append("predictions: " + ", ".join(f"{name} {count}" for name, count in report["predictions"].items()))
    for item, error in list(report["failures"].items())[:10]:
        lines.append(f"  failed {item}: {error}")
    if len(report["failures"]) > 10:
        lines.append(f"  ... and {len(report['failures']) - 10} more (journal.jsonl)")
    if count := report["identities_with_control_characters"]:
        lines.append(f"note: {count} {'identity holds' if count == 1 else 'identities hold'} control characters "
                     "(shown escaped here): the files name those items exactly as they are, as the platforms will")
    for name, files in report["files"].items():
        shown = ", ".join(files) if len(files) <= 3 else f"{len(files)} files in {out / name}"
        lines.append(f"{name}: {shown or 'no files'}")
        lines += [f"  - {loss}" for loss in report["conversions"][name]]
    lines.append(f"journal: {out / 'journal.jsonl'}; summary: {out / 'summary.json'}")
    return "\n".join(map(one_line, lines))


# --- the command -----------------------------------------------------------------------------------------------


def add(commands: argparse._SubParsersAction, adapters: dict[str, Adapter]) -> None:
    parser = commands.add_parser(
        "prelabel", help="run the model over a dataset and write each platform's import files (resumable)")
    add_manifest_argument(parser)
    parser.add_argument("input", type=Path, help="a folder, a file listing paths or URLs, or a .csv")
    parser.add_argument("--to", required=True,
                        help=f"platforms, comma-separated (installed: {', '.join(sorted(adapters))})")
    parser.add_argument("--out", required=True, type=Path, help="folder for the imports, journal and summary")
    parser.add_argument("--retry-failed", action="store_true", help="run again the items that failed before")
    parser.add_argument("--force", action="store_true",
                        help="pre-label again the items that another model, version, manifest or --params made")
    parser.add_argument("--limit", type=_count, metavar="N", help="run at most N items (a trial); rerun for the rest")
    parser.add_argument("--params", default="{}", help="the model's parameters, as a JSON object")
    parser.add_argument("--mapping", action="append", default=[], metavar="PLATFORM=FILE",
                        help="a class-mapping file for a platform (ango: a categorySchema list)")
    parser.add_argument("--source-column", help="CSV: the column with the path, URL or text")
    parser.add_argument("--id-column", help="CSV: the column with each item's identity on the platforms")
    parser.set_defaults(func=lambda args: command(args, adapters))


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of items (1 or more)")
    return int(text)


def command(args: argparse.Namespace, adapters: dict[str, Adapter]) -> int:
    manifest = manifest_from(args)
    try:
        params = json.loads(args.params)
        Params(manifest.params).resolve(params)  # a bad parameter is told before the model loads
        items = read_items(args.input, args.source_column, args.id_column, manifest.limits.max_download_bytes)
        journal = open_out(args.out, args.input)
        made_by = producer(manifest, params)
        if not args.force:
            refuse_stale(items, journal, made_by, args.out)
    except (json.JSONDecodeError, InvalidInput, UsageError) as error:
        print(f"bridge prelabel: {one_line(str(getattr(error, 'message', error)))}", file=sys.stderr)
        return 2
    prelabel: Prelabel | None = None

    async def main() -> None:
        nonlocal prelabel
        service = await start_service(manifest, Platforms(adapters, {}))
        try:
            exporters = build_exporters(args.to, args.mapping, manifest, service.spec, adapters)
            prelabel = Prelabel(service, exporters, args.out, params, args.retry_failed, journal=journal,
                                producer=made_by, limit=args.limit)
            await prelabel.run(items)
        finally:
            await service.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("bridge prelabel: interrupted; run the same command again to resume", file=sys.stderr)
        if prelabel is None:
            return 130
        prelabel.report.interrupted = True
    run = prelabel.report
    report = summary(run, prelabel.journal, items, prelabel.exporters, prelabel.service.spec, manifest)
    (args.out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report, args.out))
    return 130 if run.interrupted else 1 if report["failed"] else 0


def open_out(out: Path, source: Path) -> Journal:
    """The journal of `--out`, made if need be; `UsageError` (one line) for a folder that cannot be written, lies
    inside the input folder (the next run would pre-label its own outputs) or holds a journal it did not write."""
    if source.is_dir() and out.resolve().is_relative_to(source.resolve()):
        raise UsageError(f"--out {out} is inside the input folder {source}: the next run would pre-label its own "
                         "files; give a folder outside it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return Journal(out / "journal.jsonl")
    except OSError as error:
        raise UsageError(f"--out {out}: {error.strerror or error}"
                         + (f" ({error.filename})" if error.filename and Path(error.filename) != out else "")) from None


def producer(manifest: Manifest, params: Mapping[str, Any]) -> tuple[str, str, str]:
    """What makes a run's pre-labels: the manifest's name, its version, and a fingerprint of the rest that shapes
    them: the run's parameters over the manifest's defaults, the manifest's model (factory, or a remote's URL and
    platform, and `model.params`), classes, input, thresholds, geometry and frame stride, the model's source file
    (its bytes), and each file `model.params` names (its size and time)."""
    arguments = model_params(manifest)
    shapes = manifest.model_dump(mode="json", include={"model", "classes", "input", "min_confidence", "geometry",
                                                       "video_frame_stride"},
                                 exclude={"model": {"remote": {"auth"}}})  # a hash is no place for a secret
    source = factory_file(manifest)
    made = {**shapes, "model_params": arguments, "params": dict(Params(manifest.params).resolve(params)),
            "source": hashlib.sha256(source.read_bytes()).hexdigest() if source else None,
            "files": {path: [stat.st_size, stat.st_mtime_ns] for path, stat in _named_files(arguments)}}
    fingerprint = hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return manifest.name, manifest.version, fingerprint


def _named_files(value: Any) -> Iterator[tuple[str, Any]]:
    """(path, its stat) of each string in `model.params` that names a file."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for each in value:
            yield from _named_files(each)
    elif isinstance(value, str) and value:
        try:
            path = Path(value)
            if path.is_file():
                yield value, path.stat()
        except (OSError, ValueError):
            pass  # not a path (too long, a NUL...)


def refuse_stale(items: list[Item], journal: Journal, made_by: tuple[str, ...], out: Path) -> None:
    """`UsageError` when the journal holds items that something else made: the run would otherwise skip them and
    leave their old pre-labels beside its own."""
    stale = [entry for item in items if (entry := journal.entries.get(item.identity)) is not None
             and entry.ok and entry.producer != made_by]
    if not stale:
        return
    before = Counter(entry.producer for entry in stale).most_common(1)[0][0]
    if len(before) != 3:
        who = "an earlier bridge prelabel, which did not record what made them"
    elif tuple(before[:2]) != made_by[:2]:
        who = f"{before[0]} {before[1]} (this run: {made_by[0]} {made_by[1]})"
    else:
        who = f"{before[0]} {before[1]} with other parameters, manifest settings or model files"
    raise UsageError(f"{len(stale)} items in {out} were pre-labelled by {who}: --force pre-labels them again with "
                     "this run's, or give another --out")


def build_exporters(to: str, mappings: list[str], manifest: Manifest, spec: ModelSpec,
                    adapters: dict[str, Adapter]) -> dict[str, Exporter]:
    names = [name.strip() for name in to.split(",") if name.strip()]
    files = dict(mapping.partition("=")[::2] for mapping in mappings)
    unknown = sorted((set(names) | set(files)) - set(adapters))
    if unknown or not names:
        raise ManifestError(f"--to: no platform named {', '.join(unknown) or '(none given)'} "
                            f"(installed: {', '.join(sorted(adapters))})")
    exporters = {}
    for name in names:
        adapter = adapters[name]
        mapping = Path(files[name]) if files.get(name) else None
        exporter = adapter.exporter(manifest.section(name, adapter.section),
                                    ExportSetup(manifest, spec, mapping))
        if exporter is None:
            raise ManifestError(f"--to: {name} has no file import")
        exporters[name] = exporter
    return exporters
