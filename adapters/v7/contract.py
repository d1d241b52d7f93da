"""V7's BYOM contract, checked against any running endpoint (`bridge check URL --platform v7`).

The URL is the base as registered with V7 (one that ends with `/infer` or `/classes` is a problem: V7 appends
those; the rest is checked against the base it meant). Checked:

- `GET {base}/classes`: a JSON list of `{name, type}`, each type a V7 main annotation type, names unique;
- `POST {base}/infer` with the image (base64): V7's published response schema
  (`v7-inference-response.schema.json`, shipped beside this module), and beyond it: exactly one main type per
  result, confidence in [0, 1], each name one that `/classes` declared with that type (option tags: a `tag`),
  boxes, paths, points and centres inside the image;
- `POST {base}/infer` with a broken image: the `failed` form (`{"status": "failed", ...}`), not a success.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema

from adapters.v7.read import MAIN_TYPES
from bridge.platforms.probe import Probe, Problem, json_of, number, request

SCHEMA = json.loads((Path(__file__).with_name("v7-inference-response.schema.json")).read_text(encoding="utf-8"))
CLASS_TYPES = (*MAIN_TYPES, "mask", "raster_layer")
"""Types a V7 class may have; `mask`/`raster_layer` classes exist in V7, though BYOM answers carry polygons."""
SCHEMA_FIX = "answer V7's published response form (v7-inference-response.schema.json)"


def check(probe: Probe) -> list[Problem]:
    problems: list[Problem] = []
    probe = _base(probe, problems)
    classes = _classes(probe, problems)
    _infer(probe, classes, problems)
    _broken_image(probe, problems)
    return problems


def _base(probe: Probe, problems: list[Problem]) -> Probe:
    """The probe at the base URL: a URL given with V7's own `/infer` or `/classes` on it is a common slip."""
    for route in ("/infer", "/classes"):
        if probe.url.endswith(route):
            base = probe.url[:-len(route)]
            problems.append(Problem("URL", f"the URL ends with {route}: V7 appends /classes and /infer to the URL "
                                           "it is registered with", f"give the base URL, {base}"))
            probe.notes.append(f"checked the base {base}")
            return dataclasses.replace(probe, url=base)
    return probe


def _classes(probe: Probe, problems: list[Problem]) -> dict[str, str] | None:
    where = "GET /classes"
    response = request(probe, "GET", "/classes", problems)
    if response is None:
        return None
    if response.status_code != 200:
        problems.append(Problem(where, f"answered {response.status_code}: {response.text[:200]!r}",
                                "answer 200 with the list of the model's classes"))
        return None
    found = json_of(response, where, problems)
    if not isinstance(found, list):
        if found is not None:
            problems.append(Problem(f"{where} $", f"a {type(found).__name__}, not a list",
                                    'answer a list: [{"name": "Face", "type": "bounding_box"}, ...]'))
        return None
    classes: dict[str, str] = {}
    for index, entry in enumerate(found):
        at = f"{where} $[{index}]"
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]):
            problems.append(Problem(at, f"{entry!r:.80} has no `name`", 'each class is {"name": ..., "type": ...}'))
            continue
        if entry.get("type") not in CLASS_TYPES:
            problems.append(Problem(f"{at}.type", f"{entry.get('type')!r} is not a V7 annotation type",
                                    f"use one of {', '.join(CLASS_TYPES)}"))
        if entry["name"] in classes:
            problems.append(Problem(f"{at}.name", f"{entry['name']!r} is declared twice",
                                    "declare each class once: V7 links classes by name"))
        classes[entry["name"]] = entry.get("type")
    if not classes:
        problems.append(Problem(f"{where} $", "no classes", "declare the classes the model answers"))
    return classes


def _infer(probe: Probe, classes: dict[str, str] | None, problems: list[Problem]) -> None:
    where = "POST /infer"
    response = request(probe, "POST", "/infer", problems, json={"image": {"base64": probe.image_base64}})
    if response is None:
        return
    answer = json_of(response, where, problems)
    if answer is None:
        return
    if response.status_code != 200 or not isinstance(answer, dict) or answer.get("status") != "succeeded":
        problems.append(Problem(where, f"answered {response.status_code}: {json.dumps(answer)[:200]}",
                                "answer 200 and status succeeded for a good image"))
    seen = _schema(answer, where, problems)
    results = answer.get("results") if isinstance(answer, dict) else None
    for index, result in enumerate(results if isinstance(results, list) else []):
        if isinstance(result, dict):
            _result(probe, result, f"$.results[{index}]", classes, seen, problems)


