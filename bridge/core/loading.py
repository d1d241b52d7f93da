"""Building the model a manifest names: the one place every mode (`serve`, workers, Ray, `ango`, `prelabel`,
`check`, `labelbox-manifest`) builds it, once, at start-up.

A model is `model.factory` (`package.module:Name`, or `path/to/file.py:Name` relative to the manifest) called
with `model.params`, or `model.remote`: an endpoint that already speaks a platform's dialect, reached through
that platform's adapter (handed in by the caller: the core imports no adapter). Every mistake is a
`ManifestError` naming the manifest and the key.

Relative paths in `model.params` are relative to the manifest too, as the factory's file is: a string (at any
depth of the params) that names an existing file or folder from the manifest's folder reaches the factory as
that absolute path (`model_params`); any other value, a path that exists nowhere there included, is passed as
written. So `params: {weights: model.pt}` beside the manifest works from whatever folder the command runs in.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import ValidationError

from bridge.core.manifest import Manifest, ManifestError
from bridge.core.model import Model, ModelSpec
from bridge.core.remote import RemoteModel


def build_model(manifest: Manifest, adapters: Mapping[str, Any]) -> Model:
    """The manifest's model, with a usable `spec`; `adapters` (by platform name) serve `model.remote`."""
    if manifest.model.remote is not None:
        return _remote_model(manifest, adapters)
    reference = manifest.model.factory
    try:
        factory = import_factory(reference, manifest.base_dir)
    except ValidationError as error:  # a ModelSpec at the module's top level (a ValueError: caught first)
        raise ManifestError(f"{manifest.where()}: model.factory: {_one_line(error)}") from None
    except (ValueError, ImportError) as error:
        raise ManifestError(f"{manifest.where()}: model.factory: {error}") from None
    except SyntaxError as error:  # the user's model file: name it and the line
        raise ManifestError(f"{manifest.where()}: model.factory: {error.filename}, line {error.lineno}: "
                            f"SyntaxError: {error.msg}") from None
    except Exception as error:  # the model module raised while importing: a missing dependency, a typo...
        raise ManifestError(f"{manifest.where()}: model.factory: importing {reference} failed: "
                            f"{type(error).__name__}: {error}") from error
    try:
        model = factory(**model_params(manifest))
    except ValidationError as error:  # a ModelSpec the model builds in __init__
        raise ManifestError(f"{manifest.where()}: model: {reference}: {_one_line(error)}") from None
    except Exception as error:  # a wrong keyword in model.params, missing weights...: name the manifest
        raise ManifestError(f"{manifest.where()}: model: {reference} with model.params failed: "
                            f"{type(error).__name__}: {error}") from error
    if getattr(model, "spec", None) is None:
        if not manifest.classes:
            raise ManifestError(f"{manifest.where()}: the model declares no `spec`, so the manifest needs "
                                "`classes`")
        model.spec = ModelSpec(classes=manifest.classes, input=manifest.input or "image")
    if not isinstance(model.spec, ModelSpec) or not callable(getattr(model, "predict", None)):
        raise ManifestError(f"{manifest.where()}: {reference} must give an object with a "
                            "`spec: ModelSpec` and a `predict(item, context)` method")
    return model


def _one_line(error: ValidationError) -> str:
    """A pydantic error raised by the model's code as one line: the line of the model's file that raised it,
    then where and what of its first fault, the value given, and how many more faults there are."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    given = f", got {first['input']!r:.80}" if where and first.get("type") != "missing" else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{_raised_at(error)}{error.title}: {where + ': ' if where else ''}{first.get('msg')}{given}{more}"


def _raised_at(error: BaseException) -> str:
    """`file, line N: ` of the deepest frame of the model's own code in the traceback ('' if none): not
    pydantic's, the import machinery's or this module's."""
    skipped = (str(Path(pydantic.__file__).parent), "<")
    found = ""
    for frame, line in traceback.walk_tb(error.__traceback__):
        name = frame.f_code.co_filename
        if not name.startswith(skipped) and name != __file__:
            found = f"{name}, line {line}: "
    return found


def _remote_model(manifest: Manifest, adapters: Mapping[str, Any]) -> Model:
    remote = manifest.model.remote
    if remote.model_yaml is not None:
        remote = remote.model_copy(update={"model_yaml": manifest.base_dir / remote.model_yaml})
    try:
        return RemoteModel.connect(remote, adapters, manifest.classes, manifest.input, manifest.limits.deadline,
                                   manifest.limits.max_answer_bytes)
    except ValueError as error:
        raise ManifestError(f"{manifest.where()}: {error}") from None


def model_params(manifest: Manifest) -> dict[str, Any]:
    """`model.params` as the factory gets them: relative paths to what exists beside the manifest made absolute."""
    return _beside(manifest.model.params, manifest.base_dir)


def _beside(value: Any, base_dir: Path) -> Any:
    if isinstance(value, dict):
        return {key: _beside(each, base_dir) for key, each in value.items()}
    if isinstance(value, list):
        return [_beside(each, base_dir) for each in value]
    if isinstance(value, str) and value and not Path(value).is_absolute():
        try:
            if (base_dir / value).exists():
                return str(base_dir / value)
        except (OSError, ValueError):
            pass  # not a path: too long, a NUL...
    return value


def factory_file(manifest: Manifest) -> Path | None:
    """The source file of `model.factory` (the file, or the module's), or None (a remote; a module not found)."""
    if manifest.model.factory is None:
        return None
    target = manifest.model.factory.rpartition(":")[0]
    if target.endswith(".py"):
        path = (manifest.base_dir / target).resolve()
        return path if path.is_file() else None
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found and found.origin and Path(found.origin).is_file() else None


def import_factory(reference: str, base_dir: Path) -> Any:
    """`package.module:Name`, or `path/to/file.py:Name` relative to `base_dir` (the manifest's folder)."""
    target, sep, name = reference.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"{reference!r} is not of the form 'module:Name' or 'file.py:Name'")
    if target.endswith(".py"):
        path = (base_dir / target).resolve()
        if not path.is_file():
            raise ValueError(f"{reference!r}: no file {path}")
        module_name = f"bridge_model_{path.stem}_{abs(hash(path)):x}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{reference!r}: {target} has no attribute {name!r}") from None
