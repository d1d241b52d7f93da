"""Which control tag and label of a project's label config each class of the model answers with.

Classes are matched by name (after the section's `rename`), as every platform matches them:

- areas, boxes, points and spans: a label of that name (its `value` or `alias`) in a control whose tool fits
  the class's kind, the kind's own tool first (a `polygon` class: `PolygonLabels`, else `BrushLabels`; a
  `box`: `RectangleLabels`, else `PolygonLabels` or `BrushLabels`; see `TOOLS`);
- a `tag` class: an option of that name in a `Choices` or `Taxonomy` control;
- `radio` and `checklist` classes (a question and its options): the `Choices` or `Taxonomy` control named
  like the class; `text` classes: the `TextArea` named like the class.

What the model cannot put in the config (a class without a match) and what the config asks and the model
never fills (a control no class answers) are told at `/setup` and by `bridge check`. `label_config(spec)`
writes the config that holds every class: the default for the playground and for `bridge prelabel`, and
what `bridge labelstudio-config` prints for a new project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from adapters.labelstudio.config import (
    ConfigError,
    ControlTag,
    LabelConfig,
    parse_config,
)
from adapters.labelstudio.section import LabelStudioSection
from bridge.core.manifest import ManifestError
from bridge.core.model import ClassSpec, ModelSpec

TOOLS: dict[str, tuple[str, ...]] = {
    "box": ("RectangleLabels", "PolygonLabels", "BrushLabels"),
    "rotated_box": ("RectangleLabels", "PolygonLabels", "BrushLabels"),
    "polygon": ("PolygonLabels", "BrushLabels"),
    "mask": ("BrushLabels", "PolygonLabels"),
    "ellipse": ("EllipseLabels", "PolygonLabels", "BrushLabels"),
    "point": ("KeyPointLabels",),
    "skeleton": ("KeyPointLabels",),
    "entity": ("Labels",),
    "tag": ("Choices", "Taxonomy"),
    "radio": ("Choices", "Taxonomy"),
    "checklist": ("Choices", "Taxonomy"),
    "text": ("TextArea",),
}
"""The control tags a class kind may answer in, its best form first; kinds missing have no Label Studio form
(lines, cuboids, vectors)."""
QUESTIONS = ("radio", "checklist", "text")
"""Kinds whose class is the control itself (named like it), not one of its labels."""


@dataclass(frozen=True)
class Target:
    """Where one class's predictions go: a control, and the label they carry (None: the class is the control)."""

    control: ControlTag
    label: str | None


@dataclass(frozen=True)
class Mapping:
    """A label config and where each class of the model goes in it."""

    config: LabelConfig
    targets: dict[str, Target]
    warnings: tuple[str, ...]

    def class_of(self, control: str, label: str | None) -> str | None:
        """The class a result of `control` (with `label`) stands for, or None."""
        for name, target in self.targets.items():
            if target.control.name == control and (target.label is None or target.label == label):
                return name
        return None


def map_classes(spec: ModelSpec, config: LabelConfig, section: LabelStudioSection) -> Mapping:
    """Each class's target in `config`, and what does not fit."""
    targets: dict[str, Target] = {}
    warnings: list[str] = []
    for cls in spec.classes:
        name = section.platform_name(cls.name)
        target = _target(cls, name, config)
        if target is not None:
            targets[cls.name] = target
        elif cls.kind in TOOLS:
            tools = " or ".join(TOOLS[cls.kind])
            where = f"{tools} control named {name!r}" if cls.kind in QUESTIONS else f"label {name!r} in a {tools}"
            warnings.append(f"class {cls.name!r} ({cls.kind}): the label config has no {where}; its predictions "
                            "are dropped")
    used = {target.control.name for target in targets.values()}
    for control in config.controls:
        if control.name not in used:
            warnings.append(f"{control.type} {control.name!r}: no class of the model answers it")
    return Mapping(config, targets, tuple(warnings))


def _target(cls: ClassSpec, name: str, config: LabelConfig) -> Target | None:
    for tool in TOOLS.get(cls.kind, ()):
        for control in config.controls:
            if control.type != tool:
                continue
            if cls.kind in QUESTIONS:
                if control.name == name:
                    return Target(control, None)
            elif control.label(name) is not None:
                return Target(control, control.label(name).value)
    return None


def label_config(spec: ModelSpec, section: LabelStudioSection) -> str:
    """A label config holding every class of the model that has a Label Studio form."""
    source = "Text" if spec.input == "text" else "Image"
    data = source.lower()
    lines = ["<View>", f'  <{source} name="{data}" value="${data}"/>']
    tools: dict[str, list[str]] = {}
    for cls in spec.classes:
        if cls.kind in TOOLS and cls.kind not in QUESTIONS and cls.kind != "tag":
            tools.setdefault(TOOLS[cls.kind][0], []).append(section.platform_name(cls.name))
    for tool, labels in tools.items():
        lines.append(f'  <{tool} name="{_NAMES[tool]}" toName="{data}">')
        lines += [f"    <Label value={quoteattr(label)}/>" for label in labels]
        lines.append(f"  </{tool}>")
    tags = [section.platform_name(cls.name) for cls in spec.classes if cls.kind == "tag"]
    if tags:
        lines += [f'  <Choices name="tags" toName="{data}" choice="multiple">',
                  *(f"    <Choice value={quoteattr(tag)}/>" for tag in tags), "  </Choices>"]
    for cls in spec.classes:
        name = quoteattr(section.platform_name(cls.name))
        if cls.kind in ("radio", "checklist"):
            choice = "multiple" if cls.kind == "checklist" else "single"
            lines += [f'  <Choices name={name} toName="{data}" choice="{choice}">',
                      *(f"    <Choice value={quoteattr(option)}/>" for option in cls.options), "  </Choices>"]
        elif cls.kind == "text":
            lines.append(f'  <TextArea name={name} toName="{data}"/>')
    lines.append("</View>")
    return "\n".join(lines) + "\n"


_NAMES = {"RectangleLabels": "box", "PolygonLabels": "polygon", "BrushLabels": "mask",
          "EllipseLabels": "ellipse", "KeyPointLabels": "point", "Labels": "label"}


def generated_mapping(spec: ModelSpec, section: LabelStudioSection) -> Mapping:
    """The mapping into `label_config(spec)`: where answers go without a project (the playground)."""
    return map_classes(spec, parse_config(label_config(spec, section)), section)


def configured_mapping(spec: ModelSpec, section: LabelStudioSection, base_dir: Path) -> Mapping:
    """The mapping into the section's own config file when it names one (relative to `base_dir`, the
    manifest's folder), else `generated_mapping`."""
    if section.label_config is None:
        return generated_mapping(spec, section)
    path = base_dir / section.label_config
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"platforms.labelstudio.label_config: cannot read {path}: {error.strerror}") from None
    try:
        return map_classes(spec, parse_config(text), section)
    except ConfigError as error:
        raise ManifestError(f"platforms.labelstudio.label_config: {path}: {error}") from None
