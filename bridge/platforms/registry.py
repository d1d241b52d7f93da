"""How the core finds adapters and their commands, and which platforms one manifest serves.

Adapters are found through the `bridge.adapters` entry-point group, and sub-commands that platforms add to
`bridge` (`bridge ango`, `bridge labelbox-manifest`) through `bridge.commands`: the core names none of them,
and another package can add either by declaring its own entry points::

    [project.entry-points."bridge.adapters"]
    cvat = "my_package.cvat:adapter"
    [project.entry-points."bridge.commands"]
    cvat-push = "my_package.cvat.commands:add"     # add(commands: argparse._SubParsersAction) -> None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from bridge.core.manifest import Manifest, ManifestError, PlatformSection
from bridge.platforms.protocol import Adapter

ADAPTERS = "bridge.adapters"
COMMANDS = "bridge.commands"


def discover() -> dict[str, Adapter]:
    """Every installed adapter by name. A broken one fails loudly: a platform must not vanish silently."""
    return {point.name: _load(point, "adapter") for point in entry_points(group=ADAPTERS)}


def commands() -> dict[str, Callable[[Any], None]]:
    """Every installed platform's `add(commands)` of its `bridge` sub-commands, by entry-point name."""
    return {point.name: _load(point, "command") for point in entry_points(group=COMMANDS)}


def _load(point: Any, what: str) -> Any:
    try:
        return point.load()
    except Exception as error:
        raise RuntimeError(f"{what} {point.name!r} ({point.value}) failed to load: {error}") from error


@dataclass(frozen=True)
class Platforms:
    """The installed adapters, and the platforms one manifest serves, each with its validated section."""

    adapters: dict[str, Adapter]
    served: dict[str, tuple[Adapter, PlatformSection]]

    @classmethod
    def of(cls, manifest: Manifest, adapters: dict[str, Adapter] | None = None) -> Platforms:
        """The platforms `manifest` has a section for (and does not disable); an unknown name is an error."""
        adapters = discover() if adapters is None else adapters
        unknown = sorted(set(manifest.platforms) - set(adapters))
        if unknown:
            raise ManifestError(f"{manifest.where()}: platforms: no adapter named {', '.join(unknown)} "
                                f"(installed: {', '.join(sorted(adapters)) or 'none'})")
        served = {}
        for name in manifest.platforms:
            adapter = adapters[name]
            section = manifest.section(name, adapter.section)
            if section.enabled:
                served[name] = (adapter, section)
        return cls(adapters, served)

    def owner(self, path: str) -> str | None:
        """The served platform whose routes `path` lies under (the longest base path wins), or None."""
        best, length = None, -1
        for name, (_, section) in self.served.items():
            base = section.base_path.rstrip("/")
            if base and (path == base or path.startswith(base + "/")) and len(base) > length:
                best, length = name, len(base)
        return best