def _schema(answer: Any, where: str, problems: list[Problem]) -> set[str]:
    """Problems of the answer against V7's schema; the JSON paths they are at. The `oneOf` of main types
    is left to `_result`, which says which types it found."""
    seen = set()
    for error in jsonschema.Draft202012Validator(SCHEMA).iter_errors(answer):
        if error.validator == "oneOf":
            continue
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        seen.add(path)
        problems.append(Problem(f"{where} {path}", error.message, SCHEMA_FIX))
    return seen


def _result(probe: Probe, result: dict[str, Any], path: str, classes: dict[str, str] | None, seen: set[str],
            problems: list[Problem]) -> None:
    """Beyond the schema; `seen` holds the paths the schema already found fault with."""
    at = f"POST /infer {path}"
    main = [key for key in MAIN_TYPES if key in result]
    if len(main) != 1:
        problems.append(Problem(at, f"{len(main)} main annotation types ({', '.join(main) or 'none'})",
                                f"give each result exactly one of {', '.join(MAIN_TYPES)}"))
    confidence = result.get("confidence")
    if f"{path}.confidence" not in seen and not (number(confidence) and 0 <= confidence <= 1):
        problems.append(Problem(f"{at}.confidence", f"{confidence!r} is not a number in [0, 1]",
                                "send a probability in [0, 1] (clamp the model's score)"))
    name = result.get("name")
    if classes is not None and isinstance(name, str) and len(main) == 1:
        if name not in classes:
            problems.append(Problem(f"{at}.name", f"{name!r} is not a class that /classes declared",
                                    "answer only the names /classes lists (V7 drops the others)"))
        elif classes[name] != main[0] and not (classes[name] in ("mask", "raster_layer") and main[0] == "polygon"):
            problems.append(Problem(f"{at}.{main[0]}", f"{name!r} is declared a {classes[name]} by /classes",
                                    f"answer {name!r} as {classes[name]}, or declare it as {main[0]}"))
    if len(main) == 1:
        for point, x, y in _points(main[0], result[main[0]]):
            if number(x) and number(y) and not probe.inside(x, y):
                height, width = probe.size
                problems.append(Problem(f"{at}.{main[0]}{point}", f"({x:g}, {y:g}) lies outside the image of "
                                                                 f"{width}x{height}",
                                        "clip shapes to the image (pixels, origin top-left)"))
                break


def _points(kind: str, value: Any) -> list[tuple[str, float, float]]:
    """(JSON path, x, y) of the points a main type places in the image."""
    try:
        if kind == "bounding_box":
            return [("", value["x"], value["y"]), ("", value["x"] + value["w"], value["y"] + value["h"])]
        if kind == "cuboid":
            return [p for face in ("front", "back") for p in _points("bounding_box", value[face])]
        if kind == "keypoint":
            return [("", value["x"], value["y"])]
        if kind == "ellipse":
            return [(".center", value["center"]["x"], value["center"]["y"])]
        if kind in ("polygon", "line"):
            paths = [value["path"], *value.get("additional_paths", [])]
            return [(f".path[{i}]" if n == 0 else f".additional_paths[{n - 1}][{i}]", p["x"], p["y"])
                    for n, path in enumerate(paths) for i, p in enumerate(path)]
        if kind == "skeleton":
            return [(f".nodes[{i}]", node["x"], node["y"]) for i, node in enumerate(value["nodes"])]
    except (KeyError, TypeError):
        return []  # the schema said what is missing
    return []


def _broken_image(probe: Probe, problems: list[Problem]) -> None:
    where = "POST /infer (a broken image)"
    broken = {"image": {"base64": "bm90IGFuIGltYWdl"}}  # "not an image"
    response = request(probe, "POST", "/infer", problems, json=broken)
    if response is None:
        return
    answer = json_of(response, where, problems)
    if isinstance(answer, dict) and answer.get("status") == "failed":
        _schema(answer, where, problems)
        return
    problems.append(Problem(f"{where} $.status", f"answered {response.status_code}: {json.dumps(answer)[:200]}",
                            'answer V7\'s failed form, {"status": "failed", "results": [], "error": "why"}: V7 '
                            "logs the error and moves on"))
