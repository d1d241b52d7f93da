"""A Label Studio label config: the control tags a model can answer and the object tags they label.

A config is XML (`<View>` with object tags such as `<Image name="image" value="$image"/>` and control tags
such as `<RectangleLabels name="box" toName="image">` holding `<Label value=...>`). Label Studio sends it to
a backend in `/setup` (`schema`) and in every `/predict` (`label_config`). The rules follow Label Studio
1.23.2's own reading (its editor, `libs/editor/src/tags`, and `parse_config` in its SDK):

- a control tag is any tag with `name` and `toName` (`toName` may list several objects, comma-separated);
  an object tag is any other with a `name` and a `$variable` in `value` (or `valueList`, several images);
- a control's labels are the `Label` and `Choice` tags inside it (a repeated one counts once); a result
  names a label by its `alias` when it has one, else by its `value` (the editor's `selectedValues`), and
  either is accepted when reading;
- nested `Choice` tags (`Taxonomy`, `Choices allownested`) carry their path from the root (each step by
  alias or value), which is what a taxonomy result holds;
- `value="$field"` on a control means its labels come from each task's data (`dynamic`).

The XML is parsed by expat with DTDs and entity declarations refused, so a config cannot expand entities
(billion laughs) or reach outside files; undefined entities (`&nbsp;`) are XML errors, as in Label Studio.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from xml.parsers import expat

LABEL_TAGS = ("Label", "Choice")


class ConfigError(ValueError):
    """The label config is not XML we read, or breaks a rule Label Studio enforces."""


@dataclass(frozen=True)
class Label:
    value: str
    alias: str | None = None
    path: tuple[str, ...] = ()
    """From the outermost enclosing `Choice` down to this one, each by its result value (nested choices)."""

    @property
    def result_value(self) -> str:
        """How a result names this label: its alias, else its value."""
        return self.alias or self.value


@dataclass(frozen=True)
class ObjectTag:
    name: str
    type: str
    value: str
    """`$image`-style reference to the task's data (from `value`, or `valueList` for several images)."""

    @property
    def data_key(self) -> str:
        """The key of the task's `data` this object shows."""
        return self.value.lstrip("$")


@dataclass(frozen=True)
class ControlTag:
    name: str
    """The results' `from_name`."""
    type: str
    """The tag, e.g. `RectangleLabels`; results carry it lower-cased in `type`."""
    to_name: tuple[str, ...]
    labels: tuple[Label, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)
    """The tag's XML attributes as written (`choice`, `smart`, `perRegion`, `strokeWidth`...)."""

    @property
    def result_type(self) -> str:
        return self.type.lower()

    @property
    def multiple(self) -> bool:
        """Several labels may be chosen at once (`choice="multiple"`)."""
        return self.attributes.get("choice") == "multiple"

    @property
    def dynamic(self) -> bool:
        """Its labels come from each task's data (`value="$field"`), not from the config."""
        return self.attributes.get("value", "").startswith("$")

    def label(self, name: str) -> Label | None:
        """The label a result or a model names, by alias or by value (alias first, as the editor matches)."""
        return next((label for label in self.labels if label.alias == name), None) \
            or next((label for label in self.labels if label.value == name), None)


@dataclass(frozen=True)
class LabelConfig:
    controls: tuple[ControlTag, ...]
    objects: tuple[ObjectTag, ...]

    def control(self, name: str) -> ControlTag:
        for control in self.controls:
            if control.name == name:
                return control
        raise KeyError(f"no control tag named {name!r}; the config has {[c.name for c in self.controls]}")

    def object(self, name: str) -> ObjectTag:
        for tag in self.objects:
            if tag.name == name:
                return tag
        raise KeyError(f"no object tag named {name!r}; the config has {[o.name for o in self.objects]}")

    def objects_of(self, control: ControlTag) -> tuple[ObjectTag, ...]:
        return tuple(self.object(name) for name in control.to_name)


def parse_config(text: str) -> LabelConfig:
    """The control and object tags of a label config, in document order."""
    root = _parse_xml(text)
    controls, objects = [], []
    for element in root.iter():
        name = element.get("name")
        if name and element.get("toName"):
            to_name = tuple(part.strip() for part in element.get("toName").split(",") if part.strip())
            labels: dict[tuple[str, ...], Label] = {}
            for label in _labels(element):
                labels.setdefault(label.path, label)  # a repeated label counts once, as in Label Studio
            controls.append(ControlTag(name, element.tag, to_name, tuple(labels.values()),
                                       MappingProxyType(dict(element.attrib))))
        elif name and (element.get("value", "").startswith("$") or element.get("valueList")):
            objects.append(ObjectTag(name, element.tag, element.get("valueList") or element.get("value")))
    _check(controls, objects)
    return LabelConfig(tuple(controls), tuple(objects))


def _labels(control: ET.Element, path: tuple[str, ...] = ()) -> list[Label]:
    """The labels inside a control, nested choices with their paths; other controls' labels are theirs."""
    found = []
    for child in control:
        if child.get("toName") and child.get("name"):
            continue
        if child.tag in LABEL_TAGS and child.get("value") is not None:
            alias = child.get("alias") or None
            label = Label(child.get("value"), alias, (*path, alias or child.get("value")))
            found.append(label)
            found += _labels(child, label.path)
        else:
            found += _labels(child, path)
    return found


def _check(controls: list[ControlTag], objects: list[ObjectTag]) -> None:
    names = [tag.name for tag in (*controls, *objects)]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(f"label config: tag names must be unique; repeated: {repeated}")
    # a control showing task data itself may label itself (`<Chat name="chat" value="$chat" toName="chat">`)
    known = {tag.name for tag in objects} | {control.name for control in controls if control.dynamic}
    for control in controls:
        if missing := [name for name in control.to_name if name not in known]:
            raise ConfigError(f"label config: {control.type} {control.name!r} labels {missing}, which no object "
                              f"tag is named")


def _parse_xml(text: str) -> ET.Element:
    """Parse with expat into an ElementTree, refusing DTDs and entity declarations before anything expands."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise ConfigError("label config: DTDs and entity declarations are not accepted")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as error:
        raise ConfigError(f"label config is not well-formed XML: {error}") from None
    return builder.close()
