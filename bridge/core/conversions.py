"""What each platform receives of each class kind: declared once per adapter (and per export format).

An adapter's table maps every class kind (and the aspects of a prediction that are not its shape:
attributes, text, confidence, video frames) to the form it leaves in, and whether that is exact, lossy (and
why) or dropped (and why). `bridge check`, the warn-once log lines, `bridge formats` and each platform's
class listing are derived from the table, so the matrix cannot drift from what the code does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from bridge.core.model import ClassKind, ModelSpec
from bridge.core.predictions import Prediction

Fidelity = Literal["exact", "lossy", "dropped"]

ASPECTS = ("prediction.attributes", "prediction.text", "prediction.confidence", "prediction.frame")
"""What a prediction carries besides its shape (its `attributes`, `text`, `confidence`, video `frame`); each
table says what becomes of them too. Named apart from the class kinds (`text` is also a kind: free text)."""

PROMPTS = "prompts"
"""What the platform sends a model that takes prompts (click to segment): a table's one row about the way in."""

KINDS: tuple[str, ...] = get_args(ClassKind)
ROWS: tuple[str, ...] = (*KINDS, *ASPECTS, PROMPTS)


@dataclass(frozen=True)
class Conversion:
    """The form one class kind (or aspect) leaves in on one platform."""

    form: str
    """The platform's own name for it, e.g. `bounding_box`; empty when dropped."""
    fidelity: Fidelity = "exact"
    why: str = ""
    """For lossy and dropped forms: what is lost, in words a user can act on."""
    traced: bool = False
    """A mask traced into outlines: exact along pixel edges, lossy when `geometry.simplify_tolerance` > 0."""

    def at(self, tolerance: float) -> Conversion:
        """This conversion under the manifest's simplify tolerance."""
        if not self.traced or tolerance <= 0 or self.fidelity != "exact":
            return self
        return Conversion(self.form, "lossy", f"outlines simplified by up to {tolerance:g} px "
                                              "(geometry.simplify_tolerance; 0 keeps exact pixel edges)")


Table = Mapping[str, Conversion]


def exact(form: str) -> Conversion:
    return Conversion(form)


def lossy(form: str, why: str) -> Conversion:
    return Conversion(form, "lossy", why)


def dropped(why: str) -> Conversion:
    return Conversion("", "dropped", why)


def missing_rows(table: Table) -> list[str]:
    """Kinds and aspects a table does not declare: every table must declare them all."""
    return [row for row in ROWS if row not in table]


Row = tuple[str, str]
"""(class name, kind or aspect) of what an output carries; aspects are the model's, class name empty."""


def carried(spec: ModelSpec, predictions: Iterable[Prediction]) -> set[Row]:
    """What these predictions carry: each class's kind, and the aspects present (confidence always)."""
    rows: set[Row] = set()
    for prediction in predictions:
        rows.add((prediction.label, spec.get(prediction.label).kind))
        rows.add(("", "prediction.confidence"))
        if prediction.attributes:
            rows.add(("", "prediction.attributes"))
        if prediction.text is not None:
            rows.add(("", "prediction.text"))
        if prediction.frame is not None:
            rows.add(("", "prediction.frame"))
    return rows


def possible(spec: ModelSpec) -> set[Row]:
    """What any output of the model carries: every class's kind, and a confidence."""
    return {(cls.name, cls.kind) for cls in spec.classes} | {("", "prediction.confidence")}


def losses(table: Table, spec: ModelSpec, rows: Iterable[Row], tolerance: float = 0.0) -> list[str]:
    """What a platform's form loses of `rows` (`carried`, `possible`): one line for each that does not leave
    exactly, in the model's class order, then the aspects. The one wording of `bridge check`, start-up, the
    per-request log, the playground and the `bridge prelabel` summary, e.g.
    "class 'eye' (point): dropped: Foundry documents no answer form for it"."""
    order = {cls.name: index for index, cls in enumerate(spec.classes)}
    lines = []
    for name, row in sorted(set(rows), key=lambda r: (r[0] == "", order.get(r[0], 0), ROWS.index(r[1]))):
        conversion = table[row].at(tolerance)
        if conversion.fidelity == "exact":
            continue
        how = "dropped" if conversion.fidelity == "dropped" else f"sent as {conversion.form}"
        what = f"class {name!r} ({row})" if name else row.removeprefix("prediction.")
        lines.append(f"{what}: {how}: {conversion.why}")
    return lines


def markdown(tables: Mapping[str, Table], rows: Iterable[str] = ROWS) -> str:
    """The whole matrix as a markdown table: one row per kind or aspect, one column per platform."""
    names = list(tables)
    lines = ["| kind | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for row in rows:
        cells = [_cell(tables[name][row]) for name in names]
        lines.append(f"| `{row}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(conversion: Conversion) -> str:
    if conversion.fidelity == "dropped":
        return f"dropped: {conversion.why}"
    form = f"`{conversion.form}`"
    if conversion.fidelity == "lossy":
        return f"{form}, lossy: {conversion.why}"
    if conversion.traced:
        return f"{form} (a mask is traced along pixel edges; simplified when geometry.simplify_tolerance > 0)"
    return form
