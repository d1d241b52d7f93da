"""The Ango model plugin's REST connector contract, checked against any running endpoint (`bridge check URL
--platform ango`; the URL is the connector's base, e.g. `https://host/ango`).

`GET {base}/heartbeat` answers 200; `POST {base}/plugin` with a run message (`dataURL` the image, or the text
when `--text` is given; no class mapping, so objects name their class by `title`) answers `{"response":
{"objects", "classifications", "relations"}, "session": <the run's session>}`, and each object has exactly one
of Ango's object forms, well formed and inside the image (`ner` offsets, in UTF-16 code units, inside the
text), each classification
an `answer` string or list of strings.
"""

from __future__ import annotations

import uuid
from typing import Any

from adapters.ango.read import OBJECT_TYPES
from bridge.core.offsets import Utf16
from bridge.platforms.probe import Probe, Problem, json_of, number, request

FIX_FORMS = "see Ango's answer forms (bounding-box {x, y, width, height}, point [x, y], polygon [[x, y], ...], ...)"


def check(probe: Probe) -> list[Problem]:
    problems: list[Problem] = []
    response = request(probe, "GET", "/heartbeat", problems)
    if response is not None and response.status_code != 200:
        problems.append(Problem("GET /heartbeat", f"answered {response.status_code}: {response.text[:200]!r}",
                                "answer 200 while the plugin is up (the REST connector's heartbeat)"))
    session = f"bridge-check-{uuid.uuid4().hex[:8]}"
    message = {"session": session, "projectId": "bridge-check", "assetId": "bridge-check", "runBy": "bridge-check",
               "orgId": "bridge-check", "apiKey": "", "configJSON": "", "categorySchema": None,
               "dataURL": probe.text_url if probe.text_given else probe.image_url}
    where = "POST /plugin"
    response = request(probe, "POST", "/plugin", problems, json=message)
    if response is None:
        return problems
    answer = json_of(response, where, problems)
    if answer is None:
        return problems
    if response.status_code != 200 or not isinstance(answer, dict):
        problems.append(Problem(where, f"answered {response.status_code}: {str(answer)[:200]}",
                                "answer 200 with {\"response\": ..., \"session\": ...} (if the endpoint "
                                "could not fetch dataURL, see `bridge check --help` on media, or pass --image-url)"))
        return problems
    if answer.get("session") != session:
        problems.append(Problem(f"{where} $.session", f"{answer.get('session')!r}, not the run's {session!r}",
                                "echo the run message's session: Ango matches answers to runs by it"))
    found = answer.get("response")
    if not isinstance(found, dict):
        problems.append(Problem(f"{where} $.response", f"{str(found)[:80]} is not an answer object",
                                'answer {"objects": [...], "classifications": [...], "relations": [...]}'))
        return problems
    for key in ("objects", "classifications", "relations"):
        if not isinstance(found.get(key, []), list):
            problems.append(Problem(f"{where} $.response.{key}", "is not a list", f"send `{key}` as a list"))
    for index, entry in enumerate(_list(found.get("objects"))):
        _object(probe, entry, f"{where} $.response.objects[{index}]", problems)
    for index, entry in enumerate(_list(found.get("classifications"))):
        at = f"{where} $.response.classifications[{index}]"
        _names_class(entry, at, problems)
        answer_ = entry.get("answer") if isinstance(entry, dict) else None
        if not (isinstance(answer_, str) or isinstance(answer_, list) and all(isinstance(a, str) for a in answer_)):
            problems.append(Problem(f"{at}.answer", f"{answer_!r:.80} is no classification answer",
                                    "answer an option string, a list of them (checklist) or the free text"))
    return problems


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _names_class(entry: Any, at: str, problems: list[Problem]) -> bool:
    if isinstance(entry, dict) and (isinstance(entry.get("schemaId"), str) or isinstance(entry.get("title"), str)):
        return True
    problems.append(Problem(at, f"{str(entry)[:80]} names no class",
                            "give `schemaId` (from the run's categorySchema) or, without a mapping, `title`"))
    return False


def _object(probe: Probe, entry: Any, at: str, problems: list[Problem]) -> None:
    if not _names_class(entry, at, problems):
        return
    kinds = [key for key in OBJECT_TYPES if key in entry]
    if len(kinds) != 1:
        problems.append(Problem(at, f"{len(kinds)} object forms ({', '.join(kinds) or 'none'})",
                                f"give each object exactly one of {', '.join(OBJECT_TYPES)}"))
        return
    kind, value = kinds[0], entry[kinds[0]]
    at = f"{at}.{kind}"
    if kind == "ner":
        ok = isinstance(value, dict) and isinstance(value.get("start"), int) and isinstance(value.get("end"), int)
        length = Utf16(probe.text).length
        if not ok or not 0 <= value["start"] <= value["end"] <= length:
            problems.append(Problem(at, f"{value!r:.80} is not a span inside the text of {length} UTF-16 code "
                                        "units", 'send {"start": int, "end": int} in UTF-16 code units (JavaScript\'s '
                                                 "count), end exclusive"))
        return
    points = _points(kind, value)
    if points is None:
        problems.append(Problem(at, f"{str(value)[:80]} is not a well-formed {kind}", FIX_FORMS))
        return
    for x, y in points:
        if not probe.inside(x, y):
            height, width = probe.size
            problems.append(Problem(at, f"({x:g}, {y:g}) lies outside the image of {width}x{height}",
                                    "clip shapes to the image (pixels, origin top-left)"))
            return


def _points(kind: str, value: Any) -> list[tuple[float, float]] | None:
    """The points an object places in the image; None when it is malformed."""
    if kind in ("bounding-box", "rotated-bounding-box"):
        keys = ("x", "y", "width", "height", *(("rotation",) if kind == "rotated-bounding-box" else ()))
        if not (isinstance(value, dict) and all(number(value.get(k)) for k in keys)) or min(
                value["width"], value["height"]) < 0:
            return None
        if kind == "rotated-bounding-box":  # turned about its centre: the centre must be inside
            return [(value["x"] + value["width"] / 2, value["y"] + value["height"] / 2)]
        return [(value["x"], value["y"]), (value["x"] + value["width"], value["y"] + value["height"])]
    if kind == "point":
        return [tuple(value)] if _xy(value) else None
    rings = {"polyline": [value], "polygon": [value]}.get(kind)
    if kind == "segmentation":
        zones = value.get("zones") if isinstance(value, dict) else None
        if not isinstance(zones, list) or not all(isinstance(z, dict) and isinstance(z.get("holes", []), list)
                                                  for z in zones):
            return None
        rings = [ring for zone in zones for ring in (zone.get("region"), *zone.get("holes", []))]
    least = 2 if kind == "polyline" else 3
    if not all(isinstance(ring, list) and len(ring) >= least and all(map(_xy, ring)) for ring in rings or [None]):
        return None
    return [tuple(p) for ring in rings for p in ring]


def _xy(point: Any) -> bool:
    return isinstance(point, list) and len(point) == 2 and all(map(number, point))
